// The web console in headless Chromium, as its users meet it. Signs in (a wrong password first),
// reads the dashboard, creates a connection in its form and runs the test runner against a mock
// vPIC server, writes an orchestration in the editor (first with a mistake shown at its path,
// then fixed), pauses and re-activates it and compares versions, runs it from the run form and
// opens its trace waterfall, counts a for_each's items, resumes a paused run with changed parameters, uploads a plugin by drag-and-drop (and a non-component, refused),
// creates an API key and a webhook, saves each edit form unchanged (nothing may change), and
// visits every page. Then a viewer finds no write action,
// a second enterprise sees nothing of the first, an ended session returns to sign-in, and sign
// out forgets the token. axe-core runs on every page (no serious or critical violation allowed).
// Fails on any page error, any request to a host other than the server, or any Content-Security-
// Policy violation. Screenshots of every page go to the folder given as the argument.
//
// Usage: DIBOP_URL=http://127.0.0.1:8080 DIBOP_EMAIL=... DIBOP_PASSWORD=... DIBOP_GUESTS=<dir of
// built guest .wasm files> node console-check.mjs <screenshot dir>
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import { launchOptions, token as login } from './common.mjs';

const base = process.env.DIBOP_URL ?? 'http://127.0.0.1:8080';
const guests = process.env.DIBOP_GUESTS;
const shots = process.argv[2] ?? 'console-shots';
mkdirSync(shots, { recursive: true });
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const VIN = '1HGCM82633A004352';

/** A check that did not hold; the message says what the console showed instead. */
class Failure extends Error {}
function fail(message) {
  throw new Failure(message);
}
const opened = [];
if (!guests) fail('DIBOP_GUESTS (the built guest components) is not set');

// --- The API, for seeding what the pages show

const adminToken = await login(base, fail);
async function call(token, method, path, body) {
  const response = await fetch(`${base}/api/v1${path}`, {
    method,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) fail(`${method} ${path} answered ${response.status}: ${text}`);
  return text ? JSON.parse(text) : null;
}

// A vPIC stand-in on loopback for the connection and its test runner.
const upstream = createServer((request, response) => {
  const found = request.url.match(/^\/vpic\/vehicles\/DecodeVinValues\/([A-Z0-9]+)/);
  if (!found) {
    response.writeHead(404).end();
    return;
  }
  response.writeHead(200, { 'content-type': 'application/json' });
  response.end(JSON.stringify({ Count: 1, Results: [{ Make: 'HONDA', Model: 'Accord', ModelYear: '2003', Trim: 'EX-V6', VIN: found[1], ErrorCode: '0' }] }));
});
await new Promise((resolve) => upstream.listen(0, '127.0.0.1', resolve));
const upstreamHost = `127.0.0.1:${upstream.address().port}`;

// An orchestration with one successful and one failed run, and a rule that fires on the failure.
await call(adminToken, 'POST', '/alert-rules', { name: 'Any failure', type: 'execution_failure', notification: { channels: [{ type: 'log' }] } });
const routing = await call(adminToken, 'POST', '/orchestrations', {
  name: 'Lead routing',
  parameters: [{ name: 'lead', type: 'object', required: true }],
  steps: [{ name: 'route', type: 'transform', transform: 'map', mapping: { region: '${parameters.lead.region}' } }],
  output: { region: '${route.region}' },
});
await call(adminToken, 'POST', `/orchestrations/${routing.id}/execute`, { parameters: { lead: { region: 'east' } } });
const failedRun = await call(adminToken, 'POST', `/orchestrations/${routing.id}/execute`, { parameters: { lead: {} } });
// The same routing, paused instead of failed when its step fails: a run to resume from the console.
const pausing = await call(adminToken, 'POST', '/orchestrations', {
  name: 'Lead routing (pauses)',
  on_exhausted: 'pause',
  parameters: [{ name: 'lead', type: 'object', required: true }],
  steps: [{ name: 'route', type: 'transform', transform: 'map', mapping: { region: '${parameters.lead.region}' } }],
  output: { region: '${route.region}' },
});
const pausedRun = await call(adminToken, 'POST', `/orchestrations/${pausing.id}/execute`, { parameters: { lead: {} } });
if (pausedRun.status !== 'paused') fail(`the pausing run ended ${pausedRun.status}`);
// A customer record, whose e-mail is personal data (masked for viewers).
const customer = await call(adminToken, 'POST', '/canonical/customer', {
  customer_id: 'C-1', customer_name: 'Ada Lovelace', email: 'ada@example.com', city: 'London', customer_type: 'individual',
});

// --- The browser

const browser = await chromium.launch(launchOptions);
const foreign = [];
const errors = [];
const axeFindings = [];
let pagesChecked = 0;

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on('request', (request) => {
    const url = request.url();
    if (!url.startsWith(base) && !url.startsWith('data:')) foreign.push(url);
  });
  opened.push(page);
  page.on('pageerror', (error) => errors.push(String(error)));
  page.on('console', (message) => {
    // Answers the checks provoke (401, 409, 422) are logged by Chromium as failed loads; a CSP
    // violation ("Refused to ...") or a script error is not one of them.
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) errors.push(message.text());
  });
  return page;
}

