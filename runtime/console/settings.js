// Settings: the enterprise's settings, users, API keys (the key shown once), webhooks (the secret
// shown once with a ready curl command), and, for platform rights, the enterprises.
import {
  actionButton, administrator, api, confirmButton, el, errorBox, field, hashQuery, input, link, page, pager, select,
  session, setHashQuery, show, shownOnce, stateBadge, statusArea, table, tabs, when, writer,
} from './lib.js';

const ROLES = ['viewer', 'enterprise_admin', 'platform_admin'];

function section() {
  return tabs([
    ['#/settings', 'Enterprise'], ['#/users', 'Users'], ['#/api-keys', 'API keys'],
    ...(session.readsTenantData ? [['#/webhooks', 'Webhooks']] : []),
  ], location.hash.split('?')[0]);
}

/** A form whose submit runs `action` and shows its error. */
function form(controls, submit, action, attributes = {}) {
  const status = statusArea();
  return el('form', { ...attributes, onsubmit: async (event) => {
    event.preventDefault();
    status.replaceChildren();
    try {
      await action();
    } catch (error) {
      if (error.status !== 401) status.replaceChildren(errorBox(error));
    }
  } }, el('div', { class: 'form-grid' }, controls), el('button', { class: 'primary', type: 'submit' }, submit), status);
}

export async function settings() {
  await page('Settings', async () => {
    const s = await api('/settings');
    const name = input('name', { required: true, value: s.name });
    const timezone = input('timezone', { required: true, value: s.timezone });
    const session_ = el('input', { type: 'number', name: 'session_duration_minutes', min: 60, max: 240, value: s.session_duration_minutes });
    const retention = el('input', { type: 'number', name: 'retention_days', min: 30, value: s.retention_days });
    const limits = s.rate_limits;
    const api_ = el('input', { type: 'number', name: 'api_requests_per_minute', min: 1, value: limits.api_requests_per_minute, disabled: !session.platform });
    const exec = el('input', { type: 'number', name: 'executions_per_minute', min: 1, value: limits.executions_per_minute, disabled: !session.platform });
    const outbound = el('input', { type: 'number', name: 'outbound_requests_per_minute', min: 1, value: limits.outbound_requests_per_minute ?? '', disabled: !session.platform });
    const queued = el('input', { type: 'number', name: 'max_queued_executions', min: 1, max: 1000000, value: limits.max_queued_executions ?? '', disabled: !session.platform });
    const saved = el('div', { 'aria-live': 'polite' });
    const controls = [
      field('Name', name), field('Slug', input('slug', { value: s.slug, disabled: true })), field('Time zone', timezone, 'IANA name, e.g. Europe/Berlin'),
      field('Session (minutes)', session_, '60 to 240'), field('Retention (days)', retention, 'at least 30'),
      field('API requests per minute', api_, session.platform ? null : 'changed by platform administrators'),
      field('Executions per minute', exec), field('Outbound requests per minute', outbound),
      field('Queued executions at most', queued, 'past it, execute and webhooks answer 429'),
    ];
    const save = async () => {
      const body = { name: name.value, timezone: timezone.value, session_duration_minutes: Number(session_.value), retention_days: Number(retention.value) };
      if (session.platform) {
        body.rate_limits = { api_requests_per_minute: Number(api_.value), executions_per_minute: Number(exec.value) };
        if (outbound.value) body.rate_limits.outbound_requests_per_minute = Number(outbound.value);
        if (queued.value) body.rate_limits.max_queued_executions = Number(queued.value);
      }
      await api('/settings', { method: 'PUT', body });
      saved.replaceChildren(el('p', { class: 'notice', role: 'status' }, 'Saved.'));
    };
    if (!session.administers) for (const c of [name, timezone, session_, retention]) c.disabled = true;
    show('Settings', section(),
      session.administers ? form(controls, 'Save settings', save) : el('div', { class: 'form-grid' }, controls),
      saved);
  });
}

