//! The workloads with this crate's `WebPubSubClient`, as an application would write them.

use crate::binary::*;
use crate::common::*;
use crate::scale::ScaleConfig;
use crate::scale_child;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use webpubsub_client::{Data, Event, Protocol, RequestOptions, StartGuard, WebPubSubClient};
use webpubsub_emulator::Emulator;

fn started(url: &str) -> R<StartGuard> {
    let client = WebPubSubClient::new(url).map_err(|e| e.to_string())?;
    client.start().map_err(|e| e.to_string())
}

pub fn run(emu: &Emulator, out: &mut Figures) {
    if enabled("a") {
        let r = latency(emu, out);
        record("ours", out, "a.p50", r);
    }
    if enabled("a2") {
        let r = pipelined(emu, out);
        record("ours", out, "a2.rate", r);
    }
    if enabled("b") {
        let r = receive_callback(emu, out, "b.cb");
        record("ours", out, "b.cb", r);
    }
    if enabled("b") {
        let r = receive_receiver(emu, out);
        record("ours", out, "b.rx", r);
    }
    if named("bstep") {
        let r = receive_stepped(emu, out);
        record("ours", out, "bstep.cb", r);
    }
    if enabled("c") {
        let r = recovery(emu, out);
        record("ours", out, "c.lost", r);
    }
    if enabled("d") {
        idle_child("ours", &client_url(emu, "ours-d", "ours-d"), out);
    }
    if enabled("bbin") {
        rounds("ours", out, &RECEIVE_ROWS, "bbin.ratio", |p, round| {
            receive_binary(emu, p, round)
        });
    }
    if enabled("a2bin") {
        rounds("ours", out, &SEND_ROWS, "a2bin.ratio", |p, round| {
            pipelined_binary(emu, p, round)
        });
    }
}

/// (a): the client is in the group, so each publish also comes back to it (and is acked
/// with `sequenceAck`), as for a chat participant.
fn latency(emu: &Emulator, out: &mut Figures) -> R<()> {
    let group = "ours-a";
    let client = started(&client_url(emu, "ours-a", group))?;
    let data = payload(0);
    let send = || {
        client
            .send_to_group(group, data.as_str())
            .map_err(|e| e.to_string())
    };
    for _ in 0..WARMUP {
        send()?;
    }
    let mut lat = Vec::with_capacity(LATENCY_CALLS);
    let begin = Instant::now();
    for _ in 0..LATENCY_CALLS {
        let t = Instant::now();
        send()?;
        lat.push(t.elapsed());
    }
    latency_figures(out, &mut lat, begin.elapsed());
    Ok(())
}

/// (a2): `send_to_group_nowait` keeps up to `WINDOW` acks outstanding; the oldest is
/// waited for when the window is full. The group has no members: request and ack only.
fn pipelined(emu: &Emulator, out: &mut Figures) -> R<()> {
    let client = started(&client_url(emu, "ours-a2", "ours-a2-member"))?;
    let group = "ours-a2";
    let data = payload(0);
    let opts = RequestOptions::new().no_echo(true);
    let mut window = VecDeque::with_capacity(WINDOW);
    let begin = Instant::now();
    for _ in 0..PIPELINED {
        if window.len() == WINDOW {
            let h: webpubsub_client::AckHandle = window.pop_front().expect("full");
            h.wait().map_err(|e| e.to_string())?;
        }
        let h = client
            .send_to_group_nowait(group, data.as_str(), &opts)
            .map_err(|e| e.to_string())?;
        window.push_back(h);
    }
    for h in window {
        h.wait().map_err(|e| e.to_string())?;
    }
    let secs = begin.elapsed().as_secs_f64();
    out.insert("a2.rate", Val::Num(PIPELINED as f64 / secs));
    Ok(())
}

/// (b) to an `on_server_message` callback.
fn receive_callback(emu: &Emulator, out: &mut Figures, id: &'static str) -> R<()> {
    let group = &format!("ours-{id}");
    let client = started(&client_url(emu, group, group))?;
    let count = Arc::new(AtomicUsize::new(0));
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let c = count.clone();
    let _sub = client.on_server_message(move |_m| {
        if c.fetch_add(1, Ordering::Relaxed) + 1 == RECEIVE {
            let _ = done_tx.try_send(Instant::now());
        }
    });
    let begin = Instant::now();
    let sender = blast(emu.hub(HUB), group.into(), RECEIVE);
    let end = done_rx.recv_timeout(WAIT);
    let _ = sender.join();
    let end = end.map_err(|_| {
        format!(
            "{} of {RECEIVE} within {WAIT:?}",
            count.load(Ordering::Relaxed)
        )
    })?;
    out.insert(id, Val::Num(RECEIVE as f64 / (end - begin).as_secs_f64()));
    Ok(())
}

