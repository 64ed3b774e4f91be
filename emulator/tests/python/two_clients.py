"""Interop check: the official Python SDKs against the emulator.

Usage: python two_clients.py CONNECTION_STRING HUB

Two clients (azure-messaging-webpubsubclient) join a group and publish text, json and
binary messages; the service SDK (azure-messaging-webpubsubservice) sends server messages
through REST. Exits 0 only when every client received exactly what it should.
"""

import sys
import threading
import time

from azure.messaging.webpubsubclient import WebPubSubClient, WebPubSubClientCredential
from azure.messaging.webpubsubclient.models import CallbackType, WebPubSubDataType
from azure.messaging.webpubsubservice import WebPubSubServiceClient

TIMEOUT = 30.0
GROUP = "room 1"


def log(*args):
    print("two_clients.py:", *args, flush=True)


def freeze(data_type, data):
    """A hashable, comparable form of a received payload."""
    if data_type == "binary":
        return ("binary", bytes(data))
    if data_type == "json":
        import json

        return ("json", json.dumps(data, sort_keys=True))
    return (data_type, data)


class Recorder:
    def __init__(self, name, expected_group, expected_server):
        self.name = name
        self.lock = threading.Lock()
        self.group = []  # (sequence_id, group, payload, from_user_id)
        self.server = []  # (sequence_id, payload)
        self.expected_group = expected_group
        self.expected_server = expected_server
        self.done = threading.Event()

    def _check(self):
        if len(self.group) >= len(self.expected_group) and len(self.server) >= len(
            self.expected_server
        ):
            self.done.set()

    def on_group(self, e):
        with self.lock:
            self.group.append((e.sequence_id, e.group, freeze(e.data_type, e.data), e.from_user_id))
            self._check()

    def on_server(self, e):
        with self.lock:
            self.server.append((e.sequence_id, freeze(e.data_type, e.data)))
            self._check()

    def verify(self):
        ok = True
        with self.lock:
            got_group = sorted((g, p, u) for (_, g, p, u) in self.group)
            got_server = sorted(p for (_, p) in self.server)
            seqs = sorted(s for (s, *_rest) in self.group + self.server)
        if got_group != sorted(self.expected_group):
            log(self.name, "group messages differ:\n  got     ", got_group, "\n  expected", sorted(self.expected_group))
            ok = False
        if got_server != sorted(self.expected_server):
            log(self.name, "server messages differ:\n  got     ", got_server, "\n  expected", sorted(self.expected_server))
            ok = False
        if seqs != list(range(1, len(seqs) + 1)):
            log(self.name, "sequence ids are not 1..n:", seqs)
            ok = False
        return ok


def main():
    conn_str, hub = sys.argv[1], sys.argv[2]
    service = WebPubSubServiceClient.from_connection_string(conn_str, hub=hub, retry_total=0)
    roles = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"]

    def url_for(user):
        return service.get_client_access_token(user_id=user, roles=roles)["url"]

    expected_group = [
        (GROUP, ("text", "hello"), "alice"),
        (GROUP, ("json", '{"k": [1, 2]}'), "alice"),
        (GROUP, ("binary", b"\x00\x01\xff"), "alice"),
        (GROUP, ("text", "hi from bob"), "bob"),
    ]
    expected_server = [("text", "server text"), ("json", '{"srv": 1}'), ("binary", b"\x02\x03")]
    recorders = {u: Recorder(u, expected_group, expected_server) for u in ("alice", "bob")}
    clients = {}
    connected = {u: threading.Event() for u in recorders}
    for user, rec in recorders.items():
        c = WebPubSubClient(WebPubSubClientCredential(lambda user=user: url_for(user)), ack_timeout=3)
        c.subscribe(CallbackType.GROUP_MESSAGE, rec.on_group)
        c.subscribe(CallbackType.SERVER_MESSAGE, rec.on_server)
        c.subscribe(CallbackType.CONNECTED, lambda e, user=user: connected[user].set())
        clients[user] = c

    try:
        for user, c in clients.items():
            c.open()
            if not connected[user].wait(TIMEOUT):
                log(user, "never got `connected`")
                return 1
            c.join_group(GROUP)
        if not service.group_exists(GROUP):
            log("group_exists is False after both joined")
            return 1

        alice, bob = clients["alice"], clients["bob"]
        alice.send_to_group(GROUP, "hello", WebPubSubDataType.TEXT)
        alice.send_to_group(GROUP, {"k": [1, 2]}, WebPubSubDataType.JSON)
        alice.send_to_group(GROUP, memoryview(b"\x00\x01\xff"), WebPubSubDataType.BINARY)
        bob.send_to_group(GROUP, "hi from bob", WebPubSubDataType.TEXT)
        service.send_to_group(GROUP, "server text", content_type="text/plain")
        service.send_to_all({"srv": 1})
        service.send_to_all(b"\x02\x03", content_type="application/octet-stream")

        deadline = time.monotonic() + TIMEOUT
        for user, rec in recorders.items():
            if not rec.done.wait(max(0.0, deadline - time.monotonic())):
                log(user, "timed out waiting for messages")
                rec.verify()
                return 1
        ok = all(rec.verify() for rec in recorders.values())
        if not ok:
            return 1
        for user in recorders:
            if not service.user_exists(user):
                log("user_exists is False for", user)
                return 1
        log("all messages arrived exactly")
        return 0
    finally:
        for c in clients.values():
            try:
                c.close()
            except Exception as e:  # closing must not hide the verdict
                log("close failed:", e)


if __name__ == "__main__":
    sys.exit(main())
