"""The official Python client SDK's side of `cargo run --release --example bench`.

Driven by the Rust bench over stdin/stdout, one JSON object per line:
  argv[1]    a JSON config: {"a": {...}, "a2": {...}, "b": {...}, "c": {...}, "d": {...}}
             (each with the client access "url", the "group" and counts)
  stdout     {"ready": "<workload>", "connection_id": ...}   when the service side may start
             {"result": "<workload>", ...}                    the figures
             {"error": "<workload>", "message": ...}          a workload that failed
  stdin      "go\n" after a ready line of "b" and "c": the stream starts now

The SDK keeps its defaults (ack_timeout=30 s, retries) except where the config says so: the
stall on its ack race (see target/py-sdk-notes.md) is part of what is measured. Workloads with
a wall-clock budget stop issuing calls when it is spent and say how many calls they made.
"""

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from azure.messaging.webpubsubclient import WebPubSubClient
from azure.messaging.webpubsubclient.models import CallbackType, WebPubSubDataType


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def wait_go():
    line = sys.stdin.readline()
    if line.strip() != "go":
        raise RuntimeError("expected 'go' from the bench, got %r" % line)


def proc_stat():
    """(cpu seconds, peak RSS KiB, threads) of this process, from /proc/self."""
    with open("/proc/self/stat") as f:
        # The command name may contain spaces: fields start after the last ')'.
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    import os

    hz = os.sysconf("SC_CLK_TCK")
    hwm = threads = None
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return ticks / hz, hwm, threads


def new_client(cfg):
    kwargs = {}
    if cfg.get("ack_timeout") is not None:
        kwargs["ack_timeout"] = cfg["ack_timeout"]
    client = WebPubSubClient(cfg["url"], **kwargs)
    return client


def payload(i):
    s = "%08d" % i
    return s + "x" * (100 - len(s))


def latency(cfg):
    client = new_client(cfg)
    client.open()
    try:
        n, budget, group = cfg["n"], cfg["budget_s"], cfg["group"]
        data = payload(0)
        for _ in range(cfg.get("warmup", 0)):
            client.send_to_group(group, data, WebPubSubDataType.TEXT)
        times = []
        begin = time.perf_counter()
        for _ in range(n):
            if time.perf_counter() - begin > budget:
                break
            t = time.perf_counter()
            client.send_to_group(group, data, WebPubSubDataType.TEXT)
            times.append(time.perf_counter() - t)
        total = time.perf_counter() - begin
    finally:
        client.close()
    emit({"result": "a", "latencies_s": times, "total_s": total})


def pipelined(cfg):
    client = new_client(cfg)
    client.open()
    try:
        n, threads, group = cfg["n"], cfg["threads"], cfg["group"]
        data = payload(0)

        def one(_):
            client.send_to_group(group, data, WebPubSubDataType.TEXT, no_echo=True)

        begin = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(one, range(n)))
        total = time.perf_counter() - begin
    finally:
        client.close()
    emit({"result": "a2", "n": n, "threads": threads, "total_s": total})


def receive(cfg):
    n, timeout = cfg["n"], cfg["timeout_s"]
    client = new_client(cfg)
    lock = threading.Lock()
    count = [0]
    done = threading.Event()
    last = [0.0]

    def on_message(e):  # runs on a new thread per message (the SDK's design)
        with lock:
            count[0] += 1
            if count[0] == n:
                last[0] = time.time()
                done.set()

    client.subscribe(CallbackType.SERVER_MESSAGE, on_message)
    client.open()
    try:
        emit({"ready": "b", "connection_id": None})
        wait_go()
        begin = time.time()
        ok = done.wait(timeout)
        emit(
            {
                "result": "b",
                "received": count[0],
                "complete": ok,
                "start_epoch": begin,
                "end_epoch": last[0] if ok else time.time(),
            }
        )
    finally:
        client.close()


def recovery(cfg):
    n, timeout = cfg["n"], cfg["timeout_s"]
    client = new_client(cfg)
    arrivals = []
    seen = set()
    done = threading.Event()
    lock = threading.Lock()
    conn = {}

    def on_connected(e):
        conn["id"] = e.connection_id

    def on_message(e):
        t = time.time()
        idx = int(e.data[:8])
        with lock:
            arrivals.append((idx, t))
            seen.add(idx)
            if len(seen) == n:
                done.set()

    client.subscribe(CallbackType.CONNECTED, on_connected)
    client.subscribe(CallbackType.SERVER_MESSAGE, on_message)
    client.open()
    try:
        deadline = time.time() + 10
        while "id" not in conn and time.time() < deadline:
            time.sleep(0.01)
        emit({"ready": "c", "connection_id": conn.get("id")})
        wait_go()
        done.wait(timeout)
        # Stragglers on their own threads (and duplicates) get a moment to land.
        time.sleep(0.5)
        with lock:
            snapshot = list(arrivals)
        emit({"result": "c", "arrivals": snapshot})
    finally:
        client.close()


def idle(cfg):
    client = new_client(cfg)
    client.open()
    try:
        emit({"ready": "d", "connection_id": None})
        secs = cfg["seconds"]
        cpu0, _, _ = proc_stat()
        time.sleep(secs)
        cpu1, hwm, threads = proc_stat()
        emit(
            {
                "result": "d",
                "rss_kib": hwm,
                "threads": threads,
                "cpu_pct": (cpu1 - cpu0) / secs * 100.0,
            }
        )
    finally:
        client.close()


def main():
    cfg = json.loads(sys.argv[1])
    for name, fn in (("a", latency), ("a2", pipelined), ("b", receive), ("c", recovery), ("d", idle)):
        if name not in cfg:
            continue
        try:
            fn(cfg[name])
        except Exception as e:  # reported in the table, the next workload still runs
            emit({"error": name, "message": "%s: %s" % (type(e).__name__, e)})
    emit({"done": True})


if __name__ == "__main__":
    main()
