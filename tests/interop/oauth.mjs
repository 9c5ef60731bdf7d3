// An MCP client signs in with OAuth instead of a key: the official TypeScript MCP SDK's `auth()`
// with an in-memory OAuthClientProvider, against `prom serve --demo`, while headless Chromium
// (Debian's /usr/bin/chromium, driven by playwright-core) does the person's part.
// Run by crates/prom/tests/browser.rs with access tokens that last 3 seconds.
//
// the person signs in, adds test funds and a large allowance for `demo` (so only the grant's cap
// can stop the agent) → a call without credentials is answered 401 with resource_metadata, one
// with a bad key without it → auth() discovers, registers and asks for a redirect → the browser
// opens it, the consent page names the app, the service and the fortune price; the person allows
// with a cap of 600 → the callback gets code, state and iss → auth() exchanges the code → the SDK
// client lists tools, calls echo and fortune twice (500 of 600) → the access token expires, the
// transport's 401 makes the SDK refresh (new access and refresh token) → a third fortune is
// refused with ALLOWANCE_EXCEEDED naming the cap of 600 → Connected apps shows 500 / 600 → the
// old refresh token presented again is refused and revokes the grant: the next call gets 401
// even after the SDK tries to refresh.
//
// Environment:
//   BASE_URL   the server, e.g. http://127.0.0.1:7070 (also the OAuth issuer)
//   MCP_URL    the demo service, BASE_URL/mcp/demo (fortune costs 250)
//   EMAIL      the demo owner, demo@prometheus.local
//   PASSWORD   the demo owner's password (`prom serve --demo` prints it)
//   SHOTS_DIR  where screenshots go (optional: none without it)
//   CHROMIUM   the browser (default /usr/bin/chromium)
//   TIMEOUT_MS give up after this long (default 120000)

import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';

