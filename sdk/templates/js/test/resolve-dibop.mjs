// Under Node.js, `import ... from 'dibop'` loads the test double next to this file (inside the
// component, `dibop connector build` puts the real glue there).
export async function resolve(specifier, context, next) {
  if (specifier === 'dibop') return { url: new URL('./dibop-double.mjs', import.meta.url).href, shortCircuit: true };
  return next(specifier, context);
}
