// Executions: the list across orchestrations with filters (and the resume of the paused ones it
// shows), and one execution with its trace waterfall, the input/output/error/log of every step,
// and cancel, retry and resume.
import {
  actionButton, api, el, field, hashQuery, input, jsonBlock, link, ms, page, pager, parseJson, pretty, select,
  setHashQuery, show, stateBadge, statusArea, svg, table, when, writer,
} from './lib.js';

const STATUSES = ['', 'queued', 'running', 'paused', 'success', 'failed', 'partial', 'cancelled'];
const TRIGGERS = ['', 'manual', 'api', 'schedule', 'event', 'orchestration'];

/** A datetime-local value as ISO 8601 (the API's filters), or '' when empty. */
export const iso = (local) => (local ? new Date(local).toISOString() : '');
/** An ISO instant as a datetime-local value. */
export const local = (instant) => {
  if (!instant) return '';
  const d = new Date(instant);
  if (Number.isNaN(d.getTime())) return '';
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
};

export async function executions() {
  const query = hashQuery();
  const number = Number(query.get('page') ?? 1);
  await page('Executions', async () => {
    const params = new URLSearchParams({ page: number, page_size: 25 });
    for (const key of ['orchestration_id', 'status', 'triggered_by', 'from', 'to', 'error']) {
      if (query.get(key)) params.set(key, query.get(key));
    }
    const [list, orchestrations] = await Promise.all([
      api(`/executions?${params}`),
      api('/orchestrations?page_size=100'),
    ]);
    const names = new Map(orchestrations.data.map((o) => [o.id, o.name]));
    const controls = {
      orchestration_id: select('orchestration_id', [['', 'all'], ...orchestrations.data.map((o) => [o.id, o.name])], query.get('orchestration_id') ?? ''),
      status: select('status', STATUSES.map((s) => [s, s || 'any']), query.get('status') ?? ''),
      triggered_by: select('triggered_by', TRIGGERS.map((s) => [s, s || 'any']), query.get('triggered_by') ?? ''),
      from: input('from', { type: 'datetime-local', value: local(query.get('from')) }),
      to: input('to', { type: 'datetime-local', value: local(query.get('to')) }),
      error: input('error', { maxlength: 200, value: query.get('error') ?? '' }),
    };
    const filters = el('form', { class: 'filters', onsubmit: (event) => {
      event.preventDefault();
      setHashQuery('#/executions', {
        orchestration_id: controls.orchestration_id.value, status: controls.status.value,
        triggered_by: controls.triggered_by.value, from: iso(controls.from.value), to: iso(controls.to.value),
        error: controls.error.value,
      });
    } },
      field('Orchestration', controls.orchestration_id), field('Status', controls.status),
      field('Trigger', controls.triggered_by), field('From', controls.from), field('To', controls.to),
      field('Error contains', controls.error), el('button', { type: 'submit' }, 'Filter'));
    // Listing paused executions: resume every one the filter matches (100 per request).
    const status = statusArea();
    const resumeAll = query.get('status') === 'paused' && list.pagination.total > 0 ? writer(
      actionButton(`Resume the ${list.pagination.total} paused`, async () => {
        const filter = {};
        for (const key of ['orchestration_id', 'triggered_by', 'from', 'to', 'error']) {
          if (query.get(key)) filter[key] = query.get(key);
        }
        await api('/executions/resume', { method: 'POST', body: { filter } });
        // The list shows what is still paused.
        await executions();
      }, status, { 'data-action': 'resume-all' })) : [];
    show('Executions', filters, resumeAll.length ? el('div', { class: 'actions' }, resumeAll) : null, status,
      table([
        ['Created', (e) => link(`#/executions/${e.id}`, when(e.created_at ?? e.started_at))],
        ['Orchestration', (e) => names.get(e.orchestration_id) ?? e.orchestration_id],
        ['Status', (e) => stateBadge(e.status)],
        ['Trigger', (e) => e.triggered_by],
        ['Steps', (e) => `${e.steps_completed}/${e.steps_total}`],
        ['Duration', (e) => ms(e.duration_ms)],
        ['Error', (e) => e.error ?? ''],
      ], list.data, { empty: 'No executions match.' }),
      pager(list.pagination, (p) => setHashQuery('#/executions', { ...Object.fromEntries(params), page: p, page_size: null })));
  });
}

