//! The registration of event handlers and streams on the client (B12–B16).

use super::WebPubSubClient;
use crate::error::Error;
use crate::events::{Event, GroupMessage, ServerMessage, Subscription};
use crossbeam_channel::Receiver;

/// Registering handlers and streams (B12–B16).
impl WebPubSubClient {
    /// A new receiver of every event from now on (B12): for CLI loops and GUI threads.
    /// Dropping the receiver unregisters it.
    pub fn events(&self) -> Receiver<Event> {
        self.core().registry.stream()
    }

    /// Calls `f` for every event, on the dispatcher thread.
    pub fn on_event(&self, f: impl Fn(&Event) + Send + Sync + 'static) -> Subscription {
        self.core().registry.add(Box::new(f))
    }

    /// Calls `f(connection_id, user_id)` for every new connection (B9).
    pub fn on_connected(
        &self,
        f: impl Fn(&str, Option<&str>) + Send + Sync + 'static,
    ) -> Subscription {
        self.on_event(move |e| {
            if let Event::Connected {
                connection_id,
                user_id,
            } = e
            {
                f(connection_id, user_id.as_deref())
            }
        })
    }

    /// Calls `f(connection_id, message, close_code)` when a session is over (B10).
    pub fn on_disconnected(
        &self,
        f: impl Fn(Option<&str>, Option<&str>, Option<u16>) + Send + Sync + 'static,
    ) -> Subscription {
        self.on_event(move |e| {
            if let Event::Disconnected {
                connection_id,
                message,
                close_code,
            } = e
            {
                f(connection_id.as_deref(), message.as_deref(), *close_code)
            }
        })
    }

    /// Calls `f` when the client reached Stopped after having started (B11).
    pub fn on_stopped(&self, f: impl Fn() + Send + Sync + 'static) -> Subscription {
        self.on_event(move |e| {
            if let Event::Stopped = e {
                f()
            }
        })
    }

    /// Calls `f` for every group message, in order (B12).
    pub fn on_group_message(
        &self,
        f: impl Fn(&GroupMessage) + Send + Sync + 'static,
    ) -> Subscription {
        self.on_event(move |e| {
            if let Event::GroupMessage(m) = e {
                f(m)
            }
        })
    }

    /// Calls `f` for every server message, in order (B12).
    pub fn on_server_message(
        &self,
        f: impl Fn(&ServerMessage) + Send + Sync + 'static,
    ) -> Subscription {
        self.on_event(move |e| {
            if let Event::ServerMessage(m) = e {
                f(m)
            }
        })
    }

    /// Calls `f(group, error)` for each group whose automatic rejoin failed (B13).
    pub fn on_rejoin_group_failed(
        &self,
        f: impl Fn(&str, &Error) + Send + Sync + 'static,
    ) -> Subscription {
        self.on_event(move |e| {
            if let Event::RejoinGroupFailed { group, error } = e {
                f(group, error)
            }
        })
    }

    /// Calls `f(connection_id, close_code)` when a recovery episode begins (B14).
    pub fn on_recovering(
        &self,
        f: impl Fn(&str, Option<u16>) + Send + Sync + 'static,
    ) -> Subscription {
        self.on_event(move |e| {
            if let Event::Recovering {
                connection_id,
                close_code,
            } = e
            {
                f(connection_id, *close_code)
            }
        })
    }

    /// Calls `f(connection_id)` when a session was recovered (B14).
    pub fn on_recovered(&self, f: impl Fn(&str) + Send + Sync + 'static) -> Subscription {
        self.on_event(move |e| {
            if let Event::Recovered { connection_id } = e {
                f(connection_id)
            }
        })
    }
}
