//! The window: what it shows, and how a frame takes in what happened since the last one.
//!
//! The three rules of a GUI thread holding a blocking client, all in this file:
//!
//! 1. **Never block the UI thread on a request.** Buttons and Enter make requests with the
//!    `*_nowait` operations, which only queue them; the [`Worker`] waits on the handles.
//! 2. **Wake the UI from a callback.** egui draws a frame only when something asks for one.
//!    The client's callback runs on its dispatcher thread and calls `request_repaint()`; so does
//!    the worker after each outcome. An idle window costs nothing: no timer, no polling.
//! 3. **Drain the receiver in the frame.** [`update`](eframe::App::update) takes everything
//!    waiting with `try_recv`, then draws.

use crate::demo::{Demo, Step};
use crate::requests::{Done, Job, RequestId, Worker};
use crossbeam_channel::Receiver;
use eframe::egui::{self, Color32, Key, RichText};
use std::collections::HashMap;
use webpubsub_client::{ClientState, Data, Event, RequestOptions, StartGuard, WebPubSubClient};

/// Whether a message this user sent was acknowledged.
enum Delivery {
    Received,
    Sending,
    Sent,
    Failed(String),
}

/// One line of the room's log.
enum Line {
    Message {
        group: String,
        from: String,
        text: String,
        delivery: Delivery,
    },
    Server(String),
    Info(String),
    Error(String),
}

/// What a request in flight was for.
enum Pending {
    Say(usize),
    Join(String),
    Leave(String),
}

/// What the window is given to start with.
pub struct Setup {
    /// The client, not started yet.
    pub client: WebPubSubClient,
    /// This user, if known before connecting.
    pub user: Option<String>,
    /// The group to join once connected.
    pub group: String,
    /// Where the service is, for the first line of the log (no token in it).
    pub service: String,
    /// With `--demo`: the scripted second user and the screenshot.
    pub demo: Option<Demo>,
}

/// The window's state.
pub struct ChatApp {
    client: WebPubSubClient,
    /// Fed by the client's callback, drained by every frame.
    events: Receiver<Event>,
    /// Outcomes from the worker, drained by every frame.
    done: Receiver<Done>,
    worker: Option<Worker>,
    running: Option<StartGuard>,
    lines: Vec<Line>,
    input: String,
    group_field: String,
    /// Joined groups, in the order they were joined.
    groups: Vec<String>,
    /// Where Send goes.
    current: Option<String>,
    /// The group to join when the first connection is ready (later connections rejoin it
    /// by themselves).
    first_join: Option<String>,
    state: (String, Color32),
    connection_id: Option<String>,
    user: Option<String>,
    pending: HashMap<RequestId, Pending>,
    next_id: RequestId,
    demo: Option<Demo>,
}

impl ChatApp {
    /// Wires the client to the window and starts it in the background.
    pub fn new(cc: &eframe::CreationContext<'_>, setup: Setup) -> std::io::Result<ChatApp> {
        let ctx = cc.egui_ctx.clone();
        // Rule 2. The dispatcher feeds the `events()` receivers before it runs the callbacks,
        // so the frame that this callback's wake-up causes finds the event in `events`. The
        // receiver also counts in the client's backlog bound: a window that stops draining it
        // makes the client stop reading its socket rather than grow without bound.
        let events = setup.client.events();
        let wake = ctx.clone();
        setup.client.on_event(move |_| wake.request_repaint());
        let (done_tx, done) = crossbeam_channel::unbounded();
        let wake = ctx.clone();
        let worker = Worker::spawn(setup.client.clone(), done_tx, move || {
            wake.request_repaint()
        })?;
        // `start()` waits for the service: the worker does it, not this thread.
        worker.submit(Job::Start);
        Ok(ChatApp {
            client: setup.client,
            events,
            done,
            worker: Some(worker),
            running: None,
            lines: vec![Line::Info(format!("connecting to {}", setup.service))],
            input: String::new(),
            group_field: setup.group.clone(),
            groups: Vec::new(),
            current: None,
            first_join: Some(setup.group),
            state: ("connecting".into(), Color32::GOLD),
            connection_id: None,
            user: setup.user,
            pending: HashMap::new(),
            next_id: 1,
            demo: setup.demo,
        })
    }

