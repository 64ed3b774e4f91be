//! A full-screen terminal chat on `webpubsub-client`: the pattern for an interactive terminal
//! program that holds a blocking client.
//!
//! ```text
//! cargo run -p webpubsub-terminal-chat                      # on an emulator in this process
//! cargo run -p webpubsub-terminal-chat -- --user ann --group room
//! cargo run -p webpubsub-terminal-chat -- --url '<client access URL>' --group room
//! ```
//!
//! Three threads, and the UI thread never blocks on the network:
//!
//! - the **UI thread** (`main`) owns the terminal and the [`App`]. It waits in one
//!   `crossbeam_channel::select!` on the client's [`events()`](WebPubSubClient::events)
//!   receiver, the terminal's keys, the outcomes of requests and the termination signals, then
//!   takes whatever else is already waiting and redraws once. Nothing wakes it unless
//!   something happened: no polling, no tick.
//! - the **request worker** (`chat-requests`, [`requests`]) calls `start()` and waits on the
//!   [`AckHandle`](webpubsub_client::AckHandle)s of the `*_nowait` requests the UI makes,
//!   posting each outcome back to the UI, so a slow ack (or a recovery) never freezes the
//!   screen: a sent line shows "(sending)" until its ack arrives.
//! - the **key reader** (`chat-input`) blocks in crossterm's `read()` and forwards keys.
//!
//! `/quit` or Ctrl-C stops the client (a close frame, the client's threads joined), joins the
//! worker and restores the terminal; a panic restores the terminal too.

mod app;
mod requests;
mod ui;

use app::{Action, App, Request};
use crossbeam_channel::{select, Receiver};
use ratatui::crossterm::event::{self as term, Event as TermEvent};
use requests::{Done, Job, Worker};
use std::error::Error as StdError;
use std::process::ExitCode;
use webpubsub_client::{Event, RequestOptions, StartGuard, WebPubSubClient};
use webpubsub_emulator::Emulator;

const HUB: &str = "chat";

const USAGE: &str = "\
terminal-chat: a full-screen chat on Azure Web PubSub

USAGE:
    terminal-chat [--url URL] [--user NAME] [--group GROUP]

OPTIONS:
    --url URL        a client access URL (wss://<name>.webpubsub.azure.com/client/hubs/<hub>?
                     access_token=...) whose token has the roles webpubsub.joinLeaveGroup and
                     webpubsub.sendToGroup. Without it, an emulator runs in this process and
                     you chat with yourself.
    --user NAME      your user id on the embedded emulator (default: $USER). With --url, the
                     token names the user.
    --group GROUP    the group to join and talk in (default: lobby)
    -h, --help       print this help

To chat across terminals, give each one a client URL of the same hub, for example from your
application server, the portal's Client URL Generator, or the webpubsub-emulator binary
(`cargo run -p webpubsub-emulator -- --port 0` prints one).

KEYS: Enter sends to the current group · /join GROUP · /leave [GROUP] · /quit or Ctrl-C
      PageUp/PageDown scroll · Esc or Ctrl-U clear the line
";

struct Args {
    url: Option<String>,
    user: Option<String>,
    group: String,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut out = Args {
        url: None,
        user: None,
        group: "lobby".into(),
    };
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--url" => out.url = Some(value()?),
            "--user" => out.user = Some(value()?),
            "--group" => out.group = value()?,
            _ => return Err(format!("unknown argument `{name}`")),
        }
    }
    if out.url.is_some() && out.user.is_some() {
        return Err(
            "--user names you on the embedded emulator; with --url the token names you".into(),
        );
    }
    Ok(Some(out))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("terminal-chat: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("terminal-chat: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn StdError>> {
    // The service: the one the URL names, or an emulator in this process.
    let user = match (&args.url, args.user) {
        (Some(_), _) => None,
        (None, Some(user)) => Some(user),
        (None, None) => Some(std::env::var("USER").unwrap_or_else(|_| "me".into())),
    };
    let (emulator, url) = match args.url {
        Some(url) => (None, url),
        None => {
            let emu = Emulator::start()?;
            let url = emu
                .client_url(HUB)
                .user_id(user.clone().unwrap_or_default())
                .role("webpubsub.joinLeaveGroup")
                .role("webpubsub.sendToGroup")
                .build();
            (Some(emu), url)
        }
    };
    // A bad URL is reported here, before the screen changes.
    let client = WebPubSubClient::new(&url)?;
    // Registered before `start()`, so the first `Connected` is not missed.
    let events = client.events();

    let mut app = App::new(user, Some(args.group));
    match &emulator {
        Some(emu) => app.info(format!(
            "embedded emulator on {}, hub `{HUB}`: only you are here (--help says how to chat across terminals)",
            emu.endpoint()
        )),
        // The query holds the access token: never show it.
        None => app.info(format!(
            "connecting to {}",
            url.split('?').next().unwrap_or_default()
        )),
    }
    app.info(app::HELP);

    let (done_tx, done) = crossbeam_channel::unbounded();
    let worker = Worker::spawn(client.clone(), done_tx)?;
    worker.submit(Job::Start);
    let signals = termination_signals()?;

    let screen = Screen::enter()?;
    let keys = spawn_key_reader()?;
    let mut running = None;
    let outcome = ui_loop(
        screen,
        &mut app,
        &Wiring {
            client: &client,
            worker: &worker,
            emulator: emulator.as_ref(),
            events: &events,
            keys: &keys,
            done: &done,
            signals: &signals,
        },
        &mut running,
    );
    // Stop first: every request still waiting then ends with `Error::Stopped`, so the worker
    // finishes at once. A guard still in the channel (a start that succeeded while quitting)
    // stops its client when `done` is dropped.
    drop(running);
    client.stop();
    worker.finish();
    drop(done);
    if let Some(emu) = emulator {
        emu.stop();
    }
    outcome
}

/// What the UI loop reads from and acts on.
struct Wiring<'a> {
    client: &'a WebPubSubClient,
    worker: &'a Worker,
    emulator: Option<&'a Emulator>,
    events: &'a Receiver<Event>,
    keys: &'a Receiver<std::io::Result<TermEvent>>,
    done: &'a Receiver<Done>,
    signals: &'a Receiver<()>,
}

