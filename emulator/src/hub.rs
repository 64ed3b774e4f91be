//! [`HubHandle`]: server-side operations on one hub, shared by Rust callers and the REST API.

use super::state::{encode_body, end_session, Command, Hub, Phase, Session, Shared};
use super::{ClientUrlBuilder, ConnectionInfo, Permission, UpstreamEvent};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tungstenite::Utf8Bytes;
use webpubsub_protocol::{Data, Metadata, ServiceMessage};

/// A cheap handle for server-side operations on one hub: what an application server does
/// through the REST API, plus fault injection for tests.
///
/// Get one with [`Emulator::hub`](super::Emulator::hub). Hubs exist implicitly: a handle
/// to a hub nobody connected to is valid and simply finds no connections.
/// Methods taking a connection id return `false` when no such session exists.
#[derive(Clone)]
pub struct HubHandle {
    shared: Arc<Shared>,
    hub: Arc<Hub>,
}

impl fmt::Debug for HubHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubHandle")
            .field("hub", &&*self.hub.name)
            .finish()
    }
}

fn strs<S: AsRef<str>>(v: &[S]) -> Vec<&str> {
    v.iter().map(AsRef::as_ref).collect()
}

impl HubHandle {
    pub(crate) fn new(shared: Arc<Shared>, name: &str) -> HubHandle {
        let hub = shared.hub(name);
        HubHandle { shared, hub }
    }

    fn session(&self, conn_id: &str) -> Option<Arc<Session>> {
        self.hub.state.lock().session(conn_id)
    }

    /// The hub's name.
    pub fn name(&self) -> &str {
        &self.hub.name
    }

    /// A builder for a client access URL of this hub.
    pub fn client_url(&self) -> ClientUrlBuilder {
        ClientUrlBuilder::new(&self.shared, &self.hub.name)
    }

    /// Sends a message to every connection of the hub (`from: "server"`).
    pub fn send_to_all(&self, data: impl Into<Data>) {
        self.hub.send_to_all(&self.shared, data.into(), &[]);
    }

    /// Sends a message to every connection except the listed ones.
    pub fn send_to_all_except<S: AsRef<str>>(&self, data: impl Into<Data>, excluded: &[S]) {
        self.hub
            .send_to_all(&self.shared, data.into(), &strs(excluded));
    }

    /// Sends a message to every connection of a user.
    pub fn send_to_user(&self, user: impl AsRef<str>, data: impl Into<Data>) {
        self.hub
            .send_to_user(&self.shared, user.as_ref(), data.into());
    }

    /// Sends a message to one connection. Returns `false` if it does not exist.
    pub fn send_to_connection(&self, conn_id: impl AsRef<str>, data: impl Into<Data>) -> bool {
        self.hub
            .send_to_connection(&self.shared, conn_id.as_ref(), data.into())
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
        let msg = ServiceMessage::ServerMessage {
            data: data.into(),
            sequence_id: None,
            metadata: Metadata::default(),
        };
        self.hub
            .send_message_to_group(&self.shared, group.as_ref(), &msg, &strs(excluded));
    }

    /// Adds a connection to a group. Returns `false` if the connection does not exist.
    pub fn add_connection_to_group(
        &self,
        group: impl AsRef<str>,
        conn_id: impl AsRef<str>,
    ) -> bool {
        self.hub.state.lock().join(conn_id.as_ref(), group.as_ref())
    }

    /// Removes a connection from a group. Returns `false` if the connection does not exist.
    pub fn remove_connection_from_group(
        &self,
        group: impl AsRef<str>,
        conn_id: impl AsRef<str>,
    ) -> bool {
        self.hub
            .state
            .lock()
            .leave(conn_id.as_ref(), group.as_ref())
    }

