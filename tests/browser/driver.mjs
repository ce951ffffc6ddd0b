// Runs fetch() cases in Debian's Chromium and prints what the browser decided, as JSON.
//   node driver.mjs PLAN.json
// PLAN: { "chromium": "/usr/bin/chromium", "args": [extra Chromium flags], "steps": [ { "name", "page", "url", "method",
//         "headers", "body", "credentials", "read": [header names], "repeat": N } ] }
// Each step runs in a fresh browser context (its own preflight cache), on `page`, and
// reports every fetch's outcome and the console messages Chromium printed meanwhile.
// Every wait is bounded; the browser is closed on every path.
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const browser = await chromium.launch({
  executablePath: plan.chromium,
  headless: true,
  timeout: 30000,
  args: [
    '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-quic',
    ...(plan.args || []),
  ],
});
const results = [];
try {
  for (const step of plan.steps) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const messages = [];
    page.on('console', (message) => messages.push(message.text()));
    await page.goto(step.page, { timeout: 10000 });
    const outcomes = [];
    for (let i = 0; i < (step.repeat || 1); i++) {
      outcomes.push(await page.evaluate(async (s) => {
        try {
          const response = await fetch(s.url, {
            method: s.method || 'GET',
            headers: s.headers || {},
            body: s.body,
            credentials: s.credentials || 'same-origin',
            mode: 'cors',
            // Default cache mode: Chromium skips its preflight cache for no-store requests.
            cache: s.cache || 'default',
            signal: AbortSignal.timeout(8000),
          });
          const read = {};
          for (const name of s.read || []) read[name] = response.headers.get(name);
          const body = (await response.text()).slice(0, 300);
          return { allowed: true, status: response.status, read, body };
        } catch (e) {
          return { allowed: false, error: String(e) };
        }
      }, step));
    }
    // Console messages for a failed fetch arrive just after the rejection.
    await page.waitForTimeout(150);
    results.push({ name: step.name, outcomes, console: messages });
    await context.close();
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(results) + '\n');
