//! A local Azure Web PubSub service for tests and development.
//!
//! Prints the connection string as its first stdout line, then serves until interrupted
//! (Ctrl-C / SIGTERM). Logging through `RUST_LOG` (e.g. `RUST_LOG=debug`).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use webpubsub_emulator::upstream::{EventHandlerConfig, UpstreamConfig};
use webpubsub_emulator::Emulator;

const USAGE: &str = "\
webpubsub-emulator: a local Azure Web PubSub service (JSON and protobuf subprotocols, REST API, event handlers)

USAGE:
    webpubsub-emulator [--host ADDR] [--port PORT] [--access-key KEY]
                       [--event-handler SPEC]... [--config FILE] [--event-handler-timeout SECS]
                       [--enable-faults] [--flush-each-frame]

OPTIONS:
    --host ADDR         address to listen on (default 127.0.0.1)
    --port PORT         port to listen on; 0 picks a free one (default 8080)
    --access-key KEY    the key that signs tokens (default: WebPubSub:AccessKey of --config, or random)
    --event-handler SPEC
                        an app server's event handler, called over CloudEvents as the service
                        does; repeatable, the first that takes an event gets it:
                          HUB=URL_TEMPLATE   every user event and connect, connected, disconnected
                          HUB=URL_TEMPLATE;user=PATTERN;system=connect,connected,disconnected
                        {hub} and {event} in the URL are replaced; PATTERN is *, a,b or a name
    --config FILE       event handlers from a JSON file in the shape of Microsoft's emulator:
                        {\"WebPubSub\":{\"Hubs\":{\"chat\":{\"EventHandlers\":[{\"UrlTemplate\":\"...\",
                        \"SystemEvents\":[\"connect\"],\"EventPattern\":\"*\"}]}}}}; after --event-handler's
    --event-handler-timeout SECS
                        bound of a blocking event (connect, user events), retries included (default 30)
    --enable-faults     serve the fault-injection routes under /emulator/faults (drop a connection,
                        lose or fail acks, hold outbound frames, delay acks, refuse recoveries),
                        authorised like REST calls; off by default (404)
    --flush-each-frame  write each WebSocket frame with a system call of its own, as a server
                        that flushes after every message does (default: gather what is queued
                        into writes of up to 64 KiB); for measuring a client's cost per read
    -h, --help          print this help

The first line on stdout is the connection string, e.g.
    Endpoint=http://127.0.0.1:8080;AccessKey=...;Version=1.0;
Client URLs: ws://HOST:PORT/client/hubs/{hub}?access_token=JWT
REST API:    http://HOST:PORT/api/hubs/{hub}/...
Faults:      http://HOST:PORT/emulator/faults (with --enable-faults; GET lists the routes)
Logging:     RUST_LOG=info|debug|trace
";

struct Args {
    host: IpAddr,
    port: u16,
    access_key: Option<String>,
    handlers: Vec<(String, EventHandlerConfig)>,
    config: Option<PathBuf>,
    timeout: Option<Duration>,
    enable_faults: bool,
    flush_each_frame: bool,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut out = Args {
        host: IpAddr::from([127, 0, 0, 1]),
        port: 8080,
        access_key: None,
        handlers: Vec::new(),
        config: None,
        timeout: None,
        enable_faults: false,
        flush_each_frame: false,
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
            "--event-handler" => {
                let v = value("--event-handler")?;
                out.handlers
                    .push(EventHandlerConfig::parse_cli(&v).map_err(|e| e.to_string())?);
            }
            "--config" => out.config = Some(PathBuf::from(value("--config")?)),
            "--enable-faults" if inline.is_none() => out.enable_faults = true,
            "--enable-faults" => return Err("--enable-faults takes no value".into()),
            "--flush-each-frame" if inline.is_none() => out.flush_each_frame = true,
            "--flush-each-frame" => return Err("--flush-each-frame takes no value".into()),
            "--event-handler-timeout" => {
                let v = value("--event-handler-timeout")?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
                    .ok_or_else(|| {
                        format!("--event-handler-timeout: `{v}` is not a number of seconds (0 < SECS <= 86400)")
                    })?;
                out.timeout = Some(Duration::from_secs_f64(secs));
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Some(out))
}

/// The event handlers of `--event-handler` then `--config`, and the file's access key.
/// Warnings about ignored keys go to stderr.
fn upstream_config(args: &Args) -> Result<(UpstreamConfig, Option<String>), String> {
    let mut cfg = UpstreamConfig::new();
    for (hub, h) in &args.handlers {
        cfg = cfg.handler(hub, h.clone());
    }
    let mut key = None;
    if let Some(path) = &args.config {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--config {shown}: cannot read it: {e}"))?;
        let loaded =
            UpstreamConfig::from_json(&text).map_err(|e| format!("--config {shown}: {e}"))?;
        for w in &loaded.warnings {
            eprintln!("webpubsub-emulator: warning: --config {shown}: {w}");
        }
        cfg = cfg
            .timeout(loaded.upstream.timeout_value())
            .merge(loaded.upstream);
        key = loaded.access_key;
    }
    if let Some(t) = args.timeout {
        cfg = cfg.timeout(t);
    }
    for (hub, list) in cfg.hubs() {
        for h in list {
            eprintln!(
                "webpubsub-emulator: hub {hub}: event handler {} (user events: `{}`, system events: {:?})",
                webpubsub_protocol::redact_query(h.url_template()),
                h.user_event_pattern(),
                h.subscribed_system_events()
                    .iter()
                    .map(|e| e.as_str())
                    .collect::<Vec<_>>()
            );
        }
    }
    Ok((cfg, key))
}

/// Logging from `RUST_LOG`. The HTTP client crate that calls event handlers logs whole
/// request URLs at debug level (and the request's bytes at trace level), and a handler's
/// URL may carry a secret — an Azure Functions key in `?code=` — so its lines stop at
/// info unless `RUST_LOG` names it (`RUST_LOG=debug,ureq=debug`).
fn init_logging() {
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let mut builder = env_logger::Builder::from_default_env();
    if !names_the_http_client(&spec) {
        builder
            .filter_module("ureq", log::LevelFilter::Info)
            .filter_module("ureq_proto", log::LevelFilter::Info);
    }
    builder.init();
}

fn names_the_http_client(spec: &str) -> bool {
    spec.split(',').any(|d| d.trim().starts_with("ureq"))
}

fn main() -> ExitCode {
    init_logging();
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
    let (upstream, file_key) = match upstream_config(&args) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("webpubsub-emulator: {e}");
            return ExitCode::from(2);
        }
    };
    let mut builder = Emulator::builder()
        .addr(SocketAddr::new(args.host, args.port))
        .upstream(upstream)
        .rest_faults(args.enable_faults)
        .flush_each_frame(args.flush_each_frame);
    if let Some(key) = args.access_key.or(file_key) {
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
    if args.enable_faults {
        eprintln!(
            "webpubsub-emulator: fault injection on: {}/emulator/faults",
            emu.endpoint()
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Option<Args>, String> {
        parse(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn the_http_clients_debug_lines_are_off_unless_rust_log_names_it() {
        assert!(!names_the_http_client(""));
        assert!(!names_the_http_client("debug"));
        assert!(!names_the_http_client("trace,webpubsub_emulator=debug"));
        assert!(names_the_http_client("debug, ureq=debug"));
        assert!(names_the_http_client("ureq_proto=trace"));
    }

    #[test]
    fn event_handlers_are_repeatable_and_keep_their_order() {
        let a = args(&[
            "--event-handler",
            "chat=http://localhost:3000/{event};user=a",
            "--event-handler=chat=http://localhost:3001/{event}",
            "--event-handler-timeout",
            "2.5",
        ])
        .unwrap()
        .unwrap();
        let (cfg, key) = upstream_config(&a).unwrap();
        assert_eq!(key, None);
        assert_eq!(cfg.timeout_value(), Duration::from_millis(2500));
        let urls: Vec<_> = cfg
            .hubs()
            .next()
            .unwrap()
            .1
            .iter()
            .map(|h| h.url_template().to_owned())
            .collect();
        assert_eq!(
            urls,
            [
                "http://localhost:3000/{event}",
                "http://localhost:3001/{event}"
            ]
        );
    }

    #[test]
    fn bad_handler_options_say_what_is_wrong() {
        let err = |v: &[&str]| args(v).err().unwrap();
        assert_eq!(err(&["--event-handler"]), "--event-handler needs a value");
        assert_eq!(
            err(&["--event-handler", "chat=ftp://h/"]),
            "--event-handler: `ftp://h/` is a ftp:// URL; event handlers are http:// or https://"
        );
        assert_eq!(
            err(&["--event-handler-timeout", "0"]),
            "--event-handler-timeout: `0` is not a number of seconds (0 < SECS <= 86400)"
        );
        let a = args(&["--config", "/nonexistent/settings.json"])
            .unwrap()
            .unwrap();
        assert!(upstream_config(&a)
            .err()
            .unwrap()
            .starts_with("--config /nonexistent/settings.json: cannot read it: "));
    }

    #[test]
    fn flush_each_frame_is_a_flag_that_is_off_by_default() {
        assert!(!args(&[]).unwrap().unwrap().flush_each_frame);
        assert!(
            args(&["--flush-each-frame"])
                .unwrap()
                .unwrap()
                .flush_each_frame
        );
        assert_eq!(
            args(&["--flush-each-frame=yes"]).err().unwrap(),
            "--flush-each-frame takes no value"
        );
    }
}