    /// Rule 1: queue the request, hand its handle to the worker, return at once.
    fn request(&mut self, pending: Pending) {
        let id = self.next_id;
        self.next_id += 1;
        let opts = RequestOptions::new();
        let sent = match &pending {
            Pending::Say(line) => match &self.lines[*line] {
                // No echo: the line is shown already, marked until its ack arrives.
                Line::Message { group, text, .. } => {
                    self.client
                        .send_to_group_nowait(group, text.as_str(), &opts.no_echo(true))
                }
                _ => unreachable!("a Say points at a message"),
            },
            Pending::Join(group) => self.client.join_group_nowait(group, &opts),
            Pending::Leave(group) => self.client.leave_group_nowait(group, &opts),
        };
        self.pending.insert(id, pending);
        match sent {
            Ok(handle) => self.worker().submit(Job::Wait(id, handle)),
            Err(e) => self.on_answer(id, Err(e)),
        }
    }

    fn worker(&self) -> &Worker {
        self.worker
            .as_ref()
            .expect("the worker runs until the window is dropped")
    }

    /// Send: the input line goes to the current group.
    fn say(&mut self, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let Some(group) = self.current.clone() else {
            self.lines.push(Line::Error("join a group first".into()));
            return;
        };
        self.lines.push(Line::Message {
            group,
            from: self.user.clone().unwrap_or_else(|| "me".into()),
            text: text.to_owned(),
            delivery: Delivery::Sending,
        });
        self.request(Pending::Say(self.lines.len() - 1));
    }

    fn on_done(&mut self, done: Done) {
        match done {
            // `start()` returns before its `Connected` event reaches the window: the first
            // join waits for the event, so that the log reads in order.
            Done::Started(Ok(guard)) => self.running = Some(guard),
            Done::Started(Err(e)) => {
                self.state = (format!("failed to start: {e}"), Color32::LIGHT_RED);
                self.lines
                    .push(Line::Error(format!("could not connect: {e}")));
            }
            Done::Answered(id, result) => self.on_answer(id, result.map(|_| ())),
        }
    }

    fn on_answer(&mut self, id: RequestId, result: Result<(), webpubsub_client::Error>) {
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        match (pending, result) {
            (Pending::Say(line), result) => {
                if let Some(Line::Message { delivery, .. }) = self.lines.get_mut(line) {
                    *delivery = match result {
                        Ok(()) => Delivery::Sent,
                        Err(e) => Delivery::Failed(e.to_string()),
                    };
                }
            }
            (Pending::Join(group), Ok(())) => {
                self.lines.push(Line::Info(format!("joined #{group}")));
                if !self.groups.contains(&group) {
                    self.groups.push(group.clone());
                }
                self.current = Some(group);
                if let Some(demo) = &mut self.demo {
                    demo.joined();
                }
            }
            (Pending::Join(group), Err(e)) => self
                .lines
                .push(Line::Error(format!("could not join #{group}: {e}"))),
            (Pending::Leave(group), Ok(())) => {
                self.lines.push(Line::Info(format!("left #{group}")));
                self.groups.retain(|g| *g != group);
                if self.current.as_ref() == Some(&group) {
                    self.current = self.groups.first().cloned();
                }
            }
            (Pending::Leave(group), Err(e)) => self
                .lines
                .push(Line::Error(format!("could not leave #{group}: {e}"))),
        }
    }