    /// Removes a connection from every group it is in.
    pub fn remove_connection_from_all_groups(&self, conn_id: impl AsRef<str>) -> bool {
        let mut st = self.hub.state.lock();
        let Some(groups) = st.sessions.get(conn_id.as_ref()).map(|e| e.groups.clone()) else {
            return false;
        };
        for g in groups {
            st.leave(conn_id.as_ref(), &g);
        }
        true
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
        let groups: Vec<String> = {
            let st = self.hub.state.lock();
            let mut gs: Vec<String> = st
                .user_groups
                .get(user)
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            for id in st.users.get(user).into_iter().flatten() {
                if let Some(e) = st.sessions.get(id) {
                    gs.extend(e.groups.iter().cloned());
                }
            }
            gs
        };
        for g in groups {
            self.hub.remove_user_from_group(user, &g);
        }
    }

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
            end_session(&self.shared, &self.hub, &s, &reason);
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

    /// Grants a permission, for one group (`Some`) or every group (`None`).
    /// Returns `false` if the connection does not exist.
    pub fn grant_permission(
        &self,
        conn_id: impl AsRef<str>,
        permission: Permission,
        target_group: Option<&str>,
    ) -> bool {
        let Some(s) = self.session(conn_id.as_ref()) else {
            return false;
        };
        s.st.lock()
            .perms
            .insert((permission, target_group.map(str::to_owned)));
        true
    }

    /// Revokes a permission (granted at run time or by a token role). `None` revokes the
    /// permission for every group and every single-group grant of it; `Some(g)` revokes
    /// the grant for `g` only. Returns `false` if the connection does not exist.
    pub fn revoke_permission(
        &self,
        conn_id: impl AsRef<str>,
        permission: Permission,
        target_group: Option<&str>,
    ) -> bool {
        let Some(s) = self.session(conn_id.as_ref()) else {
            return false;
        };
        let mut st = s.st.lock();
        match target_group {
            None => st.perms.retain(|(p, _)| *p != permission),
            Some(g) => {
                st.perms.remove(&(permission, Some(g.to_owned())));
            }
        }
        true
    }

    /// Whether a connection has a permission: `None` asks for every group, `Some(g)` for
    /// group `g` (a grant for every group counts).
    pub fn has_permission(
        &self,
        conn_id: impl AsRef<str>,
        permission: Permission,
        target_group: Option<&str>,
    ) -> bool {
        self.session(conn_id.as_ref())
            .is_some_and(|s| s.has_permission(permission, target_group))
    }

