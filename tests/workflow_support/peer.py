"""The official Python client (azure-messaging-webpubsubclient 1.1.0) in the workflow tests,
driven by tests/workflow_python.rs one JSON object per line.

  stdin   {"id": N, "op": "connect", "client": NAME, "url": URL}
          {"id": N, "op": "send", "client": NAME, "event": E, "dataType": T, "data": D}
          {"id": N, "op": "stop", "client": NAME}
  stdout  {"id": N, "ok": true, ...} or {"id": N, "ok": false, "error": {...}}, one per
          command, when it finished (each command runs on its own thread)
          {"event": "server-message", "client": NAME, "dataType": T, "data": D}

Binary data is base64 both ways. The SDK runs each callback on a thread of its own, so the
order of these lines says nothing about the order on the wire (the test reads that from a
recording relay). Every wait is bounded (the SDK's ack timeout, the test's line deadline);
the script exits when its standard input ends.
"""

import base64
import json
import sys
import threading

from azure.messaging.webpubsubclient import WebPubSubClient, WebPubSubClientCredential
from azure.messaging.webpubsubclient.models import CallbackType

TIMEOUT = 15.0

_out = threading.Lock()
_clients = {}


def emit(obj):
    text = json.dumps(obj, ensure_ascii=False)
    with _out:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def shown(data_type, data):
    if data_type in ("binary", "protobuf"):
        return base64.b64encode(bytes(data)).decode("ascii")
    return data


def content(data_type, data):
    if data_type == "binary":
        return memoryview(base64.b64decode(data))
    return data


def failure(e):
    detail = getattr(e, "error_detail", None)
    return {
        "type": type(e).__name__,
        "message": str(e),
        "detail": {"name": detail.name, "message": detail.message} if detail is not None else None,
    }


def connect(cmd):
    name = cmd["client"]
    url = cmd["url"]
    connected = threading.Event()
    seen = {}

    def on_connected(e):
        seen["connectionId"] = e.connection_id
        seen["userId"] = e.user_id
        connected.set()

    def on_server_message(e):
        emit({"event": "server-message", "client": name, "dataType": e.data_type,
              "data": shown(e.data_type, e.data)})

    client = WebPubSubClient(
        WebPubSubClientCredential(lambda: url),
        ack_timeout=5,
        reconnect_retry_total=3,
        reconnect_retry_backoff_factor=0.1,
        message_retry_total=0,
    )
    client.subscribe(CallbackType.CONNECTED, on_connected)
    client.subscribe(CallbackType.SERVER_MESSAGE, on_server_message)
    client.open()
    if not connected.wait(TIMEOUT):
        raise RuntimeError("never got `connected`")
    _clients[name] = client
    return seen


def run(cmd):
    op = cmd["op"]
    if op == "connect":
        return connect(cmd)
    client = _clients[cmd["client"]]
    if op == "send":
        client.send_event(cmd["event"], content(cmd["dataType"], cmd["data"]), cmd["dataType"])
        return {}
    if op == "stop":
        client.close()
        del _clients[cmd["client"]]
        return {}
    raise ValueError("unknown op " + op)


def serve(cmd):
    try:
        answer = run(cmd)
        emit({"id": cmd["id"], "ok": True, **answer})
    except Exception as e:  # every failure goes back to the test, typed
        emit({"id": cmd["id"], "ok": False, "error": failure(e)})


def main():
    for line in sys.stdin:
        line = line.strip()
        if line:
            threading.Thread(target=serve, args=(json.loads(line),), daemon=True).start()
    for client in list(_clients.values()):
        client.close()


if __name__ == "__main__":
    main()
