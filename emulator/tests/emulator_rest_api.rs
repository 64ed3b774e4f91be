//! The REST operations of data-plane API 2024-12-01 beyond the basic sends, over raw HTTP:
//! health, API versions, OData filters, `messageTtlSeconds`, metadata headers, the bulk group
//! operations, paged group listings, token options, error bodies, and wildcard roles.

mod support;

use serde_json::json;
use support::*;
use webpubsub_emulator::{Emulator, Permission};
use webpubsub_protocol::{ClientMessage, Data, Metadata, ServiceMessage};

const V: &str = "api-version=2024-12-01";

/// Percent-encodes a query value (filters have spaces and quotes).
fn q(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// The server messages that arrived before a pong: their payloads and metadata.
fn server_messages(c: &mut Ws) -> Vec<(Data, Metadata)> {
    c.drain_until_pong()
        .into_iter()
        .filter_map(|m| match m {
            ServiceMessage::ServerMessage { data, metadata, .. } => Some((data, metadata)),
            _ => None,
        })
        .collect()
}

fn texts(c: &mut Ws) -> Vec<String> {
    server_messages(c)
        .into_iter()
        .map(|(d, _)| d.as_text().unwrap_or("<not text>").to_owned())
        .collect()
}

fn post_text(emu: &Emulator, path_and_query: &str, body: &str) -> HttpResponse {
    rest(
        emu,
        "POST",
        path_and_query,
        Some("text/plain"),
        body.as_bytes(),
    )
}

fn post_json(emu: &Emulator, path_and_query: &str, body: &serde_json::Value) -> HttpResponse {
    rest(
        emu,
        "POST",
        path_and_query,
        Some("application/json"),
        body.to_string().as_bytes(),
    )
}

/// Asserts the service's error body: `{"code":"Error.BadRequest","message":…,"target":…}`.
fn assert_bad_request(r: &HttpResponse, target: &str, part: &str) {
    assert_eq!(r.status, 400, "{}", r.body);
    let e = r.json();
    assert_eq!(e["code"], "Error.BadRequest", "{e}");
    assert_eq!(e["target"], target, "{e}");
    let msg = e["message"].as_str().unwrap_or_default();
    assert!(msg.contains(part), "{msg:?} should say {part:?}");
}

#[test]
fn health_answers_200_without_a_token_and_unknown_api_versions_are_400() {
    let emu = Emulator::start().unwrap();
    assert_eq!(
        http(&emu, "HEAD", &format!("/api/health?{V}"), &[], b"").status,
        200
    );
    assert_eq!(http(&emu, "HEAD", "/api/health", &[], b"").status, 200);
    for version in ["2024-01-01", "2021-10-01"] {
        let r = post_text(
            &emu,
            &format!("/api/hubs/chat/:send?api-version={version}"),
            "x",
        );
        assert_eq!(r.status, 202, "{version}: {}", r.body);
    }
    let r = post_text(&emu, "/api/hubs/chat/:send?api-version=2019-01-01", "x");
    assert_bad_request(&r, "api-version", "not supported");
    let r = post_text(&emu, &format!("/api/hubs/chat/:send?{V}&{V}"), "x");
    assert_bad_request(&r, "api-version", "not supported");
    let r = post_text(&emu, &format!("/api/hubs/no%20spaces/:send?{V}"), "x");
    assert_bad_request(&r, "hub", "Invalid hub name");
}

#[test]
fn send_filters_pick_connections_by_user_group_connection_and_protocol() {
    let emu = Emulator::start().unwrap();
    let mut a = connect(&emu.client_url("chat").user_id("u1").group("g1").build());
    let mut b = connect(
        &emu.client_url("chat")
            .user_id("u2")
            .groups(["g1", "g2"])
            .build(),
    );
    let mut c = connect_plain(&emu.client_url("chat").build());
    let send_all = |filter: &str, body: &str| {
        let r = post_text(
            &emu,
            &format!("/api/hubs/chat/:send?filter={}&{V}", q(filter)),
            body,
        );
        assert_eq!(r.status, 202, "{filter}: {}", r.body);
    };
    send_all("userId eq 'u1'", "to u1");
    send_all("'g2' in groups", "in g2");
    send_all("userId eq null", "no user");
    send_all("not ('g1' in groups) or userId eq 'u2'", "not g1, or u2");
    send_all("protocol eq 'json.webpubsub.azure.v1'", "plain");
    send_all(
        "startswith(userId, 'u') and length(groups) ge 1",
        "u* in a group",
    );
    let r = post_text(
        &emu,
        &format!(
            "/api/hubs/chat/:send?filter={}&excluded={}&{V}",
            q("'g1' in groups"),
            a.connection_id
        ),
        "g1 but a",
    );
    assert_eq!(r.status, 202);
    let r = post_text(
        &emu,
        &format!(
            "/api/hubs/chat/groups/g1/:send?filter={}&{V}",
            q("userId ne 'u1'")
        ),
        "group g1, not u1",
    );
    assert_eq!(r.status, 202);
    let r = post_text(
        &emu,
        &format!(
            "/api/hubs/chat/users/u2/:send?filter={}&{V}",
            q(&format!("connectionId eq '{}'", a.connection_id))
        ),
        "u2 on a's connection: nobody",
    );
    assert_eq!(r.status, 202);
    let r = post_text(
        &emu,
        &format!(
            "/api/hubs/chat/users/u2/:send?filter={}&{V}",
            q(&format!("connectionId eq '{}'", b.connection_id))
        ),
        "u2 on b",
    );
    assert_eq!(r.status, 202);

    assert_eq!(texts(&mut a), ["to u1", "u* in a group"]);
    assert_eq!(
        texts(&mut b),
        [
            "in g2",
            "not g1, or u2",
            "u* in a group",
            "g1 but a",
            "group g1, not u1",
            "u2 on b"
        ]
    );
    assert_eq!(texts(&mut c), ["no user", "not g1, or u2", "plain"]);
}

#[test]
fn a_bad_filter_is_400_saying_where_it_failed_and_nothing_is_sent() {
    let emu = Emulator::start().unwrap();
    let mut a = connect(&emu.client_url("chat").user_id("u1").group("g").build());
    let cases = [
        (
            "/api/hubs/chat/:send",
            "userId eq",
            "position 9: expected a value",
        ),
        (
            "/api/hubs/chat/groups/g/:send",
            "userId eq 'u1' annd true",
            "position 15: expected `and`, `or`",
        ),
        (
            "/api/hubs/chat/users/u1/:send",
            "nickname eq 'x'",
            "unknown identifier `nickname`",
        ),
        (
            "/api/hubs/chat/:send",
            "userId eq 'unterminated",
            "position 10",
        ),
        (
            "/api/hubs/chat/:send",
            "userId eq 1",
            "cannot compare a string with a number",
        ),
    ];
    for (path, filter, part) in cases {
        let r = post_text(&emu, &format!("{path}?filter={}&{V}", q(filter)), "never");
        assert_bad_request(&r, "filter", part);
    }
    assert!(texts(&mut a).is_empty());
    // An empty filter is no filter.
    let r = post_text(&emu, &format!("/api/hubs/chat/:send?filter=&{V}"), "all");
    assert_eq!(r.status, 202);
    assert_eq!(texts(&mut a), ["all"]);
}

#[test]
fn message_ttl_seconds_from_0_to_300_is_accepted_and_anything_else_is_400() {
    let emu = Emulator::start().unwrap();
    let mut a = connect(&emu.client_url("chat").user_id("u").group("g").build());
    let id = a.connection_id.clone();
    for path in [
        "/api/hubs/chat/:send".to_owned(),
        "/api/hubs/chat/users/u/:send".to_owned(),
        "/api/hubs/chat/groups/g/:send".to_owned(),
        format!("/api/hubs/chat/connections/{id}/:send"),
    ] {
        for ok in ["0", "300"] {
            let r = post_text(&emu, &format!("{path}?messageTtlSeconds={ok}&{V}"), ok);
            assert_eq!(r.status, 202, "{path} {ok}: {}", r.body);
        }
        for bad in ["301", "-1", "%2B5", "1.5", "ten", ""] {
            let r = post_text(
                &emu,
                &format!("{path}?messageTtlSeconds={bad}&{V}"),
                "never",
            );
            assert_bad_request(&r, "messageTtlSeconds", "messageTtlSeconds");
        }
        let r = post_text(
            &emu,
            &format!("{path}?messageTtlSeconds=1&messageTtlSeconds=2&{V}"),
            "never",
        );
        assert_bad_request(&r, "messageTtlSeconds", "more than once");
    }
    assert_eq!(
        texts(&mut a),
        ["0", "300", "0", "300", "0", "300", "0", "300"]
    );
}

#[test]
fn metadata_headers_reach_the_clients_of_every_rest_send_and_bad_ones_are_400() {
    let emu = Emulator::start().unwrap();
    let mut a = connect(&emu.client_url("chat").user_id("u").group("g").build());
    let id = a.connection_id.clone();
    let headers = [
        ("Content-Type", "text/plain"),
        ("X-WebPubSub-Metadata-Trace-Id", "t-1"),
        ("x-webpubsub-metadata-origin", " cli "),
    ];
    let paths = [
        "/api/hubs/chat/:send".to_owned(),
        "/api/hubs/chat/users/u/:send".to_owned(),
        "/api/hubs/chat/groups/g/:send".to_owned(),
        format!("/api/hubs/chat/connections/{id}/:send"),
    ];
    for path in &paths {
        let r = rest_with(&emu, "POST", &format!("{path}?{V}"), &headers, b"m");
        assert_eq!(r.status, 202, "{path}: {}", r.body);
    }
    let expected = Metadata::new()
        .with("trace-id", "t-1")
        .with("origin", "cli");
    let got = server_messages(&mut a);
    assert_eq!(got.len(), 4, "{got:?}");
    for (data, metadata) in got {
        assert_eq!(data, Data::from("m"));
        assert_eq!(metadata, expected);
    }
    let long = "v".repeat(1025);
    let bad: [(&str, &str, &str); 3] = [
        ("X-WebPubSub-Metadata-k", "café", "not printable ASCII"),
        ("X-WebPubSub-Metadata-k", long.as_str(), "more than 1024"),
        ("X-WebPubSub-Metadata-", "v", "HTTP token"),
    ];
    for (name, value, part) in bad {
        let r = rest_with(
            &emu,
            "POST",
            &format!("/api/hubs/chat/:send?{V}"),
            &[("Content-Type", "text/plain"), (name, value)],
            b"never",
        );
        assert_bad_request(&r, "metadata", part);
    }
    assert!(server_messages(&mut a).is_empty());
}

#[test]
fn add_to_groups_and_remove_from_groups_follow_the_filter() {
    let emu = Emulator::start().unwrap();
    let hub = emu.hub("chat");
    let a = connect(&emu.client_url("chat").user_id("u1").build());
    let b = connect(&emu.client_url("chat").user_id("u2").build());
    let c = connect(&emu.client_url("chat").build());
    let add = |body: serde_json::Value| {
        post_json(&emu, &format!("/api/hubs/chat/:addToGroups?{V}"), &body)
    };
    let remove = |body: serde_json::Value| {
        post_json(
            &emu,
            &format!("/api/hubs/chat/:removeFromGroups?{V}"),
            &body,
        )
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };

    assert_eq!(
        add(json!({"groups": ["x", "y"], "filter": "userId eq 'u1'"})).status,
        200
    );
    assert_eq!(
        hub.group_members("x"),
        std::slice::from_ref(&a.connection_id)
    );
    assert_eq!(
        hub.group_members("y"),
        std::slice::from_ref(&a.connection_id)
    );
    // Without a filter: every connection.
    assert_eq!(add(json!({"groups": ["z"]})).status, 200);
    assert_eq!(
        hub.group_members("z"),
        sorted(vec![
            a.connection_id.clone(),
            b.connection_id.clone(),
            c.connection_id.clone()
        ])
    );
    assert_eq!(
        remove(json!({"groups": ["z"], "filter": "'x' in groups"})).status,
        200
    );
    assert_eq!(
        hub.group_members("z"),
        sorted(vec![b.connection_id.clone(), c.connection_id.clone()])
    );
    assert_eq!(
        remove(json!({"groups": ["z", "x"], "filter": null})).status,
        200
    );
    assert!(!hub.group_exists("z") && !hub.group_exists("x"));
    assert_eq!(
        hub.group_members("y"),
        std::slice::from_ref(&a.connection_id)
    );

    assert_bad_request(&add(json!({"groups": []})), "groups", "nonempty list");
    assert_bad_request(&add(json!({"filter": "true"})), "groups", "nonempty list");
    assert_bad_request(&add(json!({"groups": ["  "]})), "groups", "white space");
    assert_bad_request(
        &add(json!({"groups": [1]})),
        "body",
        "not a valid groups request",
    );
    assert_bad_request(
        &add(json!({"groups": ["g"], "filter": "'g' in groupz"})),
        "filter",
        "position 7",
    );
    let not_json = rest(
        &emu,
        "POST",
        &format!("/api/hubs/chat/:addToGroups?{V}"),
        Some("application/json"),
        b"{groups",
    );
    assert_bad_request(&not_json, "body", "not a valid groups request");
    let text = rest(
        &emu,
        "POST",
        &format!("/api/hubs/chat/:addToGroups?{V}"),
        Some("text/plain"),
        br#"{"groups":["g"]}"#,
    );
    assert_eq!(text.status, 415);
    assert!(!hub.group_exists("g"));
}

#[test]
fn group_connections_are_listed_in_pages_with_next_links_and_top() {
    let emu = Emulator::start().unwrap();
    let clients: Vec<Ws> = (0..5)
        .map(|i| {
            connect(
                &emu.client_url("chat")
                    .user_id(format!("u{i}"))
                    .group("g")
                    .build(),
            )
        })
        .collect();
    let mut all_ids: Vec<String> = clients.iter().map(|c| c.connection_id.clone()).collect();
    all_ids.sort();
    let get = |path_and_query: &str| {
        let r = rest(&emu, "GET", path_and_query, None, b"");
        assert_eq!(r.status, 200, "{path_and_query}: {}", r.body);
        r.json()
    };
    // Follows every nextLink from `first`; returns the pages' ids.
    let pages = |first: &str| {
        let mut pages = Vec::new();
        let mut next = Some(first.to_owned());
        while let Some(path) = next.take() {
            assert!(pages.len() < 10, "too many pages");
            let page = get(&path);
            let ids: Vec<String> = page["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    let id = m["connectionId"].as_str().unwrap().to_owned();
                    let c = clients.iter().find(|c| c.connection_id == id).unwrap();
                    assert_eq!(m["userId"].as_str(), c.user_id.as_deref());
                    id
                })
                .collect();
            pages.push(ids);
            if let Some(link) = page.get("nextLink").and_then(|l| l.as_str()) {
                let rest = link
                    .strip_prefix(&emu.endpoint())
                    .unwrap_or_else(|| panic!("{link} is not on {}", emu.endpoint()));
                next = Some(rest.to_owned());
            }
        }
        pages
    };
    let by_two = pages(&format!(
        "/api/hubs/chat/groups/g/connections?maxpagesize=2&{V}"
    ));
    assert_eq!(by_two.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(by_two.concat(), all_ids, "every member once, in id order");
    let top3 = pages(&format!(
        "/api/hubs/chat/groups/g/connections?maxpagesize=2&top=3&{V}"
    ));
    assert_eq!(top3.concat(), all_ids[..3]);
    assert_eq!(top3.len(), 2);
    let top2 = pages(&format!("/api/hubs/chat/groups/g/connections?top=2&{V}"));
    assert_eq!(top2, [all_ids[..2].to_vec()]);
    let whole = pages(&format!("/api/hubs/chat/groups/g/connections?{V}"));
    assert_eq!(whole, [all_ids.clone()]);
    assert_eq!(
        get(&format!("/api/hubs/chat/groups/nobody/connections?{V}")),
        json!({"value": []})
    );
    for (param, value) in [
        ("maxpagesize", "0"),
        ("maxpagesize", "201"),
        ("maxpagesize", "two"),
        ("top", "0"),
        ("continuationToken", "%2A%2A"),
    ] {
        let r = rest(
            &emu,
            "GET",
            &format!("/api/hubs/chat/groups/g/connections?{param}={value}&{V}"),
            None,
            b"",
        );
        assert_bad_request(&r, param, param);
    }
}

#[test]
fn generate_token_takes_groups_roles_and_whole_minutes_and_refuses_the_rest() {
    let emu = Emulator::start().unwrap();
    let token = |query: &str| {
        rest(
            &emu,
            "POST",
            &format!("/api/hubs/chat/:generateToken?{query}{V}"),
            None,
            b"",
        )
    };
    let r = token(&format!(
        "userId=zoe&role={}&group=lobby&clientType=Default&",
        q("webpubsub.joinLeaveGroups.room.*")
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let jwt = r.json()["token"].as_str().unwrap().to_owned();
    let mut c = connect(&format!(
        "ws://{}/client/hubs/chat?access_token={jwt}",
        emu.addr()
    ));
    assert_eq!(
        emu.hub("chat").group_members("lobby"),
        [c.connection_id.clone()]
    );
    c.send(join("room.1", 1));
    assert_eq!(c.ack(1), (true, None));
    c.send(join("room.1.2", 2));
    assert_eq!(c.ack(2), (false, Some("Forbidden".into())));

    assert_bad_request(&token("minutesToExpire=0&"), "minutesToExpire", "from 1");
    assert_bad_request(
        &token("minutesToExpire=soon&"),
        "minutesToExpire",
        "whole number",
    );
    assert_bad_request(&token("group=%20&"), "group", "white space");
    assert_bad_request(&token("clientType=Bogus&"), "clientType", "Default or MQTT");
    let mqtt = token("clientType=mqtt&");
    assert_eq!(mqtt.status, 501, "{}", mqtt.body);
    assert_eq!(mqtt.json()["code"], "NotImplemented");
}

fn publish(group: &str, ack: u64) -> ClientMessage {
    ClientMessage::SendToGroup {
        group: group.into(),
        ack_id: Some(ack),
        no_echo: false,
        data: "x".into(),
        ttl_seconds: None,
        metadata: Metadata::new(),
    }
}

#[test]
fn wildcard_roles_allow_matching_groups_and_revoking_one_group_denies_it() {
    let emu = Emulator::start().unwrap();
    let hub = emu.hub("chat");
    let mut c = connect(
        &emu.client_url("chat")
            .role("webpubsub.sendToGroups.chat.**")
            .role("webpubsub.joinLeaveGroups.room.?")
            .build(),
    );
    let id = c.connection_id.clone();
    let mut ack = 0;
    let mut run = |c: &mut Ws, msg: fn(&str, u64) -> ClientMessage, group: &str| {
        ack += 1;
        c.send(msg(group, ack));
        c.ack(ack).0
    };
    assert!(run(&mut c, join, "room.1"));
    assert!(!run(&mut c, join, "room.12"), "? is one character");
    assert!(!run(&mut c, join, "room.."), "? is not a dot");
    assert!(run(&mut c, publish, "chat.eu.west"));
    assert!(!run(&mut c, publish, "Chat.eu"), "case-sensitive");
    assert!(!run(&mut c, publish, "chat"), "chat.** needs the dot");

    let perm = |method: &str, p: &str, target: &str| {
        rest(
            &emu,
            method,
            &format!(
                "/api/hubs/chat/permissions/{p}/connections/{id}?targetName={}&{V}",
                q(target)
            ),
            None,
            b"",
        )
        .status
    };
    assert_eq!(perm("HEAD", "sendToGroup", "chat.eu.west"), 200);
    assert_eq!(perm("DELETE", "sendToGroup", "chat.eu.west"), 204);
    assert_eq!(perm("HEAD", "sendToGroup", "chat.eu.west"), 404);
    assert_eq!(perm("HEAD", "sendToGroup", "chat.eu.east"), 200);
    assert!(!run(&mut c, publish, "chat.eu.west"), "revoked alone");
    assert!(run(&mut c, publish, "chat.eu.east"));
    // A granted target is a group name: `*` in it is just a character.
    assert_eq!(perm("PUT", "joinLeaveGroup", "lobby.*"), 200);
    assert!(run(&mut c, join, "lobby.*"));
    assert!(!run(&mut c, join, "lobby.a"));
    assert!(!hub.has_permission(&id, Permission::JoinLeaveGroup, Some("lobby.a")));
    assert_bad_request(
        &rest(
            &emu,
            "PUT",
            &format!("/api/hubs/chat/permissions/sendToGroup/connections/{id}?targetName=%20&{V}"),
            None,
            b"",
        ),
        "targetName",
        "white space",
    );
    let missing = rest(
        &emu,
        "PUT",
        &format!("/api/hubs/chat/permissions/sendToGroup/connections/nobody?{V}"),
        None,
        b"",
    );
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["code"], "Error.NotFound");
}

#[test]
fn closing_the_connections_of_a_user_or_a_group_spares_the_excluded() {
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let mut a = connect(&emu.client_url("chat").user_id("u").group("g").build());
    let mut b = connect(&emu.client_url("chat").user_id("u").build());
    let mut c = connect(&emu.client_url("chat").user_id("v").group("g").build());
    let mut d = connect(&emu.client_url("chat").user_id("v").group("g").build());
    let r = rest(
        &emu,
        "POST",
        &format!(
            "/api/hubs/chat/users/u/:closeConnections?excluded={}&reason=bye&{V}",
            b.connection_id
        ),
        None,
        b"",
    );
    assert_eq!(r.status, 204);
    let (code, seen) = a.closed();
    assert_eq!(code.map(u16::from), Some(1008));
    assert_eq!(
        seen.last(),
        Some(&ServiceMessage::Disconnected {
            message: Some("bye".into())
        })
    );
    let r = rest(
        &emu,
        "POST",
        &format!(
            "/api/hubs/chat/groups/g/:closeConnections?excluded={}&{V}",
            d.connection_id
        ),
        None,
        b"",
    );
    assert_eq!(r.status, 204);
    assert_eq!(c.closed().0.map(u16::from), Some(1008));
    wait_ended(&obs, &a.connection_id);
    wait_ended(&obs, &c.connection_id);
    // The excluded ones are still served.
    assert!(b.drain_until_pong().is_empty());
    assert!(d.drain_until_pong().is_empty());
    let ids: Vec<String> = emu
        .hub("chat")
        .connections()
        .into_iter()
        .map(|c| c.connection_id)
        .collect();
    let mut expected = vec![b.connection_id.clone(), d.connection_id.clone()];
    expected.sort();
    assert_eq!(ids, expected);
}

#[test]
fn unknown_routes_and_missing_connections_get_the_service_error_body() {
    let emu = Emulator::start().unwrap();
    let r = rest(
        &emu,
        "GET",
        &format!("/api/hubs/chat/nothing?{V}"),
        None,
        b"",
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "Error.NotFound");
    let r = rest(
        &emu,
        "PUT",
        &format!("/api/hubs/chat/groups/g/connections/nobody?{V}"),
        None,
        b"",
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["target"], "connectionId");
    // Removing what is not there is fine.
    for path in [
        "groups/g/connections/nobody",
        "connections/nobody/groups",
        "users/nobody/groups",
    ] {
        let r = rest(
            &emu,
            "DELETE",
            &format!("/api/hubs/chat/{path}?{V}"),
            None,
            b"",
        );
        assert_eq!(r.status, 204, "{path}");
    }
    let r = post_text(
        &emu,
        &format!("/api/hubs/chat/connections/nobody/:send?{V}"),
        "x",
    );
    assert_eq!(r.status, 202, "sends are fire-and-forget");
    let r = rest(
        &emu,
        "POST",
        &format!("/api/hubs/chat/:send?{V}"),
        Some("image/png"),
        b"x",
    );
    assert_eq!(r.status, 415);
    assert_eq!(r.json()["code"], "Error.UnsupportedMediaType");
}