/** Goes to a console route and waits until its page has loaded. */
async function visit(page, hash) {
  await page.evaluate((target) => {
    document.body.dataset.ready = '0';
    // The same hash again fires no hashchange: load the page again as the console would.
    if (location.hash === target) window.dispatchEvent(new HashChangeEvent('hashchange'));
    else location.hash = target;
  }, hash);
  await page.waitForFunction(() => document.body.dataset.ready === '1', null, { timeout: 20000 });
  // A page that failed to load shows the API's error in place of its content.
  const broken = page.locator('main > [data-page-error]');
  if ((await broken.count()) > 0) fail(`${hash} failed to load: ${await broken.first().textContent()}`);
}

/** axe-core on the page as it is; serious and critical violations fail the check. */
async function axe(page, name) {
  await page.evaluate((source) => {
    if (typeof window.axe === 'undefined') (0, eval)(source);
  }, axeSource);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
  pagesChecked += 1;
  for (const v of violations) axeFindings.push({ page: name, ...v });
}

async function shoot(page, name) {
  await axe(page, name);
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

async function signIn(page, email, password) {
  await page.goto(`${base}/`, { waitUntil: 'networkidle' });
  await page.waitForSelector('form.signin');
  await page.fill('input[name=email]', email);
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]');
  await page.waitForSelector('#nav a[data-nav=dashboard]', { timeout: 15000 });
  await page.waitForFunction(() => document.body.dataset.ready === '1', null, { timeout: 20000 });
}

const text = (page, selector) => page.locator(selector).first().textContent({ timeout: 15000 });

