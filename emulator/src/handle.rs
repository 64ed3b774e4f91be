//! [`HubHandle`]: server-side operations on one hub, shared by Rust callers and the REST API.

use crate::client_url::ClientUrlBuilder;
use crate::frames::Outgoing;
use crate::hub::{Audience, Hub};
use crate::odata::Filter;
use crate::session::{Command, Faults, Session};
use crate::shared::Shared;
use crate::types::{ConnectionInfo, Permission, UpstreamEvent};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use webpubsub_protocol::{Data, Metadata, ServiceMessage};

/// A cheap handle for server-side operations on one hub: what an application server does
/// through the REST API, plus fault injection for tests.
///
/// Get one with [`Emulator::hub`](crate::Emulator::hub). Hubs exist implicitly: a handle
/// to a hub nobody connected to is valid and simply finds no connections.
/// Methods taking a connection id return `false` when no such session exists.
///
/// Sends reach every session in its own subprotocol (JSON or protobuf; see the crate docs'
/// crossing table). A [`Data::Protobuf`] payload must be a serialised `google.protobuf.Any`
/// (build it from a [`ProtobufAny`](webpubsub_protocol::ProtobufAny)): protobuf receivers
/// read it as an embedded message.
///
/// ```
/// use webpubsub_emulator::{Emulator, Permission};
///
/// let emu = Emulator::start().unwrap();
/// let hub = emu.hub("chat");
/// hub.send_to_group("room", "hello"); // from: "server", to every member of `room`
/// assert!(!hub.group_exists("room"));
/// assert!(!hub.grant_permission("no-such-connection", Permission::SendToGroup, None));
/// ```
#[derive(Clone)]
pub struct HubHandle {
    shared: Arc<Shared>,
    hub: Arc<Hub>,
}

impl fmt::Debug for HubHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubHandle")
            .field("hub", &self.hub.name())
            .finish()
    }
}

fn strs<S: AsRef<str>>(v: &[S]) -> Vec<&str> {
    v.iter().map(AsRef::as_ref).collect()
}

/// A `message` from `server` with `data`.
fn server_message(data: Data) -> Outgoing {
    Outgoing::new(ServiceMessage::ServerMessage {
        data,
        sequence_id: None,
        metadata: Metadata::new(),
    })
}

impl HubHandle {
    pub(crate) fn new(shared: Arc<Shared>, name: &str) -> HubHandle {
        let hub = shared.hub(name);
        HubHandle { shared, hub }
    }

    fn session(&self, conn_id: &str) -> Option<Arc<Session>> {
        self.hub.session(conn_id)
    }

    /// The hub's name.
    pub fn name(&self) -> &str {
        self.hub.name()
    }

    /// A builder for a client access URL of this hub.
    pub fn client_url(&self) -> ClientUrlBuilder {
        ClientUrlBuilder::new(&self.shared.cfg, self.hub.name())
    }

    // ---- messages ----

    /// Sends a message to every connection of the hub (`from: "server"`).
    pub fn send_to_all(&self, data: impl Into<Data>) {
        self.send_to_all_except(data, &[] as &[&str]);
    }

    /// Sends a message to every connection except the listed ones.
    pub fn send_to_all_except<S: AsRef<str>>(&self, data: impl Into<Data>, excluded: &[S]) {
        let limits = &self.shared.cfg.limits;
        let out = server_message(data.into());
        let over = self.hub.send_to_all(&out, &strs(excluded), limits);
        self.shared.end_overflowed(&self.hub, over);
    }

    /// Sends a message to every connection of a user.
    pub fn send_to_user(&self, user: impl AsRef<str>, data: impl Into<Data>) {
        let limits = &self.shared.cfg.limits;
        let out = server_message(data.into());
        let over = self.hub.send_to_user(user.as_ref(), &out, limits);
        self.shared.end_overflowed(&self.hub, over);
    }

    /// Sends a message to one connection. Returns `false` if it does not exist.
    pub fn send_to_connection(&self, conn_id: impl AsRef<str>, data: impl Into<Data>) -> bool {
        let limits = &self.shared.cfg.limits;
        let out = server_message(data.into());
        match self.hub.send_to_connection(conn_id.as_ref(), &out, limits) {
            Some(over) => {
                self.shared.end_overflowed(&self.hub, over);
                true
            }
            None => false,
        }
    }

    /// Sends a message to every member of a group (`from: "server"`, as the service does
    /// for everything the application server sends).
    pub fn send_to_group(&self, group: impl AsRef<str>, data: impl Into<Data>) {
        self.send_to_group_except(group, data, &[] as &[&str]);
    }

    /// Sends a message to every member of a group except the listed connections.
    pub fn send_to_group_except<S: AsRef<str>>(
        &self,
        group: impl AsRef<str>,
        data: impl Into<Data>,
        excluded: &[S],
    ) {
        let out = server_message(data.into());
        let limits = &self.shared.cfg.limits;
        let over = self
            .hub
            .send_to_group(group.as_ref(), &out, &strs(excluded), limits);
        self.shared.end_overflowed(&self.hub, over);
    }