/// Something the UI loop woke up for.
enum Wake {
    Client(Event),
    Key(std::io::Result<TermEvent>),
    Done(Done),
    Quit,
}

impl Wiring<'_> {
    /// The next thing that happened: waits for it if `wait`, else only takes what is there.
    fn next(&self, wait: bool) -> Option<Wake> {
        // A closed channel means its thread ended, which only happens when the program is
        // ending: quit rather than spin on a channel that is always ready.
        if wait {
            Some(select! {
                recv(self.events) -> e => e.map_or(Wake::Quit, Wake::Client),
                recv(self.keys) -> k => k.map_or(Wake::Quit, Wake::Key),
                recv(self.done) -> d => d.map_or(Wake::Quit, Wake::Done),
                recv(self.signals) -> _ => Wake::Quit,
            })
        } else {
            select! {
                recv(self.events) -> e => Some(e.map_or(Wake::Quit, Wake::Client)),
                recv(self.keys) -> k => Some(k.map_or(Wake::Quit, Wake::Key)),
                recv(self.done) -> d => Some(d.map_or(Wake::Quit, Wake::Done)),
                recv(self.signals) -> _ => Some(Wake::Quit),
                default => None,
            }
        }
    }

    /// Makes `request` with a `*_nowait` operation (which only queues it) and gives the
    /// handle to the worker.
    fn execute(&self, app: &mut App, request: Request) {
        let sent = match &request.action {
            // No echo: the line is on the screen already, marked until its ack arrives.
            Action::Say { group, text } => self.client.send_to_group_nowait(
                group,
                text.as_str(),
                &RequestOptions::new().no_echo(true),
            ),
            Action::Join(group) => self.client.join_group_nowait(group, &RequestOptions::new()),
            Action::Leave(group) => self
                .client
                .leave_group_nowait(group, &RequestOptions::new()),
        };
        match sent {
            Ok(handle) => self.worker.submit(Job::Wait(request.id, handle)),
            // Refused before anything was sent: a bad group name, a stopped client.
            Err(e) => app.on_answer(request.id, Err(&e)),
        }
    }
}

fn ui_loop(
    mut screen: Screen,
    app: &mut App,
    wiring: &Wiring,
    running: &mut Option<StartGuard>,
) -> Result<(), Box<dyn StdError>> {
    while !app.quit {
        screen.terminal.draw(|frame| ui::draw(frame, &mut *app))?;
        // Block until something happens, then take what else is already waiting, so that a
        // burst of messages costs one redraw.
        let mut wait = true;
        while let Some(wake) = wiring.next(wait) {
            wait = false;
            match wake {
                Wake::Client(event) => {
                    if let (Some(emu), Event::Connected { connection_id, .. }) =
                        (wiring.emulator, &event)
                    {
                        // The embedded "application server" greets each new connection.
                        emu.hub(HUB).send_to_connection(
                            connection_id,
                            "welcome! This is the embedded emulator; /join another group, or /quit",
                        );
                    }
                    if let Some(request) = app.on_event(event, wiring.client.state()) {
                        wiring.execute(app, request);
                    }
                }
                Wake::Key(key) => match key? {
                    TermEvent::Key(key) => {
                        if let Some(request) = app.on_key(key) {
                            wiring.execute(app, request);
                        }
                    }
                    TermEvent::Paste(text) => app.input.push_str(&text),
                    // A resize only needs the redraw that follows.
                    _ => {}
                },
                Wake::Done(Done::Started(Ok(guard))) => *running = Some(guard),
                Wake::Done(Done::Started(Err(e))) => app.on_start_failed(&e),
                Wake::Done(Done::Answered(id, result)) => {
                    app.on_answer(id, result.as_ref().copied())
                }
                Wake::Quit => app.quit = true,
            }
            if app.quit {
                break;
            }
        }
    }
    Ok(())
}

/// The terminal in raw mode on the alternate screen; restored when dropped, and by ratatui's
/// panic hook if anything panics.
struct Screen {
    terminal: ratatui::DefaultTerminal,
}

impl Screen {
    fn enter() -> std::io::Result<Screen> {
        Ok(Screen {
            terminal: ratatui::try_init()?,
        })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Forwards the terminal's events. crossterm's `read()` cannot be interrupted from another
/// thread, so this thread is not joined: it owns nothing that needs cleaning up, and it ends
/// with the process.
fn spawn_key_reader() -> std::io::Result<Receiver<std::io::Result<TermEvent>>> {
    let (tx, rx) = crossbeam_channel::bounded(256);
    std::thread::Builder::new()
        .name("chat-input".into())
        .spawn(move || loop {
            let event = term::read();
            let failed = event.is_err();
            if tx.send(event).is_err() || failed {
                return;
            }
        })?;
    Ok(rx)
}

/// SIGTERM, SIGHUP (the terminal window closed) and a SIGINT sent with `kill` end the program
/// as `/quit` does. (In raw mode, Ctrl-C is a key, not a signal.)
fn termination_signals() -> Result<Receiver<()>, ctrlc::Error> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    ctrlc::set_handler(move || {
        let _ = tx.try_send(());
    })?;
    Ok(rx)
}
