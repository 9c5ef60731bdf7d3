// The dashboard end to end in a real browser: headless Chromium (Debian's /usr/bin/chromium)
// driven by playwright-core, with an agent on the official TypeScript MCP SDK beside it.
// Run by crates/prom/tests/browser.rs against a fresh `prom serve` (no user yet).
//
// first-run setup → sign out, sign in → add test funds → publish a priced service → create a
// key (reveal once, copy to the clipboard) → reload: the key is on no page → the agent's paid call
// is refused with ALLOWANCE_EXCEEDED → follow manage_url → set an allowance → the call succeeds →
// usage table and chart show it → revoke from the list → the next call gets 401 → the audit log
// shows api_key.create, allowance.approve and api_key.revoke with the actor.
// Every page is screenshotted at desktop and phone widths and checked with axe-core.
//
// Environment:
//   BASE_URL      the server, e.g. http://127.0.0.1:7070
//   SETUP_URL     the one-time setup link `prom serve` printed
//   UPSTREAM_URL  the MCP server to publish (the demo MCP server, with tools echo and fortune)
//   SHOTS_DIR     where screenshots go
//   CHROMIUM      the browser (default /usr/bin/chromium)

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

import { chromium } from 'playwright-core';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { requireEnv } from './lib.mjs';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const BASE = requireEnv('BASE_URL');
const SETUP_URL = requireEnv('SETUP_URL');
const UPSTREAM = requireEnv('UPSTREAM_URL');
const SHOTS = requireEnv('SHOTS_DIR');
const EMAIL = 'ada@example.com';
const PASSWORD = 'a long enough password';
const SLUG = 'fortunes';
const PRICE = '250';

const WIDTHS = { desktop: { width: 1280, height: 900 }, phone: { width: 390, height: 844 } };
const steps = [];
const a11y = [];

function step(text) {
  steps.push(text);
  console.error(`-- ${text}`);
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

/** Screenshots the current page at both widths and runs axe-core on it. */
async function look(page, name) {
  for (const [label, size] of Object.entries(WIDTHS)) {
    await page.setViewportSize(size);
    await page.screenshot({ path: join(SHOTS, `${name}-${label}.png`), fullPage: true });
    // Readable at this width: nothing makes the page itself scroll sideways (wide tables and code
    // scroll inside their own boxes).
    const overflow = await page.evaluate(() => {
      const width = document.documentElement.clientWidth;
      if (document.documentElement.scrollWidth <= width + 1) return null;
      const wide = [...document.querySelectorAll('body *')]
        .filter((el) => el.getBoundingClientRect().right > width + 1)
        .filter((el) => {
          for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
            if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(up).overflowX)) return false;
          }
          return true;
        })
        .slice(0, 5)
        .map((el) => `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}.${el.className}`);
      const spilling = [...document.querySelectorAll('body, body *')]
        .filter((el) => el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX === 'visible')
        .slice(0, 6)
        .map((el) => `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}.${el.className} ${el.scrollWidth}/${el.clientWidth}`);
      return { scrollWidth: document.documentElement.scrollWidth, width, wide, spilling };
    });
    if (overflow) throw new Error(`${name} scrolls sideways at ${label} width: ${JSON.stringify(overflow)}`);
  }
  // The page's CSP forbids inline script; the context bypasses CSP for this injection only.
  await page.evaluate(AXE_SOURCE);
  for (const [label, size] of Object.entries(WIDTHS)) {
    await page.setViewportSize(size);
    const result = await page.evaluate(async () => {
      // eslint-disable-next-line no-undef
      const outcome = await axe.run(document, { resultTypes: ['violations'] });
      return outcome.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length,
        targets: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
    });
    const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    a11y.push({ page: name, width: label, url: page.url(), violations: result });
    if (bad.length > 0) {
      throw new Error(`axe: serious or critical violations on ${name} at ${label} width (${page.url()}): ${JSON.stringify(bad, null, 1)}`);
    }
  }
  await page.setViewportSize(WIDTHS.desktop);
}

async function agent(key) {
  const transport = new StreamableHTTPClientTransport(new URL(`${BASE}/mcp/${SLUG}`), {
    requestInit: { headers: { Authorization: `Bearer ${key}` } },
  });
  const client = new Client({ name: 'dashboard-e2e-agent', version: '1.0.0' });
  await client.connect(transport);
  return client;
}

