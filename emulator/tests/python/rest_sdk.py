"""Every REST operation of the official Python service SDK (azure-messaging-webpubsubservice
1.3.0) against the emulator, with clients of the official client SDK to see the effects.

Usage: python rest_sdk.py CONNECTION_STRING HUB

Prints one line per result, `RESULT <name> <json>`, for the Rust test to compare with what
the service does; connection ids are replaced by user names so that the results are fixed.
Operations the SDK has no method for (health, :addToGroups, :removeFromGroups) go through
the SDK's own signed `send_request`. Exits non-zero only when something could not run
(a client did not connect, a wait timed out).
"""

import json
import sys
import threading

from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.messaging.webpubsubclient import WebPubSubClient, WebPubSubClientCredential
from azure.messaging.webpubsubclient.models import CallbackType, SendMessageError
from azure.messaging.webpubsubservice import WebPubSubServiceClient
from azure.messaging.webpubsubservice._operations._operations import (
    WebPubSubServiceClientOperationsMixin as GeneratedOperations,
)

TIMEOUT = 30.0
END = "end-of-round"


def result(name, value):
    print("RESULT", name, json.dumps(value, sort_keys=True), flush=True)


def log(*args):
    print("rest_sdk.py:", *args, file=sys.stderr, flush=True)


class Peer:
    """A client of the official client SDK that records the server messages it gets.

    The SDK runs each callback on a thread of its own, so messages are put back in order by
    their sequence ids (reliable protocol: 1, 2, 3, ... per connection)."""

    def __init__(self, name, url):
        self.name = name
        self.cond = threading.Condition()
        self.by_seq = {}  # sequence id -> text
        self.taken = 0  # sequence ids up to this one were taken
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connection_id = None
        self.client = WebPubSubClient(
            WebPubSubClientCredential(lambda: url),
            ack_timeout=5,
            message_retry_total=0,
            reconnect_retry_total=0,
        )
        self.client.subscribe(CallbackType.CONNECTED, self._on_connected)
        self.client.subscribe(CallbackType.DISCONNECTED, lambda e: self.disconnected.set())
        self.client.subscribe(CallbackType.SERVER_MESSAGE, self._on_server)

    def _on_connected(self, e):
        self.connection_id = e.connection_id
        self.connected.set()

    def _on_server(self, e):
        text = e.data if isinstance(e.data, str) else repr(e.data)
        with self.cond:
            self.by_seq[e.sequence_id] = text
            self.cond.notify_all()

    def open(self):
        self.client.open()
        if not self.connected.wait(TIMEOUT):
            raise RuntimeError(f"{self.name} never got `connected`")

    def _round_end(self):
        """The sequence id of the next end marker, once everything before it arrived."""
        seq = self.taken + 1
        while seq in self.by_seq:
            if self.by_seq[seq] == END:
                return seq
            seq += 1
        return None

    def take(self):
        """What arrived before the next end marker (sent to everyone after a round), in order."""
        with self.cond:
            if not self.cond.wait_for(lambda: self._round_end() is not None, TIMEOUT):
                raise RuntimeError(f"{self.name} timed out waiting for the end of a round")
            end = self._round_end()
            got = [self.by_seq.pop(s) for s in range(self.taken + 1, end)]
            self.by_seq.pop(end)
            self.taken = end
        return got


def status_of(call):
    """The HTTP status an SDK call ended with, and the service's error body if any."""
    try:
        call()
        return {"status": "ok"}
    except HttpResponseError as e:
        try:
            body = e.response.json()
        except Exception:  # a body that is not JSON is reported as text
            body = e.response.text()
        return {"status": e.status_code, "body": body}


