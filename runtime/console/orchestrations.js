// Orchestrations: the list, one orchestration (its steps drawn, run form, status actions, recent
// executions, versions with a diff) and the JSON/YAML editor that shows a 422's details at
// their paths.
import {
  actionButton, api, el, errorBox, field, hashQuery, input, link, ms, notice, page, pager, parseJson, pretty, session,
  setHashQuery, show, stateBadge, statusArea, table, when, writer,
} from './lib.js';
import { toYaml } from './yaml.js';

export async function orchestrations() {
  const query = hashQuery();
  const number = Number(query.get('page') ?? 1);
  await page('Orchestrations', async () => {
    const list = await api(`/orchestrations?page=${number}&page_size=25`);
    show('Orchestrations',
      el('p', {}, writer(el('a', { class: 'button primary', href: '#/orchestrations/new' }, 'New orchestration'))),
      table([
        ['Name', (o) => link(`#/orchestrations/${o.id}`, o.name)],
        ['Status', (o) => stateBadge(o.status)],
        ['Trigger', (o) => (o.trigger?.type === 'schedule' ? `schedule ${o.trigger.cron}` : o.trigger?.type ?? 'manual')],
        ['Steps', (o) => o.steps.length],
        ['Version', (o) => o.version],
        ['Updated', (o) => when(o.updated_at)],
      ], list.data, { empty: 'No orchestrations yet.' }),
      pager(list.pagination, (p) => setHashQuery('#/orchestrations', { page: p })));
  });
}

/** The definition inside an orchestration as the API shows it (what PUT takes back). */
export function definitionOf(view) {
  const { id, enterprise_id: _e, version, created_at: _c, updated_at: _u, schedule_error: _s, schedule_error_at: _a, ...definition } = view;
  return definition;
}

// --- The drawing of the steps

function summary(step) {
  switch (step.type) {
    case 'api_call': return `${step.connection ?? '?'} → ${step.operation ?? '?'}`;
    case 'transform': return step.transform === 'map' ? 'map' : `plugin ${step.transform ?? '?'}`;
    case 'condition': return `if ${step.condition ?? ''}`;
    case 'for_each': return `for each of ${step.items ?? '?'}${step.concurrency ? `, ${step.concurrency} at once` : ''}`;
    case 'parallel': return `${(step.branches ?? []).length} branches at once`;
    case 'sub_orchestration': return `runs ${step.orchestration ?? '?'}`;
    case 'canonical_upsert': return `upsert ${step.domain ?? '?'}${step.source ? ` from ${step.source}` : ''}`;
    case 'wait': return step.until ? `until ${step.until}` : `${step.duration_ms ?? 0} ms`;
    case 'error_handler': return step.recover ? 'on failure, then recover' : 'on failure';
    default: return '';
  }
}

function lane(title, steps) {
  return el('div', { class: 'lane' }, el('div', { class: 'lane-title' }, title), drawSteps(steps));
}

/** Steps as boxes top to bottom; branches side by side, bodies nested. */
export function drawSteps(steps = []) {
  if (!steps.length) return el('p', { class: 'muted' }, '(no steps)');
  return el('ol', { class: 'flow' }, steps.map((step) => {
    const notes = [
      step.when ? `only when ${step.when}` : null,
      step.retry ? `retry up to ${step.retry.max_attempts}×` : null,
      step.timeout_ms ? `timeout ${step.timeout_ms} ms` : null,
      step.on_error === 'continue' ? 'continues on error' : null,
      step.on_exhausted === 'pause' ? 'pauses when out of attempts' : null,
    ].filter(Boolean);
    let inner = null;
    if (step.type === 'condition') inner = el('div', { class: 'lanes' }, lane('then', step.then), lane('else', step.else));
    else if (step.type === 'parallel') inner = el('div', { class: 'lanes' }, (step.branches ?? []).map((b) => lane(b.name, b.steps)));
    else if (step.type === 'for_each') inner = el('div', { class: 'lanes' }, lane('each item', step.steps));
    else if (step.type === 'error_handler') inner = el('div', { class: 'lanes' }, lane('when an earlier step failed', step.steps));
    return el('li', { class: `node ${step.type}`, 'data-step': step.name },
      el('div', { class: 'node-head' }, el('strong', {}, step.name), ' ', el('span', { class: 'kind' }, step.type)),
      el('div', { class: 'node-body' }, summary(step)),
      notes.length ? el('div', { class: 'muted small' }, notes.join(' · ')) : null,
      inner);
  }));
}

