// The official SDK's Streamable HTTP client against MCP_URL, the key in the header HEADER_MODE
// names: connect, list tools, echo, countdown with progress. See lib.mjs for the environment.
import { exercise, httpTransport, main } from './lib.mjs';

main(async () => ({ transport: 'http', ...(await exercise(httpTransport())) }));
