// The DIBOP console: a single page over the public REST API (/api/v1) with the caller's token,
// so roles and tenancy are enforced where they always are. Plain ES modules, no dependencies.
// This module signs in and out and routes `#/...` to the pages.
import { TOKEN, api, el, errorBox, session, show, tokenSubject, whenSessionEnds } from './lib.js';
import { dashboard } from './dashboard.js';
import { orchestrations, orchestration, editor } from './orchestrations.js';
import { executions, execution } from './executions.js';
import { apiCalls } from './api-calls.js';
import { systems, system, plugins } from './systems.js';
import { connections, connection, newConnection } from './connections.js';
import { canonical, canonicalDomain, canonicalRecord } from './canonical.js';
import { alerts } from './alerts.js';
import { settings, users, apiKeys, webhooks, enterprises } from './settings.js';

/** Route patterns, in order; `:name` captures one path segment. */
const ROUTES = [
  ['dashboard', dashboard],
  ['orchestrations', orchestrations],
  ['orchestrations/new', () => editor(null)],
  ['orchestrations/:id/edit', ({ id }) => editor(id)],
  ['orchestrations/:id', ({ id }) => orchestration(id)],
  ['executions', executions],
  ['executions/:id', ({ id }) => execution(id)],
  ['api-calls', apiCalls],
  ['systems', systems],
  ['systems/:slug', ({ slug }) => system(slug)],
  ['plugins', plugins],
  ['connections', connections],
  ['connections/new', newConnection],
  ['connections/:id', ({ id }) => connection(id)],
  ['canonical', canonical],
  ['canonical/:domain', ({ domain }) => canonicalDomain(domain)],
  ['canonical/:domain/:id', ({ domain, id }) => canonicalRecord(domain, id)],
  ['alerts', alerts],
  ['settings', settings],
  ['users', users],
  ['api-keys', apiKeys],
  ['webhooks', webhooks],
  ['enterprises', enterprises],
];

/** The pages in the navigation; tenant pages are hidden from platform-only accounts. */
const NAV = [
  ['dashboard', 'Dashboard', 'any'],
  ['orchestrations', 'Orchestrations', 'tenant'],
  ['executions', 'Executions', 'tenant'],
  ['api-calls', 'API calls', 'tenant'],
  ['systems', 'Systems', 'any'],
  ['connections', 'Connections', 'tenant'],
  ['canonical', 'Canonical data', 'tenant'],
  ['alerts', 'Alerts', 'any'],
  ['settings', 'Settings', 'any'],
  ['enterprises', 'Enterprises', 'platform'],
];

function match(path) {
  const parts = path.split('/').filter(Boolean);
  for (const [pattern, handler] of ROUTES) {
    const want = pattern.split('/');
    if (want.length !== parts.length) continue;
    const params = {};
    const ok = want.every((w, i) => {
      if (w.startsWith(':')) {
        params[w.slice(1)] = decodeURIComponent(parts[i]);
        return true;
      }
      return w === parts[i];
    });
    if (ok) return () => handler(params);
  }
  return null;
}

function chrome(signedIn) {
  const nav = document.getElementById('nav');
  nav.hidden = !signedIn;
  document.getElementById('signout').hidden = !signedIn;
  const who = document.getElementById('who');
  who.textContent = '';
  if (!signedIn) return;
  const visible = NAV.filter(([, , need]) =>
    need === 'any' || (need === 'tenant' && session.readsTenantData) || (need === 'platform' && session.platform));
  nav.replaceChildren(...visible.map(([href, text]) => el('a', { href: `#/${href}`, 'data-nav': href }, text)));
  const role = session.user.role.replace('_', ' ');
  who.textContent = `${session.user.email} · ${role}${session.platform ? ' (platform)' : ''} · ${session.enterprise}`;
  markCurrent();
}

function markCurrent() {
  const first = location.hash.replace(/^#\/?/, '').split(/[/?]/)[0];
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.nav === first) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

/** Where to go after signing in: the page that asked for it. */
let wanted = '#/dashboard';

function signIn(message) {
  session.user = null;
  chrome(false);
  if (location.hash !== '#/signin') {
    if (location.hash.startsWith('#/')) wanted = location.hash;
    history.replaceState(null, '', '#/signin');
  }
  const email = el('input', { id: 'email', type: 'email', name: 'email', autocomplete: 'username', required: true });
  const password = el('input', { id: 'password', type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const status = el('div', { 'aria-live': 'polite' });
  const form = el('form', { class: 'signin', onsubmit: async (event) => {
    event.preventDefault();
    status.replaceChildren();
    try {
      const answer = await api('/auth/login', { method: 'POST', body: { email: email.value, password: password.value } });
      sessionStorage.setItem(TOKEN, answer.access_token);
      history.replaceState(null, '', wanted);
      wanted = '#/dashboard';
      route();
    } catch (error) {
      status.replaceChildren(errorBox(error));
    }
  } },
    el('label', { for: 'email' }, 'E-mail'), email,
    el('label', { for: 'password' }, 'Password'), password,
    el('button', { class: 'primary', type: 'submit' }, 'Sign in'),
    status);
  show('Sign in', message ? el('p', { class: 'notice', role: 'status' }, message) : null, form);
}

/** Loads who is signed in (once per token): role and platform rights come from the server. */
async function loadSession() {
  if (session.user) return true;
  const subject = tokenSubject();
  const [user, settings] = await Promise.all([api(`/users/${encodeURIComponent(subject)}`), api('/settings')]);
  session.user = user;
  session.enterprise = settings.name;
  return true;
}

async function route() {
  if (!sessionStorage.getItem(TOKEN)) return signIn();
  try {
    await loadSession();
  } catch (error) {
    if (error.status !== 401) {
      chrome(false);
      show('Console', errorBox(error));
    }
    return;
  }
  chrome(true);
  const path = location.hash.replace(/^#\/?/, '').split('?')[0];
  const handler = match(path);
  if (!handler) {
    history.replaceState(null, '', '#/dashboard');
    markCurrent();
    return dashboard();
  }
  return handler();
}

whenSessionEnds(signIn);
document.getElementById('signout').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN);
  signIn('Signed out.');
});
window.addEventListener('hashchange', route);
route();
