//! `--demo`: a second user in this process chats with the window's user, the window's
//! connection is cut and recovers, then the window takes a screenshot of itself and closes.
//!
//! The script runs on its own thread and drives the window the way everything else does:
//! it posts a step into a channel, then wakes the window. What it "types" goes through the
//! window's Send path. Every wait is bounded; a failed step closes the window with an error.

use crossbeam_channel::{Receiver, Sender};
use eframe::egui;
use std::path::{Path, PathBuf};
use std::time::Duration;
use webpubsub_client::{Event, WebPubSubClient};
use webpubsub_emulator::HubHandle;

/// The group the demo talks in.
pub const ROOM: &str = "room";
const WAIT: Duration = Duration::from_secs(20);
/// Frames drawn after the script ended before the screenshot, so that the layout settled
/// (egui sizes new rows and scrolls to the bottom over a frame or two).
const SETTLE_FRAMES: u32 = 3;

/// What the script asks of the window.
pub enum Step {
    /// Send this line, as if typed.
    Type(String),
    /// Give up: the window closes and the program fails.
    Fail(String),
}

/// What the script posts: a step for the window, or the end of the conversation (the
/// screenshot, taken once no request waits for its ack).
enum Post {
    Step(Step),
    Screenshot,
}

/// The window's side of the demo.
pub struct Demo {
    steps: Receiver<Post>,
    joined: Option<Sender<()>>,
    path: PathBuf,
    settle: Option<u32>,
    shot_requested: bool,
    outcome: Option<Sender<Result<(), String>>>,
}

/// What the script needs.
pub struct Script {
    /// The emulator's hub: to speak as the server and to cut the window's connection.
    pub hub: HubHandle,
    /// The window's client (its connection is cut; its recovery awaited).
    pub window: WebPubSubClient,
    /// A client URL for the second user, `bob`.
    pub bob_url: String,
}

impl Demo {
    /// Starts the script; the screenshot goes to `path`, the outcome to `outcome`.
    pub fn spawn(
        ctx: egui::Context,
        script: Script,
        path: PathBuf,
        outcome: Sender<Result<(), String>>,
    ) -> std::io::Result<Demo> {
        let (joined, joined_rx) = crossbeam_channel::bounded(1);
        let (steps_tx, steps) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("demo".into())
            .spawn(move || {
                let post = |step| {
                    let _ = steps_tx.send(step);
                    ctx.request_repaint();
                };
                match run(&joined_rx, &|step| post(Post::Step(step)), script) {
                    Ok(()) => post(Post::Screenshot),
                    Err(why) => post(Post::Step(Step::Fail(why))),
                }
            })?;
        Ok(Demo {
            steps,
            joined: Some(joined),
            path,
            settle: None,
            shot_requested: false,
            outcome: Some(outcome),
        })
    }

    /// The window joined the demo's group: the script may begin.
    pub fn joined(&mut self) {
        if let Some(joined) = self.joined.take() {
            let _ = joined.send(());
        }
    }

    /// The steps posted since the last frame; a screenshot request is kept for
    /// [`take_screenshot_when_idle`](Demo::take_screenshot_when_idle).
    pub fn steps(&mut self) -> Vec<Step> {
        let mut steps = Vec::new();
        for step in self.steps.try_iter() {
            match step {
                Post::Screenshot => self.settle = Some(0),
                Post::Step(step) => steps.push(step),
            }
        }
        steps
    }

