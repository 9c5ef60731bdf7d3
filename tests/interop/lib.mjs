// Shared by the interop scripts: reading the target from the environment, the calls every script
// makes with the official TypeScript MCP SDK, and printing one JSON result line.
//
// Environment:
//   MCP_URL      the MCP endpoint (the gateway's /mcp/{service}, or an upstream's /mcp)
//   PROM_KEY     the agent key (optional against an upstream that needs none)
//   HEADER_MODE  how http.mjs sends the key: "bearer" (Authorization: Bearer, the default) or "x-api-key"
//   PROM_BIN     the prom binary that stdio.mjs starts as `prom connect MCP_URL`
//   COUNTDOWN_N  how many progress notifications to ask countdown for (default 5)
//   TIMEOUT_MS   give up after this long (default 60000)
//   PROM_LOG     passed on to prom connect (its log filter; unset, only warnings and errors)

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

export const ECHO_TEXT = 'hello from the TypeScript SDK';

export function requireEnv(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set`);
  }
  return value;
}

/** The headers that carry PROM_KEY, as HEADER_MODE says; none without a key. */
export function keyHeaders() {
  const key = process.env.PROM_KEY;
  const mode = process.env.HEADER_MODE || 'bearer';
  if (!['bearer', 'x-api-key'].includes(mode)) {
    throw new Error(`HEADER_MODE must be "bearer" or "x-api-key", not ${JSON.stringify(mode)}`);
  }
  if (!key) {
    return {};
  }
  return mode === 'x-api-key' ? { 'x-api-key': key } : { Authorization: `Bearer ${key}` };
}

/** A Streamable HTTP transport to MCP_URL carrying the key, as a custom client would build it. */
export function httpTransport() {
  return new StreamableHTTPClientTransport(new URL(requireEnv('MCP_URL')), {
    requestInit: { headers: keyHeaders() },
  });
}

/**
 * `prom connect MCP_URL` over stdio, launched as Claude Desktop does: a command, its arguments and
 * PROMETHEUS_API_KEY in its environment. `stderr` is passed to the SDK ("inherit" or "pipe").
 */
export function stdioTransport(stderr = 'inherit') {
  const env = {};
  if (process.env.PROM_LOG) {
    env.PROM_LOG = process.env.PROM_LOG;
  }
  if (process.env.PROM_KEY) {
    env.PROMETHEUS_API_KEY = process.env.PROM_KEY;
  }
  return new StdioClientTransport({
    command: requireEnv('PROM_BIN'),
    args: ['connect', requireEnv('MCP_URL')],
    env,
    stderr,
  });
}

export function newClient() {
  return new Client({ name: 'prometheus-interop', version: '1.0.0' });
}

/**
 * Connects, lists the tools, calls echo, and calls countdown with a progress token. Its progress
 * notifications are recorded as they come off the transport, and must be 1..n, all before the
 * response. (What `onprogress` saw is returned too but not checked: the SDK drops a notification
 * that arrives in the same read as its response, typescript-sdk issue #2580.)
 * Returns what a test asserts on.
 */
export async function exercise(transport) {
  const n = Number(process.env.COUNTDOWN_N || 5);
  const client = newClient();
  await client.connect(transport);
  const wire = recordIncoming(transport);
  const server = client.getServerVersion();
  const { tools } = await client.listTools();

  const echo = await client.callTool({ name: 'echo', arguments: { text: ECHO_TEXT } });
  const echoText = textOf(echo);
  if (echoText !== ECHO_TEXT) {
    throw new Error(`echo answered ${JSON.stringify(echo)}`);
  }

  const seenByOnprogress = [];
  wire.length = 0;
  const countdown = await client.callTool({ name: 'countdown', arguments: { n } }, undefined, {
    onprogress: (notification) => seenByOnprogress.push(notification.progress),
  });
  const answered = wire.findIndex((message) => message.id !== undefined && message.method === undefined);
  const progress = wire
    .slice(0, answered < 0 ? wire.length : answered)
    .filter((message) => message.method === 'notifications/progress')
    .map((message) => message.params.progress);
  const expected = Array.from({ length: n }, (_, i) => i + 1);
  if (JSON.stringify(progress) !== JSON.stringify(expected)) {
    throw new Error(
      `countdown progress before its response was ${JSON.stringify(progress)}, expected ${JSON.stringify(expected)}; ` +
        `in arrival order: ${JSON.stringify(wire)}`,
    );
  }

  const sessionId = transport.sessionId ?? null;
  if (typeof transport.terminateSession === 'function' && sessionId) {
    await transport.terminateSession(); // DELETE, as a well-behaved client ends a session
  }
  await client.close();
  return {
    server: server?.name ?? null,
    tools: tools.map((tool) => tool.name).sort(),
    echo: echoText,
    countdown: textOf(countdown),
    progress,
    onprogress: seenByOnprogress,
    session: sessionId !== null,
  };
}

/** Every message the transport delivers from now on, in arrival order, before the SDK handles it. */
function recordIncoming(transport) {
  const wire = [];
  const deliver = transport.onmessage;
  transport.onmessage = (message, extra) => {
    wire.push(message);
    deliver?.(message, extra);
  };
  return wire;
}

export function textOf(result) {
  return (result.content ?? [])
    .filter((block) => block.type === 'text')
    .map((block) => block.text)
    .join('');
}

/** Runs `body`, prints its result as one JSON line on stdout and exits 0; on failure exits 1. */
export function main(body) {
  const timeoutMs = Number(process.env.TIMEOUT_MS || 60000);
  const timer = setTimeout(() => {
    console.error(`timed out after ${timeoutMs} ms`);
    process.exit(1);
  }, timeoutMs);
  timer.unref();
  body().then(
    (result) => {
      process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
    },
    (error) => {
      console.error(error?.stack ?? String(error));
      process.exit(1);
    },
  );
}