    /// Every session of the hub: connected ones and those waiting for recovery.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        let st = self.hub.state.lock();
        let mut v: Vec<ConnectionInfo> = st
            .sessions
            .values()
            .map(|e| ConnectionInfo {
                connection_id: e.session.id.clone(),
                user_id: e.session.user_id.clone(),
                groups: e.groups.iter().cloned().collect(),
                connected: e.session.st.lock().phase == Phase::Live,
            })
            .collect();
        v.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
        v
    }

    /// Whether a session with this id exists (connected or waiting for recovery).
    pub fn connection_exists(&self, conn_id: impl AsRef<str>) -> bool {
        self.hub
            .state
            .lock()
            .sessions
            .contains_key(conn_id.as_ref())
    }

    /// Whether a group has at least one member.
    pub fn group_exists(&self, group: impl AsRef<str>) -> bool {
        self.hub.state.lock().groups.contains_key(group.as_ref())
    }

    /// Whether a user has at least one session.
    pub fn user_exists(&self, user: impl AsRef<str>) -> bool {
        self.hub.state.lock().users.contains_key(user.as_ref())
    }

    /// The connection ids in a group, sorted.
    pub fn group_members(&self, group: impl AsRef<str>) -> Vec<String> {
        let st = self.hub.state.lock();
        let mut v: Vec<String> = st
            .groups
            .get(group.as_ref())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Every upstream `event` clients sent to this hub, in arrival order.
    pub fn events(&self) -> Vec<UpstreamEvent> {
        self.hub.events.lock().clone()
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

    fn fault(&self, conn_id: &str, f: impl FnOnce(&mut super::state::Faults)) -> bool {
        let Some(s) = self.session(conn_id) else {
            return false;
        };
        let mut st = s.st.lock();
        f(&mut st.faults);
        st.wake();
        true
    }
}

/// Server-side operations shared by the in-process handle and the REST API.
impl Hub {
    /// Delivers `body` to each session, then ends those that overflowed while dropped.
    fn fan_out<'a>(
        &self,
        shared: &Shared,
        sessions: impl Iterator<Item = &'a Arc<Session>>,
        body: &Utf8Bytes,
        excluded: &[&str],
    ) -> Vec<Arc<Session>> {
        let mut overflowed = Vec::new();
        for s in sessions {
            if excluded.contains(&s.id.as_str()) {
                continue;
            }
            if s.deliver(body, &shared.cfg) {
                overflowed.push(s.clone());
            }
        }
        overflowed
    }

    fn end_all(&self, shared: &Shared, sessions: Vec<Arc<Session>>) {
        for s in sessions {
            let reason = s.st.lock().end_reason.clone().unwrap_or_default();
            end_session(shared, self, &s, &reason);
        }
    }

    pub fn send_to_all(&self, shared: &Shared, data: Data, excluded: &[&str]) {
        let body = encode_body(&ServiceMessage::ServerMessage {
            data,
            sequence_id: None,
            metadata: Metadata::default(),
        });
        let over = {
            let st = self.state.lock();
            self.fan_out(
                shared,
                st.sessions.values().map(|e| &e.session),
                &body,
                excluded,
            )
        };
        self.end_all(shared, over);
    }

    pub fn send_to_user(&self, shared: &Shared, user: &str, data: Data) {
        let body = encode_body(&ServiceMessage::ServerMessage {
            data,
            sequence_id: None,
            metadata: Metadata::default(),
        });
        let over = {
            let st = self.state.lock();
            let sessions = st.user_sessions(user);
            self.fan_out(shared, sessions.iter(), &body, &[])
        };
        self.end_all(shared, over);
    }

    pub fn send_to_connection(&self, shared: &Shared, conn: &str, data: Data) -> bool {
        let body = encode_body(&ServiceMessage::ServerMessage {
            data,
            sequence_id: None,
            metadata: Metadata::default(),
        });
        let Some(s) = self.state.lock().session(conn) else {
            return false;
        };
        let over = self.fan_out(shared, std::iter::once(&s), &body, &[]);
        self.end_all(shared, over);
        true
    }

    /// Sends `msg` (a group or server message without sequence id) to a group's members.
    pub fn send_message_to_group(
        &self,
        shared: &Shared,
        group: &str,
        msg: &ServiceMessage,
        excluded: &[&str],
    ) {
        let body = encode_body(msg);
        let over = {
            let st = self.state.lock();
            match st.groups.get(group) {
                Some(members) => self.fan_out(shared, members.values(), &body, excluded),
                None => Vec::new(),
            }
        };
        self.end_all(shared, over);
    }

    pub fn add_user_to_group(&self, user: &str, group: &str) {
        let mut st = self.state.lock();
        st.user_groups
            .entry(user.to_owned())
            .or_default()
            .insert(group.to_owned());
        let ids: Vec<String> = st.users.get(user).into_iter().flatten().cloned().collect();
        for id in ids {
            st.join(&id, group);
        }
    }

    pub fn remove_user_from_group(&self, user: &str, group: &str) {
        let mut st = self.state.lock();
        if let Some(gs) = st.user_groups.get_mut(user) {
            gs.remove(group);
        }
        let ids: Vec<String> = st.users.get(user).into_iter().flatten().cloned().collect();
        for id in ids {
            st.leave(&id, group);
        }
    }

    pub fn record_event(&self, ev: UpstreamEvent) {
        self.events.lock().push(ev);
    }
}
