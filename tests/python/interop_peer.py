"""Interop peer: the official Python client SDK, driven line by line by tests/interop_python.rs.

Usage: python interop_peer.py CLIENT_ACCESS_URL GROUP

Protocol (one line each, UTF-8; every stdout line is flushed at once):
  stdout  READY <connection_id>        connected and joined GROUP
  stdout  {"kind": "group"|"server", "group": .., "from": .., "data_type": .., "data": .., "seq": ..}
                                       one per received message; binary data is standard base64.
                                       Callbacks run on their own threads (one per message), so
                                       these lines may come out of sequence order: the reader
                                       orders them by "seq".
  stdout  SENT <n>                     the n-th SEND (1-based) returned (acked)
  stdout  ERROR <text>                 something failed; the peer exits 1 after printing it
  stdout  BYE <received>               after EXIT: the number of message callbacks that ran
  stdin   SEND text|json|binary <json> the payload as a JSON value: a string for text, any value
                                       for json, a base64 string for binary
  stdin   EXIT                         close the client and exit 0
"""

import base64
import json
import sys
import threading

from azure.messaging.webpubsubclient import WebPubSubClient, WebPubSubClientCredential
from azure.messaging.webpubsubclient.models import CallbackType, WebPubSubDataType

TIMEOUT = 30.0

_out = threading.Lock()
_received = 0


def emit(line):
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def encode(data_type, data):
    if data_type in ("binary", "protobuf"):
        return base64.b64encode(bytes(data)).decode("ascii")
    return data  # text: str; json: the decoded value


def on_message(kind, e):
    global _received
    line = {
        "kind": kind,
        "group": getattr(e, "group", None),
        "from": getattr(e, "from_user_id", None),
        "data_type": e.data_type,
        "data": encode(e.data_type, e.data),
        "seq": e.sequence_id,
    }
    text = json.dumps(line, ensure_ascii=False)
    with _out:
        _received += 1
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def main():
    url, group = sys.argv[1], sys.argv[2]
    connected = threading.Event()
    conn = {}

    def on_connected(e):
        conn["id"] = e.connection_id
        connected.set()

    client = WebPubSubClient(WebPubSubClientCredential(lambda: url), ack_timeout=3)
    client.subscribe(CallbackType.CONNECTED, on_connected)
    client.subscribe(CallbackType.GROUP_MESSAGE, lambda e: on_message("group", e))
    client.subscribe(CallbackType.SERVER_MESSAGE, lambda e: on_message("server", e))
    client.subscribe(CallbackType.DISCONNECTED, lambda e: emit("DISCONNECTED %s" % (e.message,)))
    try:
        client.open()
        if not connected.wait(TIMEOUT):
            emit("ERROR never got `connected`")
            return 1
        client.join_group(group)
        emit("READY %s" % conn["id"])

        sent = 0
        for raw in sys.stdin:
            line = raw.rstrip("\n")
            if line == "EXIT":
                break
            parts = line.split(" ", 2)
            if len(parts) != 3 or parts[0] != "SEND":
                emit("ERROR bad command: %r" % line)
                return 1
            data_type, payload = parts[1], json.loads(parts[2])
            if data_type == "text":
                client.send_to_group(group, payload, WebPubSubDataType.TEXT)
            elif data_type == "json":
                client.send_to_group(group, payload, WebPubSubDataType.JSON)
            elif data_type == "binary":
                # The SDK takes binary content only as a memoryview (bytes raise TypeError).
                client.send_to_group(group, memoryview(base64.b64decode(payload)), WebPubSubDataType.BINARY)
            else:
                emit("ERROR bad data type: %r" % data_type)
                return 1
            sent += 1
            emit("SENT %d" % sent)
        with _out:
            received = _received
        emit("BYE %d" % received)
        return 0
    except Exception as e:  # report, so the test fails with the cause rather than a timeout
        emit("ERROR %s: %s" % (type(e).__name__, e))
        return 1
    finally:
        try:
            client.close()
        except Exception as e:  # closing must not hide the verdict
            print("interop_peer.py: close failed:", e, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
