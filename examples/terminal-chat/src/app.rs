//! What the screen shows and how it reacts to keys, client events and request outcomes.
//!
//! No terminal and no network here: the UI loop feeds [`App`] and executes the [`Request`]s it
//! returns, so every reaction is a plain method call, unit-tested below.

use crate::requests::RequestId;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::collections::HashMap;
use webpubsub_client::{AckOutcome, ClientState, Data, Error, Event};

/// The connection as the status line shows it: the last thing the client reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// `start()` is running.
    Connecting,
    /// A new connection is ready.
    Connected,
    /// The connection dropped; the client is recovering the session.
    Recovering,
    /// The session was recovered: nothing was lost.
    Recovered,
    /// The session was lost; the client makes a new connection.
    Reconnecting,
    /// The client stopped (the service or the retry policy ended it).
    Stopped,
    /// `start()` failed, with the reason.
    Failed(String),
}

impl Connection {
    /// The word after `state:` in the status line.
    pub fn label(&self) -> String {
        match self {
            Connection::Connecting => "connecting".into(),
            Connection::Connected => "connected".into(),
            Connection::Recovering => "recovering".into(),
            Connection::Recovered => "recovered".into(),
            Connection::Reconnecting => "disconnected, reconnecting".into(),
            Connection::Stopped => "stopped".into(),
            Connection::Failed(why) => format!("failed to start: {why}"),
        }
    }
}

/// Whether a message this user sent was acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Someone else's message.
    Received,
    /// Sent, the ack not yet arrived.
    Sending,
    /// The service acknowledged it.
    Sent,
    /// The request failed; the message may not have reached anyone.
    Failed(String),
}

/// One line of the room's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A group message.
    Message {
        /// Its group.
        group: String,
        /// Its sender's user id (`?` if none).
        from: String,
        /// The payload as text.
        text: String,
        /// For this user's own messages: acknowledged or not.
        delivery: Delivery,
    },
    /// A message from the application server.
    Server(String),
    /// Something the program tells the user.
    Info(String),
    /// Something that went wrong.
    Error(String),
}

/// A request the UI loop makes on the client with a `*_nowait` operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Matches the outcome with [`App::on_answer`].
    pub id: RequestId,
    /// What to do.
    pub action: Action,
}

/// The operations of the chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `send_to_group_nowait` (without echo: the line is already on the screen).
    Say {
        /// The group.
        group: String,
        /// The text.
        text: String,
    },
    /// `join_group_nowait`.
    Join(String),
    /// `leave_group_nowait`.
    Leave(String),
}

enum Pending {
    Say(usize),
    Join(String),
    Leave(String),
}

/// A parsed input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Text for the current group.
    Say(String),
    /// `/join g`.
    Join(String),
    /// `/leave g`, or `/leave` for the current group.
    Leave(Option<String>),
    /// `/help`.
    Help,
    /// `/quit` (also `/exit`).
    Quit,
}

/// The help line, shown at start and for `/help`.
pub const HELP: &str = "Enter sends · /join g · /leave [g] · /quit or Ctrl-C · PgUp/PgDn scroll";

/// Parses an input line; `None` for a blank one, `Err` with a message for a bad command.
pub fn parse(line: &str) -> Option<Result<Command, String>> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let Some(command) = line.strip_prefix('/') else {
        return Some(Ok(Command::Say(line.to_owned())));
    };
    let (name, arg) = match command.split_once(char::is_whitespace) {
        Some((name, arg)) => (name, Some(arg.trim()).filter(|a| !a.is_empty())),
        None => (command, None),
    };
    Some(match (name, arg) {
        ("join", Some(group)) => Ok(Command::Join(group.to_owned())),
        ("join", None) => Err("/join needs a group name: /join GROUP".into()),
        ("leave", group) => Ok(Command::Leave(group.map(str::to_owned))),
        ("help", _) => Ok(Command::Help),
        ("quit" | "exit", _) => Ok(Command::Quit),
        _ => Err(format!("unknown command /{name}; {HELP}")),
    })
}

/// The whole state of the screen.
pub struct App {
    /// The room's log, oldest first.
    pub entries: Vec<Entry>,
    /// The line being typed.
    pub input: String,
    /// What the status line shows.
    pub connection: Connection,
    /// The connection id of the session, once connected.
    pub connection_id: Option<String>,
    /// This user's id, as the token or `--user` names it.
    pub user: Option<String>,
    /// Where Enter sends.
    pub group: Option<String>,
    /// How many rows the log is scrolled up from its end (kept in range by the drawing).
    pub scroll: usize,
    /// Set by `/quit` and Ctrl-C: the loop stops the client and ends.
    pub quit: bool,
    /// The group to join when the first connection is ready (later connections rejoin it
    /// by themselves).
    first_join: Option<String>,
    pending: HashMap<RequestId, Pending>,
    next_id: RequestId,
}

