// ---- The DIBOP glue, appended to the connector by `dibop connector build` (sdk/js/dibop.mjs).
// It provides what the connector imports from 'dibop' (PluginError, config, secret, log) and
// exports the connector world's functions from its `connector` object:
// - describe() checks the object and answers the WIT record; a mistake fails the upload at once
//   naming the field (`operations.get_item.inputSchema: expected a JSON Schema object`);
// - invoke() runs the operation; a PluginError becomes the WIT plugin-error, and anything else
//   thrown (a bug) becomes code `trap` with the exception's message and the connector's own
//   frames;
// - ping() answers the connector's health check (offline when it throws);
// - capabilities() answers `connector.capabilities` ({hosts, memory_mb}) as JSON, or null.
import { get as __dibopConfigGet } from 'dibop:plugin/config@0.1.0';
import { get as __dibopSecretGet } from 'dibop:plugin/secrets@0.1.0';
import { write as __dibopLogWrite } from 'dibop:plugin/log@0.1.0';

/** An expected failure of an operation: the step fails with `code: message`. */
class PluginError extends Error {
  constructor(code, message, { retryable = false, httpStatus } = {}) {
    super(message);
    this.name = 'PluginError';
    this.payload = { code: String(code), message: String(message), retryable: Boolean(retryable), httpStatus };
  }
}

/** A setting of the connection (decoded from its JSON), or undefined. */
function config(key) {
  const text = __dibopConfigGet(key);
  return text === undefined || text === null ? undefined : JSON.parse(text);
}

/** A credential of the connection, or undefined. */
function secret(name) {
  return __dibopSecretGet(name) ?? undefined;
}

/** A log line for the execution trace: level trace, debug, info, warn or error. */
function log(level, message, fields = {}) {
  __dibopLogWrite(level, String(message), JSON.stringify(fields ?? {}));
}

const __DIBOP_ENUMS = {
  systemType: ['general', 'oem', 'dms', 'crm', 'finance', 'telematics', 'logistics'],
  auth: ['none', 'api-key', 'basic', 'bearer', 'oauth2-client-credentials'],
};