/// (bstep): one message at a time to an `on_server_message` callback, the next sent when
/// the callback saw the last.
fn receive_stepped(emu: &Emulator, out: &mut Figures) -> R<()> {
    let group = "ours-bstep";
    let client = started(&client_url(emu, group, group))?;
    let count = Arc::new(AtomicUsize::new(0));
    let (next_tx, next_rx) = crossbeam_channel::bounded(1);
    let c = count.clone();
    let _sub = client.on_server_message(move |_m| {
        c.fetch_add(1, Ordering::Relaxed);
        let _ = next_tx.try_send(());
    });
    let begin = Instant::now();
    let sender = blast_stepped(emu.hub(HUB), group.into(), RECEIVE, next_rx);
    let _ = sender.join();
    let got = count.load(Ordering::Relaxed);
    if got < RECEIVE {
        return Err(format!("{got} of {RECEIVE} arrived"));
    }
    out.insert(
        "bstep.cb",
        Val::Num(RECEIVE as f64 / begin.elapsed().as_secs_f64()),
    );
    Ok(())
}

/// (b1): (b) to the callback, against an emulator that writes each frame with a system
/// call of its own.
pub fn run_each_frame(emu: &Emulator, out: &mut Figures) {
    let r = receive_callback(emu, out, "b1.cb");
    record("ours", out, "b1.cb", r);
}

