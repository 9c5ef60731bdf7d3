// With a key the gateway is expected to refuse (revoked, deleted, unknown), reports the error the
// official SDK sees: {"transport","step","error_code","http_status","jsonrpc_code","message"}.
// Exits 0 when a call failed with a recognisable error code, 1 when every call succeeded.
//
// TRANSPORT=http (default) talks to MCP_URL directly with HEADER_MODE; TRANSPORT=stdio goes through
// `PROM_BIN connect MCP_URL`, whose standard error is returned as `prom_stderr`.
// WAIT_STDIN=1 connects first (with a key still valid), prints {"connected":true}, and makes the
// calls only after a line arrives on standard input: a test revokes the key in between.
import { createInterface } from 'node:readline';

import { ECHO_TEXT, httpTransport, main, newClient, stdioTransport } from './lib.mjs';

main(async () => {
  const mode = process.env.TRANSPORT || 'http';
  if (!['http', 'stdio'].includes(mode)) {
    throw new Error(`TRANSPORT must be "http" or "stdio", not ${JSON.stringify(mode)}`);
  }
  const transport = mode === 'stdio' ? stdioTransport('pipe') : httpTransport();
  let promStderr = '';
  transport.stderr?.on('data', (chunk) => {
    promStderr += chunk.toString();
  });
  const client = newClient();
  let step = 'connect';
  try {
    await client.connect(transport);
    if (process.env.WAIT_STDIN === '1') {
      process.stdout.write(`${JSON.stringify({ connected: true })}\n`);
      await nextLine();
    }
    step = 'listTools';
    await client.listTools();
    step = 'callTool';
    await client.callTool({ name: 'echo', arguments: { text: ECHO_TEXT } });
  } catch (error) {
    await client.close().catch(() => {});
    // Let prom connect finish writing its reason before we read it.
    await new Promise((resolve) => setTimeout(resolve, 200));
    return { transport: mode, step, ...describe(error), prom_stderr: mode === 'stdio' ? promStderr : undefined };
  }
  await client.close();
  throw new Error(`every call succeeded with a key that should have been refused (transport ${mode})`);
});

/** The Prometheus error code in what the SDK threw, wherever the transport put it. */
function describe(error) {
  const message = String(error?.message ?? error);
  // Through prom connect: a JSON-RPC error whose data is {"code","message","status"}.
  let code = typeof error?.data?.code === 'string' ? error.data.code : null;
  // Over HTTP: the SDK's StreamableHTTPError, whose message holds the gateway's JSON body.
  const httpStatus = error?.constructor?.name === 'StreamableHTTPError' ? error.code : null;
  if (!code) {
    const body = message.indexOf('{');
    try {
      code = body >= 0 ? (JSON.parse(message.slice(body))?.error?.code ?? null) : null;
    } catch {
      code = null;
    }
  }
  if (!code) {
    code = /\b(TOKEN_[A-Z_]+|FORBIDDEN)\b/.exec(message)?.[1] ?? null;
  }
  if (!code) {
    throw new Error(`the call failed without a Prometheus error code: ${message}`);
  }
  return {
    error_code: code,
    http_status: httpStatus,
    jsonrpc_code: httpStatus === null && Number.isInteger(error?.code) ? error.code : null,
    message,
  };
}

function nextLine() {
  return new Promise((resolve) => {
    const lines = createInterface({ input: process.stdin });
    lines.once('line', () => {
      lines.close();
      resolve();
    });
  });
}
