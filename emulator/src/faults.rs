//! Fault injection over HTTP, for tests in any language: the emulator's own routes under
//! `/emulator/faults` (not part of the service's API), served only when the emulator was
//! started with them on (`--enable-faults`, [`EmulatorBuilder::rest_faults`]) — otherwise
//! every such path is a 404. Authorised as the REST API is: `Authorization: Bearer <jwt>`
//! signed with the access key, `aud` = the request URL.
//!
//! Each route calls the [`HubHandle`] fault of the same name:
//!
//! | route | fault |
//! |---|---|
//! | `GET /emulator/faults` | lists these routes (200, JSON) |
//! | `POST …/hubs/{hub}/connections/{id}/:drop` | [`HubHandle::drop_connection`] |
//! | `POST …/hubs/{hub}/connections/{id}/:dropMidFrame` | [`HubHandle::drop_connection_mid_frame`] |
//! | `POST …/hubs/{hub}/connections/{id}/:loseNextAck` | [`HubHandle::lose_next_ack`] |
//! | `POST …/hubs/{hub}/connections/{id}/:failNextAcks?count=N` | [`HubHandle::fail_next_acks`] |
//! | `POST …/hubs/{hub}/connections/{id}/:holdOutbound` | [`HubHandle::hold_outbound`] (`true`) |
//! | `POST …/hubs/{hub}/connections/{id}/:releaseOutbound` | [`HubHandle::hold_outbound`] (`false`) |
//! | `POST …/hubs/{hub}/connections/{id}/:delayAcks?milliseconds=N` | [`HubHandle::delay_acks`] |
//! | `POST /emulator/faults/:refuseRecoveries` | [`Emulator::refuse_recoveries`] (`true`) |
//! | `POST /emulator/faults/:acceptRecoveries` | [`Emulator::refuse_recoveries`] (`false`) |
//!
//! (`…` is `/emulator/faults`.) Success is 204; a connection that does not exist — or, for
//! the drops, has no socket attached — is a 404; a bad number a 400; both with the REST
//! API's error body.
//!
//! [`EmulatorBuilder::rest_faults`]: crate::EmulatorBuilder::rest_faults
//! [`Emulator::refuse_recoveries`]: crate::Emulator::refuse_recoveries

use crate::exchange::{authorise, Answer, Query, Reply};
use crate::handle::HubHandle;
use crate::http::{percent_decode, Request};
use crate::shared::Shared;
use std::sync::Arc;
use std::time::Duration;

/// The path prefix of the fault routes.
pub(crate) const PREFIX: &str = "/emulator/faults";

/// Longest ack delay accepted, in milliseconds (ten minutes).
const MAX_DELAY_MS: u64 = 600_000;
/// Most acks that can be failed in advance.
const MAX_FAILED_ACKS: u64 = 1_000_000;

/// The routes, as `GET /emulator/faults` lists them.
const ROUTES: &[(&str, &str)] = &[
    (
        "POST",
        "/emulator/faults/hubs/{hub}/connections/{connectionId}/:drop",
    ),
    (
        "POST",
        "/emulator/faults/hubs/{hub}/connections/{connectionId}/:dropMidFrame",
    ),
    (
        "POST",
        "/emulator/faults/hubs/{hub}/connections/{connectionId}/:loseNextAck",
    ),
    (
        "POST",
        "/emulator/faults/hubs/{hub}/connections/{connectionId}/:failNextAcks?count={n}",
    ),
    (
        "POST",
        "/emulator/faults/hubs/{hub}/connections/{connectionId}/:holdOutbound",
    ),
    (
        "POST",
        "/emulator/faults/hubs/{hub}/connections/{connectionId}/:releaseOutbound",
    ),
    (
        "POST",
        "/emulator/faults/hubs/{hub}/connections/{connectionId}/:delayAcks?milliseconds={n}",
    ),
    ("POST", "/emulator/faults/:refuseRecoveries"),
    ("POST", "/emulator/faults/:acceptRecoveries"),
];

/// Whether a path is one of the fault routes' (on or off).
pub(crate) fn owns(path: &str) -> bool {
    path == PREFIX
        || path
            .strip_prefix(PREFIX)
            .is_some_and(|r| r.starts_with('/'))
}

