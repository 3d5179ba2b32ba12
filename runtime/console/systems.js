// Systems and plugins: the catalogue with each system's operations and schemas, ping, the
// plugin versions, and uploading a component by drag-and-drop with the server's verdict.
import {
  actionButton, api, el, errorBox, field, hashQuery, jsonBlock, link, ms, page, pager, select, session, setHashQuery,
  show, stateBadge, statusArea, table, tabs, when,
} from './lib.js';

const SECTION = [['#/systems', 'Systems'], ['#/plugins', 'Plugins']];

export async function systems() {
  const number = Number(hashQuery().get('page') ?? 1);
  await page('Systems', async () => {
    const list = await api(`/systems?page=${number}&page_size=50`);
    show('Systems', tabs(SECTION, '#/systems'),
      table([
        ['System', (s) => link(`#/systems/${encodeURIComponent(s.slug)}`, s.name)],
        ['Slug', (s) => el('code', {}, s.slug)],
        ['Type', (s) => s.type],
        ['Version', (s) => s.version],
        ['Operations', (s) => s.operations],
        ['Health', (s) => stateBadge(s.health)],
        ['Description', (s) => s.description],
      ], list.data, { empty: 'No systems: upload a connector plugin.' }),
      pager(list.pagination, (p) => setHashQuery('#/systems', { page: p })));
  });
}

function operation(op) {
  return el('details', { class: 'operation', 'data-operation': op.name },
    el('summary', {}, el('code', {}, op.name), ` ${op.method} ${op.path}`, op.description ? ` · ${op.description}` : ''),
    el('div', { class: 'io' },
      el('div', {}, el('h3', { class: 'sub' }, 'Input schema'), jsonBlock(op.input_schema, `Input schema of ${op.name}`)),
      el('div', {}, el('h3', { class: 'sub' }, 'Output schema'), jsonBlock(op.output_schema, `Output schema of ${op.name}`))));
}

export async function system(slug) {
  await page('System', async () => {
    const [apis, connections] = await Promise.all([
      api(`/systems/${encodeURIComponent(slug)}/apis?page_size=100`),
      session.readsTenantData ? api('/connections?page_size=100') : { data: [] },
    ]);
    const mine = connections.data.filter((c) => c.system === slug);
    const status = statusArea();
    const which = select('connection', mine.map((c) => [c.id, c.name]), mine[0]?.id);
    const ping = mine.length && session.administers
      ? el('div', { class: 'row' }, field('Connection', which), pingButton(slug, () => which.value, status))
      : null;
    show(`System ${slug}`, tabs(SECTION, '#/systems'),
      el('h2', {}, 'Health check'),
      ping ?? el('p', { class: 'muted' }, mine.length ? 'Viewers cannot ping.' : 'No connection uses this system yet.'),
      status,
      el('h2', {}, `Operations (${apis.pagination.total})`),
      apis.data.length ? apis.data.map(operation) : el('p', { class: 'muted' }, 'This system declares no operations.'),
      mine.length ? [el('h2', {}, 'Your connections'), el('ul', {}, mine.map((c) => el('li', {}, link(`#/connections/${c.id}`, c.name))))] : null);
  });
}

/** A button that pings `slug` through the connection `connection()` names, showing the answer. */
export function pingButton(slug, connection, status) {
  return actionButton('Ping', async () => {
    const result = await api(`/systems/${encodeURIComponent(slug)}/ping?connection=${encodeURIComponent(connection())}`, { method: 'POST' });
    status.replaceChildren(el('p', { class: 'notice', 'data-ping': result.status }, stateBadge(result.status),
      ` ${ms(result.latency_ms)} at ${when(result.checked_at)}`, result.message ? ` · ${result.message}` : ''));
  }, status);
}

