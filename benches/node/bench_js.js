// The official JavaScript client SDK's side of `cargo run --release --example bench`
// (@azure/web-pubsub-client 1.1.0, found through NODE_PATH).
//
// Driven by the Rust bench over stdin/stdout, one JSON object per line, as bench_py.py is:
//   argv[2]   a JSON config: {"a": {...}, "a2": {...}, "b": {...}, "c": {...}, "d": {...},
//             "scale": {...}} (each with the client access "url", the "group" and counts)
//   stdout    {"ready": "<workload>", "connection_id": ...}   when the service side may start
//             {"result": "<workload>", ...}                    the figures
//             {"error": "<workload>", "message": ...}          a workload that failed
//             {"done": true}                                   the last line
//   stdin     "go" after a ready line of "b" and "c": the stream starts now; in "scale",
//             "go" before each broadcast and "stop" at the end
//
// The SDK keeps its defaults (reliable JSON subprotocol, retries, no ack timeout). Every wait
// of this script has a bound; the bench bounds the wait for each line as well.
"use strict";

const fs = require("fs");
const readline = require("readline");
const { WebPubSubClient } = require("@azure/web-pubsub-client");

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

/** Exits once every line is out: a write to a full pipe is finished later by the loop. */
function exitAfterOutput(code) {
  process.stdout.write("", () => process.exit(code));
}

// ---- stdin, line by line ----
const pendingLines = [];
let lineWaiter = null;
let stdinClosed = false;
const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (lineWaiter) {
    const w = lineWaiter;
    lineWaiter = null;
    w(line);
  } else {
    pendingLines.push(line);
  }
});
rl.on("close", () => {
  stdinClosed = true;
  if (lineWaiter) {
    const w = lineWaiter;
    lineWaiter = null;
    w(null);
  }
});

function nextLine() {
  if (pendingLines.length > 0) {
    return Promise.resolve(pendingLines.shift());
  }
  if (stdinClosed) {
    return Promise.resolve(null);
  }
  return new Promise((resolve) => {
    lineWaiter = resolve;
  });
}

async function expectLine(wanted) {
  const line = await nextLine();
  if (line === null || line.trim() !== wanted) {
    throw new Error(`expected '${wanted}' from the bench, got ${JSON.stringify(line)}`);
  }
}

// ---- time and the process ----

