// A small app server for the tests, built on the official CloudEvents handler
// (@azure/web-pubsub-express) and express, as a team's own server would be.
//
//   node app_server.js [PORT] [EMULATOR_ENDPOINT]
//
// Prints one JSON line per thing it sees on stdout: first {"listening":PORT}, then
// {"seen":"validate"|"connect"|"connected"|"disconnected"|<user event>, ...} for every
// request it gets, so a test reads what the app server observed. With
// APP_SERVER_EXIT_WITH_STDIN=1 it exits when its standard input ends.
//
// Hubs:
//   chat     allows every origin; the behaviour below.
//   allowed  allows only EMULATOR_ENDPOINT's origin (express's allowedEndpoints).
//   strict   allows only http://elsewhere.example:1, so validation from anywhere else fails.
//
// Behaviour of `chat` (and `allowed`, which shares it):
//   connect       query refuse=1 -> 401; otherwise userId "app-<sub>", groups ["app-group"],
//                 roles ["webpubsub.joinLeaveGroup"] (or those of query roles=a,b), the
//                 subprotocol named by query pick (if any), and state {"calls":0}
//   echo          replies with the data, same data type
//   count         replies JSON {calls, userId, state} after counting the call in the state
//   noreply       200 without a body
//   fail500       500 (every call is seen, so retries can be counted)
//   hold          waits until a `release` event names the same key (data: the key as text),
//                 then replies "released <key>"
//   release       ends the `hold` whose key is the data
//   message       (a simple WebSocket client's frame) echoes it, same data type; the text
//                 "fail500" is answered 500
//   every user event counts one call in the connection state ("calls")
//
// Every POST is also reported as {"seen":"ce","type","connectionId","subprotocol"} (the
// ce-subprotocol header, which express's context leaves out).
// Metadata: a user event's x-webpubsub-metadata-* request headers are reported as
// {"seen":"metadata","eventName","connectionId","metadata":{key:value}} and sent back on the
// answer, with one more: x-webpubsub-metadata-answered-by: app-server.
"use strict";

const express = require("express");
const { WebPubSubEventHandler } = require("@azure/web-pubsub-express");

const port = Number(process.argv[2] || 0);
const emulatorEndpoint = process.argv[3] || "http://127.0.0.1:8080";

function say(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

const held = new Map(); // key -> resolve
const METADATA = "x-webpubsub-metadata-";

function behaviour(hub) {
  return {
    handleConnect(req, res) {
      const ctx = req.context;
      say({
        seen: "connect",
        hub,
        connectionId: ctx.connectionId,
        userId: ctx.userId ?? null,
        signature: ctx.signature,
        origin: ctx.origin,
        claims: req.claims,
        query: req.query,
        headers: req.headers,
        subprotocols: req.subprotocols,
        clientCertificates: req.clientCertificates,
      });
      const query = req.query || {};
      if (query.refuse) {
        res.fail(401, "refused by the app server");
        return;
      }
      const sub = (req.claims && req.claims.sub && req.claims.sub[0]) || "anonymous";
      res.setState("calls", 0);
      const answer = {
        userId: "app-" + sub,
        groups: ["app-group"],
        roles: query.roles ? query.roles[0].split(",") : ["webpubsub.joinLeaveGroup"],
      };
      if (query.pick) answer.subprotocol = query.pick[0];
      res.success(answer);
    },
    onConnected(req) {
      const ctx = req.context;
      say({
        seen: "connected",
        hub,
        connectionId: ctx.connectionId,
        userId: ctx.userId ?? null,
        states: ctx.states,
      });
    },
    onDisconnected(req) {
      const ctx = req.context;
      say({ seen: "disconnected", hub, connectionId: ctx.connectionId, reason: req.reason, states: ctx.states });
    },
    async handleUserEvent(req, res) {
      const ctx = req.context;
      const calls = (ctx.states.calls || 0) + 1;
      const data = Buffer.isBuffer(req.data) || req.data instanceof ArrayBuffer
        ? Buffer.from(req.data).toString("base64")
        : req.data;
      say({
        seen: ctx.eventName,
        hub,
        connectionId: ctx.connectionId,
        userId: ctx.userId ?? null,
        dataType: req.dataType,
        data,
        states: ctx.states,
      });
      res.setState("calls", calls);
      switch (ctx.eventName) {
        case "echo":
          // success() takes text or bytes: JSON goes back as its text.
          res.success(req.dataType === "json" ? JSON.stringify(req.data) : req.data, req.dataType);
          return;
        case "message":
          if (req.dataType === "text" && req.data === "fail500") {
            res.fail(500, "the app server failed on purpose");
            return;
          }
          res.success(req.data, req.dataType);
          return;
        case "count":
          res.success(JSON.stringify({ calls, userId: ctx.userId ?? null, state: ctx.states }), "json");
          return;
        case "noreply":
          res.success();
          return;
        case "fail500":
          res.fail(500, "the app server failed on purpose");
          return;
        case "hold": {
          const key = String(req.data);
          await new Promise((resolve) => held.set(key, resolve));
          say({ seen: "released", hub, connectionId: ctx.connectionId, key });
          res.success("released " + key, "text");
          return;
        }
        case "release": {
          const key = String(req.data);
          const resolve = held.get(key);
          held.delete(key);
          if (resolve) resolve();
          res.success(resolve ? "ok" : "nothing held", "text");
          return;
        }
        default:
          res.fail(400, "unknown event " + ctx.eventName);
      }
    },
  };
}

const app = express();
// Before the handlers, and reading no body: no body parser may run before them.
app.use((req, res, next) => {
  if (req.method === "OPTIONS") {
    say({
      seen: "validate",
      path: req.path,
      origin: req.headers["webhook-request-origin"] ?? null,
      awpsversion: req.headers["ce-awpsversion"] ?? null,
    });
  }
  const type = req.headers["ce-type"] || "";
  if (req.method === "POST") {
    // What express's context leaves out.
    say({
      seen: "ce",
      type,
      connectionId: req.headers["ce-connectionid"] ?? null,
      subprotocol: req.headers["ce-subprotocol"] ?? null,
    });
  }
  if (req.method === "POST" && type.startsWith("azure.webpubsub.user.")) {
    // Node gives header names in lower case.
    const metadata = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (name.startsWith(METADATA)) metadata[name.slice(METADATA.length)] = value;
    }
    if (Object.keys(metadata).length > 0) {
      say({
        seen: "metadata",
        eventName: req.headers["ce-eventname"] ?? null,
        connectionId: req.headers["ce-connectionid"] ?? null,
        metadata,
      });
      for (const [key, value] of Object.entries(metadata)) res.setHeader(METADATA + key, value);
      res.setHeader(METADATA + "answered-by", "app-server");
    }
  }
  next();
});
app.use(new WebPubSubEventHandler("chat", behaviour("chat")).getMiddleware());
app.use(
  new WebPubSubEventHandler("allowed", { ...behaviour("allowed"), allowedEndpoints: [emulatorEndpoint] }).getMiddleware(),
);
app.use(
  new WebPubSubEventHandler("strict", { ...behaviour("strict"), allowedEndpoints: ["http://elsewhere.example:1"] }).getMiddleware(),
);
app.use((req, res) => {
  say({ seen: "unhandled", method: req.method, path: req.path });
  res.status(404).end();
});

// A test that keeps the server for the life of its process (never killing it) closes our
// standard input by exiting: end with it.
if (process.env.APP_SERVER_EXIT_WITH_STDIN === "1") {
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
}

const server = app.listen(port, "127.0.0.1", () => {
  say({ listening: server.address().port });
});
