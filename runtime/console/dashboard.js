// The dashboard: SLA banner per orchestration, executions per hour, system health tiles,
// recent failures and fired alerts.
import { api, el, link, ms, page, session, show, stateBadge, svg, table, when } from './lib.js';

const fmtRate = (rate) => (rate === null || rate === undefined ? 'no runs' : `${rate.toFixed(2)} %`);

function since(seconds) {
  if (seconds === null || seconds === undefined) return 'no failure';
  if (seconds < 60) return 'last failure under a minute ago';
  if (seconds < 3600) return `${Math.round(seconds / 60)} min since the last failure`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h since the last failure`;
  return `${Math.round(seconds / 86400)} days since the last failure`;
}

/** Successes and failures per hour as stacked bars, with a text summary for screen readers. */
function chart(timeline) {
  const buckets = timeline.buckets;
  const width = 720;
  const height = 160;
  const top = Math.max(1, ...buckets.map((b) => b.successes + b.failures));
  const slot = width / buckets.length;
  const scale = (n) => (n / top) * (height - 20);
  const bars = buckets.flatMap((b, i) => {
    const x = i * slot + 1;
    const w = Math.max(1, slot - 2);
    const ok = scale(b.successes);
    const bad = scale(b.failures);
    const label = `${new Date(b.start).toLocaleString()}: ${b.successes} succeeded, ${b.failures} failed`;
    return [
      svg('rect', { x, y: height - ok, width: w, height: ok, class: 'bar-ok' }, svg('title', {}, label)),
      svg('rect', { x, y: height - ok - bad, width: w, height: bad, class: 'bar-failed' }, svg('title', {}, label)),
    ];
  });
  const total = (key) => buckets.reduce((sum, b) => sum + b[key], 0);
  const summary = `${total('successes')} succeeded and ${total('failures')} failed in the last ${timeline.window}`;
  return el('figure', { class: 'chart', 'data-chart': '' },
    svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `Executions per hour: ${summary}` },
      svg('line', { x1: 0, y1: height, x2: width, y2: height, class: 'axis' }),
      svg('text', { x: 2, y: 12, class: 'tick' }, `${top} per hour`),
      bars),
    el('figcaption', {}, el('span', { class: 'key ok' }, 'succeeded'), ' ', el('span', { class: 'key failed' }, 'failed'),
      ` · ${summary}`));
}

export async function dashboard() {
  await page('Dashboard', async () => {
    const tenant = session.readsTenantData;
    const [sla, timeline, systems, failures, fired] = await Promise.all([
      api('/observability/sla?window=7d'),
      api('/observability/timeline?window=24h'),
      api('/api-calls/systems?window=24h').catch((error) => (error.status === 403 ? [] : Promise.reject(error))),
      tenant ? api('/executions?status=failed&page_size=10') : { data: [] },
      api('/alerts?page_size=10'),
    ]);
    const banners = sla.orchestrations.map((o) => el('section', { class: `card sla ${o.state}-edge`, 'data-sla': o.id },
      el('h3', {}, tenant ? link(`#/orchestrations/${o.id}`, o.name) : o.name),
      stateBadge(o.state),
      el('p', {}, `${fmtRate(o.success_rate)} of ${o.executions} runs (target ${o.target} %)`),
      el('p', { class: 'muted' }, since(o.seconds_since_last_failure))));
    const tiles = systems.map((s) => el('section', { class: 'card', 'data-system': s.system },
      el('h3', {}, link(`#/systems/${encodeURIComponent(s.system)}`, s.system)),
      stateBadge(s.health),
      el('p', {}, `${s.calls} calls · p50 ${ms(s.latency_p50_ms)} · p95 ${ms(s.latency_p95_ms)}`)));
    const names = new Map(sla.orchestrations.map((o) => [o.id, o.name]));
    show('Dashboard',
      el('h2', {}, 'Service levels (7 days)'),
      banners.length ? el('div', { class: 'banners' }, banners) : el('p', { class: 'muted' }, 'No orchestrations yet.'),
      el('h2', {}, 'Executions per hour (24 hours)'),
      chart(timeline),
      el('h2', {}, 'Systems (24 hours)'),
      tiles.length ? el('div', { class: 'tiles' }, tiles) : el('p', { class: 'muted' }, 'No API calls in 24 hours.'),
      tenant ? el('section', { 'data-section': 'failures' }, el('h2', {}, 'Recent failures'),
        table([
          ['Finished', (e) => link(`#/executions/${e.id}`, when(e.finished_at))],
          ['Orchestration', (e) => names.get(e.orchestration_id) ?? e.orchestration_id],
          ['Error', (e) => e.error ?? ''],
        ], failures.data, { empty: 'No failed executions.' })) : null,
      el('section', { 'data-section': 'alerts' }, el('h2', {}, 'Fired alerts'),
        table([
          ['Fired', (a) => when(a.fired_at)],
          ['Severity', (a) => stateBadge(a.severity)],
          ['Message', (a) => a.message],
        ], fired.data, { empty: 'No alerts fired.' })));
  });
}
