import assert from 'node:assert/strict';
import { test } from 'node:test';

import { connection } from 'dibop';
import { connector, itemUrl } from '../src/connector.js';

test('an id cannot leave the items path', () => {
  assert.equal(itemUrl('https://api.example.com/', '42'), 'https://api.example.com/items/42');
  assert.equal(itemUrl('https://x', '../admin?a=1'), 'https://x/items/..%2Fadmin%3Fa%3D1');
});

test('get_item reads the item with the API key, and a 404 is not_found', async (t) => {
  connection.config.base_url = 'https://api.example.com';
  connection.secrets.api_key = 'key-1';
  const seen = [];
  t.mock.method(globalThis, 'fetch', async (url, init) => {
    seen.push({ url, key: init.headers['X-Api-Key'] });
    return url.endsWith('/42') ? Response.json({ id: '42', name: 'Wheel' }) : new Response('', { status: 404 });
  });
  assert.deepEqual(await connector.operations.get_item.run({ id: '42' }), { id: '42', name: 'Wheel' });
  assert.deepEqual(seen, [{ url: 'https://api.example.com/items/42', key: 'key-1' }]);
  await assert.rejects(connector.operations.get_item.run({ id: '7' }), (e) => e.payload.code === 'not_found');
});
