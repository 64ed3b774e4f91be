//! The public value types: what tests observe, what the server API reports, and the
//! run-time permissions of a connection.

use webpubsub_protocol::{ClientMessage, Data, Metadata, Subprotocol};

/// Something that happened in the emulator, for tests to wait on
/// ([`Emulator::observe`](crate::Emulator::observe)).
///
/// Contains no tokens.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Observation {
    /// A new connection session started (after its `connected` message was queued).
    Connected {
        /// The hub.
        hub: String,
        /// The new connection id.
        connection_id: String,
        /// The token's `sub`, if any.
        user_id: Option<String>,
        /// Whether it speaks a reliable subprotocol (JSON or protobuf).
        reliable: bool,
    },
    /// A dropped session was recovered on a new socket.
    Recovered {
        /// The hub.
        hub: String,
        /// The recovered connection id.
        connection_id: String,
    },
    /// A socket is gone; a reliable session may still be recovered.
    Dropped {
        /// The hub.
        hub: String,
        /// The connection id.
        connection_id: String,
    },
    /// A session is over for good.
    SessionEnded {
        /// The hub.
        hub: String,
        /// The connection id.
        connection_id: String,
        /// Why (e.g. `closed by the client`, `recovery window expired`, a close reason).
        reason: String,
    },
    /// A decoded client message, reported after it was handled.
    Request {
        /// The hub.
        hub: String,
        /// The sender's connection id.
        connection_id: String,
        /// The message.
        message: ClientMessage,
    },
    /// A recovery attempt was refused (closed with 1008).
    RecoveryRefused {
        /// The hub.
        hub: String,
        /// The connection id the attempt named.
        connection_id: String,
    },
    /// An upgrade or REST request was refused for its token.
    AuthRefused {
        /// The HTTP status (401).
        status: u16,
        /// The reason sent in the body.
        reason: String,
    },
}

/// A run-time permission of a connection (PROTOCOL.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Publish to a group (roles `webpubsub.sendToGroup[.group]`,
    /// `webpubsub.sendToGroups.<pattern>`).
    SendToGroup,
    /// Join or leave a group (roles `webpubsub.joinLeaveGroup[.group]`,
    /// `webpubsub.joinLeaveGroups.<pattern>`).
    JoinLeaveGroup,
}

impl Permission {
    /// The REST name: `sendToGroup` or `joinLeaveGroup`.
    pub fn as_wire(self) -> &'static str {
        match self {
            Permission::SendToGroup => "sendToGroup",
            Permission::JoinLeaveGroup => "joinLeaveGroup",
        }
    }

    /// Parses a REST name, ignoring ASCII case.
    pub fn from_wire(name: &str) -> Option<Permission> {
        [Permission::SendToGroup, Permission::JoinLeaveGroup]
            .into_iter()
            .find(|p| p.as_wire().eq_ignore_ascii_case(name))
    }

    /// The token role that grants it for every group (`webpubsub.sendToGroup`, ...);
    /// `<role>.<group>` grants it for one group.
    pub(crate) fn role(self) -> &'static str {
        match self {
            Permission::SendToGroup => "webpubsub.sendToGroup",
            Permission::JoinLeaveGroup => "webpubsub.joinLeaveGroup",
        }
    }
}

/// A session as [`HubHandle::connections`](crate::HubHandle::connections) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The connection id.
    pub connection_id: String,
    /// The user, if the token named one.
    pub user_id: Option<String>,
    /// Its groups, sorted.
    pub groups: Vec<String>,
    /// `true` while a socket is attached; `false` while waiting for recovery.
    pub connected: bool,
    /// The PubSub subprotocol it speaks (a recovery must speak the same); `None` for a
    /// simple WebSocket client.
    pub subprotocol: Option<Subprotocol>,
}

/// An upstream `event` a client sent, as recorded by
/// [`HubHandle::events`](crate::HubHandle::events).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct UpstreamEvent {
    /// The sender's connection id.
    pub connection_id: String,
    /// The sender's user, if any.
    pub user_id: Option<String>,
    /// The event name.
    pub event: String,
    /// The payload.
    pub data: Data,
    /// The metadata the client sent with it (empty: none).
    pub metadata: Metadata,
}
