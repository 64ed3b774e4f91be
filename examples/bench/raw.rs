//! The limit: a raw tungstenite client over a blocking `TcpStream`, with hand-rolled minimal
//! parsing (substring searches, no JSON decoding), the reliable subprotocol, a `sequenceAck`
//! every `ACK_EVERY` new messages (and after 100 ms without traffic), duplicate dropping,
//! and a minimal recovery: reconnect at once with `awps_connection_id` and
//! `awps_reconnection_token`, then every 100 ms, for at most 5 s.

use crate::common::*;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};
use webpubsub_emulator::Emulator;

pub const SUBPROTOCOL: &str = "json.reliable.webpubsub.azure.v1";
const ACK_EVERY: u64 = 256;
const READ_TIMEOUT: Duration = Duration::from_millis(100);

struct Raw {
    ws: WebSocket<TcpStream>,
    url: String,
    conn_id: String,
    token: String,
    largest: u64,
    acked: u64,
    next_ack_id: u64,
}

/// What one read gave.
enum In {
    /// A new (not redelivered) message; the frame's text.
    Msg(tungstenite::Utf8Bytes),
    Ack(u64),
    /// Nothing new: a redelivery, another message type, a read timeout.
    Nothing,
}

/// `"key":"value"` → `value` (the bench's values need no unescaping).
fn field_str<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":\"");
    let start = text.find(&pat)? + pat.len();
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

/// `"key":123` → 123.
pub fn field_u64(text: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let start = text.find(&pat)? + pat.len();
    let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
    text[start..start + digits].parse().ok()
}

fn dial(url: &str) -> R<(WebSocket<TcpStream>, String, String)> {
    dial_within(url, WAIT)
}

/// Connects and reads up to the `connected` message, each step bounded by `timeout`.
/// Returns the socket (with a short read timeout), the connection id and the reconnection
/// token.
pub fn dial_within(url: &str, timeout: Duration) -> R<(WebSocket<TcpStream>, String, String)> {
    let u = url::Url::parse(url).map_err(|e| e.to_string())?;
    let host = u.host_str().unwrap_or("127.0.0.1");
    let port = u.port().unwrap_or(80);
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    tcp.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut req = url.into_client_request().map_err(|e| e.to_string())?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        SUBPROTOCOL.parse().expect("valid"),
    );
    let (mut ws, _) = tungstenite::client(req, tcp).map_err(|e| match e {
        tungstenite::HandshakeError::Interrupted(_) => {
            format!("upgrade: no answer within {timeout:?}")
        }
        tungstenite::HandshakeError::Failure(e) => e.to_string(),
    })?;
    loop {
        match ws.read().map_err(|e| e.to_string())? {
            Message::Text(t) if t.contains("\"event\":\"connected\"") => {
                let id = field_str(&t, "connectionId").ok_or("no connectionId")?;
                let token = field_str(&t, "reconnectionToken").ok_or("no reconnectionToken")?;
                let (id, token) = (id.to_owned(), token.to_owned());
                ws.get_mut()
                    .set_read_timeout(Some(READ_TIMEOUT))
                    .map_err(|e| e.to_string())?;
                return Ok((ws, id, token));
            }
            _ => {}
        }
    }
}

impl Raw {
    fn connect(url: &str) -> R<Raw> {
        let (ws, conn_id, token) = dial(url)?;
        Ok(Raw {
            ws,
            url: url.to_owned(),
            conn_id,
            token,
            largest: 0,
            acked: 0,
            next_ack_id: 1,
        })
    }

    fn send(&mut self, frame: String) -> R<()> {
        self.ws
            .write(Message::text(frame))
            .map_err(|e| e.to_string())
    }

    fn flush(&mut self) -> R<()> {
        self.ws.flush().map_err(|e| e.to_string())
    }

    fn send_ack(&mut self) -> R<()> {
        if self.largest > self.acked {
            let id = self.largest;
            self.send(format!("{{\"type\":\"sequenceAck\",\"sequenceId\":{id}}}"))?;
            self.flush()?;
            self.acked = id;
        }
        Ok(())
    }

