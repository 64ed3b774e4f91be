//! One hub: its sessions, groups and users, the fan-out of messages to them, and the
//! upstream events it recorded.
//!
//! Lock order: `Hub::tables` → a session's lock. Fan-out holds the tables while it hands
//! the message to each member, so a member cannot leave halfway through a message; the
//! message is encoded (once per codec its receivers speak) during that pass.

use crate::frames::Outgoing;
use crate::odata::{Filter, Subject};
use crate::session::{Session, UnackedLimits};
use crate::types::{ConnectionInfo, UpstreamEvent};
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Sessions whose unacked buffer overflowed while no socket was attached: they must be
/// ended (which needs the emulator's observers, so the caller does it).
#[must_use = "overflowed sessions must be ended"]
pub(crate) struct Overflowed(pub Vec<Arc<Session>>);

pub(crate) struct Hub {
    name: Arc<str>,
    tables: Mutex<Tables>,
    events: Mutex<Vec<UpstreamEvent>>,
}

/// A session's entry in its hub.
struct Entry {
    session: Arc<Session>,
    groups: BTreeSet<String>,
}

impl Entry {
    /// The session as a filter sees it.
    fn subject(&self) -> Subject<'_> {
        Subject {
            connection_id: self.session.id(),
            user_id: self.session.user_id(),
            groups: &self.groups,
            // A simple client speaks no subprotocol.
            protocol: self.session.subprotocol().map_or("", |p| p.name()),
        }
    }

    fn passes(&self, filter: Option<&Filter>) -> bool {
        filter.is_none_or(|f| f.matches(&self.subject()))
    }
}

