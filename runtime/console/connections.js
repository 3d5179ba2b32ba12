// Connections: the list, a form generated from the connector's declared config keys (secrets as
// password fields, shown masked afterwards), the connection test runner, ping and delete.
import {
  api, confirmButton, el, errorBox, fill, field, hashQuery, input, jsonBlock, link, ms, page, pager, parseJson, pretty,
  select, session, setHashQuery, show, stateBadge, statusArea, table, when, writer,
} from './lib.js';
import { pingButton } from './systems.js';

export async function connections() {
  const number = Number(hashQuery().get('page') ?? 1);
  await page('Connections', async () => {
    const list = await api(`/connections?page=${number}&page_size=50`);
    show('Connections',
      el('p', {}, writer(el('a', { class: 'button primary', href: '#/connections/new' }, 'New connection'))),
      table([
        ['Name', (c) => link(`#/connections/${c.id}`, c.name)],
        ['System', (c) => link(`#/systems/${encodeURIComponent(c.system)}`, c.system)],
        ['Base URL', (c) => el('code', {}, c.config?.base_url ?? '')],
        ['Credentials', (c) => Object.entries(c.credentials).map(([k, v]) => `${k} ${v}`).join(', ')],
        ['Updated', (c) => when(c.updated_at)],
      ], list.data, { empty: 'No connections yet.' }),
      pager(list.pagination, (p) => setHashQuery('#/connections', { page: p })));
  });
}

/** The newest active connector plugin per system slug. */
async function connectors() {
  const list = await api('/plugins?page_size=100');
  const newest = new Map();
  for (const p of list.data) {
    if (p.world !== 'connector' || p.status !== 'active') continue;
    const seen = newest.get(p.slug);
    if (!seen || seen.created_at < p.created_at) newest.set(p.slug, p);
  }
  return newest;
}

