// What the browser checks share: a token for their own API calls (DIBOP_EMAIL, DIBOP_PASSWORD).
export async function token(base, fail) {
  const login = await fetch(`${base}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: process.env.DIBOP_EMAIL, password: process.env.DIBOP_PASSWORD }),
  });
  if (!login.ok) fail(`login answered ${login.status}`);
  return (await login.json()).access_token;
}

/** Headless Debian Chromium, without anything that would reach outside. */
export const launchOptions = {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
};