/// Whom a server message goes to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Audience<'a> {
    All,
    User(&'a str),
    Group(&'a str),
    Connection(&'a str),
}

#[derive(Default)]
struct Tables {
    sessions: HashMap<String, Entry>,
    /// group → member connection id → session.
    groups: HashMap<String, HashMap<String, Arc<Session>>>,
    /// user → connection ids.
    users: HashMap<String, HashSet<String>>,
    /// Groups a user was added to through the server API: joined by the user's future
    /// connections too.
    user_groups: HashMap<String, HashSet<String>>,
}

impl Tables {
    fn join(&mut self, conn_id: &str, group: &str) -> bool {
        let Some(entry) = self.sessions.get_mut(conn_id) else {
            return false;
        };
        entry.groups.insert(group.to_owned());
        self.groups
            .entry(group.to_owned())
            .or_default()
            .insert(conn_id.to_owned(), entry.session.clone());
        true
    }

    fn leave(&mut self, conn_id: &str, group: &str) -> bool {
        let Some(entry) = self.sessions.get_mut(conn_id) else {
            return false;
        };
        entry.groups.remove(group);
        if let Some(members) = self.groups.get_mut(group) {
            members.remove(conn_id);
            if members.is_empty() {
                self.groups.remove(group);
            }
        }
        true
    }

    fn session(&self, conn_id: &str) -> Option<Arc<Session>> {
        self.sessions.get(conn_id).map(|e| e.session.clone())
    }

    fn user_connections(&self, user: &str) -> Vec<String> {
        self.users
            .get(user)
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

/// Delivers `out` to each session not excluded; collects those that overflowed.
fn fan_out<'a>(
    sessions: impl Iterator<Item = &'a Arc<Session>>,
    out: &Outgoing,
    excluded: &[&str],
    limits: &UnackedLimits,
) -> Overflowed {
    let mut overflowed = Vec::new();
    for s in sessions {
        if excluded.contains(&s.id()) {
            continue;
        }
        if s.deliver(out, limits) {
            overflowed.push(s.clone());
        }
    }
    Overflowed(overflowed)
}

impl Hub {
    pub fn new(name: &str) -> Hub {
        Hub {
            name: Arc::from(name),
            tables: Mutex::new(Tables::default()),
            events: Mutex::new(Vec::new()),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    // ---- sessions ----

    /// Adds a new session; it joins the token's groups and those its user was added to.
    pub fn register(&self, session: Arc<Session>, token_groups: Vec<String>) {
        let id = session.id().to_owned();
        let mut t = self.tables.lock();
        let mut groups = token_groups;
        if let Some(user) = session.user_id() {
            t.users
                .entry(user.to_owned())
                .or_default()
                .insert(id.clone());
            groups.extend(t.user_groups.get(user).into_iter().flatten().cloned());
        }
        t.sessions.insert(
            id.clone(),
            Entry {
                session,
                groups: BTreeSet::new(),
            },
        );
        for g in groups {
            t.join(&id, &g);
        }
    }

    /// Removes a session and its memberships.
    pub fn remove(&self, conn_id: &str) -> Option<Arc<Session>> {
        let mut t = self.tables.lock();
        let entry = t.sessions.remove(conn_id)?;
        for g in &entry.groups {
            if let Some(members) = t.groups.get_mut(g) {
                members.remove(conn_id);
                if members.is_empty() {
                    t.groups.remove(g);
                }
            }
        }
        if let Some(user) = entry.session.user_id() {
            if let Some(conns) = t.users.get_mut(user) {
                conns.remove(conn_id);
                if conns.is_empty() {
                    t.users.remove(user);
                }
            }
        }
        Some(entry.session)
    }

    pub fn session(&self, conn_id: &str) -> Option<Arc<Session>> {
        self.tables.lock().session(conn_id)
    }

    pub fn sessions(&self) -> Vec<Arc<Session>> {
        let t = self.tables.lock();
        t.sessions.values().map(|e| e.session.clone()).collect()
    }

    /// Dropped sessions whose recovery window has passed.
    pub fn expired(&self, window: Duration) -> Vec<Arc<Session>> {
        let t = self.tables.lock();
        t.sessions
            .values()
            .filter(|e| e.session.recovery_expired(window))
            .map(|e| e.session.clone())
            .collect()
    }

    /// Every session, sorted by connection id.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        let t = self.tables.lock();
        let mut v: Vec<ConnectionInfo> = t
            .sessions
            .values()
            .map(|e| ConnectionInfo {
                connection_id: e.session.id().to_owned(),
                user_id: e.session.user_id().map(str::to_owned),
                groups: e.groups.iter().cloned().collect(),
                connected: e.session.is_connected(),
                subprotocol: e.session.subprotocol(),
            })
            .collect();
        v.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
        v
    }

    pub fn has_connection(&self, conn_id: &str) -> bool {
        self.tables.lock().sessions.contains_key(conn_id)
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.tables.lock().groups.contains_key(group)
    }

    pub fn has_user(&self, user: &str) -> bool {
        self.tables.lock().users.contains_key(user)
    }

    /// The connection ids in a group, sorted.
    pub fn members(&self, group: &str) -> Vec<String> {
        let t = self.tables.lock();
        let mut v: Vec<String> = t
            .groups
            .get(group)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    // ---- groups ----

    /// `false` if the connection does not exist.
    pub fn join(&self, conn_id: &str, group: &str) -> bool {
        self.tables.lock().join(conn_id, group)
    }

    /// `false` if the connection does not exist.
    pub fn leave(&self, conn_id: &str, group: &str) -> bool {
        self.tables.lock().leave(conn_id, group)
    }

    /// Leaves every group; `false` if the connection does not exist.
    pub fn leave_all(&self, conn_id: &str) -> bool {
        let mut t = self.tables.lock();
        let Some(groups) = t.sessions.get(conn_id).map(|e| e.groups.clone()) else {
            return false;
        };
        for g in groups {
            t.leave(conn_id, &g);
        }
        true
    }

    /// Adds every connection of a user to a group, and the user's later connections.
    pub fn add_user_to_group(&self, user: &str, group: &str) {
        let mut t = self.tables.lock();
        t.user_groups
            .entry(user.to_owned())
            .or_default()
            .insert(group.to_owned());
        for id in t.user_connections(user) {
            t.join(&id, group);
        }
    }

    /// Removes a user's connections from a group, and forgets the user's membership.
    pub fn remove_user_from_group(&self, user: &str, group: &str) {
        let mut t = self.tables.lock();
        if let Some(gs) = t.user_groups.get_mut(user) {
            gs.remove(group);
        }
        for id in t.user_connections(user) {
            t.leave(&id, group);
        }
    }

    /// The groups of a user: those it was added to and those its connections are in.
    pub fn user_groups(&self, user: &str) -> Vec<String> {
        let t = self.tables.lock();
        let mut gs: Vec<String> = t
            .user_groups
            .get(user)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        for id in t.users.get(user).into_iter().flatten() {
            if let Some(e) = t.sessions.get(id) {
                gs.extend(e.groups.iter().cloned());
            }
        }
        gs
    }

    // ---- messages ----

    /// A message to every session except the listed ones.
    pub fn send_to_all(
        &self,
        out: &Outgoing,
        excluded: &[&str],
        limits: &UnackedLimits,
    ) -> Overflowed {
        let t = self.tables.lock();
        fan_out(
            t.sessions.values().map(|e| &e.session),
            out,
            excluded,
            limits,
        )
    }

    /// A message to every session of a user.
    pub fn send_to_user(&self, user: &str, out: &Outgoing, limits: &UnackedLimits) -> Overflowed {
        let t = self.tables.lock();
        let sessions: Vec<Arc<Session>> = t
            .user_connections(user)
            .iter()
            .filter_map(|id| t.session(id))
            .collect();
        fan_out(sessions.iter(), out, &[], limits)
    }

    /// A message to one session; `None` if it does not exist.
    pub fn send_to_connection(
        &self,
        conn_id: &str,
        out: &Outgoing,
        limits: &UnackedLimits,
    ) -> Option<Overflowed> {
        let s = self.session(conn_id)?;
        Some(fan_out(std::iter::once(&s), out, &[], limits))
    }

    /// A message to a group's members.
    pub fn send_to_group(
        &self,
        group: &str,
        out: &Outgoing,
        excluded: &[&str],
        limits: &UnackedLimits,
    ) -> Overflowed {
        let t = self.tables.lock();
        match t.groups.get(group) {
            Some(members) => fan_out(members.values(), out, excluded, limits),
            None => Overflowed(Vec::new()),
        }
    }

    /// `out` (a server message) to the sessions of `to` that pass `filter`, except the
    /// listed ones. The filter sees each session as it is when the message goes out, under
    /// the same lock.
    pub fn send_where(
        &self,
        to: Audience<'_>,
        out: &Outgoing,
        excluded: &[&str],
        filter: Option<&Filter>,
        limits: &UnackedLimits,
    ) -> Overflowed {
        let t = self.tables.lock();
        let ids: Vec<&str> = match to {
            Audience::All => t.sessions.keys().map(String::as_str).collect(),
            Audience::User(user) => t
                .users
                .get(user)
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect(),
            Audience::Group(group) => t
                .groups
                .get(group)
                .into_iter()
                .flat_map(|m| m.keys())
                .map(String::as_str)
                .collect(),
            Audience::Connection(id) => vec![id],
        };
        let selected: Vec<&Arc<Session>> = ids
            .into_iter()
            .filter_map(|id| t.sessions.get(id))
            .filter(|e| e.passes(filter))
            .map(|e| &e.session)
            .collect();
        fan_out(selected.into_iter(), out, excluded, limits)
    }

    /// Adds (`add`) or removes every session that passes `filter` to or from each group.
    /// The filter sees the sessions as they were before the change.
    pub fn regroup_where(&self, groups: &[String], filter: Option<&Filter>, add: bool) {
        let mut t = self.tables.lock();
        let ids: Vec<String> = t
            .sessions
            .iter()
            .filter(|(_, e)| e.passes(filter))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ids {
            for g in groups {
                if add {
                    t.join(id, g);
                } else {
                    t.leave(id, g);
                }
            }
        }
    }

    /// At most `limit` members of a group after the connection id `after`, in connection
    /// id order, with their users; and whether more follow.
    pub fn members_page(
        &self,
        group: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<(String, Option<String>)>, bool) {
        let t = self.tables.lock();
        let Some(members) = t.groups.get(group) else {
            return (Vec::new(), false);
        };
        let mut ids: Vec<&String> = members
            .keys()
            .filter(|id| after.is_none_or(|a| id.as_str() > a))
            .collect();
        ids.sort();
        let more = ids.len() > limit;
        let page = ids
            .into_iter()
            .take(limit)
            .map(|id| {
                let user = members[id].user_id().map(str::to_owned);
                (id.clone(), user)
            })
            .collect();
        (page, more)
    }

    // ---- upstream events ----

    pub fn record_event(&self, ev: UpstreamEvent) {
        self.events.lock().push(ev);
    }

    pub fn events(&self) -> Vec<UpstreamEvent> {
        self.events.lock().clone()
    }
}