/// (b) to a `client.events()` receiver read on the calling thread.
fn receive_receiver(emu: &Emulator, out: &mut Figures) -> R<()> {
    let group = "ours-b-rx";
    let client = started(&client_url(emu, "ours-b-rx", group))?;
    let events = client.events();
    let begin = Instant::now();
    let deadline = begin + WAIT;
    let sender = blast(emu.hub(HUB), group.into(), RECEIVE);
    let mut got = 0;
    while got < RECEIVE {
        match events.recv_deadline(deadline) {
            Ok(Event::ServerMessage(_)) => got += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let end = Instant::now();
    let _ = sender.join();
    if got < RECEIVE {
        return Err(format!("{got} of {RECEIVE} within {WAIT:?}"));
    }
    out.insert(
        "b.rx",
        Val::Num(RECEIVE as f64 / (end - begin).as_secs_f64()),
    );
    Ok(())
}

fn started_with(url: &str, protocol: Protocol) -> R<StartGuard> {
    let client = WebPubSubClient::builder(url)
        .protocol(protocol)
        .build()
        .map_err(|e| e.to_string())?;
    client.start().map_err(|e| e.to_string())
}

/// (bbin): `BIN_RECEIVE` binary server messages to an `on_server_message` callback, which
/// checks each payload's length; msgs/s.
fn receive_binary(emu: &Emulator, protocol: Protocol, round: usize) -> R<f64> {
    let group = format!("ours-bbin-{}-{round}", short(protocol));
    let client = started_with(&client_url(emu, &group, &group), protocol)?;
    let count = Arc::new(AtomicUsize::new(0));
    let wrong = Arc::new(AtomicUsize::new(0));
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let (c, w) = (count.clone(), wrong.clone());
    let _sub = client.on_server_message(move |m| {
        if !matches!(&m.data, Data::Binary(b) if b.len() == BIN_SIZE) {
            w.fetch_add(1, Ordering::Relaxed);
        }
        if c.fetch_add(1, Ordering::Relaxed) + 1 == BIN_RECEIVE {
            let _ = done_tx.try_send(Instant::now());
        }
    });
    let begin = Instant::now();
    let sender = blast_binary(emu.hub(HUB), group, BIN_RECEIVE);
    let end = done_rx.recv_timeout(WAIT);
    let _ = sender.join();
    let end = end.map_err(|_| {
        format!(
            "{} of {BIN_RECEIVE} within {WAIT:?}",
            count.load(Ordering::Relaxed)
        )
    })?;
    match wrong.load(Ordering::Relaxed) {
        0 => Ok(BIN_RECEIVE as f64 / (end - begin).as_secs_f64()),
        n => Err(format!("{n} payloads were not {BIN_SIZE} bytes of binary")),
    }
}

/// (a2bin): `send_to_group_nowait` of 1 KiB binary with up to `WINDOW` acks
/// outstanding, to a group without members; acked sends/s.
fn pipelined_binary(emu: &Emulator, protocol: Protocol, round: usize) -> R<f64> {
    let user = format!("ours-a2bin-{}-{round}", short(protocol));
    let client = started_with(&client_url(emu, &user, &format!("{user}-member")), protocol)?;
    let data = bin_payload();
    let opts = RequestOptions::new().no_echo(true);
    let mut window = VecDeque::with_capacity(WINDOW);
    let begin = Instant::now();
    for _ in 0..BIN_PIPELINED {
        if window.len() == WINDOW {
            let h: webpubsub_client::AckHandle = window.pop_front().expect("full");
            h.wait().map_err(|e| e.to_string())?;
        }
        let h = client
            .send_to_group_nowait(&user, data.as_slice(), &opts)
            .map_err(|e| e.to_string())?;
        window.push_back(h);
    }
    for h in window {
        h.wait().map_err(|e| e.to_string())?;
    }
    Ok(BIN_PIPELINED as f64 / begin.elapsed().as_secs_f64())
}

/// (c): deliveries to a callback while the emulator drops the socket three times.
fn recovery(emu: &Emulator, out: &mut Figures) -> R<()> {
    let group = "ours-c";
    let client = started(&client_url(emu, "ours-c", group))?;
    let conn_id = client.connection_id().ok_or("no connection id")?;
    // Deliveries in order, which indices arrived, how many distinct.
    let log = Arc::new(Mutex::new((
        Vec::with_capacity(STREAM + 100),
        vec![false; STREAM],
        0usize,
    )));
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let l = log.clone();
    let _sub = client.on_server_message(move |m| {
        let t = now_epoch();
        let Data::Text(text) = &m.data else { return };
        let Some(i) = payload_index(text) else { return };
        let mut g = l.lock().unwrap();
        let (arrivals, seen, distinct) = &mut *g;
        arrivals.push((i, t));
        if i < STREAM && !std::mem::replace(&mut seen[i], true) {
            *distinct += 1;
            if *distinct == STREAM {
                let _ = done_tx.try_send(());
            }
        }
    });
    let watch = RecoveryWatch::start(emu);
    let drops = paced_stream(emu.hub(HUB), group.into(), conn_id.clone())
        .join()
        .map_err(|_| "stream thread panicked")?;
    let _ = done_rx.recv_timeout(Duration::from_secs(15));
    let recs = watch.finish(&conn_id);
    let arrivals = log.lock().unwrap().0.clone();
    recovery_figures(out, &arrivals, &drops, &recs);
    Ok(())
}

/// (d) in the child process: a started client that does nothing.
pub fn child_idle(url: &str) -> R<Idle> {
    let _client = started(url)?;
    measure_idle(|end| {
        std::thread::sleep(end.saturating_duration_since(Instant::now()));
        Ok(())
    })
}

/// (scale) in the child process: `cfg.n` clients built by `build` (from the access URL),
/// each counting its server messages, started from `CONNECTING` threads. The clients'
/// threads and memory are what the driver reads; a client mode that shares threads between
/// clients is another `build`.
pub fn child_scale(cfg: &ScaleConfig, build: impl Fn(&str) -> R<WebPubSubClient> + Sync) {
    // `scale.rs` runs this child once more with every client on one shared runtime.
    let shared = (std::env::var(crate::scale::RUNTIME_ENV).as_deref() == Ok("shared"))
        .then(webpubsub_client::Runtime::new);
    scale_child::child(cfg, |deliveries| {
        let (connected, clients) = scale_child::connect_all(cfg, || {
            let client = match &shared {
                Some(rt) => WebPubSubClient::builder(cfg.url.as_str())
                    .runtime(rt)
                    .build()
                    .map_err(|e| e.to_string())?,
                None => build(&cfg.url)?,
            };
            let d = deliveries.clone();
            let _sub = client.on_server_message(move |m| {
                if let Data::Text(t) = &m.data {
                    d.on_message(t.len());
                }
            });
            client.start().map_err(|e| e.to_string())
        });
        (connected, Box::new(clients))
    });
}
