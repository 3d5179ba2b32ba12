// The web console in headless Chromium, as a user meets it: `/` leads to the sign-in page; a
// wrong password shows the API's message and request id; signing in shows the dashboard (SLA
// banner, system tiles, recent failures); an ended session returns to sign-in saying so; sign
// out. Fails on any page error, any request to a host other than the server, or any
// Content-Security-Policy violation. Screenshots go to the folder given as the argument.
//
// Usage: DIBOP_URL=http://127.0.0.1:8080 DIBOP_EMAIL=... DIBOP_PASSWORD=... node console-check.mjs <dir>
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { launchOptions, token as login } from './common.mjs';

const base = process.env.DIBOP_URL ?? 'http://127.0.0.1:8080';
const shots = process.argv[2] ?? 'console-shots';
mkdirSync(shots, { recursive: true });

function fail(message) {
  console.error(`console check FAILED: ${message}`);
  process.exit(1);
}

// Something to show: an orchestration with one successful and one failed run.
const token = await login(base, fail);
const call = async (method, path, body) => {
  const response = await fetch(`${base}/api/v1${path}`, {
    method,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return response.json();
};
const created = await call('POST', '/orchestrations', {
  name: 'Lead routing',
  parameters: [{ name: 'lead', type: 'object', required: true }],
  steps: [{ name: 'route', type: 'transform', transform: 'map', mapping: { region: '${parameters.lead.region}' } }],
  output: { region: '${route.region}' },
});
// One run that succeeds, one whose lead has no region (its step fails).
await call('POST', `/orchestrations/${created.id}/execute`, { parameters: { lead: { region: 'east' } } });
await call('POST', `/orchestrations/${created.id}/execute`, { parameters: { lead: {} } });

const browser = await chromium.launch(launchOptions);
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const foreign = [];
  const errors = [];
  page.on('request', (request) => {
    const url = request.url();
    if (!url.startsWith(base) && !url.startsWith('data:')) foreign.push(url);
  });
  page.on('pageerror', (error) => errors.push(String(error)));
  page.on('console', (message) => {
    if (message.type() === 'error' && !message.text().includes('401')) errors.push(message.text());
  });

  await page.goto(`${base}/`, { waitUntil: 'networkidle' });
  if (!page.url().startsWith(`${base}/console/`)) fail(`/ led to ${page.url()}`);
  await page.waitForSelector('form.signin');
  await page.fill('input[name=email]', process.env.DIBOP_EMAIL);
  await page.fill('input[name=password]', 'not-the-password');
  await page.click('button[type=submit]');
  const refused = await page.locator('.notice.error').first().textContent({ timeout: 10000 });
  if (!/invalid email or password/i.test(refused) || !/request [0-9a-f-]{36}/.test(refused)) {
    fail(`the refused sign-in showed ${refused}`);
  }
  await page.screenshot({ path: `${shots}/signin.png` });

  await page.fill('input[name=password]', process.env.DIBOP_PASSWORD);
  await page.click('button[type=submit]');
  await page.waitForSelector('[data-sla]', { timeout: 15000 });
  const banner = await page.locator('[data-sla]').first().textContent();
  if (!banner.includes('Lead routing') || !banner.includes('of 2 runs')) fail(`SLA banner: ${banner}`);
  const tiles = await page.locator('[data-system]').count();
  if (tiles < 1) fail('no system tiles');
  const failures = await page.locator('main table tbody tr').count();
  if (failures !== 1) fail(`${failures} recent failures shown, expected 1`);
  await page.screenshot({ path: `${shots}/dashboard.png`, fullPage: true });

  // A narrow window still shows the dashboard.
  await page.setViewportSize({ width: 420, height: 800 });
  await page.screenshot({ path: `${shots}/dashboard-narrow.png`, fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });

  // An ended session (here: a token the server no longer accepts) returns to sign-in.
  await page.evaluate(() => sessionStorage.setItem('dibop.token', 'expired.token.value'));
  await page.reload({ waitUntil: 'networkidle' });
  const ended = await page.locator('main .notice').first().textContent({ timeout: 10000 });
  if (!ended.includes('session has ended')) fail(`after the session ended: ${ended}`);

  // Sign in again, then out.
  await page.fill('input[name=email]', process.env.DIBOP_EMAIL);
  await page.fill('input[name=password]', process.env.DIBOP_PASSWORD);
  await page.click('button[type=submit]');
  await page.waitForSelector('[data-sla]', { timeout: 15000 });
  await page.click('#signout');
  await page.waitForSelector('form.signin');
  if ((await page.evaluate(() => sessionStorage.getItem('dibop.token'))) !== null) fail('the token outlived sign-out');

  if (foreign.length > 0) fail(`the console reached outside the server: ${foreign.join(', ')}`);
  if (errors.length > 0) fail(`page errors: ${errors.join('; ')}`);
  console.log(`console check passed: sign-in, dashboard, session end, sign-out; screenshots in ${shots}`);
} finally {
  await browser.close();
}
