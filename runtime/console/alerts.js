// Alerts: the rules (a form per rule type), their test button, and the fired alerts.
import {
  actionButton, administrator, api, confirmButton, el, errorBox, field, hashQuery, input, page, pager, select, session,
  setHashQuery, show, shownOnce, stateBadge, statusArea, table, when,
} from './lib.js';

/** What each rule type asks for besides its name: scope fields and condition fields. */
const TYPES = {
  execution_failure: { label: 'An execution fails', scope: ['orchestration'], condition: [] },
  consecutive_failures: { label: 'N executions in a row fail', scope: ['orchestration'], condition: [['threshold', 'Failures in a row', 3]] },
  latency_threshold: { label: 'An execution takes longer than', scope: ['orchestration'], condition: [['threshold_ms', 'Milliseconds', 5000]] },
  sla_breach: { label: 'The SLA falls below target', scope: ['orchestration'], condition: [] },
  system_down: { label: 'A system is down', scope: ['system'], condition: [] },
  error_rate_spike: { label: 'The error rate of calls exceeds', scope: ['system'], condition: [['threshold_percent', 'Percent', 20]] },
  execution_paused: { label: 'An execution pauses (a step ran out of attempts)', scope: ['orchestration'], condition: [] },
};

function channelRow(channel = { type: 'log' }) {
  const type = select('channel_type', [['log', 'log'], ['webhook', 'webhook (signed JSON)'], ['slack', 'Slack']], channel.type);
  const url = input('channel_url', { type: 'url', value: channel.url ?? '', placeholder: 'URL of the receiver' });
  const row = el('div', { class: 'row channel' }, field('Channel', type), field('URL', url, 'webhook and Slack only'),
    el('button', { type: 'button', onclick: () => row.remove() }, 'Remove'));
  row.read = () => (type.value === 'log' ? { type: 'log' } : { type: type.value, url: url.value });
  return row;
}

function ruleForm(orchestrations, systems, done) {
  const name = input('name', { required: true });
  const kind = select('type', Object.entries(TYPES).map(([k, t]) => [k, `${k}: ${t.label}`]), 'execution_failure');
  const severity = select('severity', ['info', 'warning', 'critical'], 'warning');
  const cooldown = el('input', { type: 'number', name: 'cooldown_minutes', min: 0, value: 15 });
  const specific = el('div', { class: 'form-grid', 'data-type-fields': '' });
  const channels = el('div', { class: 'channels' }, channelRow());
  let read = () => ({});
  const renderType = () => {
    const spec = TYPES[kind.value];
    const controls = [];
    const parts = [];
    if (spec.scope.includes('orchestration')) {
      const o = select('orchestration_id', [['', 'every orchestration'], ...orchestrations.map((x) => [x.id, x.name])], '');
      parts.push(field('Orchestration', o));
      controls.push(() => ({ scope: o.value ? { orchestration_id: o.value } : {} }));
    }
    if (spec.scope.includes('system')) {
      const required = kind.value === 'system_down';
      const s = select('system', [...(required ? [] : [['', 'every system']]), ...systems.map((x) => [x, x])], systems[0] ?? '');
      parts.push(field(`System${required ? ' *' : ''}`, s));
      controls.push(() => ({ scope: s.value ? { system: s.value } : {} }));
    }
    for (const [key, label, initial] of spec.condition) {
      const n = el('input', { type: 'number', name: key, min: 0, step: 'any', value: initial, required: true });
      parts.push(field(`${label} *`, n));
      controls.push(() => ({ condition: { [key]: Number(n.value) } }));
    }
    specific.replaceChildren(...parts);
    read = () => controls.reduce((acc, c) => {
      const part = c();
      return { scope: { ...acc.scope, ...part.scope }, condition: { ...acc.condition, ...part.condition } };
    }, { scope: {}, condition: {} });
  };
  kind.addEventListener('change', renderType);
  renderType();
  const status = statusArea();
  const form = el('form', { class: 'rule', onsubmit: async (event) => {
    event.preventDefault();
    status.replaceChildren();
    const { scope, condition } = read();
    const body = {
      name: name.value, type: kind.value, scope, condition: Object.keys(condition).length ? condition : null,
      severity: severity.value, cooldown_minutes: Number(cooldown.value), enabled: true,
      notification: { channels: [...channels.querySelectorAll('.channel')].map((row) => row.read()) },
    };
    try {
      const created = await api('/alert-rules', { method: 'POST', body });
      await done(created);
    } catch (error) {
      if (error.status !== 401) status.replaceChildren(errorBox(error));
    }
  } },
    el('div', { class: 'form-grid' }, field('Name *', name), field('Type', kind), field('Severity', severity), field('Cooldown (minutes)', cooldown)),
    specific,
    el('fieldset', {}, el('legend', {}, 'Notify'), channels,
      el('button', { type: 'button', onclick: () => channels.append(channelRow({ type: 'webhook' })) }, 'Add channel')),
    el('button', { class: 'primary', type: 'submit' }, 'Create rule'), status);
  return el('details', { class: 'edit' }, el('summary', {}, 'New alert rule'), form);
}