    /// A server message with metadata to the connections of `to` that pass `filter`,
    /// except the listed ones (what a REST send does); with a TTL, not replayed to a
    /// session that recovers after it passed.
    pub(crate) fn send_where(
        &self,
        to: Audience<'_>,
        data: Data,
        metadata: Metadata,
        ttl: Option<Duration>,
        excluded: &[String],
        filter: Option<&Filter>,
    ) {
        let out = Outgoing::new(ServiceMessage::ServerMessage {
            data,
            sequence_id: None,
            metadata,
        })
        .expiring_at(ttl.map(|t| Instant::now() + t));
        let limits = &self.shared.cfg.limits;
        let over = self
            .hub
            .send_where(to, &out, &strs(excluded), filter, limits);
        self.shared.end_overflowed(&self.hub, over);
    }

    // ---- groups ----

    /// Adds (`add`) or removes every connection that passes `filter` to or from each group.
    pub(crate) fn regroup_where(&self, groups: &[String], filter: Option<&Filter>, add: bool) {
        self.hub.regroup_where(groups, filter, add);
    }

    /// At most `limit` members of a group after connection id `after`, sorted, with their
    /// users; and whether more follow.
    pub(crate) fn members_page(
        &self,
        group: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<(String, Option<String>)>, bool) {
        self.hub.members_page(group, after, limit)
    }

    /// Adds a connection to a group. Returns `false` if the connection does not exist.
    pub fn add_connection_to_group(
        &self,
        group: impl AsRef<str>,
        conn_id: impl AsRef<str>,
    ) -> bool {
        self.hub.join(conn_id.as_ref(), group.as_ref())
    }

    /// Removes a connection from a group. Returns `false` if the connection does not exist.
    pub fn remove_connection_from_group(
        &self,
        group: impl AsRef<str>,
        conn_id: impl AsRef<str>,
    ) -> bool {
        self.hub.leave(conn_id.as_ref(), group.as_ref())
    }

    /// Removes a connection from every group it is in.
    pub fn remove_connection_from_all_groups(&self, conn_id: impl AsRef<str>) -> bool {
        self.hub.leave_all(conn_id.as_ref())
    }

    /// Adds every connection of a user to a group; the user's later connections join it
    /// too, as in the service.
    pub fn add_user_to_group(&self, user: impl AsRef<str>, group: impl AsRef<str>) {
        self.hub.add_user_to_group(user.as_ref(), group.as_ref());
    }

    /// Removes a user's connections from a group (and forgets the user's membership).
    pub fn remove_user_from_group(&self, user: impl AsRef<str>, group: impl AsRef<str>) {
        self.hub
            .remove_user_from_group(user.as_ref(), group.as_ref());
    }

    /// Removes a user's connections from every group.
    pub fn remove_user_from_all_groups(&self, user: impl AsRef<str>) {
        let user = user.as_ref();
        for g in self.hub.user_groups(user) {
            self.hub.remove_user_from_group(user, &g);
        }
    }

    // ---- connections ----

    /// Closes a connection on purpose: it gets a `disconnected` message with `reason`,
    /// then a close frame with code 1008; the session cannot be recovered. A session
    /// waiting for recovery simply ends. Returns `false` if it does not exist.
    pub fn close_connection(&self, conn_id: impl AsRef<str>, reason: &str) -> bool {
        let Some(s) = self.session(conn_id.as_ref()) else {
            return false;
        };
        let reason = if reason.is_empty() {
            "Connection closed by the server".to_owned()
        } else {
            reason.to_owned()
        };
        if !s.command(Command::Close {
            reason: reason.clone(),
            flush: true,
        }) {
            self.shared.end_session(&self.hub, &s, &reason);
        }
        true
    }

    /// Closes every connection of the hub except the listed ones.
    pub fn close_all_connections<S: AsRef<str>>(&self, excluded: &[S], reason: &str) {
        let excluded = strs(excluded);
        for c in self.connections() {
            if !excluded.contains(&c.connection_id.as_str()) {
                self.close_connection(&c.connection_id, reason);
            }
        }
    }

    /// Closes every connection in a group except the listed ones.
    pub fn close_group_connections<S: AsRef<str>>(
        &self,
        group: impl AsRef<str>,
        excluded: &[S],
        reason: &str,
    ) {
        let excluded = strs(excluded);
        for id in self.group_members(group) {
            if !excluded.contains(&id.as_str()) {
                self.close_connection(&id, reason);
            }
        }
    }

    /// Closes every connection of a user except the listed ones.
    pub fn close_user_connections<S: AsRef<str>>(
        &self,
        user: impl AsRef<str>,
        excluded: &[S],
        reason: &str,
    ) {
        let (user, excluded) = (user.as_ref(), strs(excluded));
        for c in self.connections() {
            if c.user_id.as_deref() == Some(user) && !excluded.contains(&c.connection_id.as_str()) {
                self.close_connection(&c.connection_id, reason);
            }
        }
    }

