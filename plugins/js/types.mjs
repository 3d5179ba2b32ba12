// Generates TypeScript declarations for connector authors from `wit/plugin.wit`:
// `node types.mjs` writes `types/`. The `wasi:http` import is left out: JavaScript connectors
// reach it through `fetch`. (The jco CLI cannot read WIT paths on every machine, so the WIT
// text is handed over as source.)
import { $init, generateTypes } from '@bytecodealliance/jco-transpile/component';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const wit = (await readFile(join(here, '..', '..', 'wit', 'plugin.wit'), 'utf8'))
  .split('\n')
  .filter((line) => !line.includes('import wasi:http/'))
  .join('\n');
await $init;
const files = generateTypes('connector', {
  wit: { tag: 'source', val: wit },
  world: 'connector',
  guest: true,
  tlaCompat: false,
  features: { tag: 'list', val: [] },
  asyncMode: { tag: 'sync' },
});
for (const [file, text] of files) {
  const name = join('types', file);
  const path = join(here, name);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, text);
  console.log(`wrote ${path}`);
}
