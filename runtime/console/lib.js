// What every page of the console shares: the API client, the DOM builder, the signed-in
// session, and the small widgets (tables, pagers, forms, JSON views, error boxes).
export const API = '/api/v1';
export const TOKEN = 'dibop.token';

/** A failed API call, with the API's message, code, field details and request id. */
export class ApiError extends Error {
  constructor(status, body, requestId) {
    const error = body?.error ?? {};
    super(error.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = error.code;
    this.details = error.details ?? [];
    this.requestId = error.request_id ?? requestId;
  }
}

/** Called when the server no longer accepts the session's token. */
let onSessionEnd = () => {};
export function whenSessionEnds(handler) {
  onSessionEnd = handler;
}

/**
 * Calls the public API with the session's token. `body` is sent as JSON unless `raw` (with its
 * `type`) is given, for component bytes and YAML. Answers the parsed JSON (null when empty);
 * throws an ApiError for any status outside 2xx, with `response` kept for callers that need the
 * status of a success (200 against 201).
 */
export async function api(path, options = {}) {
  const headers = { accept: 'application/json' };
  const token = sessionStorage.getItem(TOKEN);
  if (token) headers.authorization = `Bearer ${token}`;
  let body;
  if (options.raw !== undefined) {
    headers['content-type'] = options.type;
    body = options.raw;
  } else if (options.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(options.body);
  }
  const response = await fetch(`${API}${path}`, { method: options.method ?? 'GET', headers, body });
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { error: { message: text.slice(0, 300) } };
  }
  const requestId = response.headers.get('x-request-id');
  if (response.status === 401 && token) {
    // The session ended (expired, revoked, password changed): back to sign-in, saying so.
    sessionStorage.removeItem(TOKEN);
    onSessionEnd('Your session has ended. Sign in again.');
    throw new ApiError(401, parsed, requestId);
  }
  if (!response.ok) throw new ApiError(response.status, parsed, requestId);
  if (options.withStatus) return { status: response.status, body: parsed };
  return parsed;
}

/** An element with attributes and children (text is always set as text, never as HTML). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (name === 'value') node.value = value;
    else node.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An error as the user sees it: the API's message, its field details, and the request id. */
export function errorBox(error) {
  const id = error.requestId ? ` (request ${error.requestId})` : '';
  const details = (error.details ?? []).map((d) => el('li', {}, el('code', {}, d.path || '(body)'), ` ${d.message}`));
  return el('div', { class: 'notice error', role: 'alert' },
    el('p', {}, `${error.message}${id}`),
    details.length ? el('ul', { class: 'details' }, details) : null);
}

export function notice(text) {
  return el('p', { class: 'notice', role: 'status' }, text);
}

const main = () => document.getElementById('main');

/** Replaces a node's children, skipping absent ones (null, undefined, false) and flattening lists. */
export function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

/** Replaces the page: a title, then the content. */
export function show(title, ...content) {
  fill(main(), el('h1', {}, title), content);
  document.title = `${title} · DIBOP console`;
  main().focus();
}

/** Runs a page's loader, showing its failure (except a 401, which already went to sign-in). */
export async function page(title, load) {
  // `data-ready` tells automated checks (and nothing else) that the page finished loading.
  document.body.dataset.ready = '0';
  show(title, el('p', { class: 'muted' }, 'Loading…'));
  try {
    await load();
  } catch (error) {
    if (error.status !== 401) {
      const box = errorBox(error);
      box.dataset.pageError = '';
      show(title, box);
    }
  } finally {
    document.body.dataset.ready = '1';
  }
}

/** Who is signed in: the user record (role, platform rights) and the enterprise's name. */
export const session = {
  user: null,
  enterprise: '',
  /** Writes tenant data (orchestrations, connections, webhooks, records): enterprise admins. */
  get canWrite() {
    return this.user?.role === 'enterprise_admin';
  },
  /** Writes administration (plugins, settings, users, keys, alert rules): any role but viewer. */
  get administers() {
    return Boolean(this.user) && this.user.role !== 'viewer';
  },
  get platform() {
    return Boolean(this.user?.platform_access);
  },
  get readsTenantData() {
    return this.user?.role !== 'platform_admin';
  },
};

/** Only for writers of tenant data: viewers see no write actions at all. */
export const writer = (...nodes) => (session.canWrite ? nodes : []);
/** Only for writers of administration. */
export const administrator = (...nodes) => (session.administers ? nodes : []);