def main():
    conn_str, hub = sys.argv[1], sys.argv[2]
    service = WebPubSubServiceClient.from_connection_string(conn_str, hub=hub, retry_total=0)
    roles = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"]

    def url(user, groups=(), roles=roles):
        kwargs = {"roles": list(roles), "groups": list(groups)}
        if user:
            kwargs["user_id"] = user
        return service.get_client_access_token(**kwargs)["url"]

    alice = Peer("alice", url("alice", ["g1"]))
    bob = Peer("bob", url("bob", ["g1", "g2"]))
    carol = Peer("carol", url(None))
    peers = [alice, bob, carol]
    names = {}
    try:
        for p in peers:
            p.open()
            names[p.connection_id] = p.name

        def round_of_messages():
            service.send_to_all(END, content_type="text/plain")
            return {p.name: p.take() for p in peers}

        # ---- what exists ----
        result(
            "exists",
            {
                "connection": [service.connection_exists(alice.connection_id), service.connection_exists("nobody")],
                "group": [service.group_exists("g1"), service.group_exists("nobody")],
                "user": [service.user_exists("alice"), service.user_exists("nobody")],
            },
        )

        # ---- sends, with filters, excluded, TTL and metadata ----
        text = {"content_type": "text/plain"}
        service.send_to_all("all: userId eq 'alice'", filter="userId eq 'alice'", **text)
        service.send_to_all("all: 'g2' in groups", filter="'g2' in groups", **text)
        service.send_to_all("all: userId eq null", filter="userId eq null", **text)
        service.send_to_all("all but alice", excluded=[alice.connection_id], **text)
        service.send_to_group("g1", "g1: not alice", filter="userId ne 'alice'", **text)
        service.send_to_group("g1", "g1 but bob", excluded=[bob.connection_id], **text)
        service.send_to_user("bob", "bob: on bob's connection", filter=f"connectionId eq '{bob.connection_id}'", **text)
        service.send_to_user("bob", "bob: on alice's connection", filter=f"connectionId eq '{alice.connection_id}'", **text)
        service.send_to_connection(carol.connection_id, "to carol", **text)
        service.send_to_all("ttl 300", params={"messageTtlSeconds": 300}, **text)
        service.send_to_all("with metadata", headers={"X-WebPubSub-Metadata-Trace-Id": "t-1"}, **text)
        service.send_to_all({"json": True})
        result("filtered_sends", round_of_messages())
        result("bad_filter", status_of(lambda: service.send_to_all("never", filter="userId eq", **text)))
        result(
            "bad_ttl",
            status_of(lambda: service.send_to_all("never", params={"messageTtlSeconds": 301}, **text)),
        )
        result("after_refusals", round_of_messages())

        # ---- groups ----
        service.add_connection_to_group("g3", carol.connection_id)
        service.add_user_to_group("g3", "alice")
        result("g3_after_adds", sorted(names[m.connection_id] for m in service.list_connections(group="g3")))
        service.remove_connection_from_group("g3", carol.connection_id)
        service.remove_user_from_group("g3", "alice")
        result("g3_after_removes", service.group_exists("g3"))
        service.remove_connection_from_all_groups(bob.connection_id)
        result("bob_groups_after_remove_all", [service.group_exists("g2")])
        service.add_user_to_group("g4", "alice")
        service.remove_user_from_all_groups("alice")
        result("alice_after_remove_all", [service.group_exists("g1"), service.group_exists("g4")])
        result(
            "add_missing_connection",
            status_of(lambda: service.add_connection_to_group("g3", "nobody"))["status"],
        )

        # ---- listing, in pages ----
        for p in peers:
            service.add_connection_to_group("all3", p.connection_id)
        members = list(service.list_connections(group="all3"))
        result("list", sorted([names[m.connection_id], m.user_id] for m in members))
        pages = [
            sorted(names[m.connection_id] for m in page)
            for page in service.list_connections(group="all3", maxpagesize=1).by_page()
        ]
        result("list_pages_of_one", {"pages": len(pages), "members": sorted(sum(pages, []))})
        result("list_top_2", len(list(service.list_connections(group="all3", top=2))))

        # ---- permissions ----
        perm_args = ("sendToGroup", carol.connection_id)
        before = service.has_permission(*perm_args, target_name="room")
        service.revoke_permission(*perm_args, target_name="room")
        after_revoke = service.has_permission(*perm_args, target_name="room")
        other = service.has_permission(*perm_args, target_name="lobby")
        service.grant_permission(*perm_args, target_name="room")
        after_grant = service.has_permission(*perm_args, target_name="room")
        result("permissions", [before, after_revoke, other, after_grant])

        # ---- what the SDK reaches only through send_request ----
        def raw(method, path, **kwargs):
            sep = "&" if "?" in path else "?"
            req = HttpRequest(method, f"/api{path}{sep}api-version=2024-12-01", **kwargs)
            return service.send_request(req).status_code

        add = raw("POST", f"/hubs/{hub}/:addToGroups", json={"groups": ["x"], "filter": "userId ne null"})
        x_members = sorted(names[m.connection_id] for m in service.list_connections(group="x"))
        remove = raw("POST", f"/hubs/{hub}/:removeFromGroups", json={"groups": ["x"], "filter": "userId eq 'bob'"})
        x_after = sorted(names[m.connection_id] for m in service.list_connections(group="x"))
        bad = raw("POST", f"/hubs/{hub}/:addToGroups", json={"groups": ["x"], "filter": "bogus"})
        result(
            "bulk_groups",
            {"add": add, "members": x_members, "remove": remove, "after": x_after, "bad_filter": bad},
        )
        result("health", raw("HEAD", "/health"))

        # ---- tokens: the SDK's REST call (used with Entra credentials) and wildcard roles ----
        token = GeneratedOperations.get_client_access_token(
            service,
            user_id="dave",
            roles=["webpubsub.joinLeaveGroups.room.*"],
            groups=["lobby"],
            minutes_to_expire=5,
        )["token"]
        base = url(None).split("?")[0]
        dave = Peer("dave", f"{base}?access_token={token}")
        peers.append(dave)
        dave.open()
        names[dave.connection_id] = "dave"
        joins = {}
        for group in ["room.a", "room.a.b", "lobby.x"]:
            try:
                dave.client.join_group(group)
                joins[group] = "ok"
            except SendMessageError as e:
                joins[group] = e.error_detail.name if e.error_detail else "failed"
        result(
            "generated_token",
            {"user": service.user_exists("dave"), "lobby": sorted(names[m.connection_id] for m in service.list_connections(group="lobby")), "joins": joins},
        )

        # ---- closing ----
        service.close_connection(dave.connection_id, reason="bye dave")
        service.close_user_connections("alice", reason="bye alice")
        service.close_group_connections("all3", excluded=[carol.connection_id], reason="bye group")
        closed = {}
        for p in [dave, alice, bob]:
            closed[p.name] = p.disconnected.wait(TIMEOUT)
        closed["carol_still_here"] = service.connection_exists(carol.connection_id)
        service.close_all_connections(reason="bye all")
        closed["carol"] = carol.disconnected.wait(TIMEOUT)
        result("closed", closed)
        return 0
    finally:
        for p in peers:
            try:
                p.client.close()
            except Exception as e:  # closing must not hide the verdict
                log("close failed:", e)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:
        log("failed:", repr(e))
        raise