/** Each span as a bar on a shared time axis, indented under its parent. */
export function waterfall(trace) {
  const spans = trace.spans;
  if (!spans.length) return el('p', { class: 'muted' }, 'No spans recorded.');
  const start = Math.min(...spans.map((s) => Date.parse(s.start)));
  const end = Math.max(...spans.map((s) => Date.parse(s.start) + s.duration_ms));
  const total = Math.max(1, end - start);
  const depth = new Map();
  for (const span of spans) depth.set(span.span_id, span.parent_id ? (depth.get(span.parent_id) ?? 0) + 1 : 0);
  const width = 600;
  const rows = spans.map((span) => {
    const offset = Date.parse(span.start) - start;
    const x = (offset / total) * width;
    const w = Math.max(2, (span.duration_ms / total) * width);
    const label = `${span.kind} ${span.name}: ${span.duration_ms.toFixed(1)} ms from +${offset} ms, ${span.status}`;
    return el('li', { class: `span ${span.kind.replace('.', '-')}`, 'data-span': span.kind },
      el('span', { class: `span-name depth-${Math.min(depth.get(span.span_id), 6)}` },
        el('span', { class: 'kind' }, span.kind), ' ', span.name),
      svg('svg', { class: 'span-bar', viewBox: `0 0 ${width} 14`, preserveAspectRatio: 'none', role: 'img', 'aria-label': label },
        svg('rect', { x, y: 2, width: Math.min(w, width - x), height: 10, class: `bar ${span.status === 'error' || span.status === 'failed' ? 'bar-failed' : 'bar-ok'}` },
          svg('title', {}, label))),
      el('span', { class: 'span-ms' }, `${span.duration_ms.toFixed(1)} ms`));
  });
  return el('div', { class: 'waterfall', 'data-waterfall': '' },
    el('div', { class: 'axis-row muted' }, el('span', {}, '0 ms'), el('span', {}, `${total.toFixed(1)} ms`)),
    el('ol', { class: 'spans' }, rows));
}

/** A for_each's items as counts (its trace keeps the spans of a few items only). */
function itemCounts(step, spans) {
  const span = spans.find((s) => s.kind === 'step' && s.name === step.name && s.attributes?.outcomes);
  if (!span) return null;
  const { items, outcomes, items_left_out: leftOut } = span.attributes;
  const counts = Object.entries(outcomes).map(([how, n]) => `${n.toLocaleString()} ${how}`).join(' · ');
  return el('p', { 'data-item-counts': '' }, `${Number(items).toLocaleString()} items: ${counts || 'none ran'}`,
    leftOut ? el('span', { class: 'muted' }, ` (the waterfall shows ${Number(items - leftOut).toLocaleString()} of them)`) : null);
}

function stepDetails(step, trace) {
  const mine = trace.logs.filter((line) => line.step === step.name || String(line.step ?? '').startsWith(`${step.name}[`));
  return el('details', { class: 'step', 'data-step-result': step.name },
    el('summary', {}, stateBadge(step.status), ` ${step.name} `, el('span', { class: 'kind' }, step.type),
      step.system ? ` ${step.system}.${step.operation ?? ''}` : '', ` · ${ms(step.duration_ms)} · ${step.attempts} attempt${step.attempts === 1 ? '' : 's'}`),
    itemCounts(step, trace.spans),
    step.error ? el('p', { class: 'error-text' }, step.error) : null,
    el('div', { class: 'io' },
      el('div', {}, el('h3', { class: 'sub' }, 'Input'), jsonBlock(step.input ?? null, `Input of ${step.name}`)),
      el('div', {}, el('h3', { class: 'sub' }, 'Output'), jsonBlock(step.output ?? null, `Output of ${step.name}`))),
    mine.length ? [el('h3', { class: 'sub' }, 'Log'), el('pre', { class: 'log', tabindex: '0' },
      mine.map((l) => `${new Date(l.timestamp_ms ?? 0).toISOString()} ${l.level ?? ''} ${l.message ?? ''}${l.fields && Object.keys(l.fields).length ? ` ${JSON.stringify(l.fields)}` : ''}\n`))] : null);
}

/** The parameters in `edited` that differ from `current` (what a resume sends to change). */
function changed(edited, current) {
  return Object.fromEntries(Object.entries(edited ?? {})
    .filter(([key, value]) => JSON.stringify(value) !== JSON.stringify(current?.[key])));
}

