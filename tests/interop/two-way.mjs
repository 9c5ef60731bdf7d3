// Messages that start at the server, and methods outside the spec, through `prom connect` (or
// straight over HTTP with TRANSPORT=http). The target offers the tool `ask_host`, which asks the host
// for its roots, a sampled message and an elicited answer while it runs, logs, and later announces
// a changed tool list on the session's GET stream; it also answers the request `prometheus/echo`.
// Prints {"answer","logs","tools_changed","custom_notifications","custom_result"}. See lib.mjs.
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  ResultSchema,
  ToolListChangedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';

import { httpTransport, main, stdioTransport } from './lib.mjs';

main(async () => {
  const mode = process.env.TRANSPORT || 'stdio';
  const client = new Client(
    { name: 'prometheus-interop-host', version: '1.0.0' },
    { capabilities: { roots: { listChanged: true }, sampling: {}, elicitation: { form: {} } } },
  );
  client.setRequestHandler(ListRootsRequestSchema, () => ({
    roots: [{ uri: 'file:///interop', name: 'interop' }],
  }));
  client.setRequestHandler(CreateMessageRequestSchema, (request) => ({
    role: 'assistant',
    content: { type: 'text', text: `sampled: ${request.params.messages[0].content.text}` },
    model: 'interop-model',
    stopReason: 'endTurn',
  }));
  client.setRequestHandler(ElicitRequestSchema, () => ({ action: 'accept', content: { name: 'ada' } }));
  const logs = [];
  client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
    logs.push(notification.params.data);
  });
  const toolsChanged = new Promise((resolve) => {
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => resolve(true));
  });
  const customNotifications = [];
  client.fallbackNotificationHandler = async (notification) => {
    customNotifications.push(notification);
  };

  await client.connect(mode === 'http' ? httpTransport() : stdioTransport());
  const result = await client.callTool({ name: 'ask_host', arguments: {} });
  const answer = result.content.map((block) => block.text).join('');
  const custom = await client.request({ method: 'prometheus/echo', params: { said: 'hi' } }, ResultSchema);
  const changed = await Promise.race([toolsChanged, new Promise((resolve) => setTimeout(() => resolve(false), 5000))]);
  await client.close();
  return {
    transport: mode,
    answer,
    logs,
    tools_changed: changed,
    custom_notifications: customNotifications,
    custom_result: custom,
  };
});
