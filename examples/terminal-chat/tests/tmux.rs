//! The terminal chat as a person uses it: two instances in tmux on one emulator, one typed
//! into with `send-keys`, the other read with `capture-pane`; a connection cut by the
//! emulator's fault injection, and the cut instance's state line followed through recovery and
//! a new connection; then `/quit` and Ctrl-C, each ending the program with status 0 after a
//! clean stop.
//!
//! Needs `tmux` (`apt-get install tmux`); skipped with a message where it is absent. A screen
//! can only be read by looking at it, so the waits poll `capture-pane` every few milliseconds
//! until what they expect is on the screen, each bounded by a deadline; on a timeout the
//! failure shows the screen.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use webpubsub_emulator::{Emulator, Observation};

const CHAT: &str = env!("CARGO_BIN_EXE_terminal-chat");
const HUB: &str = "chat";
/// How long one step may take on a loaded two-core machine.
const STEP: Duration = Duration::from_secs(20);
/// Between two looks at a screen.
const POLL: Duration = Duration::from_millis(20);

/// A tmux server of its own (its own socket, no configuration file) and a directory for the
/// programs' exit statuses; the server is killed and the directory removed when dropped, even
/// when the test fails.
struct Tmux {
    dir: PathBuf,
    socket: PathBuf,
}

impl Tmux {
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn new() -> Tmux {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "webpubsub-chat-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a directory for the test");
        Tmux {
            socket: dir.join("tmux.sock"),
            dir,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let output = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null"])
            .args(args)
            // Run from inside a tmux session, tmux would refuse to nest sessions.
            .env_remove("TMUX")
            .output()
            .expect("tmux runs");
        assert!(
            output.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Where the exit status of the program in session `name` is written.
    fn status_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.status"))
    }

    /// Starts `terminal-chat args…` in a new 120×40 session `name`. A shell around it writes
    /// its exit status to a file: tmux's own `pane_dead_status` may never be set, because
    /// tmux built with libutempter can miss the SIGCHLD of a pane whose program ends while
    /// it closes that pane's terminal. The pane stays after the end, for a last look.
    fn start(&self, name: &str, args: &[&str]) {
        let status = self.status_file(name);
        let status = status.to_str().expect("a UTF-8 temporary directory");
        let mut command = vec![
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "120",
            "-y",
            "40",
            "sh",
            "-c",
            r#"out=$1; shift; "$@"; echo $? > "$out.tmp" && mv "$out.tmp" "$out""#,
            "sh",
            status,
            CHAT,
        ];
        command.extend_from_slice(args);
        // In the same command list as the session, before the program can have ended.
        command.extend_from_slice(&[";", "set-option", "-g", "remain-on-exit", "on"]);
        self.run(&command);
    }

    fn screen(&self, name: &str) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", name]).stdout).into_owned()
    }

    /// Types `text` and Enter.
    fn type_line(&self, name: &str, text: &str) {
        self.run(&["send-keys", "-t", name, "-l", text]);
        self.run(&["send-keys", "-t", name, "Enter"]);
    }