/** A config value as typed: JSON objects, arrays, numbers and booleans are parsed, the rest is text. */
function configValue(text, key) {
  const trimmed = text.trim();
  if (/^[[{]/.test(trimmed) || /^(true|false|-?\d+(\.\d+)?)$/.test(trimmed)) return parseJson(trimmed, `config ${key}`);
  return text;
}

const shownValue = (value) => (value === undefined || value === null ? '' : typeof value === 'string' ? value : JSON.stringify(value));

/**
 * The connection form for `plugin` (its declared config keys), filled from `current` when
 * editing. Answers the form and a function reading the request body from it. The body holds
 * only what the form shows, and a shown value left as it was goes back as stored (not as
 * re-read text), so saving without a change changes nothing; what the form does not show
 * (auth, headers, resilience, the plugin version) is left out, and the API keeps it.
 */
function connectionForm(plugin, current) {
  const declared = plugin?.config ?? [];
  const known = new Set(declared.map((k) => k.name));
  const name = input('name', { required: true, value: current?.name ?? '' });
  const keys = declared.map((key) => {
    const control = key.secret
      ? el('input', { type: 'password', name: key.name, autocomplete: 'new-password', required: key.required && !current,
        placeholder: current?.credentials?.[key.name] ?? '' })
      : input(key.name, { required: key.required, value: shownValue(current?.config?.[key.name]) });
    const hint = [key.description, key.secret ? (current ? `stored ${current.credentials?.[key.name] ?? 'nothing'}; leave empty to keep` : 'secret: write-only, shown masked afterwards') : null]
      .filter(Boolean).join(' · ');
    return [key, field(`${key.name}${key.required ? ' *' : ''}`, control, hint || null), control];
  });
  const extra = Object.fromEntries(Object.entries(current?.config ?? {}).filter(([k]) => !known.has(k)));
  const other = el('textarea', { name: 'other_config', class: 'code', rows: 4, value: Object.keys(extra).length ? pretty(extra) : '' });
  const hosts = input('allowed_hosts', { value: (current?.allowed_hosts ?? []).join(' ') });
  const timeout = el('input', { type: 'number', name: 'timeout_ms', min: 1, value: current?.timeout_ms ?? '' });
  const memory = el('input', { type: 'number', name: 'memory_limit_mb', min: 1, value: current?.memory_limit_mb ?? '' });
  const stored = current?.config ?? {};
  const shownOther = other.value;
  const unchanged = (control, value) => current && control.value === shownValue(value);
  const body = () => {
    const config = current && other.value === shownOther ? { ...extra } : { ...(parseJson(other.value, 'Other config') ?? {}) };
    const credentials = {};
    for (const [key, , control] of keys) {
      if (key.secret) {
        if (control.value) credentials[key.name] = control.value;
      } else if (key.name in stored && unchanged(control, stored[key.name])) {
        config[key.name] = stored[key.name];
      } else if (control.value !== '') {
        config[key.name] = configValue(control.value, key.name);
      }
    }
    const answer = {
      name: name.value, system: plugin.slug, config, credentials,
      allowed_hosts: hosts.value.split(/[\s,]+/).filter(Boolean),
    };
    if (timeout.value) answer.timeout_ms = Number(timeout.value);
    if (memory.value) answer.memory_limit_mb = Number(memory.value);
    return answer;
  };
  const fields = el('div', { class: 'form-grid' },
    field('Name *', name, 'How orchestration steps refer to it'),
    keys.map(([, node]) => node),
    field('Other config (JSON object)', other, 'Keys the connector reads besides the declared ones, e.g. operations of the generic REST connector'),
    field('Allowed hosts', hosts, 'host or host:port besides the base URL host, separated by spaces'),
    field('Timeout (ms)', timeout, 'Per call; empty for the default'),
    field('Memory limit (MiB)', memory, 'Per call; empty for the default'));
  return { fields, body };
}

export async function newConnection() {
  await page('New connection', async () => {
    const plugins = await connectors();
    const slugs = [...plugins.keys()].sort();
    const wanted = hashQuery().get('system');
    const chosen = plugins.has(wanted) ? wanted : slugs[0];
    const system = select('system', slugs.map((s) => [s, `${plugins.get(s).name || s} (${s} ${plugins.get(s).version})`]), chosen, {
      onchange: (event) => setHashQuery('#/connections/new', { system: event.target.value }),
    });
    const { fields, body } = connectionForm(plugins.get(chosen), null);
    const status = statusArea();
    const form = el('form', { class: 'connection', onsubmit: async (event) => {
      event.preventDefault();
      status.replaceChildren();
      try {
        const created = await api('/connections', { method: 'POST', body: body() });
        location.hash = `#/connections/${created.id}`;
      } catch (error) {
        if (error.status !== 401) status.replaceChildren(errorBox(error));
      }
    } }, field('System', system, plugins.get(chosen)?.description || null), fields,
    el('button', { class: 'primary', type: 'submit' }, 'Create connection'), status);
    show('New connection', slugs.length ? form : el('p', { class: 'muted' }, 'No connector plugins: upload one first.'));
  });
}

/** A skeleton input for an operation, from its input schema's properties. */
function skeleton(schema) {
  const properties = schema?.properties ?? {};
  const value = {};
  for (const [key, property] of Object.entries(properties)) {
    value[key] = property.example ?? (property.type === 'integer' || property.type === 'number' ? 0 : property.type === 'boolean' ? false : property.type === 'object' ? {} : property.type === 'array' ? [] : '');
  }
  return value;
}

function testRunner(connection, operations) {
  const names = [...new Set([...operations.map((o) => o.name), ...Object.keys(connection.config?.operations ?? {})])];
  const operation = input('operation', { list: 'operations', required: true, value: names[0] ?? '' });
  const list = el('datalist', { id: 'operations' }, names.map((n) => el('option', { value: n })));
  const schemaOf = (name) => operations.find((o) => o.name === name)?.input_schema;
  const data = el('textarea', { name: 'input', class: 'code', rows: 6, value: pretty(skeleton(schemaOf(names[0]))) });
  operation.addEventListener('change', () => { data.value = pretty(skeleton(schemaOf(operation.value))); });
  const result = el('div', { 'aria-live': 'polite', 'data-test-result': '' });
  const form = el('form', { class: 'test-runner', onsubmit: async (event) => {
    event.preventDefault();
    result.replaceChildren(el('p', { class: 'muted' }, 'Calling…'));
    try {
      const answer = await api(`/connections/${connection.id}/test`, {
        method: 'POST', body: { operation: operation.value, input: parseJson(data.value, 'The input') ?? {} },
      });
      fill(result,
        el('p', { 'data-test-status': answer.status }, stateBadge(answer.status), ` in ${ms(answer.duration_ms)}`),
        answer.error ? el('p', { class: 'notice error' }, `${answer.error.code ?? ''} ${answer.error.message ?? ''}${answer.error.status ? ` (HTTP ${answer.error.status})` : ''}`) : null,
        el('h3', { class: 'sub' }, 'Output'), jsonBlock(answer.output ?? null, 'Output'),
        el('h3', { class: 'sub' }, 'API calls'),
        table([
          ['Request', (c) => el('code', { class: 'url' }, `${c.method} ${c.url}`)],
          ['Status', (c) => [stateBadge(c.status), c.status_code ? ` ${c.status_code}` : '']],
          ['Duration', (c) => ms(c.duration_ms)],
        ], answer.api_calls, { empty: 'No outbound requests.' }),
        el('h3', { class: 'sub' }, 'Logs'),
        answer.logs.length
          ? el('pre', { class: 'log', tabindex: '0' }, answer.logs.map((l) => `${l.level} ${l.message}${l.fields && Object.keys(l.fields).length ? ` ${JSON.stringify(l.fields)}` : ''}\n`))
          : el('p', { class: 'muted' }, 'No log lines.'),
        answer.stdout || answer.stderr ? [el('h3', { class: 'sub' }, 'stdout / stderr'), el('pre', { class: 'log', tabindex: '0' }, `${answer.stdout}${answer.stderr}`)] : null);
    } catch (error) {
      if (error.status !== 401) result.replaceChildren(errorBox(error));
    }
  } },
    field('Operation', operation), list,
    field('Input (JSON)', data),
    el('button', { class: 'primary', type: 'submit' }, 'Run test'));
  return el('section', { 'aria-labelledby': 'test-h' }, el('h2', { id: 'test-h' }, 'Test runner'), form, result);
}

export async function connection(id) {
  await page('Connection', async () => {
    const current = await api(`/connections/${id}`);
    const [operations, plugins] = await Promise.all([
      api(`/systems/${encodeURIComponent(current.system)}/apis?page_size=100`).then((a) => a.data).catch(() => []),
      session.canWrite ? connectors() : new Map(),
    ]);
    const status = statusArea();
    const ping = pingButton(current.system, () => id, status);
    let editing = null;
    if (session.canWrite) {
      const plugin = plugins.get(current.system) ?? { slug: current.system, config: [] };
      const { fields, body } = connectionForm(plugin, current);
      const saved = statusArea();
      editing = el('details', { class: 'edit' }, el('summary', {}, 'Edit'),
        el('form', { onsubmit: async (event) => {
          event.preventDefault();
          saved.replaceChildren();
          try {
            await api(`/connections/${id}`, { method: 'PUT', body: body() });
            await connection(id);
          } catch (error) {
            if (error.status !== 401) saved.replaceChildren(errorBox(error));
          }
        } }, fields, el('button', { class: 'primary', type: 'submit' }, 'Save'), saved));
    }
    show(`Connection ${current.name}`,
      el('p', {}, `System ${current.system} · timeout ${current.timeout_ms} ms · memory ${current.memory_limit_mb} MiB`),
      el('div', { class: 'io' },
        el('div', {}, el('h2', { class: 'sub' }, 'Config'), jsonBlock(current.config, 'Config')),
        el('div', {}, el('h2', { class: 'sub' }, 'Credentials (masked)'), jsonBlock(current.credentials, 'Credentials'),
          el('h2', { class: 'sub' }, 'Allowed hosts'), el('p', {}, current.allowed_hosts.join(', ') || 'the base URL host only'))),
      writer(el('div', { class: 'actions' }, ping, confirmButton('Delete', async () => {
        await api(`/connections/${id}`, { method: 'DELETE' });
        location.hash = '#/connections';
      }, status))),
      status,
      editing,
      session.canWrite ? testRunner(current, operations) : null);
  });
}