    /// Asks egui for a screenshot once the script ended, no request waits for its ack, and
    /// a few frames settled the layout.
    pub fn take_screenshot_when_idle(&mut self, ctx: &egui::Context, idle: bool) {
        let Some(frames) = &mut self.settle else {
            return;
        };
        if self.shot_requested || !idle {
            return;
        }
        if *frames < SETTLE_FRAMES {
            *frames += 1;
            ctx.request_repaint();
            return;
        }
        self.shot_requested = true;
        ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(egui::UserData::default()));
    }

    /// Writes the screenshot when egui delivers it, then closes the window.
    pub fn save_screenshot(&mut self, ctx: &egui::Context) {
        let image = ctx.input(|i| {
            i.raw.events.iter().find_map(|e| match e {
                egui::Event::Screenshot { image, .. } => Some(image.clone()),
                _ => None,
            })
        });
        if let Some(image) = image {
            let written = write_png(&self.path, &image)
                .map_err(|e| format!("cannot write {}: {e}", self.path.display()));
            self.finish(written);
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }

    /// Reports the demo's outcome (once).
    pub fn finish(&mut self, outcome: Result<(), String>) {
        if let Some(tx) = self.outcome.take() {
            let _ = tx.send(outcome);
        }
    }
}

/// The conversation. Bob is an ordinary client of this process; he uses the blocking
/// operations, which is fine on a thread that is not a UI thread.
fn run(joined: &Receiver<()>, post: &dyn Fn(Step), script: Script) -> Result<(), String> {
    joined
        .recv_timeout(WAIT)
        .map_err(|_| format!("the window did not join #{ROOM} within {WAIT:?}"))?;
    let err = |e: webpubsub_client::Error| e.to_string();
    let bob = WebPubSubClient::new(&script.bob_url).map_err(err)?;
    let bob_inbox = bob.events();
    let _bob_running = bob.start().map_err(err)?;
    bob.join_group(ROOM).map_err(err)?;
    bob.send_to_group(ROOM, "hi alice! is the window awake?")
        .map_err(err)?;

    let reply = "yes: each event wakes it from a callback, and the next frame drains them";
    post(Step::Type(reply.into()));
    expect(&bob_inbox, reply)?;
    script
        .hub
        .send_to_group(ROOM, "the app server says: demo room, be nice");

    // Cut the window's connection; Bob talks while it recovers, and nothing is lost.
    let (recovered_tx, recovered) = crossbeam_channel::bounded(1);
    let watch = script.window.on_recovered(move |_| {
        let _ = recovered_tx.try_send(());
    });
    let id = script
        .window
        .connection_id()
        .ok_or("the window has no connection")?;
    if !script.hub.drop_connection(&id) {
        return Err(format!("no connection {id} to cut"));
    }
    bob.send_to_group(ROOM, "I just cut your connection, did you notice?")
        .map_err(err)?;
    recovered
        .recv_timeout(WAIT)
        .map_err(|_| format!("the window did not recover within {WAIT:?}"))?;
    watch.remove();

    let reply = "only the status line: recovering, then recovered, nothing lost";
    post(Step::Type(reply.into()));
    expect(&bob_inbox, reply)?;

    // The last line must be in the window before the screenshot. The window's own callback
    // was registered first, so when this one runs the window's channel has the message.
    let last = "see you tomorrow";
    let (seen_tx, seen) = crossbeam_channel::bounded(1);
    let watch = script.window.on_group_message(move |m| {
        if m.data.as_text() == Some(last) {
            let _ = seen_tx.try_send(());
        }
    });
    bob.send_to_group(ROOM, last).map_err(err)?;
    seen.recv_timeout(WAIT)
        .map_err(|_| format!("the window did not receive {last:?} within {WAIT:?}"))?;
    watch.remove();
    Ok(())
}

/// Waits for Bob to receive `text` in the room.
fn expect(inbox: &Receiver<Event>, text: &str) -> Result<(), String> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match inbox.recv_deadline(deadline) {
            Ok(Event::GroupMessage(m)) if m.data.as_text() == Some(text) => return Ok(()),
            Ok(_) => {}
            Err(_) => return Err(format!("bob did not receive {text:?} within {WAIT:?}")),
        }
    }
}

fn write_png(path: &Path, image: &egui::ColorImage) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let [width, height] = image.size;
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut encoder = png::Encoder::new(file, u32::try_from(width)?, u32::try_from(height)?);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(image.as_raw())?;
    writer.finish()?;
    Ok(())
}
