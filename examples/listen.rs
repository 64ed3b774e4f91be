//! Connects to Azure Web PubSub, joins the groups named on the command line and prints what
//! arrives until the process is killed (Ctrl-C) or standard input reaches end of file.
//!
//! ```text
//! WEBPUBSUB_CLIENT_URL='wss://<name>.webpubsub.azure.com/client/hubs/<hub>?access_token=...' \
//!     cargo run --example listen -- group1 group2
//! # or: cargo run --example listen -- --url '<client access URL>' group1
//! ```
//!
//! Try it locally with `cargo run -p webpubsub-emulator -- --port 0`,
//! which prints a client URL for hub `chat` on standard error. Set `RUST_LOG=webpubsub_client=debug` (with `env_logger`) to see the client's
//! logs; tokens never appear in them.
use std::io::Read;
use webpubsub_client::{Data, Event, WebPubSubClient};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let url = match args.iter().position(|a| a == "--url") {
        Some(i) if i + 1 < args.len() => {
            let url = args.remove(i + 1);
            args.remove(i);
            url
        }
        _ => std::env::var("WEBPUBSUB_CLIENT_URL")
            .map_err(|_| "give the client access URL with --url or WEBPUBSUB_CLIENT_URL")?,
    };

    let client = WebPubSubClient::new(&url)?;
    let events = client.events();
    let _guard = client.start()?; // stops the client when main returns
    eprintln!("connected as {:?}", client.connection_id());
    for group in &args {
        client.join_group(group)?;
        eprintln!("joined {group}");
    }

    // End on stdin EOF (e.g. Ctrl-D, or a closed pipe) as well as on Ctrl-C.
    let (eof_tx, eof_rx) = crossbeam_channel::bounded::<()>(1);
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = eof_tx.send(());
    });

    loop {
        crossbeam_channel::select! {
            recv(events) -> event => match event? {
                Event::GroupMessage(m) => println!("[{}] {}: {}", m.group, m.from_user_id.as_deref().unwrap_or("-"), show(&m.data)),
                Event::ServerMessage(m) => println!("[server] {}", show(&m.data)),
                Event::Disconnected { message, close_code, .. } => eprintln!("disconnected ({close_code:?}): {message:?}"),
                Event::Stopped => return Ok(()),
                other => eprintln!("{other:?}"),
            },
            recv(eof_rx) -> _ => return Ok(()),
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