/** Wall-clock seconds with sub-millisecond resolution: the clock the bench shares. */
function epoch() {
  return (performance.timeOrigin + performance.now()) / 1000;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `promise`, or a rejection naming `what` after `ms`. */
function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A promise and the function that resolves it. */
function signal() {
  let resolve;
  const promise = new Promise((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** VmRSS, VmHWM (KiB) and Threads of this process, from /proc/self/status. */
function procStatus() {
  const out = {};
  for (const line of fs.readFileSync("/proc/self/status", "utf8").split("\n")) {
    const m = /^(VmRSS|VmHWM|Threads):\s+(\d+)/.exec(line);
    if (m) {
      out[m[1]] = Number(m[2]);
    }
  }
  return out;
}

function openFds() {
  return fs.readdirSync("/proc/self/fd").length;
}

/** The soft limit of open files (/proc/self/limits). */
function fdLimit() {
  const line = fs
    .readFileSync("/proc/self/limits", "utf8")
    .split("\n")
    .find((l) => l.startsWith("Max open files"));
  return line ? Number(line.split(/\s+/)[3]) : null;
}

function payload(i) {
  const s = String(i).padStart(8, "0");
  return s + "x".repeat(100 - s.length);
}

function textLength(data) {
  return typeof data === "string" ? data.length : 0;
}

// ---- the workloads ----

async function latency(cfg) {
  const client = new WebPubSubClient(cfg.url);
  await client.start();
  try {
    const data = payload(0);
    for (let i = 0; i < (cfg.warmup || 0); i++) {
      await client.sendToGroup(cfg.group, data, "text");
    }
    const times = [];
    const begin = performance.now();
    for (let i = 0; i < cfg.n; i++) {
      if ((performance.now() - begin) / 1000 > cfg.budget_s) {
        break;
      }
      const t = performance.now();
      await client.sendToGroup(cfg.group, data, "text");
      times.push((performance.now() - t) / 1000);
    }
    const total = (performance.now() - begin) / 1000;
    emit({ result: "a", latencies_s: times, total_s: total });
  } finally {
    client.stop();
  }
}

async function pipelined(cfg) {
  const client = new WebPubSubClient(cfg.url);
  await client.start();
  try {
    const { n, window, group } = cfg;
    const data = payload(0);
    // A ring of the outstanding sends; each settles to null or its error, so that a
    // rejection before its turn is not an unhandled one.
    const ring = new Array(window);
    let head = 0;
    let inFlight = 0;
    const settle = (p) =>
      p.then(
        () => null,
        (e) => e
      );
    const begin = performance.now();
    for (let i = 0; i < n; i++) {
      if (inFlight === window) {
        const err = await ring[head];
        if (err) {
          throw err;
        }
        head = (head + 1) % window;
        inFlight--;
      }
      ring[(head + inFlight) % window] = settle(
        client.sendToGroup(group, data, "text", { noEcho: true })
      );
      inFlight++;
    }
    for (; inFlight > 0; inFlight--) {
      const err = await ring[head];
      if (err) {
        throw err;
      }
      head = (head + 1) % window;
    }
    const total = (performance.now() - begin) / 1000;
    emit({ result: "a2", n, window, total_s: total });
  } finally {
    client.stop();
  }
}

async function receive(cfg) {
  const { n } = cfg;
  const client = new WebPubSubClient(cfg.url);
  let count = 0;
  let last = 0;
  const done = signal();
  client.on("server-message", () => {
    count++;
    if (count === n) {
      last = epoch();
      done.resolve(true);
    }
  });
  await client.start();
  try {
    emit({ ready: "b", connection_id: null });
    await expectLine("go");
    const ok = await within(done.promise, cfg.timeout_s * 1000, "b").catch(() => false);
    emit({ result: "b", received: count, complete: ok, end_epoch: ok ? last : epoch() });
  } finally {
    client.stop();
  }
}

async function recovery(cfg) {
  const { n } = cfg;
  const client = new WebPubSubClient(cfg.url);
  const arrivals = [];
  const seen = new Set();
  const done = signal();
  const connected = signal();
  client.on("connected", (e) => connected.resolve(e.connectionId));
  client.on("server-message", (e) => {
    const t = epoch();
    const idx = Number(e.message.data.slice(0, 8));
    arrivals.push([idx, t]);
    seen.add(idx);
    if (seen.size === n) {
      done.resolve();
    }
  });
  await client.start();
  try {
    // start() resolves when the socket opens; the connection id comes with `connected`.
    const id = await within(connected.promise, 10000, "connected");
    emit({ ready: "c", connection_id: id });
    await expectLine("go");
    await within(done.promise, cfg.timeout_s * 1000, "c").catch(() => {});
    emit({ result: "c", arrivals });
  } finally {
    client.stop();
  }
}

async function idle(cfg) {
  const client = new WebPubSubClient(cfg.url);
  await client.start();
  try {
    emit({ ready: "d", connection_id: null });
    const cpu0 = process.cpuUsage();
    await sleep(cfg.seconds * 1000);
    const cpu = process.cpuUsage(cpu0);
    const st = procStatus();
    emit({
      result: "d",
      rss_kib: st.VmHWM,
      threads: st.Threads,
      cpu_pct: ((cpu.user + cpu.system) / 1e6 / cfg.seconds) * 100,
    });
  } finally {
    client.stop();
  }
}

/**
 * N clients in this process (see examples/bench/scale.rs for the steps and lines): connect
 * with at most `connecting` starts in flight, each done at its `connected` event; then one
 * small broadcast, one large one, an idle pause, and stop.
 */
async function scale(cfg) {
  const { n, big_bytes: bigBytes } = cfg;
  const before = procStatus();
  const clients = [];
  const small = { count: 0, last: 0, done: signal() };
  const big = { count: 0, last: 0, done: signal() };
  const onMessage = (e) => {
    const c = textLength(e.message.data) >= bigBytes ? big : small;
    c.count++;
    if (c.count === n) {
      c.last = epoch();
      c.done.resolve(true);
    }
  };
  let next = 0;
  let connectedCount = 0;
  let failure = null;
  const begin = performance.now();
  const deadline = begin + cfg.connect_budget_s * 1000;
  const worker = async () => {
    while (failure === null && next < n) {
      if (performance.now() > deadline) {
        failure = `connecting took longer than ${cfg.connect_budget_s} s`;
        break;
      }
      next++;
      const client = new WebPubSubClient(cfg.url);
      const connected = signal();
      client.on("connected", () => connected.resolve());
      client.on("server-message", onMessage);
      clients.push(client);
      try {
        await within(
          Promise.all([client.start(), connected.promise]),
          cfg.client_timeout_s * 1000,
          "start"
        );
        connectedCount++;
      } catch (e) {
        failure = failure || String(e && e.message ? e.message : e);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(cfg.connecting, n) }, worker));
  const connectS = (performance.now() - begin) / 1000;
  const after = procStatus();
  const ready = {
    ready: "scale",
    connected: connectedCount,
    connect_s: connectS,
    rss_before_kib: before.VmRSS,
    rss_kib: after.VmRSS,
    threads: after.Threads,
    fds: openFds(),
    fd_limit: fdLimit(),
  };
  if (failure !== null) {
    ready.error = failure;
  }
  emit(ready);
  try {
    for (const [name, c] of [
      ["broadcast", small],
      ["burst", big],
    ]) {
      const line = await nextLine();
      if (line === null || line.trim() !== "go") {
        return;
      }
      const ok = await within(c.done.promise, cfg.wait_s * 1000, name).catch(() => false);
      const result = { result: name, received: c.count, last_epoch: ok ? c.last : null };
      if (name === "burst") {
        // Idle, then measure: what is left of the burst's buffers.
        await sleep(cfg.settle_s * 1000);
        result.rss_kib = procStatus().VmRSS;
      }
      emit(result);
    }
    await expectLine("stop");
  } finally {
    for (const c of clients) {
      try {
        c.stop();
      } catch {
        // One that never started; the process exits next anyway.
      }
    }
  }
}

async function main() {
  const cfg = JSON.parse(process.argv[2]);
  const workloads = [
    ["a", latency],
    ["a2", pipelined],
    ["b", receive],
    ["c", recovery],
    ["d", idle],
    ["scale", scale],
  ];
  for (const [name, fn] of workloads) {
    if (!(name in cfg)) {
      continue;
    }
    try {
      await fn(cfg[name]);
    } catch (e) {
      // Reported in the table; the next workload still runs.
      emit({ error: name, message: `${e && e.name ? e.name : "Error"}: ${e && e.message ? e.message : e}` });
    }
  }
  emit({ done: true });
  // Open sockets, timers and stdin would keep the loop alive.
  exitAfterOutput(0);
}

main().catch((e) => {
  emit({ error: "main", message: String(e) });
  exitAfterOutput(1);
});
