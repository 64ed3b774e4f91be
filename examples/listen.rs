//! Connects to Azure Web PubSub, joins the groups named on the command line and prints what
//! arrives, until Ctrl-C (or SIGTERM, SIGHUP) or until the client stops by itself (the session
//! was lost and reconnecting gave up). With `--until-eof` it also ends when standard input
//! reaches end of file (Ctrl-D, a closed pipe).
//!
//! ```text
//! WEBPUBSUB_CLIENT_URL='wss://<name>.webpubsub.azure.com/client/hubs/<hub>?access_token=...' \
//!     cargo run --example listen -- group1 group2
//! # or: cargo run --example listen -- --url '<client access URL>' group1
//! # in the background, or under a service manager:   listen group1 > messages.log &
//! ```
//!
//! Standard input is not read unless `--until-eof` is given, so the program keeps running
//! when it has none (`&`, a service manager, `< /dev/null`). Ctrl-C stops the client
//! cleanly: it closes the connection, so the service ends the session at once instead of
//! keeping it for a recovery.
//!
//! Try it locally with `cargo run -p webpubsub-emulator -- --port 0`,
//! which prints a client URL for hub `chat` on standard error. Set `RUST_LOG=webpubsub_client=debug` (with `env_logger`) to see the client's
//! logs; tokens never appear in them.
use std::io::Read;
use webpubsub_client::{Data, Event, WebPubSubClient};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let until_eof = match args.iter().position(|a| a == "--until-eof") {
        Some(i) => {
            args.remove(i);
            true
        }
        None => false,
    };
    let url = match args.iter().position(|a| a == "--url") {
        Some(i) if i + 1 < args.len() => {
            let url = args.remove(i + 1);
            args.remove(i);
            url
        }
        _ => std::env::var("WEBPUBSUB_CLIENT_URL")
            .map_err(|_| "give the client access URL with --url or WEBPUBSUB_CLIENT_URL")?,
    };

    // Ctrl-C, SIGTERM and SIGHUP end the loop below, so that the guard stops the client
    // (instead of the signal ending the process with the connection still open).
    let (quit_tx, quit) = crossbeam_channel::bounded::<&str>(1);
    let on_signal = quit_tx.clone();
    ctrlc::set_handler(move || {
        let _ = on_signal.try_send("signal received");
    })?;

    let client = WebPubSubClient::new(&url)?;
    let events = client.events();
    let _guard = client.start()?; // stops the client when main returns
    eprintln!("connected as {:?}", client.connection_id());
    for group in &args {
        client.join_group(group)?;
        eprintln!("joined {group}");
    }

    if until_eof {
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            let _ = quit_tx.try_send("end of input");
        });
    }

    loop {
        crossbeam_channel::select! {
            recv(events) -> event => match event? {
                Event::GroupMessage(m) => println!("[{}] {}: {}", m.group, m.from_user_id.as_deref().unwrap_or("-"), show(&m.data)),
                Event::ServerMessage(m) => println!("[server] {}", show(&m.data)),
                Event::Disconnected { message, close_code, .. } => eprintln!("disconnected ({close_code:?}): {message:?}"),
                // A failure for a service manager to act on (e.g. restart on failure).
                Event::Stopped => return Err("the client stopped: the session was lost and reconnecting gave up".into()),
                other => eprintln!("{other:?}"),
            },
            recv(quit) -> why => {
                eprintln!("{}; stopping", why.unwrap_or("signal received"));
                return Ok(());
            }
        }
    }
}

fn show(data: &Data) -> String {
    match data {
        Data::Text(t) => t.clone(),
        Data::Json(v) => v.to_string(),
        Data::Binary(b) | Data::Protobuf(b) => format!("<{} bytes>", b.len()),
    }
}
