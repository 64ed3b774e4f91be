//! The I/O loops together: how many, started and stopped as one.
//!
//! Every socket of the emulator lives on one of a few `webpubsub-emulator-io-N` threads
//! (see the crate docs' "Threads"); loop 0 also accepts and runs the reaper's tick.

use crate::io_loop::{Handle, Hooks, Loop};
use crate::shared::Shared;
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

/// The default number of loops: one per core, at most this many.
pub(crate) const MAX_DEFAULT_LOOPS: usize = 4;

/// Why the loops could not start.
pub(crate) enum StartFailure {
    /// A poll, its waker or the listener's registration.
    Setup(io::Error),
    Spawn(io::Error),
}

/// The running loops.
pub(crate) struct Server {
    loops: Vec<(Arc<Handle>, JoinHandle<()>)>,
}

/// The default number of loops on this machine.
pub(crate) fn default_loops() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_DEFAULT_LOOPS)
}

/// Starts `n` loops (at least one) serving `listener`.
pub(crate) fn start(
    shared: Arc<Shared>,
    listener: mio::net::TcpListener,
    n: usize,
) -> Result<Server, StartFailure> {
    start_with(shared, listener, n, Hooks::STANDARD)
}

fn start_with(
    shared: Arc<Shared>,
    listener: mio::net::TcpListener,
    n: usize,
    hooks: Hooks,
) -> Result<Server, StartFailure> {
    let mut loops = Vec::new();
    let mut handles = Vec::new();
    for i in 0..n.max(1) {
        let (lp, handle) = Loop::new(i, shared.clone(), hooks).map_err(StartFailure::Setup)?;
        loops.push(lp);
        handles.push(handle);
    }
    loops[0]
        .accept(listener, handles.clone())
        .map_err(StartFailure::Setup)?;
    let mut server = Server { loops: Vec::new() };
    // Each thread says when it runs (and so carries its name): counting threads right
    // after the emulator started sees all of them.
    let (running, started) = crossbeam_channel::unbounded();
    for (i, (lp, handle)) in loops.into_iter().zip(handles).enumerate() {
        let running = running.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("webpubsub-emulator-io-{i}"))
            .spawn(move || {
                let _ = running.send(());
                lp.run()
            });
        match spawned {
            Ok(thread) => server.loops.push((handle, thread)),
            Err(e) => {
                // The loops started so far end with the emulator that never was.
                shared.request_stop();
                server.join();
                return Err(StartFailure::Spawn(e));
            }
        }
    }
    for _ in &server.loops {
        let _ = started.recv();
    }
    Ok(server)
}