import { chromium } from 'playwright-core';
import { auth, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { ECHO_TEXT, requireEnv, textOf } from './lib.mjs';

const BASE = requireEnv('BASE_URL');
const MCP_URL = requireEnv('MCP_URL');
const EMAIL = requireEnv('EMAIL');
const PASSWORD = requireEnv('PASSWORD');
const SHOTS = process.env.SHOTS_DIR || null;
const SLUG = 'demo';
const CLIENT_NAME = 'interop OAuth test';
const PRICE = 250;
const CAP = 600;
const steps = [];

function step(text) {
  steps.push(text);
  console.error(`-- ${text}`);
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function shot(page, name) {
  if (SHOTS) await page.screenshot({ path: join(SHOTS, `oauth-${name}.png`), fullPage: true });
}

/** A loopback server for the redirect back from the authorization server; resolves with its query. */
async function startCallbackServer() {
  let arrived;
  const callback = new Promise((resolve) => {
    arrived = resolve;
  });
  const server = createServer((request, response) => {
    const url = new URL(request.url, 'http://127.0.0.1');
    if (url.pathname !== '/callback') {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    response.end('<!doctype html><title>Connected</title><p id="done">You can close this window.</p>');
    arrived(Object.fromEntries(url.searchParams));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${server.address().port}/callback`, callback };
}

/** The SDK's OAuthClientProvider, kept in memory, recording what the SDK hands it. */
class MemoryProvider {
  constructor(redirectUrl) {
    this.redirectUrl = redirectUrl;
    this.clientMetadata = {
      client_name: CLIENT_NAME,
      redirect_uris: [redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
    this.stateValue = randomBytes(16).toString('hex');
    this.client = undefined;
    this.saved = undefined;
    this.savedTokens = [];
    this.verifier = undefined;
    this.authorizationUrls = [];
    this.invalidated = [];
  }

  state() {
    return this.stateValue;
  }

  clientInformation() {
    return this.client;
  }

  saveClientInformation(information) {
    this.client = information;
  }

  tokens() {
    return this.saved;
  }

  saveTokens(tokens) {
    this.saved = tokens;
    this.savedTokens.push(tokens);
  }

  redirectToAuthorization(url) {
    this.authorizationUrls.push(new URL(url));
  }

  saveCodeVerifier(verifier) {
    this.verifier = verifier;
  }

  codeVerifier() {
    if (!this.verifier) throw new Error('no code verifier saved');
    return this.verifier;
  }

  invalidateCredentials(scope) {
    this.invalidated.push(scope);
    if (scope === 'all' || scope === 'client') this.client = undefined;
    if (scope === 'all' || scope === 'tokens') this.saved = undefined;
    if (scope === 'all' || scope === 'verifier') this.verifier = undefined;
  }
}

/** fetch, recording each request's method, path and answer status. */
function recordingFetch(log) {
  return async (input, init) => {
    const response = await fetch(input, init);
    const url = new URL(input instanceof Request ? input.url : String(input));
    log.push({ method: init?.method ?? (input instanceof Request ? input.method : 'GET'), path: url.pathname, status: response.status });
    return response;
  };
}

/** A paid or free call: its result, or the JSON-RPC error the SDK threw. */
async function call(client, name, args = {}) {
  try {
    return { result: await client.callTool({ name, arguments: args }) };
  } catch (error) {
    return { error: { name: error?.constructor?.name, code: error.code, message: error.message, data: error.data } };
  }
}

async function postMcp(headers) {
  return fetch(MCP_URL, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'oauth-probe', version: '1' } },
    }),
  });
}

async function main() {
  if (SHOTS) mkdirSync(SHOTS, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  });
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  const pageErrors = [];
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  page.on('console', (message) => {
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
      pageErrors.push(message.text());
    }
  });
  const callbacks = await startCallbackServer();

  step('the person signs in, adds test funds and a large allowance for demo');
  await page.goto(`${BASE}/app/login`);
  await page.fill('#email', EMAIL);
  await page.fill('#password', PASSWORD);
  await Promise.all([page.waitForURL(/\/app\/store/), page.click('form[action="/app/login"] button[type=submit]')]);
  await page.goto(`${BASE}/app/wallet`);
  await page.fill('#fund-amount', '100000');
  await Promise.all([page.waitForURL(/notice=funded/), page.click('#fund-form button[type=submit]')]);
  await page.goto(`${BASE}/app/store/${SLUG}`);
  await page.fill('#allowance-amount', '100000');
  await Promise.all([page.waitForURL(/notice=allowance_saved/), page.click('#allowance-form button[type=submit]')]);
  const allowance = (await page.textContent('#allowance')).replace(/[^0-9]/g, '');
  check(allowance.includes('100000'), `the allowance shows 100000: ${await page.textContent('#allowance')}`);

  step('discovery: no credential → 401 naming the resource metadata; a bad key → 401 without it');
  const bare = await postMcp({});
  const challenge = bare.headers.get('www-authenticate') ?? '';
  check(bare.status === 401, `a call without credentials gets 401 (got ${bare.status})`);
  const metadataUrl = `${BASE}/.well-known/oauth-protected-resource/mcp/${SLUG}`;
  check(challenge.includes(`resource_metadata="${metadataUrl}"`), `WWW-Authenticate names ${metadataUrl}: ${challenge}`);
  const badKey = await postMcp({ 'x-api-key': `prom_live_${'0'.repeat(64)}` });
  const badChallenge = badKey.headers.get('www-authenticate') ?? '';
  check(badKey.status === 401, `a bad key gets 401 (got ${badKey.status})`);
  check(!badChallenge.includes('resource_metadata'), `a bad key is not sent to OAuth: ${badChallenge}`);
  const resource = await (await fetch(metadataUrl)).json();
  check(resource.resource === MCP_URL, `the protected resource is ${MCP_URL}: ${JSON.stringify(resource)}`);
  check(JSON.stringify(resource.authorization_servers) === JSON.stringify([BASE]), `the authorization server is ${BASE}`);

  step('auth() discovers, registers the client and asks for a redirect');
  const provider = new MemoryProvider(callbacks.url);
  const first = await auth(provider, { serverUrl: MCP_URL });
  check(first === 'REDIRECT', `auth() asks for the browser (got ${first})`);
  check(provider.client?.client_id, `the client registered: ${JSON.stringify(provider.client)}`);
  check(provider.authorizationUrls.length === 1, 'auth() handed over one authorization URL');
  const authorizationUrl = provider.authorizationUrls[0];
  check(authorizationUrl.href.startsWith(`${BASE}/oauth/authorize?`), `it is this server's: ${authorizationUrl}`);
  check(authorizationUrl.searchParams.get('resource') === MCP_URL, `it asks for the resource ${MCP_URL}`);

  step('the browser opens it: the consent page names the app, the service and its price');
  await page.goto(authorizationUrl.href);
  await page.waitForSelector('#consent-allow');
  check(new URL(page.url()).pathname === '/app/connect', `the consent page is /app/connect: ${page.url()}`);
  const consent = await page.textContent('main, body');
  check(consent.includes(CLIENT_NAME), 'the consent page names the client');
  check(consent.includes('Prometheus demo') && consent.includes(SLUG), 'the consent page names the service');
  const prices = await page.textContent('table.prices');
  check(/fortune\s*250/.test(prices), `the consent page shows fortune at ${PRICE}: ${prices}`);
  await shot(page, '01-consent');

  step(`the person allows with a cap of ${CAP}: the browser lands on the callback`);
  await page.fill('#consent-cap', String(CAP));
  check((await page.inputValue('#consent-days')) !== '', 'the days have a default');
  await Promise.all([page.waitForURL((url) => url.href.startsWith(callbacks.url)), page.click('#consent-allow')]);
  const back = await callbacks.callback;
  check(back.code && !back.error, `the callback got a code: ${JSON.stringify(back)}`);
  check(back.state === provider.stateValue, `state is echoed (${back.state})`);
  check(back.iss === BASE, `iss is the issuer ${BASE} (got ${back.iss})`);

  step('auth() exchanges the code');
  const second = await auth(provider, { serverUrl: MCP_URL, authorizationCode: back.code });
  check(second === 'AUTHORIZED', `auth() with the code is AUTHORIZED (got ${second})`);
  check(provider.savedTokens.length === 1, `one set of tokens saved (${provider.savedTokens.length})`);
  const issued = provider.savedTokens[0];
  check(/^prom_at_[0-9a-f]{64}$/.test(issued.access_token), `an access token prom_at_… (${issued.access_token?.slice(0, 10)}…)`);
  check(/^prom_rt_/.test(issued.refresh_token ?? ''), 'a refresh token prom_rt_…');
  check(issued.expires_in <= 3, `access tokens last 3 s here (expires_in ${issued.expires_in})`);

  step('the SDK client lists tools, calls echo and fortune twice (500 of the cap of 600)');
  const wire = [];
  const transport = new StreamableHTTPClientTransport(new URL(MCP_URL), {
    authProvider: provider,
    fetch: recordingFetch(wire),
  });
  const client = new Client({ name: 'oauth-interop-agent', version: '1.0.0' });
  await client.connect(transport);
  const { tools } = await client.listTools();
  const names = tools.map((tool) => tool.name);
  check(names.includes('echo') && names.includes('fortune'), `echo and fortune are listed: ${names}`);
  const echo = await call(client, 'echo', { text: ECHO_TEXT });
  check(echo.result && textOf(echo.result) === ECHO_TEXT, `echo answers: ${JSON.stringify(echo)}`);
  for (const n of [1, 2]) {
    const fortune = await call(client, 'fortune');
    check(fortune.result && !fortune.result.isError, `fortune ${n} succeeds: ${JSON.stringify(fortune)}`);
  }

  step('the access token expires: the next call gets 401 and the SDK refreshes, rotating both tokens');
  const before = provider.savedTokens.length;
  await sleep(4000);
  wire.length = 0;
  const afterExpiry = await call(client, 'echo', { text: ECHO_TEXT });
  check(afterExpiry.result && textOf(afterExpiry.result) === ECHO_TEXT, `echo after expiry: ${JSON.stringify(afterExpiry)}`);
  const refused = wire.findIndex((r) => r.path === new URL(MCP_URL).pathname && r.status === 401);
  const refreshed = wire.findIndex((r) => r.path === '/oauth/token' && r.status === 200);
  check(refused >= 0 && refreshed > refused, `a 401, then a refresh at /oauth/token: ${JSON.stringify(wire)}`);
  check(provider.savedTokens.length > before, 'saveTokens was called again');
  const rotated = provider.savedTokens[before];
  check(rotated.access_token !== issued.access_token, 'a new access token');
  check(rotated.refresh_token && rotated.refresh_token !== issued.refresh_token, 'a new refresh token (rotation)');

  step(`a third fortune would reach 750: refused with ALLOWANCE_EXCEEDED naming the cap of ${CAP}`);
  const third = await call(client, 'fortune');
  check(third.error, `the third fortune is refused: ${JSON.stringify(third)}`);
  const data = third.error.data ?? {};
  check(data.code === 'ALLOWANCE_EXCEEDED', `data.code is ALLOWANCE_EXCEEDED: ${JSON.stringify(third.error)}`);
  check(data.reason === 'grant_cap_reached', `data.reason is grant_cap_reached: ${JSON.stringify(data)}`);
  check(data.cap === String(CAP), `data.cap is "${CAP}": ${JSON.stringify(data)}`);
  check(third.error.message.includes(String(CAP)), `the message names the cap: ${third.error.message}`);

  step('Connected apps lists the grant: the app, demo, 500 spent of 600');
  let row = '';
  for (let attempt = 0; attempt < 40; attempt += 1) {
    await page.goto(`${BASE}/app/apps`);
    row = (await page.locator('#apps-table tbody tr', { hasText: CLIENT_NAME }).first().textContent({ timeout: 5000 })) ?? '';
    if (/500\s*\/\s*600/.test(row)) break;
    await page.waitForTimeout(250);
  }
  check(row.includes(CLIENT_NAME) && row.includes(SLUG), `the row names the app and the service: ${row}`);
  check(/500\s*\/\s*600/.test(row), `the row shows 500 / 600 spent of the cap: ${row}`);
  check(row.includes('active'), `the grant is active: ${row}`);
  await shot(page, '02-connected-apps');

  step('the first refresh token, used already, is refused and revokes the grant');
  const clientId = provider.client.client_id;
  const reuse = await fetch(`${BASE}/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: issued.refresh_token, client_id: clientId }),
  });
  const reuseBody = await reuse.json().catch(() => ({}));
  check(reuse.status === 400 && reuseBody.error === 'invalid_grant', `reuse gets 400 invalid_grant: ${reuse.status} ${JSON.stringify(reuseBody)}`);

  step('the next call gets 401, and the SDK cannot refresh its way back in');
  const savedBefore = provider.savedTokens.length;
  const urlsBefore = provider.authorizationUrls.length;
  wire.length = 0;
  const afterRevoke = await call(client, 'echo', { text: ECHO_TEXT });
  check(afterRevoke.error, `the call after revocation fails: ${JSON.stringify(afterRevoke)}`);
  const mcp401 = wire.find((r) => r.path === new URL(MCP_URL).pathname && r.status === 401);
  check(mcp401, `the gateway answered 401: ${JSON.stringify(wire)}`);
  const refreshTried = wire.find((r) => r.path === '/oauth/token');
  check(refreshTried?.status === 400, `the SDK's refresh with the newest refresh token is refused: ${JSON.stringify(wire)}`);
  check(provider.savedTokens.length === savedBefore, 'no new tokens were saved');
  check(afterRevoke.error.name === UnauthorizedError.name, `the SDK reports it unauthorized: ${JSON.stringify(afterRevoke.error)}`);
  check(provider.authorizationUrls.length === urlsBefore + 1, 'the SDK asks for the browser again');
  await page.goto(`${BASE}/app/apps`);
  const revokedRow = await page.locator('#apps-table tbody tr', { hasText: CLIENT_NAME }).first().textContent();
  check(revokedRow.includes('revoked'), `Connected apps shows the grant revoked: ${revokedRow}`);
  await shot(page, '03-revoked');

  check(pageErrors.length === 0, `no script errors on any page: ${JSON.stringify(pageErrors)}`);
  await client.close().catch(() => {});
  callbacks.server.close();
  await browser.close();
  console.log(JSON.stringify({ ok: true, steps, client_id: clientId, token_saves: provider.savedTokens.length }));
}

const timeoutMs = Number(process.env.TIMEOUT_MS || 120000);
setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: `timed out after ${timeoutMs} ms`, steps }));
  process.exit(1);
}, timeoutMs).unref();

main().then(
  () => process.exit(0),
  (error) => {
    console.log(JSON.stringify({ ok: false, error: String(error && error.stack ? error.stack : error), steps }));
    process.exit(1);
  },
);
