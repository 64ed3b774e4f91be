// The official JavaScript client (@azure/web-pubsub-client 1.1.0, found through NODE_PATH)
// in the workflow tests, driven by tests/workflow_js.rs one JSON object per line.
//
//   stdin   {"id": N, "op": "connect", "client": NAME, "url": URL}
//           {"id": N, "op": "send", "client": NAME, "event": E, "dataType": T, "data": D,
//            "ackId": A?}
//           {"id": N, "op": "invoke", "client": NAME, "event": E, "dataType": T, "data": D,
//            "abort": TAG?, "timeoutMs": MS?}
//           {"id": N, "op": "abort", "tag": TAG}       aborts the invoke started with TAG
//           {"id": N, "op": "stop", "client": NAME}
//   stdout  {"id": N, "ok": true, ...} or {"id": N, "ok": false, "error": {...}}, one per
//           command, when it finished (commands run concurrently)
//           {"event": "server-message"|"connected"|"disconnected"|"stopped", "client", ...}
//
// Binary data is base64 both ways. A send's answer lists the server messages the client got
// between the send and its ack ("before"): the SDK emits a message event as it reads the
// frame and resolves the send when it reads the ack, so that list is in wire order.
// Every wait has a bound: the test bounds each line it reads, and the script exits when its
// standard input ends.
"use strict";

const readline = require("readline");
const { WebPubSubClient } = require("@azure/web-pubsub-client");

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

const clients = new Map(); // name -> {client, messages: []}
const aborts = new Map(); // tag -> AbortController

function content(dataType, data) {
  return dataType === "binary" ? Uint8Array.from(Buffer.from(data, "base64")).buffer : data;
}

function shown(dataType, data) {
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
    return Buffer.from(data instanceof ArrayBuffer ? data : data.buffer).toString("base64");
  }
  return data;
}

function failure(err) {
  return {
    type: err && err.constructor ? err.constructor.name : typeof err,
    name: err && err.name,
    message: err && err.message,
    detail: (err && err.errorDetail) || null,
    invocationId: (err && err.invocationId) || null,
  };
}

async function run(cmd) {
  switch (cmd.op) {
    case "connect": {
      const client = new WebPubSubClient(cmd.url, {
        reconnectRetryOptions: { maxRetries: 3, retryDelayInMs: 100 },
        messageRetryOptions: { maxRetries: 3, retryDelayInMs: 100 },
      });
      const entry = { client, messages: [] };
      client.on("server-message", (e) => {
        const m = { dataType: e.message.dataType, data: shown(e.message.dataType, e.message.data) };
        entry.messages.push(m);
        emit({ event: "server-message", client: cmd.client, ...m });
      });
      client.on("disconnected", (e) => emit({ event: "disconnected", client: cmd.client, message: e.message }));
      client.on("stopped", () => emit({ event: "stopped", client: cmd.client }));
      let connected;
      const seen = new Promise((resolve) => client.on("connected", (e) => resolve(e)));
      await client.start();
      connected = await seen;
      clients.set(cmd.client, entry);
      return { connectionId: connected.connectionId, userId: connected.userId ?? null };
    }
    case "send": {
      const entry = clients.get(cmd.client);
      const from = entry.messages.length;
      const options = cmd.ackId ? { ackId: cmd.ackId } : {};
      const r = await entry.client.sendEvent(cmd.event, content(cmd.dataType, cmd.data), cmd.dataType, options);
      return { ackId: r.ackId ?? null, isDuplicated: r.isDuplicated ?? null, before: entry.messages.slice(from) };
    }
    case "invoke": {
      const entry = clients.get(cmd.client);
      const options = {};
      if (cmd.abort) {
        const controller = new AbortController();
        aborts.set(cmd.abort, controller);
        options.abortSignal = controller.signal;
      } else if (cmd.timeoutMs) {
        options.abortSignal = AbortSignal.timeout(cmd.timeoutMs);
      }
      const r = await entry.client.invokeEvent(cmd.event, content(cmd.dataType, cmd.data), cmd.dataType, options);
      return { invocationId: r.invocationId, dataType: r.dataType ?? null, data: r.data === undefined ? null : shown(r.dataType, r.data) };
    }
    case "abort": {
      aborts.get(cmd.tag).abort();
      return {};
    }
    case "stop": {
      const entry = clients.get(cmd.client);
      const stopped = new Promise((resolve) => entry.client.on("stopped", resolve));
      entry.client.stop();
      await stopped;
      clients.delete(cmd.client);
      return {};
    }
    default:
      throw new Error("unknown op " + cmd.op);
  }
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const cmd = JSON.parse(line);
  run(cmd).then(
    (r) => emit({ id: cmd.id, ok: true, ...r }),
    (err) => emit({ id: cmd.id, ok: false, error: failure(err) }),
  );
});
rl.on("close", () => {
  for (const { client } of clients.values()) client.stop();
  process.stdout.write("", () => process.exit(0));
});