/** The paid call: its result, or the JSON-RPC error the gateway answered. */
async function callFortune(key) {
  const client = await agent(key);
  try {
    return { result: await client.callTool({ name: 'fortune', arguments: {} }) };
  } catch (error) {
    return { error: { code: error.code, message: error.message, data: error.data } };
  } finally {
    await client.close();
  }
}

async function pageText(page) {
  return page.evaluate(() => document.documentElement.outerHTML);
}

async function main() {
  mkdirSync(SHOTS, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  });
  const context = await browser.newContext({ bypassCSP: true, viewport: WIDTHS.desktop });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BASE });
  const page = await context.newPage();
  page.on('dialog', (dialog) => dialog.accept());
  const pageErrors = [];
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  page.on('console', (message) => {
    // A page answered with 401 or 404 on purpose (a wrong password, the not-found page) is logged
    // by Chromium as a failed load; only script errors and CSP refusals count.
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
      pageErrors.push(message.text());
    }
  });

  step('first-run setup creates the owner');
  await page.goto(SETUP_URL);
  await look(page, '01-setup');
  await page.fill('#organisation', 'Ada Labs');
  await page.fill('#tenant', 'ada-labs');
  await page.fill('#email', EMAIL);
  await page.fill('#password', PASSWORD);
  await page.fill('#confirm', PASSWORD);
  await Promise.all([page.waitForURL(/\/app\/store/), page.click('button[type=submit]')]);
  await look(page, '02-store-welcome');

  step('sign out, then sign in');
  await Promise.all([page.waitForURL(/\/app\/login/), page.click('form[action="/app/logout"] button')]);
  await look(page, '03-login');
  await page.fill('#email', EMAIL);
  await page.fill('#password', 'wrong password!');
  await page.click('form[action="/app/login"] button[type=submit]');
  check((await page.textContent('.error')).includes('wrong'), 'a wrong password is said in words');
  await page.fill('#password', PASSWORD);
  await Promise.all([page.waitForURL(/\/app\/store/), page.click('form[action="/app/login"] button[type=submit]')]);

  step('add test funds to the wallet');
  await page.goto(`${BASE}/app/wallet`);
  await page.fill('#fund-amount', '100000');
  await Promise.all([page.waitForURL(/notice=funded/), page.click('#fund-form button[type=submit]')]);
  check((await page.textContent('#wallet-balance')).replace(/[^0-9]/g, '') === '100000', 'the balance shows the funds');
  await look(page, '04-wallet');

  step('publish a priced service');
  await page.goto(`${BASE}/app/publish`);
  await look(page, '05-publish');
  await page.fill('#service-slug', SLUG);
  await page.fill('#service-name', 'Fortunes');
  await page.fill('#service-description', 'Wise words, <b>250</b> tokens each.');
  await page.fill('#service-upstream', UPSTREAM);
  await Promise.all([page.waitForURL(new RegExp(`/app/publish/${SLUG}`)), page.click('#publish-form button[type=submit]')]);
  await Promise.all([page.waitForURL(new RegExp(`/app/publish/${SLUG}`)), page.click('#read-tools button[type=submit]')]);
  await page.fill('#price-fortune', PRICE);
  await Promise.all([page.waitForURL(new RegExp(`/app/publish/${SLUG}`)), page.click('#prices-form button[type=submit]')]);
  check((await page.inputValue('#price-fortune')) === PRICE, 'the price is saved');
  await look(page, '06-publish-service');

  step('the App Store lists it');
  await page.goto(`${BASE}/app/store`);
  const storeHtml = await pageText(page);
  check(storeHtml.includes('Fortunes'), 'the store lists the service');
  check(storeHtml.includes('&lt;b&gt;250&lt;/b&gt;'), 'the description is escaped');
  await look(page, '07-store');

  step('create a key: the reveal panel shows it once and the copy button copies it');
  await page.goto(`${BASE}/app/api-keys?service=${SLUG}`);
  await look(page, '08-keys-empty');
  await page.fill('#key-label', 'claude-desktop/laptop');
  await page.click('#create-key button[type=submit]');
  await page.waitForSelector('#reveal');
  const key = await page.inputValue('#new-key');
  check(/^prom_live_[0-9a-f]{64}$/.test(key), `the revealed key has the documented format (${key.slice(0, 14)}…)`);
  await page.click('#copy-key');
  const clipboard = await page.evaluate(() => navigator.clipboard.readText());
  check(clipboard === key, 'the copy button puts the key on the clipboard');
  const revealHtml = await pageText(page);
  check(revealHtml.includes('PROMETHEUS_API_KEY'), 'the reveal panel has a ready-to-paste configuration');
  await look(page, '09-keys-reveal');

  step('after a reload the full key is on no page');
  const pages = ['/app/api-keys', '/app/store', `/app/store/${SLUG}`, '/app/wallet', '/app/usage', '/app/audit',
    '/app/publish', `/app/publish/${SLUG}`, '/app/members'];
  for (const path of pages) {
    await page.goto(`${BASE}${path}`);
    check(!(await pageText(page)).includes(key), `the key is not on ${path}`);
  }
  await page.goto(`${BASE}/app/api-keys`);
  check((await pageText(page)).includes(`prom_live_...${key.slice(-4)}`), 'the list shows the display form');
  await look(page, '10-keys-list');

  step('the agent is refused with ALLOWANCE_EXCEEDED and a manage_url');
  const refused = await callFortune(key);
  check(refused.error, `the call without an allowance is refused: ${JSON.stringify(refused)}`);
  check(refused.error.data && refused.error.data.code === 'ALLOWANCE_EXCEEDED', `ALLOWANCE_EXCEEDED: ${JSON.stringify(refused.error)}`);
  const manageUrl = refused.error.data.manage_url;
  check(manageUrl.endsWith(`/app/store/${SLUG}`), `manage_url is the service page: ${manageUrl}`);

  step('follow manage_url and set an allowance');
  await page.goto(manageUrl);
  await look(page, '11-service');
  await page.fill('#allowance-amount', '1000');
  await Promise.all([page.waitForURL(new RegExp(`/app/store/${SLUG}`)), page.click('#allowance-form button[type=submit]')]);
  check((await page.textContent('#allowance')).includes('1,000') || (await page.textContent('#allowance')).includes('1000'),
    'the allowance shows the amount');
  await look(page, '12-service-allowance');

  step('the call succeeds');
  const paid = await callFortune(key);
  check(paid.result && !paid.result.isError, `the paid call succeeds: ${JSON.stringify(paid)}`);

  step('usage and its chart show the call');
  let usageHtml = '';
  for (let attempt = 0; attempt < 40; attempt += 1) {
    await page.goto(`${BASE}/app/usage?group=tool`);
    usageHtml = await pageText(page);
    if (usageHtml.includes('fortune') && usageHtml.includes('250')) break;
    await page.waitForTimeout(250);
  }
  check(usageHtml.includes('fortune'), 'the usage table names the tool');
  check(usageHtml.includes('250'), 'the usage table shows the spend');
  const bars = await page.locator('#usage-chart rect').count();
  check(bars > 0, 'the chart has bars');
  await look(page, '13-usage');

  step('revoke the key from the list; the next call gets 401');
  await page.goto(`${BASE}/app/api-keys`);
  await page.click('#keys a[href$="/revoke"]');
  await look(page, '14-revoke-confirm');
  await Promise.all([page.waitForURL(/notice=revoked/), page.click('#confirm-revoke button[type=submit]')]);
  const after = await fetch(`${BASE}/mcp/${SLUG}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  });
  check(after.status === 401, `a revoked key gets 401 (got ${after.status})`);

  step('the audit log shows the key, the approval and the revocation with the actor');
  await page.goto(`${BASE}/app/audit`);
  const auditText = await page.textContent('#audit-table');
  for (const action of ['api_key.create', 'allowance.approve', 'api_key.revoke']) {
    check(auditText.includes(action), `the audit log shows ${action}`);
  }
  check(auditText.includes(EMAIL), 'the audit log names the actor');
  await look(page, '15-audit');

  step('the remaining pages');
  await page.goto(`${BASE}/app/members`);
  await look(page, '16-members');
  await page.goto(`${BASE}/app/wallet`);
  await look(page, '17-wallet-after');
  await page.goto(`${BASE}/app/no-such-page`);
  await look(page, '18-not-found');

  check(pageErrors.length === 0, `no script errors on any page: ${JSON.stringify(pageErrors)}`);
  writeFileSync(join(SHOTS, 'axe.json'), JSON.stringify(a11y, null, 1));
  await browser.close();
  console.log(JSON.stringify({ ok: true, steps, pages_checked: a11y.length,
    minor_violations: a11y.reduce((n, p) => n + p.violations.length, 0) }));
}

main().catch((error) => {
  console.log(JSON.stringify({ ok: false, error: String(error && error.stack ? error.stack : error), steps }));
  process.exit(1);
});