impl App {
    /// A screen for `user` that will join `group` once connected.
    pub fn new(user: Option<String>, group: Option<String>) -> App {
        App {
            entries: Vec::new(),
            input: String::new(),
            connection: Connection::Connecting,
            connection_id: None,
            user,
            group: group.clone(),
            scroll: 0,
            quit: false,
            first_join: group,
            pending: HashMap::new(),
            next_id: 1,
        }
    }

    /// Requests in flight.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Adds a line to the log.
    pub fn info(&mut self, text: impl Into<String>) {
        self.entries.push(Entry::Info(text.into()));
    }

    fn error(&mut self, text: impl Into<String>) {
        self.entries.push(Entry::Error(text.into()));
    }

    fn request(&mut self, action: Action, pending: Pending) -> Request {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, pending);
        Request { id, action }
    }

    /// A key from the terminal; returns the request to make, if any.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Request> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c' | 'd') if ctrl => self.quit = true,
            KeyCode::Char('u') if ctrl => self.input.clear(),
            KeyCode::Char(c) if !ctrl => self.input.push(c),
            KeyCode::Backspace => {
                self.input.pop();
            }
            KeyCode::Esc => self.input.clear(),
            KeyCode::PageUp => self.scroll = self.scroll.saturating_add(10),
            KeyCode::PageDown => self.scroll = self.scroll.saturating_sub(10),
            KeyCode::Enter => {
                let line = std::mem::take(&mut self.input);
                self.scroll = 0;
                return self.submit(&line);
            }
            _ => {}
        }
        None
    }

    /// An input line, as if typed and followed by Enter.
    pub fn submit(&mut self, line: &str) -> Option<Request> {
        match parse(line)? {
            Err(message) => self.error(message),
            Ok(Command::Quit) => self.quit = true,
            Ok(Command::Help) => self.info(HELP),
            Ok(Command::Join(group)) => return Some(self.join(group)),
            Ok(Command::Leave(group)) => match group.or_else(|| self.group.clone()) {
                Some(group) => {
                    return Some(self.request(Action::Leave(group.clone()), Pending::Leave(group)))
                }
                None => self.error("no current group: /leave GROUP"),
            },
            Ok(Command::Say(text)) => {
                let Some(group) = self.group.clone() else {
                    self.error("join a group first: /join GROUP");
                    return None;
                };
                // Shown at once, marked as sending until the ack arrives.
                self.entries.push(Entry::Message {
                    group: group.clone(),
                    from: self.user.clone().unwrap_or_else(|| "me".into()),
                    text: text.clone(),
                    delivery: Delivery::Sending,
                });
                let line = self.entries.len() - 1;
                return Some(self.request(Action::Say { group, text }, Pending::Say(line)));
            }
        }
        None
    }

    fn join(&mut self, group: String) -> Request {
        self.request(Action::Join(group.clone()), Pending::Join(group))
    }

    /// A failed `start()`. (A successful one is followed by [`Event::Connected`], which the
    /// screen waits for: `start()` returns before the event reaches the UI.)
    pub fn on_start_failed(&mut self, e: &Error) {
        self.connection = Connection::Failed(e.to_string());
        self.error(format!("could not connect: {e}"));
    }

    /// The outcome of a request.
    pub fn on_answer(&mut self, id: RequestId, result: Result<AckOutcome, &Error>) {
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        match (pending, result) {
            (Pending::Say(line), result) => {
                if let Some(Entry::Message { delivery, .. }) = self.entries.get_mut(line) {
                    *delivery = match result {
                        Ok(_) => Delivery::Sent,
                        Err(e) => Delivery::Failed(e.to_string()),
                    };
                }
            }
            (Pending::Join(group), Ok(_)) => {
                self.info(format!("joined #{group}; Enter sends there"));
                self.group = Some(group);
            }
            (Pending::Join(group), Err(e)) => self.error(format!("could not join #{group}: {e}")),
            (Pending::Leave(group), Ok(_)) => {
                self.info(format!("left #{group}"));
                if self.group.as_deref() == Some(group.as_str()) {
                    self.group = None;
                }
            }
            (Pending::Leave(group), Err(e)) => self.error(format!("could not leave #{group}: {e}")),
        }
    }

    /// An event from the client; returns the request to make, if any (the first join).
    /// `state` is the client's state now, which tells whether a lost session is followed by a
    /// new connection.
    pub fn on_event(&mut self, event: Event, state: ClientState) -> Option<Request> {
        match event {
            Event::Connected {
                connection_id,
                user_id,
            } => {
                self.info(format!("connected as {connection_id}"));
                self.connection = Connection::Connected;
                self.connection_id = Some(connection_id);
                if user_id.is_some() {
                    self.user = user_id;
                }
                return self.first_join.take().map(|group| self.join(group));
            }
            Event::Recovering {
                connection_id,
                close_code,
            } => {
                let code = close_code.map_or("no close frame".into(), |c| format!("close {c}"));
                self.info(format!(
                    "connection {connection_id} lost ({code}); recovering the session"
                ));
                self.connection = Connection::Recovering;
            }
            Event::Recovered { connection_id } => {
                self.info(format!("session {connection_id} recovered, nothing lost"));
                self.connection = Connection::Recovered;
            }
            Event::Disconnected {
                message,
                close_code,
                ..
            } => {
                let why = message.unwrap_or_else(|| "no reason given".into());
                let code = close_code.map_or(String::new(), |c| format!(", close {c}"));
                self.connection_id = None;
                if matches!(state, ClientState::Stopping | ClientState::Stopped) {
                    self.info(format!("disconnected ({why}{code})"));
                } else {
                    self.info(format!("session lost ({why}{code}); reconnecting"));
                    self.connection = Connection::Reconnecting;
                }
            }
            Event::Stopped => {
                self.info("the client stopped; /quit to leave");
                self.connection = Connection::Stopped;
            }
            Event::RejoinGroupFailed { group, error } => {
                self.error(format!("could not rejoin #{group}: {error}"));
                if self.group.as_deref() == Some(group.as_str()) {
                    self.group = None;
                }
            }
            Event::GroupMessage(m) => self.entries.push(Entry::Message {
                group: m.group,
                from: m.from_user_id.unwrap_or_else(|| "?".into()),
                text: show(&m.data),
                delivery: Delivery::Received,
            }),
            Event::ServerMessage(m) => self.entries.push(Entry::Server(show(&m.data))),
            // Events added in later versions of the client.
            _ => {}
        }
        None
    }
}