    fn on_event(&mut self, event: Event) {
        let green = Color32::from_rgb(80, 200, 120);
        match event {
            Event::Connected {
                connection_id,
                user_id,
            } => {
                self.lines
                    .push(Line::Info(format!("connected as {connection_id}")));
                self.state = ("connected".into(), green);
                self.connection_id = Some(connection_id);
                self.user = user_id.or(self.user.take());
                if let Some(group) = self.first_join.take() {
                    self.request(Pending::Join(group));
                }
            }
            Event::Recovering { connection_id, .. } => {
                self.lines.push(Line::Info(format!(
                    "connection {connection_id} lost; recovering the session"
                )));
                self.state = ("recovering".into(), Color32::GOLD);
            }
            Event::Recovered { connection_id } => {
                self.lines.push(Line::Info(format!(
                    "session {connection_id} recovered, nothing lost"
                )));
                self.state = ("recovered".into(), green);
            }
            Event::Disconnected {
                message,
                close_code,
                ..
            } => {
                let why = message.unwrap_or_else(|| "no reason given".into());
                let code = close_code.map_or(String::new(), |c| format!(", close {c}"));
                self.connection_id = None;
                if matches!(
                    self.client.state(),
                    ClientState::Stopping | ClientState::Stopped
                ) {
                    self.lines
                        .push(Line::Info(format!("disconnected ({why}{code})")));
                } else {
                    self.lines.push(Line::Info(format!(
                        "session lost ({why}{code}); reconnecting"
                    )));
                    self.state = ("disconnected, reconnecting".into(), Color32::LIGHT_RED);
                }
            }
            Event::Stopped => {
                self.lines.push(Line::Info("the client stopped".into()));
                self.state = ("stopped".into(), Color32::LIGHT_RED);
            }
            Event::RejoinGroupFailed { group, error } => {
                self.lines
                    .push(Line::Error(format!("could not rejoin #{group}: {error}")));
                self.groups.retain(|g| *g != group);
            }
            Event::GroupMessage(m) => self.lines.push(Line::Message {
                group: m.group,
                from: m.from_user_id.unwrap_or_else(|| "?".into()),
                text: show(&m.data),
                delivery: Delivery::Received,
            }),
            Event::ServerMessage(m) => self.lines.push(Line::Server(show(&m.data))),
            // Events added in later versions of the client.
            _ => {}
        }
    }

    fn run_demo(&mut self, ctx: &egui::Context) {
        let Some(demo) = &mut self.demo else {
            return;
        };
        let mut typed = Vec::new();
        for step in demo.steps() {
            match step {
                Step::Type(text) => typed.push(text),
                Step::Fail(why) => {
                    self.lines.push(Line::Error(format!("demo: {why}")));
                    demo.finish(Err(why));
                    ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                }
            }
        }
        // What the demo types goes through Send like a person's line.
        for text in typed {
            self.say(&text);
        }
        if let Some(demo) = &mut self.demo {
            demo.take_screenshot_when_idle(ctx, self.pending.is_empty());
        }
    }

    fn draw(&mut self, ctx: &egui::Context) {
        egui::TopBottomPanel::top("groups").show(ctx, |ui| {
            ui.add_space(4.0);
            ui.horizontal(|ui| {
                ui.heading("webpubsub chat");
                ui.separator();
                ui.label("group");
                let field = ui.add(
                    egui::TextEdit::singleline(&mut self.group_field)
                        .desired_width(140.0)
                        .hint_text("group name"),
                );
                let entered = field.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
                let group = self.group_field.trim().to_owned();
                if (ui.button("Join").clicked() || entered) && !group.is_empty() {
                    self.request(Pending::Join(group.clone()));
                }
                if ui.button("Leave").clicked() && !group.is_empty() {
                    self.request(Pending::Leave(group));
                }
                ui.separator();
                ui.label("talk in");
                for group in self.groups.clone() {
                    ui.selectable_value(
                        &mut self.current,
                        Some(group.clone()),
                        format!("#{group}"),
                    );
                }
            });
            ui.add_space(4.0);
        });

        egui::TopBottomPanel::bottom("status").show(ctx, |ui| {
            ui.horizontal(|ui| {
                let (label, color) = &self.state;
                ui.label(
                    RichText::new(format!("state: {label}"))
                        .color(*color)
                        .strong(),
                );
                ui.separator();
                ui.label(format!(
                    "user: {}",
                    self.user.as_deref().unwrap_or("(anonymous)")
                ));
                if let Some(id) = &self.connection_id {
                    ui.separator();
                    ui.weak(format!("connection: {id}"));
                }
                if !self.pending.is_empty() {
                    ui.separator();
                    ui.weak(format!("{} waiting for acks", self.pending.len()));
                }
            });
        });

        egui::TopBottomPanel::bottom("input").show(ctx, |ui| {
            ui.add_space(6.0);
            ui.horizontal(|ui| {
                let hint = match &self.current {
                    Some(group) => format!("message to #{group}"),
                    None => "join a group first".into(),
                };
                let field = ui.add(
                    egui::TextEdit::singleline(&mut self.input)
                        .hint_text(hint)
                        .desired_width(ui.available_width() - 60.0),
                );
                let entered = field.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
                if ui.button("Send").clicked() || entered {
                    let text = std::mem::take(&mut self.input);
                    self.say(&text);
                    field.request_focus();
                }
            });
            ui.add_space(6.0);
        });

        egui::CentralPanel::default().show(ctx, |ui| {
            egui::ScrollArea::vertical()
                .auto_shrink([false; 2])
                .stick_to_bottom(true)
                .show(ui, |ui| {
                    for line in &self.lines {
                        draw_line(ui, line);
                    }
                });
        });
    }
}

