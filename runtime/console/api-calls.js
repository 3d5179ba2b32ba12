// The API-call log: every outbound request a plugin made, with filters and previews, and the
// figures per system.
import { api, el, field, hashQuery, input, link, ms, page, pager, select, setHashQuery, show, stateBadge, table, when } from './lib.js';
import { iso, local } from './executions.js';

const OUTCOMES = ['', 'success', 'error', 'timeout', 'circuit_open', 'rate_limited'];
const WINDOWS = ['1h', '24h', '7d', '30d'];

function preview(call) {
  if (!call.request_preview && !call.response_preview && !call.error) return '';
  return el('details', {},
    el('summary', {}, 'Preview'),
    call.error ? el('p', { class: 'error-text' }, call.error) : null,
    call.request_preview ? [el('h3', { class: 'sub' }, 'Request'), el('pre', { class: 'json', tabindex: '0' }, call.request_preview)] : null,
    call.response_preview ? [el('h3', { class: 'sub' }, 'Response'), el('pre', { class: 'json', tabindex: '0' }, call.response_preview)] : null);
}

export async function apiCalls() {
  const query = hashQuery();
  const number = Number(query.get('page') ?? 1);
  const window = WINDOWS.includes(query.get('window')) ? query.get('window') : '24h';
  await page('API calls', async () => {
    const params = new URLSearchParams({ page: number, page_size: 50 });
    for (const key of ['system', 'status', 'from', 'to', 'execution_id', 'orchestration_id']) {
      if (query.get(key)) params.set(key, query.get(key));
    }
    const [list, stats, systems] = await Promise.all([
      api(`/api-calls?${params}`),
      api(`/api-calls/systems?window=${window}`),
      api('/systems?page_size=100'),
    ]);
    const slugs = [...new Set([...(systems.data ?? systems).map((s) => s.slug), ...stats.map((s) => s.system)])].sort();
    const controls = {
      system: select('system', [['', 'all'], ...slugs], query.get('system') ?? ''),
      status: select('status', OUTCOMES.map((s) => [s, s || 'any']), query.get('status') ?? ''),
      from: input('from', { type: 'datetime-local', value: local(query.get('from')) }),
      to: input('to', { type: 'datetime-local', value: local(query.get('to')) }),
    };
    const filters = el('form', { class: 'filters', onsubmit: (event) => {
      event.preventDefault();
      setHashQuery('#/api-calls', {
        system: controls.system.value, status: controls.status.value, from: iso(controls.from.value), to: iso(controls.to.value), window,
        execution_id: query.get('execution_id'),
      });
    } },
      field('System', controls.system), field('Outcome', controls.status), field('From', controls.from), field('To', controls.to),
      el('button', { type: 'submit' }, 'Filter'));
    const windowPicker = select('window', WINDOWS, window, {
      onchange: (event) => setHashQuery('#/api-calls', { ...Object.fromEntries(params), page: null, page_size: null, window: event.target.value }),
    });
    show('API calls',
      el('h2', {}, 'Per system'),
      field('Window', windowPicker),
      table([
        ['System', (s) => link(`#/systems/${encodeURIComponent(s.system)}`, s.system)],
        ['Health', (s) => stateBadge(s.health)],
        ['Calls', (s) => s.calls],
        ['Success', (s) => `${s.success_rate.toFixed(1)} %`],
        ['Errors', (s) => s.error],
        ['Timeouts', (s) => s.timeout],
        ['Refused', (s) => s.circuit_open + s.rate_limited],
        ['p50', (s) => ms(s.latency_p50_ms)],
        ['p95', (s) => ms(s.latency_p95_ms)],
        ['p99', (s) => ms(s.latency_p99_ms)],
        ['Last call', (s) => when(s.last_call)],
      ], stats, { empty: `No calls in ${window}.` }),
      el('h2', {}, 'Log'),
      filters,
      el('section', { 'data-section': 'log', 'aria-label': 'Log' }, table([
        ['Time', (c) => when(c.timestamp)],
        ['System', (c) => c.system],
        ['Connection', (c) => c.connection ?? ''],
        ['Request', (c) => el('code', { class: 'url' }, `${c.method} ${c.url}`)],
        ['Status', (c) => [stateBadge(c.status), c.status_code ? ` ${c.status_code}` : '']],
        ['Duration', (c) => ms(c.duration_ms)],
        ['Execution', (c) => (c.execution_id ? link(`#/executions/${c.execution_id}`, c.step ?? 'open') : 'test')],
        ['Preview', preview],
      ], list.data, { empty: 'No calls match.' })),
      pager(list.pagination, (p) => setHashQuery('#/api-calls', { ...Object.fromEntries(params), page: p, page_size: null, window })));
  });
}