/** The WIT connector-info of `connector`, or an Error naming every field that is wrong. */
function __dibopInfo(c) {
  const problems = [];
  const text = (value, path, { required = true } = {}) => {
    if (typeof value === 'string' && (value.trim() !== '' || !required)) return value;
    if (value === undefined && !required) return '';
    problems.push(`${path}: expected ${required ? 'a non-empty' : 'a'} string, got ${JSON.stringify(value) ?? typeof value}`);
    return '';
  };
  const oneOf = (value, path, allowed, fallback) => {
    if (value === undefined) return fallback;
    if (allowed.includes(value)) return value;
    problems.push(`${path}: expected one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
    return fallback;
  };
  const schema = (value, path) => {
    if (value === undefined) return '{}';
    if (typeof value === 'string') {
      try {
        JSON.parse(value);
        return value;
      } catch (e) {
        problems.push(`${path}: expected a JSON Schema object (or its JSON text): ${e.message}`);
        return '{}';
      }
    }
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) return JSON.stringify(value);
    problems.push(`${path}: expected a JSON Schema object, got ${JSON.stringify(value)}`);
    return '{}';
  };
  if (c === null || typeof c !== 'object') {
    throw new Error('the connector module must export `connector`, an object (see the template)');
  }
  const config = (Array.isArray(c.config) ? c.config : []).map((key, i) => ({
    name: text(key?.name, `config[${i}].name`),
    description: text(key?.description, `config[${i}].description`, { required: false }),
    required: Boolean(key?.required),
    secret: Boolean(key?.secret),
  }));
  if (c.config !== undefined && !Array.isArray(c.config)) problems.push('config: expected an array of settings');
  const operations = [];
  if (c.operations === null || typeof c.operations !== 'object' || Array.isArray(c.operations)) {
    problems.push('operations: expected an object of operations by name');
  } else {
    for (const [name, op] of Object.entries(c.operations)) {
      const at = `operations.${name}`;
      if (typeof op?.run !== 'function') problems.push(`${at}.run: expected the function that runs the operation`);
      operations.push({
        name,
        method: text(op?.method ?? 'GET', `${at}.method`),
        path: text(op?.path ?? '', `${at}.path`, { required: false }),
        description: text(op?.description ?? '', `${at}.description`, { required: false }),
        inputSchema: schema(op?.inputSchema, `${at}.inputSchema`),
        outputSchema: schema(op?.outputSchema, `${at}.outputSchema`),
      });
    }
  }
  const info = {
    slug: text(c.slug, 'slug'),
    name: text(c.name, 'name'),
    systemType: oneOf(c.systemType, 'systemType', __DIBOP_ENUMS.systemType, 'general'),
    version: text(c.version, 'version'),
    description: text(c.description ?? '', 'description', { required: false }),
    auth: oneOf(c.auth, 'auth', __DIBOP_ENUMS.auth, 'none'),
    config,
    operations,
  };
  if (problems.length) throw new Error(`describe(): ${problems.join('; ')}`);
  return info;
}

/** `exception` as the WIT plugin-error it becomes: its own when it is a PluginError. */
function __dibopError(exception) {
  if (exception instanceof PluginError) return exception;
  if (typeof exception?.payload?.code === 'string' && typeof exception?.payload?.message === 'string') return exception;
  const what = exception instanceof Error ? `${exception.name}: ${exception.message}` : `a thrown ${JSON.stringify(exception) ?? String(exception)}`;
  // SpiderMonkey frames read `function@file:line:column`; the connector's own lines come
  // before this glue (`__DIBOP_AUTHOR_LINES`, set by the build), the rest are the glue's.
  const frames = String(exception?.stack ?? '')
    .split('\n')
    .map((line) => /^(.*)@(.*):(\d+):(\d+)$/.exec(line.trim()))
    .filter((m) => m && Number(m[3]) <= __DIBOP_AUTHOR_LINES)
    .slice(0, 5)
    .map((m) => `${m[2].split('/').pop()}:${m[3]}${m[1] ? ` in ${m[1]}` : ''}`);
  const message = frames.length ? `the plugin threw ${what} (at ${frames.join(', ')})` : `the plugin threw ${what}`;
  return Object.assign(new Error(message), { payload: { code: 'trap', message, retryable: false, httpStatus: undefined } });
}

export function describe() {
  return __dibopInfo(connector);
}

export function capabilities() {
  const declared = connector?.capabilities;
  if (declared === undefined || declared === null) return 'null';
  const problems = [];
  if (!Array.isArray(declared.hosts) || declared.hosts.some((h) => typeof h !== 'string')) {
    problems.push('capabilities.hosts: expected an array of host patterns such as "api.example.com" or "*.example.com"');
  }
  const memory = declared.memory_mb ?? declared.memoryMb;
  if (memory !== undefined && !(Number.isInteger(memory) && memory >= 1 && memory <= 512)) {
    problems.push(`capabilities.memory_mb: expected an integer from 1 to 512, got ${JSON.stringify(memory)}`);
  }
  if (problems.length) throw new Error(`describe(): ${problems.join('; ')}`);
  return JSON.stringify({ hosts: declared.hosts, memory_mb: memory ?? null });
}

export async function invoke(operation, input, context) {
  const operations = connector?.operations ?? {};
  const op = Object.hasOwn(operations, operation) ? operations[operation] : undefined;
  if (typeof op?.run !== 'function') {
    throw new PluginError('invalid_input', `unknown operation \`${operation}\`; this connector offers ${Object.keys(operations).join(', ')}`);
  }
  let parsed;
  try {
    parsed = JSON.parse(input);
  } catch (e) {
    throw new PluginError('invalid_input', `the input is not JSON: ${e.message}`);
  }
  try {
    const output = await op.run(parsed, context);
    return JSON.stringify(output === undefined ? null : output);
  } catch (e) {
    throw __dibopError(e);
  }
}

export async function ping() {
  if (typeof connector?.ping !== 'function') return { status: 'offline', message: 'the connector defines no ping' };
  try {
    const health = await connector.ping();
    const status = ['online', 'offline', 'auth-error'].includes(health?.status) ? health.status : 'offline';
    const message = health?.message === undefined || health?.message === null ? undefined : String(health.message);
    return { status, message };
  } catch (e) {
    return { status: 'offline', message: __dibopError(e).payload.message };
  }
}