function deliveries(alert) {
  const list = Array.isArray(alert.deliveries) ? alert.deliveries : [];
  if (!list.length) return '';
  return list.map((d) => `${d.type}${d.url ? ` ${d.url}` : ''}: ${d.status}${d.error ? ` (${d.error})` : ''}`).join('; ');
}

export async function alerts() {
  const query = hashQuery();
  const number = Number(query.get('page') ?? 1);
  const render = async (created) => {
    const [rules, fired, orchestrations, systems] = await Promise.all([
      api('/alert-rules?page_size=100'),
      api(`/alerts?page=${number}&page_size=25`),
      session.readsTenantData ? api('/orchestrations?page_size=100').then((o) => o.data) : [],
      api('/systems?page_size=100').then((s) => s.data.map((x) => x.slug)),
    ]);
    const status = statusArea();
    const names = new Map(orchestrations.map((o) => [o.id, o.name]));
    show('Alerts',
      created?.secret ? shownOnce(`Signing key of rule ${created.name}'s webhook notifications`, created.secret) : null,
      administrator(ruleForm(orchestrations, systems, (rule) => render(rule))),
      el('h2', {}, 'Rules'),
      status,
      table([
        ['Rule', (r) => el('strong', {}, r.name)],
        ['Type', (r) => r.type],
        ['Scope', (r) => (r.scope?.orchestration_id ? names.get(r.scope.orchestration_id) ?? r.scope.orchestration_id : r.scope?.system ?? 'all')],
        ['Condition', (r) => (r.condition ? JSON.stringify(r.condition) : '')],
        ['Severity', (r) => stateBadge(r.severity)],
        ['Channels', (r) => r.notification.channels.map((c) => c.type).join(', ')],
        ['Last fired', (r) => when(r.last_fired_at)],
        ...(session.administers ? [['Actions', (r) => [
          actionButton('Test', async () => {
            const alert = await api(`/alert-rules/${r.id}/test`, { method: 'POST' });
            status.replaceChildren(el('p', { class: 'notice', 'data-alert-test': r.id }, `Test alert: ${alert.message}. Deliveries: ${deliveries(alert) || 'none'}`));
          }, status),
          ' ',
          confirmButton('Delete', async () => {
            await api(`/alert-rules/${r.id}`, { method: 'DELETE' });
            await render();
          }, status),
        ]]] : []),
      ], rules.data, { empty: 'No alert rules.' }),
      el('h2', {}, 'Fired alerts'),
      table([
        ['Fired', (a) => when(a.fired_at)],
        ['Severity', (a) => stateBadge(a.severity)],
        ['Metric', (a) => a.metric],
        ['Value', (a) => `${a.value} (threshold ${a.threshold})`],
        ['Message', (a) => a.message],
        ['Deliveries', deliveries],
      ], fired.data, { empty: 'No alerts fired.' }),
      pager(fired.pagination, (p) => setHashQuery('#/alerts', { page: p })));
  };
  await page('Alerts', () => render(null));
}
