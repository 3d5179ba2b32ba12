import { register } from 'node:module';

register('./resolve-dibop.mjs', import.meta.url);
