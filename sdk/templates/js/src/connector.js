// {{name}}: a DIBOP connector in JavaScript, with one operation, `get_item`, reading
// `GET {base_url}/items/{id}` with an optional API key. Replace the settings and operations with
// your system's; `dibop connector build` turns this file into dist/{{slug}}.wasm.
//
// `connector` describes the plugin and names a function per operation. Each operation gets the
// input (already checked against its inputSchema) and answers a JSON value. Throw
// `new PluginError(code, message, { retryable, httpStatus })` for an expected failure; anything
// else you throw is a bug: the step fails `trap` with its message and your frames.
import { PluginError, config, secret, log } from 'dibop';

export const connector = {
  slug: '{{slug}}',
  name: '{{name}}',
  version: '0.1.0',
  description: 'Reads items from the Example API.',
  systemType: 'general',
  auth: 'api-key',
  config: [
    { name: 'base_url', description: 'Base URL of the API, e.g. https://api.example.com', required: true },
    { name: 'api_key', description: 'API key, sent as X-Api-Key', secret: true },
  ],
  operations: {
    get_item: {
      method: 'GET',
      path: '/items/{id}',
      description: 'Reads one item by id.',
      inputSchema: { type: 'object', required: ['id'], properties: { id: { type: 'string' } } },
      outputSchema: { type: 'object' },
      run: getItem,
    },
  },
  ping: checkHealth,
  // The hosts it reaches (`api.example.com`, `*.example.com`) and the memory a call wants: a
  // connection's hosts must fit them, and a version that declares more waits for an admin's
  // approval. `*` leaves the hosts to each connection's allowed_hosts.
  capabilities: { hosts: ['*'], memory_mb: 64 },
};

/** The URL of one item: the id is percent-encoded, so it cannot change the path. */
export function itemUrl(base, id) {
  return `${base.replace(/\/+$/, '')}/items/${encodeURIComponent(id)}`;
}

function headers() {
  const key = secret('api_key');
  return key ? { Accept: 'application/json', 'X-Api-Key': key } : { Accept: 'application/json' };
}

async function getItem(input) {
  log('info', 'reading an item', { id: input.id });
  const response = await fetch(itemUrl(config('base_url'), input.id), { headers: headers() });
  if (response.status === 404) throw new PluginError('not_found', `no item ${input.id}`, { httpStatus: 404 });
  if (!response.ok) {
    const retryable = response.status >= 500 || response.status === 429;
    throw new PluginError('upstream', `the API answered HTTP ${response.status}`, { retryable, httpStatus: response.status });
  }
  return await response.json();
}

async function checkHealth() {
  const response = await fetch(`${config('base_url').replace(/\/+$/, '')}/health`, { headers: headers() });
  if (response.status === 401 || response.status === 403) return { status: 'auth-error', message: `HTTP ${response.status}` };
  return response.ok ? { status: 'online' } : { status: 'offline', message: `HTTP ${response.status}` };
}
