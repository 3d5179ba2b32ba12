// The DIBOP console: a single page over the public REST API (/api/v1) with the caller's token,
// so roles and tenancy are enforced where they always are. Plain ES module, no dependencies.
const API = '/api/v1';
const TOKEN = 'dibop.token';
const main = document.getElementById('main');

/** A failed API call, with the API's message and request id. */
class ApiError extends Error {
  constructor(status, body) {
    const error = body?.error ?? {};
    super(error.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = error.code;
    this.requestId = error.request_id;
  }
}

async function api(path, options = {}) {
  const headers = { accept: 'application/json', ...(options.headers ?? {}) };
  const token = sessionStorage.getItem(TOKEN);
  if (token) headers.authorization = `Bearer ${token}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${API}${path}`, {
    method: options.method ?? 'GET',
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (response.status === 401 && token) {
    // The session ended (expired, revoked, password changed): back to sign-in, saying so.
    sessionStorage.removeItem(TOKEN);
    signIn('Your session has ended. Sign in again.');
    throw new ApiError(401, body);
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

/** An element with attributes and children (text is always set as text, never as HTML). */
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function errorBox(error) {
  const id = error.requestId ? ` (request ${error.requestId})` : '';
  return el('p', { class: 'notice error', role: 'alert' }, `${error.message}${id}`);
}

function show(title, ...content) {
  main.replaceChildren(el('h1', {}, title), ...content);
  document.title = `${title} · DIBOP console`;
  main.focus();
}

function chrome(signedIn, who = '') {
  document.getElementById('nav').hidden = !signedIn;
  document.getElementById('signout').hidden = !signedIn;
  document.getElementById('who').textContent = who;
}

function signIn(message) {
  chrome(false);
  if (location.hash !== '#/signin') history.replaceState(null, '', '#/signin');
  const email = el('input', { type: 'email', name: 'email', autocomplete: 'username', required: true });
  const password = el('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const status = el('div', { 'aria-live': 'polite' });
  const form = el('form', { class: 'signin', onsubmit: async (event) => {
    event.preventDefault();
    status.replaceChildren();
    try {
      const answer = await api('/auth/login', { method: 'POST', body: { email: email.value, password: password.value } });
      sessionStorage.setItem(TOKEN, answer.access_token);
      location.hash = '#/dashboard';
      route();
    } catch (error) {
      status.replaceChildren(errorBox(error));
    }
  } },
    el('label', {}, 'E-mail', email),
    el('label', {}, 'Password', password),
    el('button', { class: 'primary', type: 'submit' }, 'Sign in'),
    status);
  show('Sign in', message ? el('p', { class: 'notice', role: 'status' }, message) : null, form);
}

const fmtRate = (rate) => (rate === null || rate === undefined ? 'no runs' : `${rate.toFixed(2)} %`);

function since(seconds) {
  if (seconds === null || seconds === undefined) return 'no failure';
  if (seconds < 60) return 'last failure under a minute ago';
  if (seconds < 3600) return `${Math.round(seconds / 60)} min since the last failure`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h since the last failure`;
  return `${Math.round(seconds / 86400)} days since the last failure`;
}

async function dashboard() {
  show('Dashboard', el('p', { class: 'muted' }, 'Loading…'));
  try {
    const [sla, systems, failures] = await Promise.all([
      api('/observability/sla?window=7d'),
      api('/api-calls/systems?window=24h'),
      api('/executions?status=failed&page_size=10'),
    ]);
    const banners = sla.orchestrations.map((o) => el('section', { class: 'card', 'data-sla': o.id },
      el('h3', {}, o.name),
      el('span', { class: `state ${o.state}` }, o.state),
      el('p', {}, `${fmtRate(o.success_rate)} of ${o.executions} runs (target ${o.target} %)`),
      el('p', { class: 'muted' }, since(o.seconds_since_last_failure))));
    const tiles = systems.map((s) => el('section', { class: 'card', 'data-system': s.system },
      el('h3', {}, s.system),
      el('span', { class: `state ${s.health}` }, s.health),
      el('p', {}, `${s.calls} calls · p50 ${s.latency_p50_ms} ms · p95 ${s.latency_p95_ms} ms`)));
    const names = new Map(sla.orchestrations.map((o) => [o.id, o.name]));
    const rows = failures.data.map((e) => el('tr', {},
      el('td', {}, e.finished_at ? new Date(e.finished_at).toLocaleString() : ''),
      el('td', {}, names.get(e.orchestration_id) ?? e.orchestration_id),
      el('td', {}, e.error ?? '')));
    show('Dashboard',
      el('h2', {}, 'Service levels (7 days)'),
      banners.length ? el('div', { class: 'banners' }, banners) : el('p', { class: 'muted' }, 'No orchestrations yet.'),
      el('h2', {}, 'Systems (24 hours)'),
      el('div', { class: 'tiles' }, tiles),
      el('h2', {}, 'Recent failures'),
      rows.length
        ? el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'Finished'), el('th', {}, 'Orchestration'), el('th', {}, 'Error'))), el('tbody', {}, rows))
        : el('p', { class: 'muted' }, 'No failed executions.'));
  } catch (error) {
    if (error.status !== 401) show('Dashboard', errorBox(error));
  }
}

async function route() {
  if (!sessionStorage.getItem(TOKEN)) return signIn();
  try {
    const settings = await api('/settings');
    chrome(true, settings.name);
  } catch (error) {
    if (error.status !== 401) show('Console', errorBox(error));
    return;
  }
  switch (location.hash) {
    case '#/dashboard':
    default:
      if (location.hash !== '#/dashboard') history.replaceState(null, '', '#/dashboard');
      return dashboard();
  }
}

document.getElementById('signout').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN);
  signIn('Signed out.');
});
window.addEventListener('hashchange', route);
route();
