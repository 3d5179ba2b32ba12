// Canonical data: the domains, a domain's records with field filters (the server masks PII for
// viewers), and one record with its lineage.
import { api, el, field, hashQuery, input, jsonBlock, link, page, pager, select, session, show, table, when } from './lib.js';

export async function canonical() {
  await page('Canonical data', async () => {
    const domains = await api('/canonical');
    show('Canonical data',
      el('p', { class: 'muted' }, `${domains.length} domains of the automotive canonical data model.`),
      table([
        ['Domain', (d) => link(`#/canonical/${d.domain}`, d.domain)],
        ['Group', (d) => d.group],
        ['Records', (d) => d.records],
        ['Natural key', (d) => el('code', {}, d.natural_key)],
        ['Description', (d) => d.description],
      ], domains));
  });
}

export async function canonicalDomain(domain) {
  const query = hashQuery();
  const number = Number(query.get('page') ?? 1);
  await page(`Canonical ${domain}`, async () => {
    const domains = await api('/canonical');
    const info = domains.find((d) => d.domain === domain);
    const filters = [...query.entries()].filter(([k]) => k !== 'page' && k !== 'page_size');
    const params = new URLSearchParams([...filters, ['page', number], ['page_size', 25]]);
    const records = await api(`/canonical/${encodeURIComponent(domain)}?${params}`);
    const fields = info?.fields ?? [];
    const shown = fields.slice(0, 6);
    const which = select('field', fields.map((f) => f.name), filters[0]?.[0] ?? info?.natural_key);
    const value = input('value', { value: filters[0]?.[1] ?? '' });
    const go = (entries) => {
      const text = new URLSearchParams(entries).toString();
      location.hash = `#/canonical/${domain}${text ? `?${text}` : ''}`;
    };
    const form = el('form', { class: 'filters', onsubmit: (event) => {
      event.preventDefault();
      const others = filters.filter(([k]) => k !== which.value);
      go(value.value ? [...others, [which.value, value.value]] : others);
    } }, field('Field', which), field('Equals', value), el('button', { type: 'submit' }, 'Add filter'));
    const active = filters.length
      ? el('p', {}, 'Filters: ', filters.map(([k, v]) => el('button', { type: 'button', class: 'chip', onclick: () => go(filters.filter(([x]) => x !== k)) },
        `${k} = ${v} ✕`)))
      : null;
    const pii = fields.filter((f) => f.pii !== 'none').map((f) => f.name);
    show(`Canonical ${domain}`,
      el('p', {}, link('#/canonical', '← All domains'), info ? ` · ${info.group} · ${info.description}` : ''),
      pii.length ? el('p', { class: 'muted' }, `Personal fields (${pii.join(', ')}) are ${session.user.role === 'viewer' ? 'masked for you as a viewer' : 'masked for viewers'}.`) : null,
      form, active,
      table([
        ['Record', (r) => link(`#/canonical/${domain}/${r.id}`, String(r.data?.[info?.natural_key] ?? r.id))],
        ...shown.filter((f) => f.name !== info?.natural_key).map((f) => [f.name, (r) => {
          const v = r.data?.[f.name];
          return v === undefined || v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
        }]),
        ['Source', (r) => r.lineage.system ?? r.lineage.source],
        ['Updated', (r) => when(r.updated_at)],
      ], records.data, { empty: 'No records match.' }),
      pager(records.pagination, (p) => go([...filters, ['page', p]])),
      el('h2', {}, 'Fields'),
      table([
        ['Field', (f) => el('code', {}, f.name)],
        ['Type', (f) => (f.values ? `${f.type}: ${f.values.join(', ')}` : f.type)],
        ['Required', (f) => (f.required ? 'yes' : '')],
        ['PII', (f) => (f.pii === 'none' ? '' : f.pii)],
        ['Description', (f) => f.description],
      ], fields));
  });
}

export async function canonicalRecord(domain, id) {
  await page('Record', async () => {
    const record = await api(`/canonical/${encodeURIComponent(domain)}/${encodeURIComponent(id)}`);
    const lineage = record.lineage;
    show(`${domain} record`,
      el('p', {}, link(`#/canonical/${domain}`, `← ${domain} records`), ` · updated ${when(record.updated_at)}`),
      jsonBlock(record.data, 'Record data'),
      el('h2', {}, 'Lineage'),
      el('dl', { class: 'facts', 'data-lineage': '' },
        el('dt', {}, 'Source'), el('dd', {}, lineage.source),
        el('dt', {}, 'System'), el('dd', {}, lineage.system ?? '—'),
        el('dt', {}, 'Connection'), el('dd', {}, lineage.connection ?? '—'),
        el('dt', {}, 'Execution'), el('dd', {}, lineage.execution_id ? link(`#/executions/${lineage.execution_id}`, lineage.execution_id) : '—'),
        el('dt', {}, 'Created by'), el('dd', {}, lineage.created_by ?? '—'),
        el('dt', {}, 'Created'), el('dd', {}, when(lineage.created_at))));
  });
}
