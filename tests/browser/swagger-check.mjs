// Loads the Swagger UI of a running DIBOP server in headless Chromium, authorizes with a bearer
// token through the "Authorize" dialog, runs `GET /api/v1/settings` with "Try it out" and checks
// the answer, as a user would. Fails if the page asks anything of a host other than the server,
// or if its Content-Security-Policy refuses anything the page needs.
//
// Usage: DIBOP_URL=http://127.0.0.1:8080 DIBOP_EMAIL=... DIBOP_PASSWORD=... node swagger-check.mjs [screenshot.png]
import { chromium } from 'playwright-core';
import { launchOptions, token as login } from './common.mjs';

const base = process.env.DIBOP_URL ?? 'http://127.0.0.1:8080';
const screenshot = process.argv[2] ?? 'swagger-check.png';

function fail(message) {
  console.error(`swagger check FAILED: ${message}`);
  process.exit(1);
}

const token = await login(base, fail);

const browser = await chromium.launch(launchOptions);
try {
  const page = await browser.newPage();
  const foreign = [];
  page.on('request', (request) => {
    const url = request.url();
    if (!url.startsWith(base) && !url.startsWith('data:')) foreign.push(url);
  });
  const errors = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  // A Content-Security-Policy violation ("Refused to ...") is logged as a console error.
  page.on('console', (message) => {
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) errors.push(message.text());
  });

  const docs = await page.goto(`${base}/api/v1/docs/`, { waitUntil: 'networkidle' });
  const policy = docs.headers()['content-security-policy'] ?? '';
  if (!policy.includes("frame-ancestors 'none'") || !policy.includes("script-src 'self'")) fail(`the Swagger UI's policy: ${policy}`);
  await page.waitForSelector('.swagger-ui .info .title', { timeout: 15000 });
  const title = await page.textContent('.swagger-ui .info .title');
  if (!title.includes('DIBOP API')) fail(`unexpected title ${title}`);

  // Authorize with the bearer token.
  await page.click('.swagger-ui .auth-wrapper button.authorize');
  await page.fill('.modal-ux input', token);
  await page.click('.modal-ux .auth-btn-wrapper button.authorize');
  await page.click('.modal-ux .auth-btn-wrapper button.btn-done');

  // Try GET /api/v1/settings.
  const operation = '#operations-settings-get_settings';
  await page.click(`${operation} .opblock-summary`);
  await page.click(`${operation} button.try-out__btn`);
  await page.click(`${operation} button.execute`);
  const status = page.locator(`${operation} .live-responses-table .response .response-col_status`).first();
  await status.waitFor({ timeout: 15000 });
  const code = (await status.textContent()).trim();
  const body = await page.locator(`${operation} .live-responses-table .response-col_description pre`).first().textContent();
  await page.screenshot({ path: screenshot, fullPage: false });

  if (code !== '200') fail(`GET /api/v1/settings answered ${code}: ${body}`);
  if (!body.includes('"session_duration_minutes"')) fail(`unexpected body ${body}`);
  if (foreign.length > 0) fail(`the page reached outside the server: ${foreign.join(', ')}`);
  if (errors.length > 0) fail(`page errors: ${errors.join('; ')}`);
  console.log(`swagger check passed: authorized, GET /api/v1/settings -> ${code}; screenshot ${screenshot}`);
} finally {
  await browser.close();
}
