//! A desktop chat window (eframe/egui) on `webpubsub-client`: the pattern for a GUI thread
//! that holds a blocking client.
//!
//! ```text
//! cargo run -p webpubsub-desktop                          # on an emulator in this process
//! cargo run -p webpubsub-desktop -- --url '<client access URL>' --group room
//! cargo run -p webpubsub-desktop -- --demo --screenshot desktop.png
//! ```
//!
//! The window's thread never blocks on the network: requests go out as `*_nowait` handles that
//! a worker thread waits on ([`requests`]); the client's callback and the worker wake the
//! window with `request_repaint()`; each frame drains what arrived with `try_recv`
//! ([`app`]). `examples/desktop/screenshot.sh` runs `--demo` under Xvfb.

mod app;
mod demo;
mod requests;

use app::{ChatApp, Setup};
use eframe::egui;
use std::path::PathBuf;
use std::process::ExitCode;
use webpubsub_client::WebPubSubClient;
use webpubsub_emulator::Emulator;

const HUB: &str = "chat";

const USAGE: &str = "\
webpubsub-desktop: a chat window on Azure Web PubSub

USAGE:
    webpubsub-desktop [--url URL] [--user NAME] [--group GROUP]
    webpubsub-desktop --demo [--screenshot PNG]

OPTIONS:
    --url URL          a client access URL (wss://<name>.webpubsub.azure.com/client/hubs/<hub>?
                       access_token=...) whose token has the roles webpubsub.joinLeaveGroup and
                       webpubsub.sendToGroup. Without it, an emulator runs in this process.
    --user NAME        your user id on the embedded emulator (default: $USER)
    --group GROUP      the group to join first (default: lobby)
    --demo             on the embedded emulator, a second user chats with you and your
                       connection is cut and recovers; then the window closes
    --screenshot PNG   with --demo: save a screenshot of the window before closing
    -h, --help         print this help
";

struct Args {
    url: Option<String>,
    user: Option<String>,
    group: Option<String>,
    demo: bool,
    screenshot: Option<PathBuf>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut out = Args {
        url: None,
        user: None,
        group: None,
        demo: false,
        screenshot: None,
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
            "--group" => out.group = Some(value()?),
            "--screenshot" => out.screenshot = Some(value()?.into()),
            "--demo" => out.demo = true,
            _ => return Err(format!("unknown argument `{name}`")),
        }
    }
    if out.url.is_some() && out.user.is_some() {
        return Err(
            "--user names you on the embedded emulator; with --url the token names you".into(),
        );
    }
    if out.demo && (out.url.is_some() || out.user.is_some() || out.group.is_some()) {
        return Err("--demo runs on the embedded emulator as alice in #room".into());
    }
    if out.screenshot.is_some() && !out.demo {
        return Err("--screenshot goes with --demo".into());
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
            eprintln!("webpubsub-desktop: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("webpubsub-desktop: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let user = match (&args.url, args.user, args.demo) {
        (Some(_), _, _) => None,
        (None, _, true) => Some("alice".to_owned()),
        (None, Some(user), false) => Some(user),
        (None, None, false) => Some(std::env::var("USER").unwrap_or_else(|_| "me".into())),
    };
    let group = match args.demo {
        true => demo::ROOM.to_owned(),
        false => args.group.unwrap_or_else(|| "lobby".into()),
    };
    let emulator = match args.url {
        Some(_) => None,
        None => Some(Emulator::start()?),
    };
    let emulator_url = |user: &str| {
        emulator.as_ref().map(|emu| {
            emu.client_url(HUB)
                .user_id(user)
                .role("webpubsub.joinLeaveGroup")
                .role("webpubsub.sendToGroup")
                .build()
        })
    };
    let url = match (&args.url, &user) {
        (Some(url), _) => url.clone(),
        (None, user) => emulator_url(user.as_deref().unwrap_or_default()).unwrap_or_default(),
    };
    // A bad URL is reported here, before a window opens.
    let client = WebPubSubClient::new(&url)?;
    // The query holds the access token: never show it.
    let service = match &emulator {
        Some(emu) => format!("the embedded emulator on {}, hub {HUB}", emu.endpoint()),
        None => url.split('?').next().unwrap_or_default().to_owned(),
    };
    let script = match (&emulator, args.demo) {
        (Some(emu), true) => Some(demo::Script {
            hub: emu.hub(HUB),
            window: client.clone(),
            bob_url: emulator_url("bob").unwrap_or_default(),
        }),
        _ => None,
    };
    let (outcome_tx, outcome) = crossbeam_channel::bounded(1);
    let screenshot = args.screenshot;

    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("webpubsub chat")
            .with_inner_size([860.0, 540.0]),
        ..Default::default()
    };
    eframe::run_native(
        "webpubsub chat",
        options,
        Box::new(move |cc| {
            let demo = match script {
                Some(script) => Some(demo::Demo::spawn(
                    cc.egui_ctx.clone(),
                    script,
                    screenshot.unwrap_or_else(|| "desktop.png".into()),
                    outcome_tx,
                )?),
                None => None,
            };
            let setup = Setup {
                client,
                user,
                group,
                service,
                demo,
            };
            Ok(Box::new(ChatApp::new(cc, setup)?))
        }),
    )?;
    // The window is closed and the client stopped (`ChatApp`'s drop).
    if args.demo {
        match outcome.try_recv() {
            Ok(Ok(())) => {}
            Ok(Err(why)) => return Err(format!("demo failed: {why}").into()),
            Err(_) => return Err("demo: the window closed before the demo ended".into()),
        }
    }
    if let Some(emu) = emulator {
        emu.stop();
    }
    Ok(())
}