export async function users() {
  const number = Number(hashQuery().get('page') ?? 1);
  const render = async () => {
    const list = await api(`/users?page=${number}&page_size=50`);
    const status = statusArea();
    const email = input('email', { type: 'email', required: true, autocomplete: 'off' });
    const name = input('name', { required: true });
    const role = select('role', session.platform ? ROLES : ROLES.slice(0, 2), 'viewer');
    const password = el('input', { type: 'password', name: 'new_password', required: true, minlength: 8, autocomplete: 'new-password' });
    const create = form([field('E-mail', email), field('Name', name), field('Role', role), field('Password', password, 'at least 8 characters')],
      'Add user', async () => {
        await api('/users', { method: 'POST', body: { email: email.value, name: name.value, role: role.value, password: password.value } });
        await render();
      });
    show('Users', section(),
      administrator(el('details', { class: 'edit' }, el('summary', {}, 'Add a user'), create)),
      status,
      table([
        ['User', (u) => [el('strong', {}, u.name), el('br'), u.email]],
        ['Role', (u) => `${u.role}${u.platform_access && u.role !== 'platform_admin' ? ' + platform' : ''}`],
        ['Status', (u) => stateBadge(u.status)],
        ['Last sign-in', (u) => when(u.last_login_at)],
        ...(session.administers ? [['Actions', (u) => (u.id === session.user.id ? 'you' : [
          select('role', session.platform ? ROLES : ROLES.slice(0, 2), u.role, {
            'aria-label': `Role of ${u.email}`,
            onchange: async (event) => {
              try {
                await api(`/users/${u.id}`, { method: 'PUT', body: { role: event.target.value } });
                await render();
              } catch (error) {
                if (error.status !== 401) status.replaceChildren(errorBox(error));
              }
            },
          }), ' ',
          actionButton(u.status === 'active' ? 'Deactivate' : 'Activate', async () => {
            await api(`/users/${u.id}`, { method: 'PUT', body: { status: u.status === 'active' ? 'deactivated' : 'active' } });
            await render();
          }, status), ' ',
          confirmButton('Delete', async () => {
            await api(`/users/${u.id}`, { method: 'DELETE' });
            await render();
          }, status),
        ])]] : []),
      ], list.data),
      pager(list.pagination, (p) => setHashQuery('#/users', { page: p })));
  };
  await page('Users', render);
}

export async function apiKeys() {
  const number = Number(hashQuery().get('page') ?? 1);
  const render = async (created) => {
    const list = await api(`/settings/api-keys?page=${number}&page_size=50`);
    const status = statusArea();
    const name = input('key_name', { required: true });
    const role = select('key_role', session.platform ? ROLES : ROLES.slice(0, 2), 'viewer');
    const expires = input('expires_at', { type: 'datetime-local' });
    const create = form([field('Name', name), field('Role', role), field('Expires', expires, 'optional')], 'Create key', async () => {
      const body = { name: name.value, role: role.value };
      if (expires.value) body.expires_at = new Date(expires.value).toISOString();
      await render(await api('/settings/api-keys', { method: 'POST', body }));
    });
    show('API keys', section(),
      created ? shownOnce(`API key ${created.name}`, created.key) : null,
      administrator(el('details', { class: 'edit', open: !created }, el('summary', {}, 'Create an API key'), create)),
      status,
      table([
        ['Name', (k) => k.name],
        ['Prefix', (k) => el('code', {}, k.prefix)],
        ['Role', (k) => k.role],
        ['Created', (k) => when(k.created_at)],
        ['Last used', (k) => when(k.last_used_at) || 'never'],
        ['Expires', (k) => when(k.expires_at) || 'never'],
        ['State', (k) => (k.revoked_at ? stateBadge('revoked') : stateBadge('active'))],
        ...(session.administers ? [['Actions', (k) => (k.revoked_at ? '' : confirmButton('Revoke', async () => {
          await api(`/settings/api-keys/${k.id}`, { method: 'DELETE' });
          await render();
        }, status))]] : []),
      ], list.data, { empty: 'No API keys.' }),
      pager(list.pagination, (p) => setHashQuery('#/api-keys', { page: p })));
  };
  await page('API keys', () => render(null));
}

/** `text` as one single-quoted shell word. */
const shellWord = (text) => `'${String(text).replace(/'/g, "'\\''")}'`;