/** The `sub` claim of the session's token (the token is only read here, never trusted). */
export function tokenSubject() {
  const token = sessionStorage.getItem(TOKEN) ?? '';
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(payload)).sub;
  } catch {
    return null;
  }
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An SVG element (attributes only: the CSP allows no inline style). */
export function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children.flat()) {
    if (child) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// --- Formatting

export const when = (value) => (value ? new Date(value).toLocaleString() : '');
export const ms = (value) => (value === null || value === undefined ? '' : `${Math.round(value)} ms`);
export const pretty = (value) => JSON.stringify(value, null, 2);

export function stateBadge(state) {
  return el('span', { class: `state ${String(state).replace(/[^a-z_]/g, '')}` }, state);
}

/** Longest text a JSON block shows (a step's output may be 32 MiB). */
const JSON_BLOCK_CHARS = 200_000;

/** A JSON value in a scrollable block, with a label for screen readers; past
 * `JSON_BLOCK_CHARS` it shows the beginning and says how much is left out. */
export function jsonBlock(value, label = 'JSON') {
  const text = value === undefined ? '' : pretty(value);
  if (text.length <= JSON_BLOCK_CHARS) return el('pre', { class: 'json', tabindex: '0', 'aria-label': label }, text);
  const rest = text.length - JSON_BLOCK_CHARS;
  return el('div', {},
    el('pre', { class: 'json', tabindex: '0', 'aria-label': label }, text.slice(0, JSON_BLOCK_CHARS)),
    el('p', { class: 'muted', 'data-json-cut': '' },
      `… ${rest.toLocaleString()} more characters not shown here; the API answers the whole value.`));
}

export function link(href, text) {
  return el('a', { href }, text);
}

// --- Tables and paging

/** A table from column definitions `[label, (row) => cell]`; an empty list says so. */
export function table(columns, rows, { empty = 'Nothing here yet.', caption } = {}) {
  if (!rows.length) return el('p', { class: 'muted' }, empty);
  return el('div', { class: 'scroll' }, el('table', {},
    caption ? el('caption', {}, caption) : null,
    el('thead', {}, el('tr', {}, columns.map(([label]) => el('th', { scope: 'col' }, label)))),
    el('tbody', {}, rows.map((row) => el('tr', {}, columns.map(([, cell]) => el('td', {}, cell(row))))))));
}

/** Previous/next for a paginated answer; `go(page)` loads another page. */
export function pager(pagination, go) {
  if (!pagination || pagination.total_pages <= 1) return null;
  const { page: current, total_pages: pages, total } = pagination;
  return el('nav', { class: 'pager', 'aria-label': 'Pages' },
    el('button', { type: 'button', disabled: current <= 1, onclick: () => go(current - 1) }, '← Previous'),
    el('span', {}, `Page ${current} of ${pages} (${total})`),
    el('button', { type: 'button', disabled: current >= pages, onclick: () => go(current + 1) }, 'Next →'));
}

// --- Routes and their query strings (`#/executions?status=failed`)

export function hashQuery() {
  const hash = location.hash;
  const at = hash.indexOf('?');
  return new URLSearchParams(at < 0 ? '' : hash.slice(at + 1));
}

export function setHashQuery(path, params) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== '' && v !== null && v !== undefined));
  const text = query.toString();
  location.hash = text ? `${path}?${text}` : path;
}

// --- Forms

let fieldCount = 0;
/** A labelled control; `hint` is tied to it by aria-describedby. */
export function field(label, control, hint) {
  fieldCount += 1;
  const id = control.id || `f${fieldCount}`;
  control.id = id;
  const hintNode = hint ? el('small', { id: `${id}-hint`, class: 'muted' }, hint) : null;
  if (hint) control.setAttribute('aria-describedby', `${id}-hint`);
  return el('div', { class: 'field' }, el('label', { for: id }, label), control, hintNode);
}

export function input(name, attributes = {}) {
  return el('input', { name, type: 'text', ...attributes });
}

export function select(name, options, selected, attributes = {}) {
  return el('select', { name, ...attributes },
    options.map((o) => {
      const [value, text] = Array.isArray(o) ? o : [o, o];
      return el('option', { value, selected: value === selected }, text);
    }));
}

/** Parses a JSON text field, naming it in the error. */
export function parseJson(text, what) {
  if (!text.trim()) return undefined;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ApiError(0, { error: { message: `${what} is not valid JSON: ${error.message}` } });
  }
}

/** Runs a button's action with the button disabled, showing a failure in `status`. */
async function runFrom(button, action, status) {
  button.disabled = true;
  status?.replaceChildren();
  try {
    await action();
  } catch (error) {
    if (error.status !== 401) status?.replaceChildren(errorBox(error));
  } finally {
    button.disabled = false;
  }
}

/** A button that runs `action`, showing its errors (and disabling itself while it runs). */
export function actionButton(text, action, status, attributes = {}) {
  const button = el('button', { type: 'button', ...attributes, onclick: () => runFrom(button, action, status) }, text);
  return button;
}

/** A status line that screen readers announce. */
export const statusArea = () => el('div', { class: 'status', 'aria-live': 'polite' });

/** A secret shown once, with a copy button. */
export function shownOnce(label, secret) {
  const status = el('span', { class: 'muted', 'aria-live': 'polite' });
  return el('div', { class: 'notice once', role: 'status' },
    el('p', {}, `${label} (shown once; store it now):`),
    el('code', { class: 'secret', 'data-secret': '' }, secret), ' ',
    el('button', { type: 'button', onclick: async () => {
      try {
        await navigator.clipboard.writeText(secret);
        status.textContent = 'Copied.';
      } catch {
        status.textContent = 'Copy failed: select the text and copy it.';
      }
    } }, 'Copy'), ' ', status);
}

/** Tabs as links between pages of one section. */
export function tabs(items, current) {
  return el('nav', { class: 'tabs', 'aria-label': 'Section' },
    items.map(([href, text]) => el('a', { href, 'aria-current': href === current ? 'page' : null }, text)));
}

/** A destructive action that asks once more on the button itself (no browser dialog). */
export function confirmButton(text, action, status) {
  let armed = false;
  let timer = null;
  const button = el('button', { type: 'button', class: 'danger', onclick: async () => {
    if (!armed) {
      armed = true;
      button.textContent = `Confirm: ${text.toLowerCase()}`;
      timer = setTimeout(() => { armed = false; button.textContent = text; }, 5000);
      return;
    }
    clearTimeout(timer);
    armed = false;
    button.textContent = text;
    await runFrom(button, action, status);
  } }, text);
  return button;
}
