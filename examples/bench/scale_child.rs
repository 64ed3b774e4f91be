//! (scale) in the child process, for the Rust clients: the clients' side of the lines that
//! `scale.rs` describes, around a function that connects the clients.

use crate::common::*;
use crate::scale::{fd_limit, raise_fd_limit, ScaleConfig};
use serde_json::{json, Value};
use std::any::Any;
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counts the deliveries of the two broadcasts over all clients, and tells when the n-th
/// of each arrived.
pub struct Deliveries {
    n: usize,
    big_bytes: usize,
    small: Counter,
    big: Counter,
}

struct Counter {
    count: AtomicUsize,
    done: crossbeam_channel::Sender<f64>,
    done_rx: crossbeam_channel::Receiver<f64>,
}

impl Counter {
    fn new() -> Counter {
        let (done, done_rx) = crossbeam_channel::bounded(1);
        Counter {
            count: AtomicUsize::new(0),
            done,
            done_rx,
        }
    }
}

impl Deliveries {
    fn new(n: usize, big_bytes: usize) -> Arc<Deliveries> {
        Arc::new(Deliveries {
            n,
            big_bytes,
            small: Counter::new(),
            big: Counter::new(),
        })
    }

    /// One delivery of a message of `len` bytes (or of a frame that long).
    pub fn on_message(&self, len: usize) {
        let c = if len >= self.big_bytes {
            &self.big
        } else {
            &self.small
        };
        if c.count.fetch_add(1, Ordering::Relaxed) + 1 == self.n {
            let _ = c.done.try_send(now_epoch());
        }
    }
}

/// How connecting went.
pub struct Connected {
    pub count: usize,
    pub elapsed: Duration,
    pub error: Option<String>,
}

/// Connects `cfg.n` clients with `one`, from `cfg.connecting` threads that end when done;
/// stops at the first failure or when `cfg.connect_budget` is spent.
pub fn connect_all<T: Send>(
    cfg: &ScaleConfig,
    one: impl Fn() -> R<T> + Sync,
) -> (Connected, Vec<T>) {
    let begin = Instant::now();
    let deadline = begin + cfg.connect_budget;
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error = Mutex::new(None);
    let clients = Mutex::new(Vec::with_capacity(cfg.n));
    std::thread::scope(|s| {
        for _ in 0..cfg.connecting.clamp(1, cfg.n) {
            std::thread::Builder::new()
                .name("bench-connect".into())
                .spawn_scoped(s, || {
                    while !failed.load(Ordering::Relaxed)
                        && next.fetch_add(1, Ordering::Relaxed) < cfg.n
                    {
                        let r = if Instant::now() > deadline {
                            Err(format!("connecting took over {:?}", cfg.connect_budget))
                        } else {
                            one()
                        };
                        match r {
                            Ok(c) => clients.lock().unwrap().push(c),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                first_error.lock().unwrap().get_or_insert(e);
                            }
                        }
                    }
                })
                .expect("spawn a connecting thread");
        }
    });
    let elapsed = begin.elapsed();
    // A joined thread leaves /proc/self/task a moment after join() returns: the thread count
    // read next must not include the connecting threads (bounded: 1 s).
    for _ in 0..100 {
        if webpubsub_testkit::process::count_threads(&["bench-connect"]) == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let clients = clients.into_inner().unwrap();
    let connected = Connected {
        count: clients.len(),
        elapsed,
        error: first_error.into_inner().unwrap(),
    };
    (connected, clients)
}

fn emit(v: Value) {
    println!("{v}");
}

/// The next line from the driver (blocking: the driver bounds the child's life and kills it
/// when its own wait ends).
fn line() -> Option<String> {
    let mut s = String::new();
    match std::io::stdin().lock().read_line(&mut s) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(s.trim().to_owned()),
    }
}

/// The child's side of the protocol (see the module docs). `connect` connects the clients
/// and returns what keeps them alive, dropped at "stop".
pub fn child(
    cfg: &ScaleConfig,
    connect: impl FnOnce(&Arc<Deliveries>) -> (Connected, Box<dyn Any>),
) {
    raise_fd_limit();
    let deliveries = Deliveries::new(cfg.n, cfg.big_bytes);
    let rss_before = webpubsub_testkit::process::rss_kib();
    // Descriptors held back while the clients connect, so that the measures below can still
    // open /proc when the clients took every other one (the default mode at 10,000 clients).
    let reserve: Vec<std::fs::File> = (0..8)
        .filter_map(|_| std::fs::File::open("/dev/null").ok())
        .collect();
    let (connected, clients) = connect(&deliveries);
    drop(reserve);
    let mut ready = json!({
        "ready": "scale",
        "connected": connected.count,
        "connect_s": connected.elapsed.as_secs_f64(),
        "rss_before_kib": rss_before,
        "rss_kib": webpubsub_testkit::process::rss_kib(),
        "threads": webpubsub_testkit::process::threads().len(),
        "fds": webpubsub_testkit::process::open_fds(),
        "fd_limit": fd_limit(),
    });
    if let Some(e) = &connected.error {
        ready["error"] = Value::String(e.clone());
    }
    emit(ready);
    let mut stopped = false;
    for (name, counter) in [("broadcast", &deliveries.small), ("burst", &deliveries.big)] {
        if line().as_deref() != Some("go") {
            stopped = true;
            break;
        }
        let last = counter.done_rx.recv_timeout(cfg.wait).ok();
        let mut result = json!({
            "result": name,
            "received": counter.count.load(Ordering::Relaxed),
            "last_epoch": last,
        });
        if name == "burst" {
            // Idle: what stays of the burst's buffers is what this measures.
            std::thread::sleep(cfg.settle);
            result["rss_kib"] = json!(webpubsub_testkit::process::rss_kib());
        }
        emit(result);
    }
    if !stopped {
        let _ = line(); // "stop", or the end of stdin
    }
    drop(clients);
    emit(json!({"done": true}));
}