// --- Versions and their diff

/** The lines of `a` and `b` as kept, removed and added (a longest common subsequence). */
export function diffLines(a, b) {
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start += 1;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) { endA -= 1; endB -= 1; }
  const x = a.slice(start, endA);
  const y = b.slice(start, endB);
  const out = a.slice(0, start).map((line) => [' ', line]);
  if (x.length * y.length > 4_000_000) {
    // Too large to align: everything in the middle changed.
    out.push(...x.map((l) => ['-', l]), ...y.map((l) => ['+', l]));
  } else {
    const table = Array.from({ length: x.length + 1 }, () => new Uint32Array(y.length + 1));
    for (let i = x.length - 1; i >= 0; i -= 1) {
      for (let j = y.length - 1; j >= 0; j -= 1) {
        table[i][j] = x[i] === y[j] ? table[i + 1][j + 1] + 1 : Math.max(table[i + 1][j], table[i][j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < x.length || j < y.length) {
      if (i < x.length && j < y.length && x[i] === y[j]) { out.push([' ', x[i]]); i += 1; j += 1; }
      else if (i < x.length && (j === y.length || table[i + 1][j] >= table[i][j + 1])) { out.push(['-', x[i]]); i += 1; }
      else { out.push(['+', y[j]]); j += 1; }
    }
  }
  out.push(...a.slice(endA).map((line) => [' ', line]));
  return out;
}

/** Long runs of unchanged lines folded to three lines of context on each side. */
export function folded(lines, context = 3) {
  const out = [];
  let run = [];
  const flush = (last) => {
    const keepHead = out.length ? context : 0;
    const keepTail = last ? 0 : context;
    if (run.length > keepHead + keepTail + 1) {
      out.push(...run.slice(0, keepHead), ['…', `${run.length - keepHead - keepTail} unchanged lines`], ...run.slice(run.length - keepTail));
    } else {
      out.push(...run);
    }
    run = [];
  };
  for (const line of lines) {
    if (line[0] === ' ') run.push(line);
    else {
      flush(false);
      out.push(line);
    }
  }
  flush(true);
  return out;
}

async function versionsSection(id, current) {
  const list = await api(`/orchestrations/${id}/versions?page_size=100`);
  const numbers = list.data.map((v) => v.version);
  const status = statusArea();
  const output = el('div', { class: 'diff-out' });
  const from = el('select', { name: 'from' }, numbers.map((n) => el('option', { value: n, selected: n === current - 1 }, `version ${n}`)));
  const to = el('select', { name: 'to' }, numbers.map((n) => el('option', { value: n, selected: n === current }, `version ${n}`)));
  const compare = async () => {
    const [a, b] = await Promise.all([from.value, to.value].map((n) => api(`/orchestrations/${id}/versions/${n}`)));
    const lines = diffLines(pretty(a.definition).split('\n'), pretty(b.definition).split('\n'));
    const changed = lines.filter(([mark]) => mark !== ' ').length;
    output.replaceChildren(
      el('p', { class: 'muted' }, changed ? `${changed} lines differ between version ${a.version} and version ${b.version}.` : 'No differences.'),
      el('pre', { class: 'diff', tabindex: '0', 'aria-label': `Diff of version ${a.version} and ${b.version}` },
        folded(lines).map(([mark, line]) => el('span', { class: { '+': 'added', '-': 'removed', '…': 'fold' }[mark] ?? 'same' }, `${mark} ${line}\n`))));
  };
  return el('section', { 'aria-labelledby': 'versions-h' },
    el('h2', { id: 'versions-h' }, 'Versions'),
    table([['Version', (v) => v.version], ['Saved', (v) => when(v.created_at)]], list.data),
    numbers.length > 1
      ? el('div', { class: 'row' }, field('From', from), field('To', to), actionButton('Compare', compare, status))
      : el('p', { class: 'muted' }, 'Only one version so far.'),
    status, output);
}

// --- Run form generated from the parameters

function parameterControl(parameter) {
  const name = parameter.name;
  const required = parameter.required && parameter.default === undefined;
  switch (parameter.type) {
    case 'boolean':
      return el('input', { type: 'checkbox', name, checked: parameter.default === true });
    case 'number':
    case 'integer':
      return el('input', { type: 'number', name, required, step: parameter.type === 'integer' ? '1' : 'any', value: parameter.default ?? '' });
    case 'object':
    case 'array':
      return el('textarea', { name, required, rows: 3, class: 'code', value: parameter.default === undefined ? '' : pretty(parameter.default) });
    default:
      return input(name, { required, value: parameter.default ?? '' });
  }
}

function runForm(orchestration, afterRun) {
  const controls = orchestration.parameters.map((p) => [p, parameterControl(p)]);
  const status = statusArea();
  const form = el('form', { class: 'run', 'data-run': '', onsubmit: async (event) => {
    event.preventDefault();
    status.replaceChildren(el('p', { class: 'muted' }, 'Running…'));
    try {
      const parameters = {};
      for (const [p, control] of controls) {
        if (p.type === 'boolean') parameters[p.name] = control.checked;
        else if (p.type === 'number' || p.type === 'integer') { if (control.value !== '') parameters[p.name] = Number(control.value); }
        else if (p.type === 'object' || p.type === 'array') { const v = parseJson(control.value, p.name); if (v !== undefined) parameters[p.name] = v; }
        else if (control.value !== '') parameters[p.name] = control.value;
      }
      const result = await api(`/orchestrations/${orchestration.id}/execute`, { method: 'POST', body: { parameters } });
      status.replaceChildren(el('div', { class: 'notice', 'data-run-result': result.status },
        el('p', {}, stateBadge(result.status), ` ${result.steps_completed ?? 0}/${result.steps_total ?? '?'} steps`,
          result.duration_ms !== undefined ? ` in ${ms(result.duration_ms)}` : '', ' · ',
          link(`#/executions/${result.execution_id}`, 'open the execution and its trace')),
        result.error ? el('p', { class: 'error-text' }, result.error) : null,
        result.output !== undefined && result.output !== null ? el('pre', { class: 'json' }, pretty(result.output)) : null));
      await afterRun();
    } catch (error) {
      if (error.status !== 401) status.replaceChildren(errorBox(error));
    }
  } },
    controls.map(([p, control]) => field(`${p.name}${p.required ? ' *' : ''} (${p.type})`, control, p.description || null)),
    el('button', { class: 'primary', type: 'submit' }, 'Run'),
    status);
  return el('section', { 'aria-labelledby': 'run-h' }, el('h2', { id: 'run-h' }, 'Run'), form);
}

async function setStatus(current, status) {
  await api(`/orchestrations/${current.id}`, { method: 'PUT', body: { ...definitionOf(current), status } });
  await orchestration(current.id);
}

/** The orchestration's latest executions; `reload()` fetches them again. */
function recentExecutions(id) {
  const section = el('section', { 'aria-labelledby': 'recent-h' });
  const reload = async () => {
    const runs = await api(`/orchestrations/${id}/executions?page_size=10`);
    section.replaceChildren(
      el('h2', { id: 'recent-h' }, 'Recent executions'),
      table([
        ['Started', (e) => link(`#/executions/${e.id}`, when(e.started_at ?? e.created_at))],
        ['Status', (e) => stateBadge(e.status)],
        ['Version', (e) => e.orchestration_version],
        ['Duration', (e) => ms(e.duration_ms)],
        ['Error', (e) => e.error ?? ''],
      ], runs.data, { empty: 'Not run yet.' }),
      el('p', {}, link(`#/executions?orchestration_id=${id}`, 'All executions of this orchestration')));
  };
  return { section, reload };
}

export async function orchestration(id) {
  await page('Orchestration', async () => {
    const o = await api(`/orchestrations/${id}`);
    const recent = recentExecutions(id);
    const [versions] = await Promise.all([versionsSection(id, o.version), recent.reload()]);
    const status = statusArea();
    const actions = writer(
      el('a', { class: 'button', href: `#/orchestrations/${id}/edit` }, 'Edit'),
      o.status !== 'active' ? actionButton('Activate', () => setStatus(o, 'active'), status) : null,
      o.status === 'active' ? actionButton('Pause', () => setStatus(o, 'paused'), status) : null,
      o.status !== 'archived' ? actionButton('Archive', () => setStatus(o, 'archived'), status) : null);
    show(o.name,
      el('p', {}, stateBadge(o.status), ` version ${o.version} · ${o.trigger?.type ?? 'manual'} trigger · updated ${when(o.updated_at)}`),
      o.description ? el('p', {}, o.description) : null,
      o.schedule_error ? el('p', { class: 'notice error' }, `Schedule: ${o.schedule_error}`) : null,
      actions.length ? el('div', { class: 'actions' }, actions) : null,
      status,
      el('section', { 'aria-labelledby': 'steps-h' }, el('h2', { id: 'steps-h' }, 'Steps'), drawSteps(o.steps)),
      session.canWrite && o.status === 'active' ? runForm(o, recent.reload) : null,
      recent.section,
      versions);
  });
}

// --- The editor

const TEMPLATE = {
  name: 'New orchestration',
  description: '',
  parameters: [{ name: 'vin', type: 'string', required: true }],
  steps: [{ name: 'shape', type: 'transform', transform: 'map', mapping: { vin: '${parameters.vin}' } }],
};

/** Pretty JSON (as JSON.stringify(v, null, 2) prints it) with the line of every path. */
export function layout(value) {
  const lines = [];
  const at = new Map();
  const walk = (v, path, pad, head, tail) => {
    if (path && !at.has(path)) at.set(path, lines.length);
    if (Array.isArray(v) && v.length) {
      lines.push(`${pad}${head}[`);
      v.forEach((item, i) => walk(item, `${path}[${i}]`, `${pad}  `, '', i < v.length - 1 ? ',' : ''));
      lines.push(`${pad}]${tail}`);
    } else if (v && typeof v === 'object' && Object.keys(v).length) {
      lines.push(`${pad}${head}{`);
      const keys = Object.keys(v);
      keys.forEach((k, i) => walk(v[k], path ? `${path}.${k}` : k, `${pad}  `, `${JSON.stringify(k)}: `, i < keys.length - 1 ? ',' : ''));
      lines.push(`${pad}}${tail}`);
    } else {
      lines.push(`${pad}${head}${JSON.stringify(v)}${tail}`);
    }
  };
  walk(value, '', '', '', '');
  return { text: lines.join('\n'), at };
}

/** The line of `path` in the layout, or of its nearest enclosing path that is there. */
function lineOf(at, path) {
  for (let p = path; p; p = p.replace(/(\[\d+\]|\.[^.[\]]+|^[^.[\]]+)$/, '')) {
    if (at.has(p)) return at.get(p);
  }
  return 0;
}

function selectLine(textarea, line) {
  const lines = textarea.value.split('\n');
  const start = lines.slice(0, line).reduce((n, l) => n + l.length + 1, 0);
  textarea.focus();
  textarea.setSelectionRange(start, start + (lines[line] ?? '').length);
  const height = textarea.scrollHeight / Math.max(1, lines.length);
  textarea.scrollTop = Math.max(0, (line - 3) * height);
}

/**
 * `edited` with each top-level field of `shown` it no longer has sent as null: a PUT keeps the
 * fields it leaves out, so a field deleted in the editor is reset this way.
 */
export function removedAsNull(edited, shown) {
  if (!edited || typeof edited !== 'object' || Array.isArray(edited)) return edited;
  const answer = { ...edited };
  for (const key of Object.keys(shown)) if (!(key in answer)) answer[key] = null;
  return answer;
}

export async function editor(id) {
  const title = id ? 'Edit orchestration' : 'New orchestration';
  await page(title, async () => {
    const current = id ? await api(`/orchestrations/${id}`) : null;
    const initial = current ? definitionOf(current) : TEMPLATE;
    const text = el('textarea', { name: 'definition', class: 'code editor', rows: 24, spellcheck: 'false', value: pretty(initial) });
    let format = 'json';
    const formats = el('fieldset', { class: 'formats' }, el('legend', {}, 'Format'),
      ['json', 'yaml'].map((f) => el('label', { class: 'inline' },
        el('input', { type: 'radio', name: 'format', value: f, checked: f === 'json', onchange: () => switchTo(f) }), f.toUpperCase())));
    const status = statusArea();
    const problems = el('div', { class: 'problems' });
    const setRadio = (f) => {
      for (const radio of formats.querySelectorAll('input')) radio.checked = radio.value === f;
    };
    const switchTo = (next) => {
      status.replaceChildren();
      if (next === format) return;
      if (next === 'json') {
        // There is no YAML parser here: the server reads YAML, and the saved version opens as JSON.
        status.replaceChildren(notice('YAML stays as you typed it; once saved, the editor opens it as JSON again.'));
        setRadio('yaml');
        return;
      }
      try {
        text.value = toYaml(JSON.parse(text.value));
        format = 'yaml';
        problems.replaceChildren();
      } catch (error) {
        status.replaceChildren(errorBox({ message: `Fix the JSON first: ${error.message}` }));
        setRadio('json');
      }
    };
    const showProblems = (error) => {
      let at = null;
      if (format === 'json') {
        try {
          const laid = layout(JSON.parse(text.value));
          text.value = laid.text;
          at = laid.at;
        } catch { /* not JSON: paths only */ }
      }
      problems.replaceChildren(errorBox({ message: error.message, requestId: error.requestId }),
        el('ul', { class: 'at-paths' }, error.details.map((d) => {
          const line = at ? lineOf(at, d.path) : null;
          return el('li', { 'data-error-path': d.path },
            line === null ? el('code', {}, d.path) : el('button', { type: 'button', class: 'linkish', onclick: () => selectLine(text, line) },
              el('code', {}, d.path), ` (line ${line + 1})`),
            ` ${d.message}`);
        })));
    };
    const save = async () => {
      problems.replaceChildren();
      const options = format === 'json'
        ? { body: removedAsNull(parseJson(text.value, 'The definition') ?? {}, current ? initial : {}) }
        : { raw: text.value, type: 'application/yaml' };
      try {
        const saved = await api(id ? `/orchestrations/${id}` : '/orchestrations', { method: id ? 'PUT' : 'POST', ...options });
        location.hash = `#/orchestrations/${saved.id}`;
      } catch (error) {
        if (error.status === 422 && error.details.length) showProblems(error);
        else throw error;
      }
    };
    show(title,
      el('p', { class: 'muted' }, 'The whole definition as the API takes it. Errors are listed at their paths; choose one to go to its line. '
        + 'A field removed from the YAML keeps its stored value; set it to null to reset it.'),
      formats,
      field('Definition', text),
      el('div', { class: 'actions' },
        actionButton(id ? 'Save new version' : 'Create', save, status, { class: 'primary', 'data-save': '' }),
        current ? el('a', { class: 'button', href: `#/orchestrations/${id}` }, 'Cancel') : el('a', { class: 'button', href: '#/orchestrations' }, 'Cancel')),
      status, problems);
  });
}