impl Server {
    /// Wakes every loop to see that the emulator stops (`Shared::request_stop` first), and
    /// joins them: each closes its sockets gracefully, bounded.
    pub fn join(self) {
        for (handle, _) in &self.loops {
            handle.notify.wake_now();
        }
        for (_, thread) in self.loops {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_url::ClientUrlBuilder;
    use crate::frames::Outgoing;
    use crate::handler;
    use crate::http::Request;
    use crate::messages::{self, Ctx, Flow, Incoming};
    use crate::session::{self as session, Awaiting, UnackedLimits};
    use crate::shared::Config;
    use crate::upgrade::{self, Answer, Answering};
    use crate::upstream::{EventOutcome, Upstream, UpstreamConfig};
    use crate::wake::{self, Completer, Link};
    use parking_lot::Mutex;
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;
    use tungstenite::client::IntoClientRequest;
    use tungstenite::{Message, WebSocket};
    use webpubsub_protocol::{Data, Metadata, ServiceMessage};

    const WAIT: Duration = Duration::from_secs(10);

    /// Where the test hooks leave the completers of what waits: frames, and upgrades (with
    /// the answer they would have had at once).
    static FRAMES: Mutex<Option<crossbeam_channel::Sender<session::Answer>>> = Mutex::new(None);
    type Upgrade = (Completer<Answer>, Answer);
    static UPGRADES: Mutex<Option<crossbeam_channel::Sender<Upgrade>>> = Mutex::new(None);

    /// `messages::on_frame`, except that the text `wait` waits for the test.
    fn on_frame(cx: Ctx<'_>, frame: Incoming<'_>) -> Flow {
        if !matches!(frame, Incoming::Text("wait")) {
            return messages::on_frame(cx, frame);
        }
        let done = cx.session.await_answer(Awaiting::Event {
            ack_id: None,
            lose_ack: false,
        });
        let tx = FRAMES.lock().clone().expect("the test listens");
        tx.send(done).unwrap();
        Flow::Await
    }

    /// `upgrade::answer`, except that an upgrade to hub `later` waits for the test.
    fn on_upgrade(shared: &Shared, req: &Request, hub: &str, link: &Arc<Link>) -> Answering {
        let answer = upgrade::decide(shared, req, hub);
        if hub != "later" {
            return Answering::Now(Box::new(answer));
        }
        let (done, awaited) = wake::completion(link);
        let tx = UPGRADES.lock().clone().expect("the test listens");
        tx.send((done, answer)).unwrap();
        Answering::Later(awaited)
    }

    /// A server message to send through the hub.
    fn server_message(text: &str) -> Outgoing {
        Outgoing::new(ServiceMessage::ServerMessage {
            data: Data::from(text),
            sequence_id: None,
            metadata: Default::default(),
        })
    }

    /// A one-loop server with the test hooks.
    fn serve() -> (Arc<Shared>, SocketAddr, Server) {
        let cfg = Config {
            access_key: "key".into(),
            recovery_window: Duration::from_secs(30),
            limits: UnackedLimits {
                messages: 1000,
                bytes: 1 << 20,
            },
            tls: None,
            handler: handler::default_handler(),
            endpoint: "http://127.0.0.1:0".into(),
            rest_faults: false,
            flush_each_frame: false,
        };
        let upstream = Upstream::new(UpstreamConfig::new(), &cfg.endpoint, &cfg.access_key);
        let shared = Arc::new(Shared::new(cfg, upstream));
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let listener = mio::net::TcpListener::from_std(std_listener);
        let hooks = Hooks {
            on_frame,
            on_upgrade,
        };
        let Ok(server) = start_with(shared.clone(), listener, 1, hooks) else {
            panic!("the loop starts");
        };
        (shared, addr, server)
    }

    /// Opens a WebSocket to `hub` (plain JSON subprotocol).
    fn open(
        shared: &Shared,
        addr: SocketAddr,
        hub: &str,
    ) -> Result<WebSocket<TcpStream>, tungstenite::Error> {
        let url = ClientUrlBuilder::new(&shared.cfg, hub)
            .build()
            .replace("127.0.0.1:0", &addr.to_string());
        let mut req = url.as_str().into_client_request().unwrap();
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "json.webpubsub.azure.v1".parse().unwrap(),
        );
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        match tungstenite::client(req, tcp) {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
            Err(e) => panic!("handshake: {e}"),
        }
    }

    fn next_message(ws: &mut WebSocket<TcpStream>) -> ServiceMessage {
        loop {
            if let Message::Text(t) = ws.read().expect("a message") {
                return ServiceMessage::decode(&t).unwrap();
            }
        }
    }

    fn connection_id(ws: &mut WebSocket<TcpStream>) -> String {
        match next_message(ws) {
            ServiceMessage::Connected { connection_id, .. } => connection_id,
            other => panic!("expected connected first, got {other:?}"),
        }
    }

    #[test]
    fn a_suspended_connection_handles_no_frame_until_its_completion_but_still_writes() {
        let (tx, waiting) = crossbeam_channel::unbounded();
        *FRAMES.lock() = Some(tx);
        let (shared, addr, server) = serve();
        let mut ws = open(&shared, addr, "h").unwrap();
        let id = connection_id(&mut ws);
        let hub = shared.hub("h");
        let limits = shared.cfg.limits;
        let send = |text: &str| {
            let over = hub.send_to_connection(&id, &server_message(text), &limits);
            assert!(over.is_some_and(|o| o.0.is_empty()));
        };
        let server_data = |m: ServiceMessage| match m {
            ServiceMessage::ServerMessage { data, .. } => data,
            other => panic!("expected a server message, got {other:?}"),
        };

        // The ping behind `wait` waits with it; frames to the client do not.
        ws.send(Message::text("wait")).unwrap();
        ws.send(Message::text(r#"{"type":"ping"}"#)).unwrap();
        let done = waiting.recv_timeout(WAIT).expect("the frame waits");
        send("meanwhile");
        assert_eq!(server_data(next_message(&mut ws)), Data::from("meanwhile"));
        // The answer comes from another thread; its reply goes to the caller.
        let answer = EventOutcome::Reply(Data::from("resumed"), Metadata::new());
        std::thread::spawn(move || done.complete(answer))
            .join()
            .unwrap();
        assert_eq!(server_data(next_message(&mut ws)), Data::from("resumed"));
        assert_eq!(next_message(&mut ws), ServiceMessage::Pong);

        // Abandoned: the event fails (without an ack id, only logged) and the connection
        // reads on.
        ws.send(Message::text("wait")).unwrap();
        ws.send(Message::text(r#"{"type":"ping"}"#)).unwrap();
        drop(waiting.recv_timeout(WAIT).expect("the frame waits"));
        assert_eq!(next_message(&mut ws), ServiceMessage::Pong);

        shared.request_stop();
        let stopping = std::thread::spawn(move || server.join());
        match ws.read() {
            Ok(Message::Text(t)) => assert!(t.contains("disconnected"), "{t}"),
            other => panic!("expected disconnected, got {other:?}"),
        }
        // Reading the close frame answers it, which ends the stop's wait.
        assert!(matches!(ws.read(), Ok(Message::Close(_))));
        stopping.join().unwrap();
    }

    #[test]
    fn an_upgrade_waits_for_its_answer_without_holding_up_its_loop() {
        let (tx, waiting) = crossbeam_channel::unbounded();
        *UPGRADES.lock() = Some(tx);
        let (shared, addr, server) = serve();
        let s = shared.clone();
        let (opened_tx, opened) = crossbeam_channel::unbounded();
        let client = std::thread::spawn(move || {
            for _ in 0..2 {
                opened_tx.send(open(&s, addr, "later")).unwrap();
            }
        });
        let (done, answer) = waiting.recv_timeout(WAIT).expect("the upgrade waits");
        // Its loop serves others meanwhile, and the waiting upgrade got no answer.
        let mut other = open(&shared, addr, "h").unwrap();
        connection_id(&mut other);
        assert!(
            opened.try_recv().is_err(),
            "no answer before the completion"
        );
        std::thread::spawn(move || done.complete(answer))
            .join()
            .unwrap();
        let mut ws = opened
            .recv_timeout(WAIT)
            .unwrap()
            .expect("the 101 once answered");
        connection_id(&mut ws);

        // Abandoned: refused with 500.
        let (done, _answer) = waiting.recv_timeout(WAIT).expect("the upgrade waits");
        drop(done);
        match opened.recv_timeout(WAIT).unwrap() {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 500),
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
        client.join().unwrap();
        // Gone before the stop, which then need not wait for their close replies.
        drop((ws, other));
        shared.request_stop();
        server.join();
    }
}
