// The official SDK's stdio client launching `PROM_BIN connect MCP_URL` with PROMETHEUS_API_KEY set,
// as Claude Desktop does: connect, list tools, echo, countdown with progress. See lib.mjs.
import { exercise, main, stdioTransport } from './lib.mjs';

main(async () => ({ transport: 'stdio', ...(await exercise(stdioTransport())) }));
