"""A Python program drives the emulator's faults over HTTP with the standard library only
(urllib, hmac): the emulator runs with fault injection on (--enable-faults).

Usage: python faults_urllib.py CONNECTION_STRING HUB

A client of the official client SDK connects; the program drops its socket, sends it a
message while it recovers, fails its next ack, and tries the routes with a forged token and
an unknown connection. Prints `RESULT <name> <json>` lines for the Rust test; exits non-zero
only when something could not run.
"""

import base64
import hashlib
import hmac
import json
import sys
import threading
import time
import urllib.error
import urllib.request

from azure.messaging.webpubsubclient import WebPubSubClient, WebPubSubClientCredential
from azure.messaging.webpubsubclient.models import CallbackType, SendMessageError
from azure.messaging.webpubsubservice import WebPubSubServiceClient

TIMEOUT = 30.0


def result(name, value):
    print("RESULT", name, json.dumps(value, sort_keys=True), flush=True)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rest_token(key, url):
    """An HS256 JWT whose audience is the request URL, as the server SDKs sign REST calls."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64url(json.dumps({"aud": url, "exp": int(time.time()) + 60}).encode())
    signed = f"{header}.{claims}".encode()
    signature = b64url(hmac.new(key.encode(), signed, hashlib.sha256).digest())
    return f"{header}.{claims}.{signature}"


def call(method, url, key, body=None, content_type=None):
    """One signed request; returns its status."""
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Authorization", "Bearer " + rest_token(key, url))
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def main():
    conn_str, hub = sys.argv[1], sys.argv[2]
    parts = dict(p.split("=", 1) for p in conn_str.split(";") if "=" in p)
    endpoint, key = parts["Endpoint"].rstrip("/"), parts["AccessKey"]

    service = WebPubSubServiceClient.from_connection_string(conn_str, hub=hub, retry_total=0)
    url = service.get_client_access_token(user_id="py", roles=["webpubsub.joinLeaveGroup"])["url"]
    connected = threading.Event()
    got = []
    arrived = threading.Event()
    ids = []

    def on_connected(e):
        ids.append(e.connection_id)
        connected.set()

    def on_server(e):
        got.append(e.data)
        arrived.set()

    client = WebPubSubClient(WebPubSubClientCredential(lambda: url), ack_timeout=5, message_retry_total=0)
    client.subscribe(CallbackType.CONNECTED, on_connected)
    client.subscribe(CallbackType.SERVER_MESSAGE, on_server)
    try:
        client.open()
        if not connected.wait(TIMEOUT):
            raise RuntimeError("the client never got `connected`")
        conn = ids[0]
        result("connection_id", conn)
        faults = f"{endpoint}/emulator/faults/hubs/{hub}/connections/{conn}"

        result("drop", call("POST", f"{faults}/:drop", key))
        # Sent while the client recovers: the session keeps it and resends it after recovery.
        send = f"{endpoint}/api/hubs/{hub}/connections/{conn}/:send?api-version=2024-12-01"
        result("send_while_recovering", call("POST", send, key, b"after the drop", "text/plain"))
        if not arrived.wait(TIMEOUT):
            raise RuntimeError("the message sent after the drop never arrived")
        result("received_after_recovery", got)

        result("fail_next_ack", call("POST", f"{faults}/:failNextAcks?count=1", key))
        outcomes = []
        for _ in range(2):
            try:
                client.join_group("g")
                outcomes.append("ok")
            except SendMessageError as e:
                outcomes.append(e.error_detail.name if e.error_detail else "failed")
        result("joins", outcomes)

        result("unknown_connection", call("POST", f"{endpoint}/emulator/faults/hubs/{hub}/connections/nobody/:drop", key))
        result("forged_token", call("POST", f"{faults}/:drop", "not-the-key"))
        return 0
    finally:
        try:
            client.close()
        except Exception as e:  # closing must not hide the verdict
            print("faults_urllib.py: close failed:", e, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