/** A ready command that triggers the webhook with a signed body. */
function curlFor(hook, secret) {
  const url = new URL(hook.url, location.origin).href;
  // The fields the mapping reads from the body (`${body.vin}`), each with a value to fill in.
  const fields = [...JSON.stringify(hook.parameters ?? {}).matchAll(/\$\{body\.([A-Za-z0-9_-]+)/g)].map((m) => m[1]);
  const body = JSON.stringify(Object.fromEntries([...new Set(fields)].map((k) => [k, '…'])));
  const lines = [`SECRET=${shellWord(secret)}`, `BODY=${shellWord(body)}`];
  const post = `curl -X POST ${shellWord(url)} -H 'Content-Type: application/json' -H "X-Webhook-Secret: $SECRET"`;
  if (hook.signature === 'hmac-sha256') {
    lines.push('SIGNATURE=$(printf %s "$BODY" | openssl dgst -sha256 -hmac "$SECRET" | sed "s/^.* //")');
    lines.push(`${post} -H "X-Webhook-Signature: sha256=$SIGNATURE" -d "$BODY"`);
  } else {
    lines.push(`${post} -d "$BODY"`);
  }
  return lines.join('\n');
}

export async function webhooks() {
  const number = Number(hashQuery().get('page') ?? 1);
  const render = async (created) => {
    const [list, orchestrations] = await Promise.all([
      api(`/webhooks?page=${number}&page_size=50`),
      api('/orchestrations?page_size=100'),
    ]);
    const names = new Map(orchestrations.data.map((o) => [o.id, o.name]));
    const status = statusArea();
    const name = input('webhook_name', { required: true });
    const target = select('orchestration_id', orchestrations.data.map((o) => [o.id, o.name]), orchestrations.data[0]?.id);
    const parameters = el('textarea', { name: 'parameters', class: 'code', rows: 3, value: '{"vin": "${body.vin}"}' });
    const signature = select('signature', ['hmac-sha256', 'none'], 'hmac-sha256');
    const create = form([field('Name', name), field('Orchestration', target), field('Signature', signature),
      field('Parameters (JSON)', parameters, 'each orchestration parameter mapped from ${body...} or ${headers...}')], 'Create webhook', async () => {
      let mapped;
      try {
        mapped = JSON.parse(parameters.value || '{}');
      } catch (error) {
        throw Object.assign(new Error(`Parameters are not valid JSON: ${error.message}`), { details: [] });
      }
      await render(await api('/webhooks', { method: 'POST', body: { name: name.value, orchestration_id: target.value, parameters: mapped, signature: signature.value } }));
    });
    show('Webhooks', section(),
      created ? [shownOnce(`Secret of webhook ${created.name}`, created.secret),
        el('p', {}, 'Trigger it with:'), el('pre', { class: 'log', tabindex: '0', 'data-curl': '' }, curlFor(created, created.secret))] : null,
      writer(el('details', { class: 'edit', open: !created && orchestrations.data.length > 0 }, el('summary', {}, 'Create a webhook'), create)),
      status,
      table([
        ['Name', (w) => w.name],
        ['Orchestration', (w) => link(`#/orchestrations/${w.orchestration_id}`, names.get(w.orchestration_id) ?? w.orchestration_id)],
        ['URL', (w) => el('code', {}, w.url)],
        ['Signature', (w) => w.signature],
        ['Created', (w) => when(w.created_at)],
        ...(session.canWrite ? [['Actions', (w) => confirmButton('Delete', async () => {
          await api(`/webhooks/${w.id}`, { method: 'DELETE' });
          await render();
        }, status)]] : []),
      ], list.data, { empty: 'No webhooks.' }),
      pager(list.pagination, (p) => setHashQuery('#/webhooks', { page: p })));
  };
  await page('Webhooks', () => render(null));
}

export async function enterprises() {
  const number = Number(hashQuery().get('page') ?? 1);
  const render = async (created) => {
    const list = await api(`/enterprises?page=${number}&page_size=50`);
    const name = input('enterprise_name', { required: true });
    const email = input('admin_email', { type: 'email', required: true, autocomplete: 'off' });
    const password = el('input', { type: 'password', name: 'admin_password', required: true, minlength: 8, autocomplete: 'new-password' });
    const create = form([field('Name', name), field('First admin e-mail', email), field('First admin password', password, 'at least 8 characters')],
      'Create enterprise', async () => {
        await render(await api('/enterprises', { method: 'POST', body: { name: name.value, admin_email: email.value, admin_password: password.value } }));
      });
    show('Enterprises',
      created ? el('p', { class: 'notice', role: 'status' }, `Created ${created.enterprise.name} with its admin ${created.admin.email}.`) : null,
      el('details', { class: 'edit' }, el('summary', {}, 'Create an enterprise'), create),
      table([
        ['Name', (e) => e.name],
        ['Slug', (e) => el('code', {}, e.slug)],
        ['Time zone', (e) => e.timezone],
        ['Limits', (e) => `${e.rate_limits.api_requests_per_minute} req/min · ${e.rate_limits.executions_per_minute} exec/min`],
        ['Created', (e) => when(e.created_at)],
      ], list.data),
      pager(list.pagination, (p) => setHashQuery('#/enterprises', { page: p })));
  };
  await page('Enterprises', () => render(null));
}
