//! A local Azure Web PubSub service for tests and development.
//!
//! Prints the connection string as its first stdout line, then serves until interrupted
//! (Ctrl-C / SIGTERM). Logging through `RUST_LOG` (e.g. `RUST_LOG=debug`).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use webpubsub_emulator::Emulator;

const USAGE: &str = "\
webpubsub-emulator: a local Azure Web PubSub service (JSON subprotocols, REST API)

USAGE:
    webpubsub-emulator [--host ADDR] [--port PORT] [--access-key KEY]

OPTIONS:
    --host ADDR         address to listen on (default 127.0.0.1)
    --port PORT         port to listen on; 0 picks a free one (default 8080)
    --access-key KEY    the key that signs tokens (default: random)
    -h, --help          print this help

The first line on stdout is the connection string, e.g.
    Endpoint=http://127.0.0.1:8080;AccessKey=...;Version=1.0;
Client URLs: ws://HOST:PORT/client/hubs/{hub}?access_token=JWT
REST API:    http://HOST:PORT/api/hubs/{hub}/...
Logging:     RUST_LOG=info|debug|trace
";

struct Args {
    host: IpAddr,
    port: u16,
    access_key: Option<String>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut out = Args {
        host: IpAddr::from([127, 0, 0, 1]),
        port: 8080,
        access_key: None,
    };
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--host" => {
                let v = value("--host")?;
                out.host = v
                    .parse()
                    .map_err(|_| format!("--host: `{v}` is not an IP address"))?;
            }
            "--port" => {
                let v = value("--port")?;
                out.port = v
                    .parse()
                    .map_err(|_| format!("--port: `{v}` is not a port number"))?;
            }
            "--access-key" => {
                let v = value("--access-key")?;
                if v.is_empty() {
                    return Err("--access-key must not be empty".into());
                }
                out.access_key = Some(v);
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Some(out))
}

fn main() -> ExitCode {
    env_logger::init();
    let args = match parse(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("webpubsub-emulator: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut builder = Emulator::builder().addr(SocketAddr::new(args.host, args.port));
    if let Some(key) = args.access_key {
        builder = builder.access_key(key);
    }
    let emu = match builder.start() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("webpubsub-emulator: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{}", emu.connection_string())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(out);
    eprintln!(
        "webpubsub-emulator: serving {} (Ctrl-C to stop)",
        emu.endpoint()
    );
    // A ready-made client URL for trying things by hand (examples/listen.rs, a browser
    // console, an SDK): hub `chat`, every role, valid for a day.
    let demo_url = emu
        .client_url("chat")
        .user_id("demo")
        .role("webpubsub.joinLeaveGroup")
        .role("webpubsub.sendToGroup")
        .expires_in(std::time::Duration::from_secs(24 * 3600))
        .build();
    eprintln!("webpubsub-emulator: a client URL for hub `chat` (user `demo`, all roles, 24 h):\n{demo_url}");
    // Serve until the process is interrupted; the default SIGINT/SIGTERM action ends it.
    loop {
        std::thread::park();
    }
}