    /// Waits until `ok(screen)` holds; returns that screen.
    fn wait_for(&self, name: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            let screen = self.screen(name);
            if ok(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: no {what} within {STEP:?}; the screen:\n{screen}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// Waits until `text` is on the screen.
    fn wait_for_text(&self, name: &str, text: &str) -> String {
        self.wait_for(name, &format!("{text:?}"), |s| s.contains(text))
    }

    /// Waits until the program in `name` ended; its exit status.
    fn wait_for_exit(&self, name: &str) -> i32 {
        let deadline = Instant::now() + STEP;
        loop {
            // Written whole (renamed into place), so a file that exists is complete.
            if let Ok(status) = std::fs::read_to_string(self.status_file(name)) {
                return status.trim().parse().expect("an exit status");
            }
            assert!(
                Instant::now() < deadline,
                "{name} still runs {STEP:?} after quitting; the screen:\n{}",
                self.screen(name)
            );
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .env_remove("TMUX")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The status line: the screen's last line that starts with `state:`.
fn status(screen: &str) -> &str {
    screen
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("state:"))
        .unwrap_or("")
}

fn url(emu: &Emulator, user: &str) -> String {
    emu.client_url(HUB)
        .user_id(user)
        .role("webpubsub.joinLeaveGroup")
        .role("webpubsub.sendToGroup")
        .build()
}

/// The connection id of `user`'s session.
fn connection_of(emu: &Emulator, user: &str) -> String {
    let sessions: Vec<_> = emu
        .hub(HUB)
        .connections()
        .into_iter()
        .filter(|c| c.user_id.as_deref() == Some(user))
        .collect();
    assert_eq!(sessions.len(), 1, "one session of {user}: {sessions:?}");
    sessions[0].connection_id.clone()
}

#[test]
fn two_people_chat_and_one_sees_its_connection_recover_and_reconnect() {
    if !Tmux::available() {
        eprintln!(
            "skipped: tmux is not installed; install it (`apt-get install tmux`) to run the terminal chat test"
        );
        return;
    }
    let emu = Emulator::start().expect("emulator");
    let observations = emu.observe();
    let tmux = Tmux::new();
    let (alice_url, bob_url) = (url(&emu, "alice"), url(&emu, "bob"));
    tmux.start("alice", &["--url", &alice_url, "--group", "room"]);
    tmux.start("bob", &["--url", &bob_url, "--group", "room"]);

    // Both connected and in the room.
    for name in ["alice", "bob"] {
        let screen = tmux.wait_for_text(name, "joined #room");
        assert!(status(&screen).contains("state: connected"), "{screen}");
        assert!(
            status(&screen).contains(&format!("user: {name}")),
            "{screen}"
        );
    }

    // Alice types; Bob reads it, with who sent it; Alice's line loses its "(sending)" mark
    // once the service acknowledged it.
    tmux.type_line("alice", "hello from alice");
    tmux.wait_for_text("bob", "alice: hello from alice");
    tmux.wait_for("alice", "acknowledged line", |s| {
        s.contains("alice: hello from alice") && !s.contains("(sending)")
    });
    tmux.type_line("bob", "hi alice");
    tmux.wait_for_text("alice", "bob: hi alice");
    let alice_id = connection_of(&emu, "alice");

    // Cut Bob's connection as a network failure would (B14): his screen tells of the
    // recovery, and the state line changes from connected to recovered.
    let bob_id = connection_of(&emu, "bob");
    assert!(emu.hub(HUB).drop_connection(&bob_id));
    let screen = tmux.wait_for("bob", "recovered state line", |s| {
        status(s).contains("state: recovered")
    });
    assert!(
        screen.contains(&format!(
            "connection {bob_id} lost (no close frame); recovering"
        )),
        "{screen}"
    );
    assert!(
        screen.contains(&format!("session {bob_id} recovered")),
        "{screen}"
    );
    tmux.type_line("alice", "still there?");
    tmux.wait_for_text("bob", "alice: still there?");

    // End Bob's session for good (1008: no recovery): he reconnects as a new connection
    // (B10, B9), is back in the room (B23), and his state line says connected again.
    assert!(emu.hub(HUB).close_connection(&bob_id, "maintenance"));
    let screen = tmux.wait_for("bob", "new connection", |s| {
        s.contains("session lost (maintenance, close 1008); reconnecting")
            && status(s).contains("state: connected")
            && !status(s).contains(&bob_id)
    });
    let new_id = connection_of(&emu, "bob");
    assert_ne!(new_id, bob_id);
    assert!(
        screen.contains(&format!("connected as {new_id}")),
        "{screen}"
    );
    tmux.type_line("alice", "welcome back");
    tmux.wait_for_text("bob", "alice: welcome back");

    // Ctrl-C and /quit: each stops its client with a close frame (the emulator ends the
    // session at once instead of keeping it for a recovery), restores the terminal (the
    // chat is gone from the pane) and exits with status 0.
    tmux.run(&["send-keys", "-t", "alice", "C-c"]);
    tmux.type_line("bob", "/quit");
    for name in ["alice", "bob"] {
        assert_eq!(tmux.wait_for_exit(name), 0, "{name}'s exit status");
        let screen = tmux.screen(name);
        assert!(
            !screen.contains("state:"),
            "{name}: the chat is still on the screen:\n{screen}"
        );
    }
    let mut ended = sessions_ended(&observations, "closed by the client", 2);
    ended.sort();
    let mut expected = vec![alice_id, new_id];
    expected.sort();
    assert_eq!(ended, expected);
}

/// Waits for `n` sessions to end with `reason`; their connection ids.
fn sessions_ended(
    observations: &crossbeam_channel::Receiver<Observation>,
    reason: &str,
    n: usize,
) -> Vec<String> {
    let deadline = Instant::now() + STEP;
    let mut ended = Vec::new();
    while ended.len() < n {
        match observations.recv_deadline(deadline) {
            Ok(Observation::SessionEnded {
                connection_id,
                reason: why,
                ..
            }) if why.contains(reason) => ended.push(connection_id),
            Ok(_) => {}
            Err(_) => panic!("only {ended:?} ended with {reason:?} within {STEP:?}"),
        }
    }
    ended
}
