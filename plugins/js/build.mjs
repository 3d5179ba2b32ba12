// Builds the JavaScript connectors into components: `node build.mjs OUT_DIR`.
import { componentize } from '@bytecodealliance/componentize-js';
import { mkdir, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const here = fileURLToPath(new URL('.', import.meta.url));
const out = process.argv[2] ?? join(here, 'dist');
await mkdir(out, { recursive: true });
const { component } = await componentize({
  sourcePath: join(here, 'vpic', 'vpic.js'),
  witPath: join(here, '..', '..', 'wit'),
  worldName: 'dibop:plugin/connector@0.1.0',
  // Only outbound HTTP (fetch) and clocks; no stdio, no randomness.
  disableFeatures: ['random', 'fetch-event'],
});
await writeFile(join(out, 'vpic_js.wasm'), component);
console.log(`built ${join(out, 'vpic_js.wasm')} (${component.length} bytes)`);
