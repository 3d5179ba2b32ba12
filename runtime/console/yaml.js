// JSON values as YAML (block style), for the editor's YAML view. Strings are written in YAML's
// double-quoted form (JSON's escapes are valid there), so nothing is read back differently.
const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/;

const key = (k) => (PLAIN_KEY.test(k) && !['true', 'false', 'null', 'yes', 'no', 'on', 'off'].includes(k.toLowerCase()) ? k : JSON.stringify(k));

function scalar(value) {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return JSON.stringify(value);
  return String(value);
}

const isBlock = (v) => v !== null && typeof v === 'object' && Object.keys(v).length > 0;

function lines(value, pad, out) {
  if (Array.isArray(value)) {
    for (const item of value) {
      if (isBlock(item)) {
        const inner = [];
        lines(item, '', inner);
        out.push(`${pad}- ${inner[0]}`);
        for (const line of inner.slice(1)) out.push(`${pad}  ${line}`);
      } else {
        out.push(`${pad}- ${Array.isArray(item) ? '[]' : typeof item === 'object' && item ? '{}' : scalar(item)}`);
      }
    }
    return;
  }
  for (const [k, v] of Object.entries(value)) {
    if (isBlock(v)) {
      out.push(`${pad}${key(k)}:`);
      lines(v, `${pad}  `, out);
    } else {
      out.push(`${pad}${key(k)}: ${Array.isArray(v) ? '[]' : typeof v === 'object' && v ? '{}' : scalar(v)}`);
    }
  }
}

export function toYaml(value) {
  if (!isBlock(value)) return `${Array.isArray(value) ? '[]' : typeof value === 'object' && value ? '{}' : scalar(value)}\n`;
  const out = [];
  lines(value, '', out);
  return `${out.join('\n')}\n`;
}