    /// Queues an acked `sendToGroup`; returns its ack id.
    fn send_to_group(&mut self, group: &str, data: &str, no_echo: bool) -> R<u64> {
        let id = self.next_ack_id;
        self.next_ack_id += 1;
        let echo = if no_echo { ",\"noEcho\":true" } else { "" };
        self.send(format!(
            "{{\"type\":\"sendToGroup\",\"group\":\"{group}\",\"ackId\":{id}{echo},\"dataType\":\"text\",\"data\":\"{data}\"}}"
        ))?;
        Ok(id)
    }

    /// Reads one frame. `Err` is a dead connection.
    fn read(&mut self) -> R<In> {
        match self.ws.read() {
            Ok(Message::Text(t)) => {
                if t.contains("\"type\":\"message\"") {
                    if let Some(seq) = field_u64(&t, "sequenceId") {
                        if seq <= self.largest {
                            return Ok(In::Nothing); // a redelivery after recovery
                        }
                        self.largest = seq;
                        if self.largest - self.acked >= ACK_EVERY {
                            self.send_ack()?;
                        }
                    }
                    Ok(In::Msg(t))
                } else if t.starts_with("{\"type\":\"ack\"") {
                    if !t.contains("\"success\":true") && !t.contains("Duplicate") {
                        return Err(format!("request failed: {t}"));
                    }
                    Ok(In::Ack(field_u64(&t, "ackId").unwrap_or(0)))
                } else {
                    Ok(In::Nothing)
                }
            }
            Ok(Message::Close(f)) => Err(format!("closed: {f:?}")),
            Ok(_) => Ok(In::Nothing),
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                self.send_ack()?;
                Ok(In::Nothing)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Recovers the session: at once, then every 100 ms, for at most 5 s.
    fn recover(&mut self) -> R<()> {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let url = format!(
            "{}&awps_connection_id={}&awps_reconnection_token={}",
            self.url,
            enc(&self.conn_id),
            enc(&self.token)
        );
        let give_up = Instant::now() + Duration::from_secs(5);
        loop {
            match dial(&url) {
                Ok((ws, id, token)) if id == self.conn_id => {
                    self.ws = ws;
                    self.token = token;
                    // Tell the service at once where we are, in case our last ack was lost.
                    self.acked = 0;
                    return self.send_ack();
                }
                Ok((_, id, _)) => return Err(format!("recovery gave a new connection {id}")),
                Err(e) if Instant::now() >= give_up => return Err(format!("recovery: {e}")),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

pub fn run(emu: &Emulator, out: &mut Figures) {
    if enabled("a") {
        let r = latency(emu, out);
        record("raw", out, "a.p50", r);
    }
    if enabled("a2") {
        let r = pipelined(emu, out);
        record("raw", out, "a2.rate", r);
    }
    if enabled("b") {
        let r = receive(emu, out);
        record("raw", out, "b.cb", r);
    }
    if enabled("b") {
        out.insert(
            "b.rx",
            Val::Na("no Receiver: the reading loop is the callback".into()),
        );
    }
    if enabled("c") {
        let r = recovery(emu, out);
        record("raw", out, "c.lost", r);
    }
    if enabled("d") {
        idle_child("raw", &client_url(emu, "raw-d", "raw-d"), out);
    }
}

/// (a): one request at a time; the echo of each publish is read (and sequence-acked) on the way.
fn latency(emu: &Emulator, out: &mut Figures) -> R<()> {
    let group = "raw-a";
    let mut c = Raw::connect(&client_url(emu, "raw-a", group))?;
    let data = payload(0);
    let deadline = Instant::now() + WAIT * 2;
    let call = |c: &mut Raw| -> R<Duration> {
        let t = Instant::now();
        let id = c.send_to_group(group, &data, false)?;
        c.flush()?;
        loop {
            if let In::Ack(a) = c.read()? {
                if a == id {
                    return Ok(t.elapsed());
                }
            }
            if Instant::now() > deadline {
                return Err("timed out".into());
            }
        }
    };
    for _ in 0..WARMUP {
        call(&mut c)?;
    }
    let mut lat = Vec::with_capacity(LATENCY_CALLS);
    let begin = Instant::now();
    for _ in 0..LATENCY_CALLS {
        lat.push(call(&mut c)?);
    }
    latency_figures(out, &mut lat, begin.elapsed());
    Ok(())
}

/// (a2): one thread; tops the window up in batches of 64 and flushes once per batch.
fn pipelined(emu: &Emulator, out: &mut Figures) -> R<()> {
    let mut c = Raw::connect(&client_url(emu, "raw-a2", "raw-a2-member"))?;
    let group = "raw-a2";
    let data = payload(0);
    let (mut sent, mut acked) = (0usize, 0usize);
    let begin = Instant::now();
    let deadline = begin + WAIT;
    while acked < PIPELINED {
        if sent < PIPELINED && sent - acked <= WINDOW - 64 {
            while sent < PIPELINED && sent - acked < WINDOW {
                c.send_to_group(group, &data, true)?;
                sent += 1;
            }
            c.flush()?;
        }
        if let In::Ack(_) = c.read()? {
            acked += 1;
        }
        if Instant::now() > deadline {
            return Err(format!("{acked} of {PIPELINED} acked within {WAIT:?}"));
        }
    }
    out.insert(
        "a2.rate",
        Val::Num(PIPELINED as f64 / begin.elapsed().as_secs_f64()),
    );
    Ok(())
}

/// (b): messages counted in the reading loop.
fn receive(emu: &Emulator, out: &mut Figures) -> R<()> {
    let group = "raw-b";
    let mut c = Raw::connect(&client_url(emu, "raw-b", group))?;
    let begin = Instant::now();
    let deadline = begin + WAIT;
    let sender = blast(emu.hub(HUB), group.into(), RECEIVE);
    let mut got = 0;
    while got < RECEIVE && Instant::now() < deadline {
        if let In::Msg(_) = c.read()? {
            got += 1;
        }
    }
    let end = Instant::now();
    let _ = sender.join();
    if got < RECEIVE {
        return Err(format!("{got} of {RECEIVE} within {WAIT:?}"));
    }
    out.insert(
        "b.cb",
        Val::Num(RECEIVE as f64 / (end - begin).as_secs_f64()),
    );
    Ok(())
}

/// (c): the reading loop recovers the session itself.
fn recovery(emu: &Emulator, out: &mut Figures) -> R<()> {
    let group = "raw-c";
    let mut c = Raw::connect(&client_url(emu, "raw-c", group))?;
    let watch = RecoveryWatch::start(emu);
    let stream = paced_stream(emu.hub(HUB), group.into(), c.conn_id.clone());
    let mut arrivals = Vec::with_capacity(STREAM + 100);
    let mut seen = vec![false; STREAM];
    let mut distinct = 0;
    let deadline = Instant::now() + WAIT;
    let mut quiet_since = Instant::now();
    while distinct < STREAM && Instant::now() < deadline {
        match c.read() {
            Ok(In::Msg(t)) => {
                let now = now_epoch();
                quiet_since = Instant::now();
                if let Some(i) = field_str(&t, "data").and_then(payload_index) {
                    arrivals.push((i, now));
                    if i < STREAM && !std::mem::replace(&mut seen[i], true) {
                        distinct += 1;
                    }
                }
            }
            Ok(_) => {
                if stream.is_finished() && quiet_since.elapsed() > Duration::from_secs(3) {
                    break;
                }
            }
            Err(_) => c.recover()?,
        }
    }
    let drops = stream.join().map_err(|_| "stream thread panicked")?;
    let recs = watch.finish(&c.conn_id);
    recovery_figures(out, &arrivals, &drops, &recs);
    Ok(())
}

/// (d) in the child process: connected, reading (to answer pings) until the time is up.
pub fn child_idle(url: &str) -> R<Idle> {
    let mut c = Raw::connect(url)?;
    // Idle: the ack timer needs no finer resolution than the library's (1 s).
    c.ws.get_mut()
        .set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    measure_idle(|end| {
        while Instant::now() < end {
            c.read()?;
        }
        Ok(())
    })
}