/// Answers a request to a fault route.
pub(crate) fn handle(shared: &Arc<Shared>, req: &Request) -> Reply {
    if !shared.cfg.rest_faults {
        return Reply::not_found(
            "Fault injection over REST is off: start the emulator with --enable-faults (EmulatorBuilder::rest_faults(true))",
            "path",
        );
    }
    if let Err(r) = authorise(shared, req) {
        return r;
    }
    let tail = req.path()[PREFIX.len()..].trim_start_matches('/');
    let segs: Vec<String> = if tail.is_empty() {
        Vec::new()
    } else {
        tail.split('/').map(percent_decode).collect()
    };
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let query = Query::of(req);
    let method = req.method.to_ascii_uppercase();
    route(shared, &method, &segs, &query).unwrap_or_else(|r| r)
}

fn route(shared: &Arc<Shared>, method: &str, path: &[&str], q: &Query) -> Answer {
    match (method, path) {
        ("GET", []) => Ok(list()),
        ("POST", [":refuseRecoveries"]) => {
            shared.set_refuse_recoveries(true);
            Ok(Reply::status(204))
        }
        ("POST", [":acceptRecoveries"]) => {
            shared.set_refuse_recoveries(false);
            Ok(Reply::status(204))
        }
        ("POST", ["hubs", hub, "connections", id, action]) if !hub.is_empty() => {
            connection_fault(&HubHandle::new(shared.clone(), hub), id, action, q)
        }
        _ => Err(Reply::not_found(
            format!(
                "No fault route {method} {PREFIX}/{}; GET {PREFIX} lists them",
                path.join("/")
            ),
            "path",
        )),
    }
}

fn connection_fault(hub: &HubHandle, id: &str, action: &str, q: &Query) -> Answer {
    let done = match action {
        ":drop" => socket(hub.drop_connection(id), id)?,
        ":dropMidFrame" => socket(hub.drop_connection_mid_frame(id), id)?,
        ":loseNextAck" => hub.lose_next_ack(id),
        ":failNextAcks" => {
            let n = q.number("count", 0, MAX_FAILED_ACKS)?.unwrap_or(1);
            hub.fail_next_acks(id, u32::try_from(n).unwrap_or(u32::MAX))
        }
        ":holdOutbound" => hub.hold_outbound(id, true),
        ":releaseOutbound" => hub.hold_outbound(id, false),
        ":delayAcks" => {
            let Some(ms) = q.number("milliseconds", 0, MAX_DELAY_MS)? else {
                return Err(Reply::bad_request(
                    "Invalid milliseconds: it is required (0 restores prompt acks).",
                    "milliseconds",
                ));
            };
            hub.delay_acks(id, Duration::from_millis(ms))
        }
        other => {
            return Err(Reply::not_found(
                format!("No connection fault `{other}`; GET {PREFIX} lists them"),
                "path",
            ))
        }
    };
    if !done {
        return Err(Reply::not_found(
            format!("Connection `{id}` does not exist in hub `{}`", hub.name()),
            "connectionId",
        ));
    }
    log::info!("emulator: fault {action} on {id} in hub {}", hub.name());
    Ok(Reply::status(204))
}

/// A drop needs a socket: a session waiting for recovery has none.
fn socket(dropped: bool, id: &str) -> Result<bool, Reply> {
    if dropped {
        return Ok(true);
    }
    Err(Reply::not_found(
        format!(
            "Connection `{id}` has no socket to drop (it does not exist, or waits for recovery)"
        ),
        "connectionId",
    ))
}

fn list() -> Reply {
    let routes: Vec<serde_json::Value> = ROUTES
        .iter()
        .map(|(m, p)| serde_json::json!({ "method": m, "path": p }))
        .collect();
    Reply::json(200, serde_json::json!({ "routes": routes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_owns_its_paths_only() {
        assert!(owns("/emulator/faults"));
        assert!(owns("/emulator/faults/:refuseRecoveries"));
        assert!(!owns("/emulator/faultsx"));
        assert!(!owns("/api/hubs/h/:send"));
    }
}