impl eframe::App for ChatApp {
    fn update(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        // Rule 3: take in everything that happened since the last frame, then draw.
        while let Ok(event) = self.events.try_recv() {
            self.on_event(event);
        }
        while let Ok(done) = self.done.try_recv() {
            self.on_done(done);
        }
        self.run_demo(ctx);
        self.draw(ctx);
        if let Some(demo) = &mut self.demo {
            demo.save_screenshot(ctx);
        }
    }
}

impl Drop for ChatApp {
    fn drop(&mut self) {
        // Stop first: requests still waiting then end with `Error::Stopped`, so the worker
        // finishes at once.
        self.running = None;
        self.client.stop();
        if let Some(worker) = self.worker.take() {
            worker.finish();
        }
    }
}

fn draw_line(ui: &mut egui::Ui, line: &Line) {
    ui.horizontal_wrapped(|ui| match line {
        Line::Message {
            group,
            from,
            text,
            delivery,
        } => {
            ui.weak(format!("#{group}"));
            ui.label(
                RichText::new(format!("{from}:"))
                    .strong()
                    .color(user_color(from)),
            );
            ui.label(text);
            match delivery {
                Delivery::Received | Delivery::Sent => {}
                Delivery::Sending => {
                    ui.weak("sending…");
                }
                Delivery::Failed(why) => {
                    ui.colored_label(Color32::LIGHT_RED, format!("not sent: {why}"));
                }
            }
        }
        Line::Server(text) => {
            ui.label(
                RichText::new("server:")
                    .strong()
                    .color(Color32::from_rgb(200, 120, 220)),
            );
            ui.label(text);
        }
        Line::Info(text) => {
            ui.label(
                RichText::new(text)
                    .italics()
                    .color(Color32::from_rgb(110, 170, 200)),
            );
        }
        Line::Error(text) => {
            ui.colored_label(Color32::LIGHT_RED, text);
        }
    });
}

/// A colour per user, so that a conversation is easy to follow.
fn user_color(user: &str) -> Color32 {
    const COLORS: [Color32; 5] = [
        Color32::from_rgb(90, 200, 120),
        Color32::from_rgb(240, 190, 80),
        Color32::from_rgb(100, 160, 255),
        Color32::from_rgb(230, 110, 110),
        Color32::from_rgb(80, 210, 210),
    ];
    let hash = user
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31) + usize::from(b));
    COLORS[hash % COLORS.len()]
}

/// A payload as one line of text.
fn show(data: &Data) -> String {
    match data {
        Data::Text(t) => t.clone(),
        Data::Json(v) => v.to_string(),
        Data::Binary(b) | Data::Protobuf(b) => format!("<{} bytes>", b.len()),
    }
}