    /// Grants a permission, for one group (`Some`, a group name: `*` in it is just a
    /// character) or every group (`None`). Returns `false` if the connection does not exist.
    pub fn grant_permission(
        &self,
        conn_id: impl AsRef<str>,
        permission: Permission,
        target_group: Option<&str>,
    ) -> bool {
        self.session(conn_id.as_ref())
            .map(|s| s.grant(permission, target_group))
            .is_some()
    }

    /// Revokes a permission (granted at run time or by a token role). `None` revokes the
    /// permission for every group, every pattern role and every single-group grant of it;
    /// `Some(g)` revokes it for `g` only — even where the every-group role or a pattern
    /// role (`webpubsub.sendToGroups.room.*`) covers `g`. Returns `false` if the
    /// connection does not exist.
    pub fn revoke_permission(
        &self,
        conn_id: impl AsRef<str>,
        permission: Permission,
        target_group: Option<&str>,
    ) -> bool {
        self.session(conn_id.as_ref())
            .map(|s| s.revoke(permission, target_group))
            .is_some()
    }

    /// Whether a connection has a permission: `None` asks for every group, `Some(g)` for
    /// group `g` (the every-group role and pattern roles that match `g` count).
    pub fn has_permission(
        &self,
        conn_id: impl AsRef<str>,
        permission: Permission,
        target_group: Option<&str>,
    ) -> bool {
        self.session(conn_id.as_ref())
            .is_some_and(|s| s.allows(permission, target_group))
    }

    // ---- what exists ----

    /// Every session of the hub: connected ones and those waiting for recovery.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.hub.connections()
    }

    /// Whether a session with this id exists (connected or waiting for recovery).
    pub fn connection_exists(&self, conn_id: impl AsRef<str>) -> bool {
        self.hub.has_connection(conn_id.as_ref())
    }

    /// Whether a group has at least one member.
    pub fn group_exists(&self, group: impl AsRef<str>) -> bool {
        self.hub.has_group(group.as_ref())
    }

    /// Whether a user has at least one session.
    pub fn user_exists(&self, user: impl AsRef<str>) -> bool {
        self.hub.has_user(user.as_ref())
    }

    /// The connection ids in a group, sorted.
    pub fn group_members(&self, group: impl AsRef<str>) -> Vec<String> {
        self.hub.members(group.as_ref())
    }

    /// Every upstream `event` clients sent to this hub, in arrival order.
    pub fn events(&self) -> Vec<UpstreamEvent> {
        self.hub.events()
    }

    // ---- fault injection ----

    /// Drops the connection's socket abruptly (TCP shutdown, no close frame). A reliable
    /// session stays recoverable. Returns `false` if no socket is attached.
    pub fn drop_connection(&self, conn_id: impl AsRef<str>) -> bool {
        self.session(conn_id.as_ref())
            .is_some_and(|s| s.command(Command::Drop))
    }

    /// Writes the first bytes of a WebSocket frame (its header promises 100 bytes, 10
    /// follow), then drops the socket abruptly. Returns `false` if no socket is attached.
    pub fn drop_connection_mid_frame(&self, conn_id: impl AsRef<str>) -> bool {
        self.session(conn_id.as_ref())
            .is_some_and(|s| s.command(Command::DropMidFrame))
    }

    /// The next request carrying an ack id is executed, then the socket is dropped
    /// abruptly before the ack is sent (the session stays recoverable).
    pub fn lose_next_ack(&self, conn_id: impl AsRef<str>) -> bool {
        self.fault(conn_id.as_ref(), |f| f.lose_next_ack = true)
    }

    /// The next `n` requests carrying an ack id are not executed and are answered
    /// `success: false` with `InternalServerError`.
    pub fn fail_next_acks(&self, conn_id: impl AsRef<str>, n: u32) -> bool {
        self.fault(conn_id.as_ref(), |f| f.fail_next_acks = n)
    }

    /// Stops (`true`) or resumes (`false`) writing to the connection's socket. Messages
    /// still get sequence ids and fill the unacked buffer while held.
    pub fn hold_outbound(&self, conn_id: impl AsRef<str>, hold: bool) -> bool {
        self.fault(conn_id.as_ref(), |f| f.hold_outbound = hold)
    }

    /// Sends every later ack this much later (`Duration::ZERO` restores prompt acks).
    pub fn delay_acks(&self, conn_id: impl AsRef<str>, delay: Duration) -> bool {
        self.fault(conn_id.as_ref(), |f| f.ack_delay = delay)
    }

    fn fault(&self, conn_id: &str, f: impl FnOnce(&mut Faults)) -> bool {
        self.session(conn_id).map(|s| s.inject(f)).is_some()
    }
}