try {
  const page = await newPage();

  // Sign-in: a refusal shows the API's message and request id.
  const loaded = [];
  page.on('requestfinished', (request) => {
    if (request.url().startsWith(`${base}/console/`)) loaded.push(request.url());
  });
  await page.goto(`${base}/`, { waitUntil: 'networkidle' });
  if (!page.url().startsWith(`${base}/console/`)) fail(`/ led to ${page.url()}`);
  await page.waitForSelector('form.signin');
  // The first load: every file the page fetched, raw and gzip-compressed.
  let raw = 0;
  let compressed = 0;
  for (const url of new Set(loaded)) {
    const body = Buffer.from(await (await fetch(url)).arrayBuffer());
    raw += body.length;
    compressed += gzipSync(body, { level: 9 }).length;
  }
  if (compressed > 300 * 1024) fail(`the first load is ${compressed} bytes compressed`);
  const firstLoad = `${new Set(loaded).size} files, ${raw} bytes, ${compressed} bytes gzip-compressed`;
  await page.fill('input[name=email]', process.env.DIBOP_EMAIL);
  await page.fill('input[name=password]', 'not-the-password');
  await page.click('button[type=submit]');
  const refused = await text(page, '.notice.error');
  if (!/invalid email or password/i.test(refused) || !/request [0-9a-f-]{36}/.test(refused)) fail(`the refused sign-in showed ${refused}`);
  await shoot(page, 'signin');
  await signIn(page, process.env.DIBOP_EMAIL, process.env.DIBOP_PASSWORD);

  // Dashboard: SLA banner, chart, system tiles, the failure and the alert it fired.
  const banner = await text(page, `[data-sla="${routing.id}"]`);
  if (!banner.includes('Lead routing') || !banner.includes('of 2 runs')) fail(`SLA banner: ${banner}`);
  const chart = await page.locator('[data-chart] svg').getAttribute('aria-label');
  if (!chart.includes('1 succeeded and 1 failed')) fail(`chart: ${chart}`);
  if ((await page.locator('[data-system]').count()) < 1) fail('no system tiles');
  if ((await page.locator('[data-section=failures] tbody tr').count()) !== 1) fail('recent failures: expected 1 row');
  await shoot(page, 'dashboard');
  await page.setViewportSize({ width: 420, height: 800 });
  await page.screenshot({ path: join(shots, 'dashboard-narrow.png'), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });

  // A connection from its form, then its test runner against the mock upstream.
  await visit(page, '#/connections/new?system=vpic');
  await page.fill('input[name=name]', 'vpic-test');
  await page.fill('input[name=base_url]', `http://${upstreamHost}/vpic`);
  if ((await page.locator('input[name=api_key]').getAttribute('type')) !== 'password') fail('the secret config key is not a password field');
  await page.fill('input[name=api_key]', 'k-secret-1234');
  await page.fill('input[name=allowed_hosts]', upstreamHost);
  await shoot(page, 'connection-new');
  await page.click('form.connection button[type=submit]');
  await page.waitForSelector('form.test-runner', { timeout: 15000 });
  const credentials = await text(page, 'pre[aria-label=Credentials]');
  if (credentials.includes('k-secret-1234') || !credentials.includes('****')) fail(`credentials shown as ${credentials}`);
  await page.fill('input[name=operation]', 'decode_vin');
  await page.fill('textarea[name=input]', JSON.stringify({ vin: VIN }));
  await page.click('form.test-runner button[type=submit]');
  await page.waitForSelector('[data-test-status]', { timeout: 20000 });
  const tested = await text(page, '[data-test-result]');
  if (!(await page.locator('[data-test-status=success]').count()) || !tested.includes('HONDA') || !tested.includes('DecodeVinValues')) fail(`test runner: ${tested}`);
  await shoot(page, 'connection-test');

  // The editor: a mistake is shown at its path; fixed, the orchestration is saved and drawn.
  const definition = {
    name: 'VIN lookup',
    parameters: [{ name: 'vin', type: 'string', required: true, description: '17-character VIN' }],
    steps: [
      { name: 'decode', type: 'api_call', connection: 'nowhere', operation: 'decode_vin', parameters: { vin: '${parameters.vin}' } },
      { name: 'check', type: 'condition', condition: "${decode.response.make} == 'HONDA'",
        then: [{ name: 'honda', type: 'transform', transform: 'map', mapping: { brand: '${decode.response.make}' } }],
        else: [{ name: 'other', type: 'transform', transform: 'map', mapping: { brand: 'other' } }] },
    ],
    output: { make: '${decode.response.make}' },
  };
  await visit(page, '#/orchestrations/new');
  await page.fill('textarea[name=definition]', JSON.stringify(definition, null, 2));
  await page.click('[data-save]');
  const problem = await text(page, '[data-error-path="steps[0].connection"]');
  if (!problem.includes('nowhere') || !problem.includes('line')) fail(`the editor's problem: ${problem}`);
  await shoot(page, 'orchestration-editor-error');
  await page.click('[data-error-path="steps[0].connection"] button');
  const selected = await page.evaluate(() => {
    const area = document.querySelector('textarea[name=definition]');
    return area.value.slice(area.selectionStart, area.selectionEnd);
  });
  if (!selected.includes('"connection": "nowhere"')) fail(`going to the problem selected ${selected}`);
  // Fixed, and saved as YAML: the editor writes it, the server reads it.
  definition.steps[0].connection = 'vpic-test';
  await page.fill('textarea[name=definition]', JSON.stringify(definition, null, 2));
  await page.check('input[name=format][value=yaml]');
  const yaml = await page.inputValue('textarea[name=definition]');
  if (!yaml.startsWith('name: "VIN lookup"\n') || !yaml.includes('    then:\n      - name: "honda"')) fail(`the YAML view: ${yaml}`);
  await page.click('[data-save]');
  await page.waitForSelector('[data-step=decode]', { timeout: 15000 });
  const lookupId = page.url().split('#/orchestrations/')[1];
  if ((await page.locator('.lanes [data-step=honda]').count()) !== 1) fail('the condition branch is not drawn');

  // Pause (version 2), activate (version 3), and compare versions 1 and 2.
  await page.click('button:has-text("Pause")');
  await page.waitForSelector('button:has-text("Activate")');
  await page.click('button:has-text("Activate")');
  await page.waitForSelector('button:has-text("Pause")');
  await page.selectOption('select[name=from]', '1');
  await page.selectOption('select[name=to]', '2');
  await page.click('button:has-text("Compare")');
  const added = await text(page, 'pre.diff .added');
  if (!added.includes('"status": "paused"')) fail(`the diff added ${added}`);

  // Run it from the form, then open its trace.
  await page.fill('form[data-run] input[name=vin]', VIN);
  await page.click('form[data-run] button[type=submit]');
  await page.waitForSelector('[data-run-result]', { timeout: 20000 });
  if ((await page.locator('[data-run-result=success]').count()) !== 1) fail(`run: ${await text(page, '[data-run-result]')}`);
  await shoot(page, 'orchestration');
  await page.click('[data-run-result] a');
  await page.waitForSelector('[data-waterfall]', { timeout: 15000 });
  for (const kind of ['execution', 'step', 'plugin.invoke', 'http']) {
    if ((await page.locator(`[data-span="${kind}"]`).count()) < 1) fail(`no ${kind} span in the waterfall`);
  }
  await page.click('[data-step-result=decode] summary');
  await shoot(page, 'trace');
  // A for_each over 30 items of about 8 KB (run after the dashboard, whose counts it would
  // change): its page counts the items (the waterfall keeps 10 of them) and cuts its output.
  const stock = await call(adminToken, 'POST', '/orchestrations', {
    name: 'Stock rows',
    parameters: [{ name: 'rows', type: 'array', required: true }],
    steps: [{ name: 'each', type: 'for_each', items: '${parameters.rows}', concurrency: 5,
      steps: [{ name: 'row', type: 'transform', transform: 'map', mapping: { n: '${index}', notes: '${item.notes}' } }] }],
  });
  const rows = Array.from({ length: 30 }, (_, i) => ({ id: `v${i}`, notes: 'n'.repeat(8000) }));
  const bulkRun = await call(adminToken, 'POST', `/orchestrations/${stock.id}/execute`, { parameters: { rows } });
  if (bulkRun.status !== 'success') fail(`the for_each run ended ${bulkRun.status}`);
  await visit(page, `#/executions/${bulkRun.execution_id}`);
  const counts = await text(page, '[data-step-result=each] [data-item-counts]');
  if (!counts.includes('30 items: 30 success') || !counts.includes('shows 10 of them')) fail(`the item counts: ${counts}`);
  await page.click('[data-step-result=each] summary');
  if ((await page.locator('[data-step-result=each] [data-json-cut]').count()) !== 1) fail('a large output is not cut');
  await shoot(page, 'execution-for-each');

  // The lists, with filters.
  await visit(page, `#/executions?orchestration_id=${lookupId}&status=success`);
  if ((await page.locator('main tbody tr').count()) !== 1) fail('the filtered executions are not 1');
  await shoot(page, 'executions');
  // The failed run offers retry (and no cancel); retrying queues it again.
  await visit(page, `#/executions/${failedRun.execution_id}`);
  if ((await page.locator('[data-action=cancel]').count()) !== 0) fail('a finished execution offers cancel');
  await page.evaluate(() => { document.body.dataset.ready = '0'; });
  await page.click('[data-action=retry]');
  await page.waitForFunction(() => document.body.dataset.ready === '1', null, { timeout: 20000 });
  await shoot(page, 'execution-failed');
  // The paused run: listed under its status with a resume for all of them; its page resumes it
  // with changed parameters (or would skip its step with an output).
  await visit(page, '#/executions?status=paused');
  if ((await page.locator('[data-action=resume-all]').count()) !== 1) fail('the paused executions offer no resume');
  await visit(page, `#/executions/${pausedRun.execution_id}`);
  if ((await page.locator('[data-resume] [data-action=skip]').count()) !== 1) fail('a paused execution offers no skip');
  if ((await page.locator('[data-action=cancel]').count()) !== 1) fail('a paused execution offers no cancel');
  await shoot(page, 'execution-paused');
  await page.fill('[data-resume] textarea[name=parameters]', JSON.stringify({ lead: { region: 'west' } }));
  await page.evaluate(() => { document.body.dataset.ready = '0'; });
  await page.click('[data-action=resume]');
  await page.waitForFunction(() => document.body.dataset.ready === '1', null, { timeout: 20000 });
  let resumed = null;
  for (let i = 0; i < 100 && resumed?.status !== 'success'; i += 1) {
    resumed = await call(adminToken, 'GET', `/executions/${pausedRun.execution_id}`);
    if (resumed.status !== 'success') await new Promise((resolve) => setTimeout(resolve, 100));
  }
  if (resumed.status !== 'success' || resumed.output?.region !== 'west') fail(`the resumed run: ${JSON.stringify(resumed)}`);
  await visit(page, '#/api-calls?system=vpic');
  if ((await page.locator('[data-section=log] tbody tr').count()) < 2) fail('the API-call log misses the test and the run');
  await shoot(page, 'api-calls');

  // Plugins: a component dropped on the zone is accepted; a non-component is refused with the reason.
  await visit(page, '#/plugins');
  const wasm = readFileSync(join(guests, 'hostile.wasm')).toString('base64');
  const drop = await page.evaluateHandle((b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], 'hostile.wasm', { type: 'application/wasm' }));
    return transfer;
  }, wasm);
  await page.dispatchEvent('[data-dropzone]', 'drop', { dataTransfer: drop });
  await page.waitForSelector('[data-upload=accepted]', { timeout: 30000 });
  await page.setInputFiles('input[name=component]', join(guests, 'not_a_plugin.wasm'));
  const refusedUpload = await text(page, '[data-upload="422"]');
  if (!/request [0-9a-f-]{36}/.test(refusedUpload)) fail(`the refused upload showed ${refusedUpload}`);
  // A version's status: the uploaded one is deprecated, then made active again.
  await page.click('button[aria-label^="Deprecate hostile "]');
  await page.waitForSelector('button[aria-label^="Activate hostile "]', { timeout: 10000 });
  await page.click('button[aria-label^="Activate hostile "]');
  await page.waitForSelector('button[aria-label^="Deprecate hostile "]', { timeout: 10000 });
  await shoot(page, 'plugins');
  await visit(page, '#/systems');
  await shoot(page, 'systems');
  await visit(page, '#/systems/vpic');
  if ((await page.locator('[data-operation=decode_vin]').count()) !== 1) fail('vpic has no decode_vin operation shown');
  await page.click('button:has-text("Ping")');
  await page.waitForSelector('[data-ping]', { timeout: 15000 });
  await shoot(page, 'system');
  await visit(page, '#/connections');
  await shoot(page, 'connections');

  // Canonical data, with the record's lineage.
  await visit(page, '#/canonical');
  await shoot(page, 'canonical');
  await visit(page, '#/canonical/customer');
  await shoot(page, 'canonical-records');
  for (const [city, rows] of [['London', 1], ['Paris', 0]]) {
    await page.selectOption('select[name=field]', 'city');
    await page.fill('input[name=value]', city);
    await page.evaluate(() => { document.body.dataset.ready = '0'; });
    await page.click('form.filters button[type=submit]');
    await page.waitForFunction(() => document.body.dataset.ready === '1', null, { timeout: 20000 });
    const shown = await page.locator('main table').first().locator('tbody tr').count();
    if (!page.url().includes(`city=${city}`) || (rows === 0 ? (await page.locator('main table').count()) !== 1 : shown !== rows)) {
      fail(`filtering customers by city ${city} shows ${shown} rows`);
    }
  }
  await visit(page, `#/canonical/customer/${customer.id}`);
  if (!(await text(page, 'pre.json')).includes('ada@example.com')) fail('the admin does not see the customer e-mail');
  if (!(await text(page, '[data-lineage]')).includes('api')) fail('no lineage');
  await shoot(page, 'canonical-record');

  // Alerts: the form asks per type; the test button delivers.
  await visit(page, '#/alerts');
  await page.click('summary:has-text("New alert rule")');
  await page.selectOption('select[name=type]', 'consecutive_failures');
  if ((await page.locator('[data-type-fields] input[name=threshold]').count()) !== 1) fail('consecutive_failures asks no threshold');
  await page.fill('input[name=name]', 'Three in a row');
  await page.click('form.rule button[type=submit]');
  await page.waitForSelector('td >> text=Three in a row', { timeout: 15000 });
  await page.click('button:has-text("Test")');
  await page.waitForSelector('[data-alert-test]', { timeout: 20000 });
  await shoot(page, 'alerts');

  // Settings, users, an API key shown once, a webhook with its curl, enterprises.
  await visit(page, '#/settings');
  await shoot(page, 'settings');
  await visit(page, '#/users');
  await shoot(page, 'users');
  await visit(page, '#/api-keys');
  await page.fill('input[name=key_name]', 'ci');
  await page.click('form button[type=submit]');
  const key = await text(page, '[data-secret]');
  if (!key.startsWith('dbp_')) fail(`the API key shown: ${key}`);
  await shoot(page, 'api-keys');
  await visit(page, '#/webhooks');
  await page.fill('input[name=webhook_name]', 'Lead in');
  await page.selectOption('select[name=orchestration_id]', lookupId);
  await page.click('form button[type=submit]');
  const curl = await text(page, '[data-curl]');
  if (!curl.includes('X-Webhook-Signature') || !curl.includes('openssl dgst -sha256 -hmac')) fail(`curl: ${curl}`);
  // The command works as shown (with the VIN filled in): the server accepts its signature.
  const triggered = execFileSync('bash', ['-c', `${curl.replace("'{\"vin\":\"…\"}'", `'{"vin":"${VIN}"}'`)} -sS`], { encoding: 'utf8' });
  if (!triggered.includes('execution_id')) fail(`the webhook's curl answered ${triggered}`);
  await shoot(page, 'webhooks');
  await visit(page, '#/enterprises');
  await shoot(page, 'enterprises');

  // An unchanged save changes nothing: each edit form, saved as it opened, leaves its resource
  // byte-identical apart from updated_at. The console edits connections, orchestrations and the
  // settings in forms; alert rules and webhooks have none, and a user's role and status change
  // one field at a time. The connection is the one that lost its settings: host-managed api-key
  // auth, a static header and resilience, none of which its form shows.
  const dealer = await call(adminToken, 'POST', '/connections', {
    name: 'dealer', system: 'vpic', config: { base_url: `http://${upstreamHost}/vpic` }, credentials: { api_key: 'k-dealer-5678' },
    allowed_hosts: [upstreamHost], auth: { type: 'api_key', header: 'X-Dealer-Key', key: 'dealer-key-9012' }, headers: { 'X-Dealer': '42' },
    resilience: { circuit_breaker: { failure_threshold: 3, open_ms: 5000 }, rate_limit: { requests_per_minute: 30 } },
  });
  const stored = async (path) => {
    const { updated_at: _ignored, ...rest } = await call(adminToken, 'GET', path);
    return JSON.stringify(rest);
  };
  const saves = [
    [`/connections/${dealer.id}`, `#/connections/${dealer.id}`, async () => {
      await page.click('details.edit summary');
      await page.evaluate(() => { document.body.dataset.ready = '0'; });
      await page.click('details.edit form button[type=submit]');
      await page.waitForFunction(() => document.body.dataset.ready === '1', null, { timeout: 20000 });
    }],
    [`/orchestrations/${lookupId}`, `#/orchestrations/${lookupId}/edit`, async () => {
      await page.click('[data-save]');
      await page.waitForFunction((id) => location.hash === `#/orchestrations/${id}` && document.body.dataset.ready === '1', lookupId, { timeout: 20000 });
    }],
    ['/settings', '#/settings', async () => {
      await page.click('button:has-text("Save settings")');
      await page.waitForSelector('p.notice[role=status]', { timeout: 15000 });
    }],
  ];
  for (const [path, hash, save] of saves) {
    const before = await stored(path);
    await visit(page, hash);
    await save();
    const problem = page.locator('main .notice.error');
    if ((await problem.count()) > 0) fail(`saving ${hash} unchanged showed ${await problem.first().textContent()}`);
    const after = await stored(path);
    if (after !== before) fail(`saving ${hash} unchanged changed ${path}: ${before} became ${after}`);
  }

  // The failure of the first run fired the rule: the dashboard lists it.
  await visit(page, '#/dashboard');
  if ((await page.locator('[data-section=alerts] tbody tr').count()) < 1) fail('the dashboard lists no fired alert');

  // A viewer sees every page and no write action.
  await call(adminToken, 'POST', '/users', { email: 'viewer@check.example', name: 'Vera Viewer', role: 'viewer', password: 'viewer-password-1' });
  const viewer = await newPage();
  await signIn(viewer, 'viewer@check.example', 'viewer-password-1');
  const writes = 'form.run, [data-save], [data-dropzone], details.edit, .actions button, a.button.primary, button.danger, form.test-runner, th:text-is("Actions")';
  for (const hash of ['#/dashboard', '#/orchestrations', `#/orchestrations/${lookupId}`, '#/executions', '#/api-calls', '#/plugins',
    '#/systems/vpic', '#/connections', '#/canonical/customer', '#/alerts', '#/settings', '#/users', '#/api-keys', '#/webhooks']) {
    await visit(viewer, hash);
    const found = await viewer.locator(writes).count();
    if (found > 0) fail(`the viewer sees ${found} write actions on ${hash}`);
  }
  if ((await viewer.locator('#nav a[data-nav=enterprises]').count()) !== 0) fail('the viewer sees the enterprises page');
  await visit(viewer, `#/canonical/customer/${customer.id}`);
  if ((await text(viewer, 'pre.json')).includes('ada@example.com')) fail('the viewer sees the customer e-mail');
  await shoot(viewer, 'viewer-record');
  await visit(viewer, `#/orchestrations/${lookupId}`);
  await shoot(viewer, 'viewer-orchestration');

  // A second enterprise sees nothing of the first.
  await call(adminToken, 'POST', '/enterprises', { name: 'Southside Motors', admin_email: 'admin@southside.example', admin_password: 'southside-password-1' });
  const other = await newPage();
  await signIn(other, 'admin@southside.example', 'southside-password-1');
  for (const hash of ['#/dashboard', '#/orchestrations', '#/executions', '#/api-calls', '#/connections', '#/webhooks', '#/alerts', '#/canonical/customer', '#/plugins']) {
    await visit(other, hash);
    const content = await other.locator('main').textContent();
    for (const theirs of ['Lead routing', 'VIN lookup', 'vpic-test', 'Ada Lovelace', 'Three in a row', 'hostile']) {
      if (content.includes(theirs)) fail(`the second enterprise sees "${theirs}" on ${hash}`);
    }
  }
  await shoot(other, 'second-enterprise');

  // An ended session (a token the server no longer accepts) returns to sign-in; sign out.
  await page.evaluate(() => sessionStorage.setItem('dibop.token', 'expired.token.value'));
  await page.reload({ waitUntil: 'networkidle' });
  const ended = await text(page, 'main .notice');
  if (!ended.includes('session has ended')) fail(`after the session ended: ${ended}`);
  // Signing in and reaching a page work from the keyboard alone.
  await page.focus('input[name=email]');
  await page.keyboard.type(process.env.DIBOP_EMAIL);
  await page.keyboard.press('Tab');
  await page.keyboard.type(process.env.DIBOP_PASSWORD);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#nav a[data-nav=executions]', { timeout: 15000 });
  await page.waitForFunction(() => document.body.dataset.ready === '1', null, { timeout: 20000 });
  let reached = false;
  for (let i = 0; i < 20 && !reached; i += 1) {
    await page.keyboard.press('Shift+Tab');
    reached = await page.evaluate(() => document.activeElement?.dataset?.nav === 'executions');
  }
  if (!reached) fail('the navigation is not reachable by keyboard');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => location.hash === '#/executions' && document.body.dataset.ready === '1', null, { timeout: 20000 });
  await page.click('#signout');
  await page.waitForSelector('form.signin');
  if ((await page.evaluate(() => sessionStorage.getItem('dibop.token'))) !== null) fail('the token outlived sign-out');

  if (foreign.length > 0) fail(`the console reached outside the server: ${foreign.join(', ')}`);
  if (errors.length > 0) fail(`page errors: ${errors.join('; ')}`);
  writeFileSync(join(shots, 'axe.json'), JSON.stringify(axeFindings, null, 2));
  const blocking = axeFindings.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (blocking.length > 0) fail(`axe-core: ${blocking.map((v) => `${v.page}: ${v.id} (${v.impact}) ${v.help} at ${v.nodes.join(', ')}`).join('; ')}`);
  const minor = axeFindings.map((v) => `${v.page}: ${v.id} (${v.impact})`);
  console.log(`axe-core: ${pagesChecked} page states checked, 0 serious or critical violations${minor.length ? `; moderate/minor: ${minor.join(', ')}` : ''}`);
  console.log(`first load of the console: ${firstLoad}`);
  console.log(`console check passed; screenshots in ${shots}`);
} catch (error) {
  console.error(`console check FAILED: ${error instanceof Failure ? error.message : error.stack}`);
  // What each open page showed, for the one who reads the failure.
  for (const [i, open] of opened.entries()) {
    await open.screenshot({ path: join(shots, `failure-${i}.png`), fullPage: true }).catch(() => {});
  }
  process.exitCode = 1;
} finally {
  await browser.close();
  upstream.close();
}