/** The drop zone: a file chosen or dropped is uploaded, and the server's verdict shown. */
function uploader(done) {
  const status = statusArea();
  const scope = select('scope', [['enterprise', 'my enterprise'], ['global', 'global catalogue']], 'enterprise');
  const file = el('input', { type: 'file', name: 'component', accept: '.wasm,application/wasm' });
  const upload = async (chosen) => {
    status.replaceChildren(el('p', { class: 'muted' }, `Uploading ${chosen.name} (${chosen.size} bytes)…`));
    try {
      const bytes = await chosen.arrayBuffer();
      const { status: code, body } = await api(`/plugins?scope=${scope.value}`, {
        method: 'POST', raw: bytes, type: 'application/wasm', withStatus: true,
      });
      const verdict = code === 201 ? 'Accepted: a new plugin version' : 'Already registered: these exact bytes';
      status.replaceChildren(el('div', { class: 'notice', 'data-upload': code === 201 ? 'accepted' : 'known' },
        el('p', {}, `${verdict}: ${body.slug} ${body.version} (${body.world}, ${body.operations.length} operations).`),
        el('p', { class: 'muted' }, `sha256 ${body.sha256}`)));
      await done(false);
    } catch (error) {
      if (error.status !== 401) {
        const box = errorBox(error);
        box.dataset.upload = String(error.status);
        status.replaceChildren(box);
      }
    }
  };
  file.addEventListener('change', () => file.files[0] && upload(file.files[0]));
  const zone = el('div', { class: 'dropzone', 'data-dropzone': '' },
    el('p', {}, 'Drop a WebAssembly component (.wasm) here, or choose one.'),
    field('Component file', file),
    session.platform ? field('Scope', scope) : null);
  zone.addEventListener('dragover', (event) => { event.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('over');
    const dropped = event.dataTransfer?.files?.[0];
    if (dropped) upload(dropped);
  });
  return el('section', { 'aria-labelledby': 'upload-h' }, el('h2', { id: 'upload-h' }, 'Upload'), zone, status);
}

/** What an admin may do with a version in each status: [button, new status]. */
const STATUS_ACTIONS = {
  pending: [['Approve', 'active']],
  active: [['Deprecate', 'deprecated'], ['Disable', 'disabled']],
  deprecated: [['Activate', 'active'], ['Disable', 'disabled']],
  disabled: [['Activate', 'active']],
};

export async function plugins() {
  const number = Number(hashQuery().get('page') ?? 1);
  let verdict = null;
  const render = async (again = true) => {
    const list = await api(`/plugins?page=${number}&page_size=50`);
    const status = statusArea();
    const rows = table([
      ['Plugin', (p) => [el('strong', {}, p.name || p.slug), ' ', el('code', {}, p.slug)]],
      ['Version', (p) => p.version],
      ['World', (p) => p.world],
      ['Scope', (p) => p.scope],
      ['Status', (p) => stateBadge(p.status)],
      ['Signed by', (p) => p.signed_by ?? '—'],
      ['Operations', (p) => p.operations.map((o) => o.name).join(', ')],
      ['Size', (p) => `${Math.round(p.size_bytes / 1024)} KiB`],
      ['Uploaded', (p) => (p.bundled ? 'bundled' : when(p.created_at))],
      ...(session.administers ? [['Actions', (p) => (!p.bundled && (p.scope === 'enterprise' || session.platform)
        ? (STATUS_ACTIONS[p.status] ?? []).map(([label, to]) => actionButton(label, async () => {
          await api(`/plugins/${p.id}`, { method: 'PATCH', body: { status: to } });
          await render();
        }, status, { 'data-status-to': to, 'aria-label': `${label} ${p.slug} ${p.version}` }))
        : '')]] : []),
    ], list.data);
    if (again || !verdict) verdict = uploader(() => render(false));
    show('Plugins', tabs(SECTION, '#/plugins'),
      session.administers ? verdict : null,
      el('h2', {}, 'Versions'), status, rows,
      pager(list.pagination, (p) => setHashQuery('#/plugins', { page: p })));
  };
  await page('Plugins', () => render(true));
}