/// A payload as one line of text.
pub fn show(data: &Data) -> String {
    match data {
        Data::Text(t) => t.clone(),
        Data::Json(v) => v.to_string(),
        Data::Binary(b) | Data::Protobuf(b) => format!("<{} bytes>", b.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webpubsub_client::GroupMessage;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn typed(app: &mut App, text: &str) -> Option<Request> {
        for c in text.chars() {
            assert_eq!(app.on_key(key(KeyCode::Char(c))), None);
        }
        app.on_key(key(KeyCode::Enter))
    }

    fn ok() -> Result<AckOutcome, &'static Error> {
        Ok(AckOutcome {
            ack_id: 1,
            duplicate: false,
        })
    }

    #[test]
    fn parse_tells_commands_from_text() {
        assert_eq!(parse("  "), None);
        assert_eq!(
            parse(" hi there "),
            Some(Ok(Command::Say("hi there".into())))
        );
        assert_eq!(
            parse("/join  room "),
            Some(Ok(Command::Join("room".into())))
        );
        assert_eq!(parse("/leave"), Some(Ok(Command::Leave(None))));
        assert_eq!(
            parse("/leave x"),
            Some(Ok(Command::Leave(Some("x".into()))))
        );
        assert_eq!(parse("/quit"), Some(Ok(Command::Quit)));
        assert_eq!(parse("/exit"), Some(Ok(Command::Quit)));
        assert!(matches!(parse("/join"), Some(Err(m)) if m.contains("/join GROUP")));
        assert!(matches!(parse("/frobnicate"), Some(Err(m)) if m.contains("/frobnicate")));
    }

    #[test]
    fn enter_sends_to_the_current_group_and_marks_the_line_sent_on_its_ack() {
        let mut app = App::new(Some("alice".into()), Some("room".into()));
        let request = typed(&mut app, "hello").expect("a request");
        assert_eq!(
            request.action,
            Action::Say {
                group: "room".into(),
                text: "hello".into()
            }
        );
        assert_eq!(app.input, "");
        assert_eq!(app.pending(), 1);
        assert!(matches!(
            app.entries.last(),
            Some(Entry::Message { delivery: Delivery::Sending, from, .. }) if from == "alice"
        ));
        app.on_answer(request.id, ok());
        assert!(matches!(
            app.entries.last(),
            Some(Entry::Message {
                delivery: Delivery::Sent,
                ..
            })
        ));
        assert_eq!(app.pending(), 0);
    }

    #[test]
    fn a_failed_send_says_so_on_its_line() {
        let mut app = App::new(None, Some("room".into()));
        let request = typed(&mut app, "hello").expect("a request");
        app.on_answer(request.id, Err(&Error::Stopped));
        assert!(matches!(
            app.entries.last(),
            Some(Entry::Message { delivery: Delivery::Failed(why), .. }) if why.contains("stopped")
        ));
    }

    #[test]
    fn text_without_a_group_asks_for_a_join_instead_of_sending() {
        let mut app = App::new(None, None);
        assert_eq!(typed(&mut app, "hello"), None);
        assert!(matches!(app.entries.last(), Some(Entry::Error(m)) if m.contains("/join")));
    }

    #[test]
    fn join_switches_the_current_group_only_once_acknowledged() {
        let mut app = App::new(None, Some("room".into()));
        let join = typed(&mut app, "/join other").expect("a request");
        assert_eq!(join.action, Action::Join("other".into()));
        assert_eq!(app.group.as_deref(), Some("room"));
        app.on_answer(join.id, ok());
        assert_eq!(app.group.as_deref(), Some("other"));

        let leave = typed(&mut app, "/leave").expect("a request");
        assert_eq!(leave.action, Action::Leave("other".into()));
        app.on_answer(leave.id, ok());
        assert_eq!(app.group, None);
    }

    #[test]
    fn a_failed_join_keeps_the_current_group() {
        let mut app = App::new(None, Some("room".into()));
        let join = typed(&mut app, "/join other").expect("a request");
        app.on_answer(join.id, Err(&Error::Stopped));
        assert_eq!(app.group.as_deref(), Some("room"));
        assert!(matches!(app.entries.last(), Some(Entry::Error(m)) if m.contains("#other")));
    }

    #[test]
    fn ctrl_c_and_quit_end_the_program() {
        let mut app = App::new(None, None);
        app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert!(app.quit);
        let mut app = App::new(None, None);
        assert_eq!(typed(&mut app, "/quit"), None);
        assert!(app.quit);
    }

    #[test]
    fn the_status_follows_recovery_and_reconnect() {
        // B14, B10, B9: recovering → recovered; a lost session → reconnecting → connected.
        let mut app = App::new(None, None);
        let connected = |id: &str| Event::Connected {
            connection_id: id.into(),
            user_id: Some("bob".into()),
        };
        assert_eq!(app.on_event(connected("c1"), ClientState::Connected), None);
        assert_eq!(app.connection, Connection::Connected);
        assert_eq!(app.user.as_deref(), Some("bob"));
        app.on_event(
            Event::Recovering {
                connection_id: "c1".into(),
                close_code: None,
            },
            ClientState::Recovering,
        );
        assert_eq!(app.connection.label(), "recovering");
        app.on_event(
            Event::Recovered {
                connection_id: "c1".into(),
            },
            ClientState::Connected,
        );
        assert_eq!(app.connection.label(), "recovered");
        app.on_event(
            Event::Disconnected {
                connection_id: Some("c1".into()),
                message: Some("closed".into()),
                close_code: Some(1008),
            },
            ClientState::Connecting,
        );
        assert_eq!(app.connection, Connection::Reconnecting);
        assert_eq!(app.connection_id, None);
        assert_eq!(app.on_event(connected("c2"), ClientState::Connected), None);
        assert_eq!(app.connection, Connection::Connected);
        assert_eq!(app.connection_id.as_deref(), Some("c2"));
        app.on_event(Event::Stopped, ClientState::Stopped);
        assert_eq!(app.connection, Connection::Stopped);
    }

    #[test]
    fn the_first_connection_joins_the_group_and_later_ones_leave_it_to_the_rejoin() {
        // B9, B23: a new connection after a lost session rejoins by itself.
        let mut app = App::new(None, Some("room".into()));
        let connected = |id: &str| Event::Connected {
            connection_id: id.into(),
            user_id: None,
        };
        let join = app.on_event(connected("c1"), ClientState::Connected);
        assert_eq!(join.map(|r| r.action), Some(Action::Join("room".into())));
        assert_eq!(app.on_event(connected("c2"), ClientState::Connected), None);
    }

    #[test]
    fn a_failed_start_shows_why_in_the_state_line() {
        let mut app = App::new(None, Some("room".into()));
        app.on_start_failed(&Error::Stopped);
        assert!(app.connection.label().starts_with("failed to start: "));
    }

    #[test]
    fn group_messages_show_their_sender() {
        let mut app = App::new(None, None);
        app.on_event(
            Event::GroupMessage(GroupMessage {
                group: "room".into(),
                data: Data::Text("hi".into()),
                from_user_id: Some("alice".into()),
                sequence_id: Some(1),
                metadata: Default::default(),
            }),
            ClientState::Connected,
        );
        assert_eq!(
            app.entries.last(),
            Some(&Entry::Message {
                group: "room".into(),
                from: "alice".into(),
                text: "hi".into(),
                delivery: Delivery::Received,
            })
        );
    }
}