/** Resuming a paused execution: as it is or with changed parameters, or skipping the step that
 * paused it with an output given here. */
function resumeForm(e, status) {
  const step = e.steps[e.steps.length - 1];
  const parameters = el('textarea', { name: 'parameters', class: 'code', rows: 4, value: pretty(e.parameters ?? {}) });
  const output = el('textarea', { name: 'skip_output', class: 'code', rows: 4, value: '' });
  const resume = async (body) => {
    await api(`/executions/${e.id}/resume`, { method: 'POST', body });
    await execution(e.id);
  };
  return el('section', { class: 'resume', 'data-resume': '' },
    el('h2', {}, 'Resume'),
    el('p', {}, `Paused at step ${step?.name ?? '?'}, which failed (its attempts are over). The steps before it keep their results and do not run again.`),
    field('Parameters (JSON)', parameters, 'Values changed here replace the execution\'s own from the paused step on.'),
    el('div', { class: 'actions' }, actionButton('Resume', async () => resume({
      parameters: changed(parseJson(parameters.value, 'Parameters'), e.parameters),
    }), status, { 'data-action': 'resume' })),
    field(`Output of ${step?.name ?? 'the step'} (JSON)`, output, 'The step does not run again; later steps read this output.'),
    el('div', { class: 'actions' }, actionButton(`Skip ${step?.name ?? 'the step'} and resume`, async () => resume({
      skip: { output: parseJson(output.value, 'Output') ?? null },
    }), status, { 'data-action': 'skip' })));
}

export async function execution(id) {
  await page('Execution', async () => {
    const [e, trace] = await Promise.all([api(`/executions/${id}`), api(`/executions/${id}/trace`)]);
    const status = statusArea();
    const orchestration = await api(`/orchestrations/${e.orchestration_id}`).catch(() => null);
    const paused = e.status === 'paused';
    const live = e.status === 'queued' || e.status === 'running';
    const again = ['failed', 'partial', 'cancelled'].includes(e.status);
    const actions = writer(
      live || paused ? actionButton('Cancel', async () => {
        await api(`/executions/${id}/cancel`, { method: 'POST' });
        await execution(id);
      }, status, { 'data-action': 'cancel' }) : null,
      again ? actionButton('Retry from the failed step', async () => {
        const queued = await api(`/executions/${id}/retry`, { method: 'POST' });
        location.hash = `#/executions/${queued.execution_id ?? id}`;
        await execution(queued.execution_id ?? id);
      }, status, { 'data-action': 'retry' }) : null).filter(Boolean);
    show(`Execution of ${orchestration?.name ?? e.orchestration_id}`,
      el('p', {}, stateBadge(e.status), ` version ${e.orchestration_version} · ${e.triggered_by} · started ${when(e.started_at)} · ${ms(e.duration_ms)} · ${e.steps_completed}/${e.steps_total} steps`),
      el('p', { class: 'muted' }, `Execution ${e.id} · trace ${trace.trace_id}`,
        orchestration ? [' · ', link(`#/orchestrations/${e.orchestration_id}`, 'orchestration')] : null,
        e.replay_of ? [' · replay of ', link(`#/executions/${e.replay_of}`, e.replay_of)] : null,
        e.replayed_by ? [' · replayed by ', link(`#/executions/${e.replayed_by}`, e.replayed_by)] : null),
      e.error ? el('p', { class: 'notice error' }, e.error) : null,
      actions.length ? el('div', { class: 'actions' }, actions) : null,
      paused ? writer(resumeForm(e, status)) : null,
      status,
      live ? el('p', {}, actionButton('Refresh', () => execution(id), status)) : null,
      el('h2', {}, 'Trace'),
      waterfall(trace),
      el('h2', {}, 'Steps'),
      e.steps.length ? e.steps.map((step) => stepDetails(step, trace)) : el('p', { class: 'muted' }, 'No step ran.'),
      el('h2', {}, 'Parameters and output'),
      el('div', { class: 'io' },
        el('div', {}, el('h3', { class: 'sub' }, 'Parameters'), jsonBlock(e.parameters, 'Parameters')),
        el('div', {}, el('h3', { class: 'sub' }, 'Output'), jsonBlock(e.output ?? null, 'Output'))));
  });
}
