//! The limit: a raw tungstenite client over a blocking `TcpStream`, with hand-rolled minimal
//! parsing (substring searches, no JSON decoding), the reliable subprotocol, a `sequenceAck`
//! every `ACK_EVERY` new messages (and after 100 ms without traffic), duplicate dropping,
//! and a minimal recovery: reconnect at once with `awps_connection_id` and
//! `awps_reconnection_token`, then every 100 ms, for at most 5 s.
//!
//! For the binary workloads it also speaks protobuf, in the same spirit: frames encoded and
//! read by hand (a varint and length walk over the fields it needs, the payload's bytes used
//! in place), checked once against the protocol crate's codec before anything is timed.

use crate::binary::*;
use crate::common::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Bytes, Message, WebSocket};
use webpubsub_client::protocol::{ClientMessage, Metadata, ServiceMessage, Subprotocol};
use webpubsub_client::{Data, Protocol};
use webpubsub_emulator::Emulator;

const ACK_EVERY: u64 = 256;
const READ_TIMEOUT: Duration = Duration::from_millis(100);

struct Raw {
    ws: WebSocket<TcpStream>,
    subprotocol: Subprotocol,
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
    /// A new (not redelivered) protobuf message; the frame.
    Bin(Bytes),
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

/// Connects and reads up to the `connected` message, each step bounded by `timeout`.
/// Returns the socket (with a short read timeout), the connection id and the reconnection
/// token.
pub fn dial_within(url: &str, timeout: Duration) -> R<(WebSocket<TcpStream>, String, String)> {
    dial_speaking(url, timeout, Subprotocol::JsonReliable)
}

/// [`dial_within`] in `subprotocol`. The reconnection token is empty in the plain ones.
fn dial_speaking(
    url: &str,
    timeout: Duration,
    subprotocol: Subprotocol,
) -> R<(WebSocket<TcpStream>, String, String)> {
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
        subprotocol.name().parse().expect("valid"),
    );
    let (mut ws, _) = tungstenite::client(req, tcp).map_err(|e| match e {
        tungstenite::HandshakeError::Interrupted(_) => {
            format!("upgrade: no answer within {timeout:?}")
        }
        tungstenite::HandshakeError::Failure(e) => e.to_string(),
    })?;
    loop {
        let (id, token) = match ws.read().map_err(|e| e.to_string())? {
            Message::Text(t) if t.contains("\"event\":\"connected\"") => {
                let id = field_str(&t, "connectionId").ok_or("no connectionId")?;
                let token = match field_str(&t, "reconnectionToken") {
                    Some(token) => token,
                    None if !subprotocol.is_reliable() => "",
                    None => return Err("no reconnectionToken".into()),
                };
                (id.to_owned(), token.to_owned())
            }
            // Not timed: the codec reads the `connected` message.
            Message::Binary(b) => match ServiceMessage::decode_protobuf(&b) {
                Ok(ServiceMessage::Connected {
                    connection_id,
                    reconnection_token,
                    ..
                }) => (connection_id, reconnection_token.unwrap_or_default()),
                _ => continue,
            },
            _ => continue,
        };
        ws.get_mut()
            .set_read_timeout(Some(READ_TIMEOUT))
            .map_err(|e| e.to_string())?;
        return Ok((ws, id, token));
    }
}

/// A field of a protobuf message as the raw client reads it: the schema has varints and
/// length-delimited values only.
enum Pb<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The fields of one protobuf message, in order, as `(number, value)`. Ends at the end, or
/// at bytes it cannot read (the raw client trusts its emulator).
struct PbFields<'a>(&'a [u8]);

impl<'a> Iterator for PbFields<'a> {
    type Item = (u64, Pb<'a>);

    fn next(&mut self) -> Option<(u64, Pb<'a>)> {
        let key = take_varint(&mut self.0)?;
        let value = match key & 7 {
            0 => Pb::Varint(take_varint(&mut self.0)?),
            2 => {
                let len = usize::try_from(take_varint(&mut self.0)?).ok()?;
                if len > self.0.len() {
                    self.0 = &[];
                    return None;
                }
                let (value, rest) = self.0.split_at(len);
                self.0 = rest;
                Pb::Bytes(value)
            }
            _ => {
                self.0 = &[];
                return None;
            }
        };
        Some((key >> 3, value))
    }
}

fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Some(value);
        }
    }
    *bytes = &[];
    None
}

fn push_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn varint_len(n: u64) -> usize {
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

/// `UpstreamMessage { send_to_group_message (1): { group (1), ack_id (2),
/// data (3): { binary_data (2) }, no_echo (4) } }`.
fn pb_send_to_group(group: &str, ack_id: u64, no_echo: bool, data: &[u8]) -> Vec<u8> {
    let n = |len: usize| len as u64;
    let data_len = 1 + varint_len(n(data.len())) + data.len();
    let inner = 1
        + varint_len(n(group.len()))
        + group.len()
        + 1
        + varint_len(ack_id)
        + 1
        + varint_len(n(data_len))
        + data_len
        + if no_echo { 2 } else { 0 };
    let mut out = Vec::with_capacity(1 + varint_len(n(inner)) + inner);
    out.push(1 << 3 | 2);
    push_varint(&mut out, n(inner));
    out.push(1 << 3 | 2);
    push_varint(&mut out, n(group.len()));
    out.extend_from_slice(group.as_bytes());
    out.push(2 << 3);
    push_varint(&mut out, ack_id);
    out.push(3 << 3 | 2);
    push_varint(&mut out, n(data_len));
    out.push(2 << 3 | 2);
    push_varint(&mut out, n(data.len()));
    out.extend_from_slice(data);
    if no_echo {
        out.extend_from_slice(&[4 << 3, 1]);
    }
    out
}

/// `UpstreamMessage { sequence_ack_message (8): { sequence_id (1) } }`.
fn pb_sequence_ack(seq: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(13);
    out.extend_from_slice(&[8 << 3 | 2, 1 + varint_len(seq) as u8, 1 << 3]);
    push_varint(&mut out, seq);
    out
}

/// The payload of a protobuf `data_message` (field 2) with `binary_data`
/// (`data` (3) → `binary_data` (2)), in place.
fn pb_binary_data(frame: &[u8]) -> Option<&[u8]> {
    let Some((2, Pb::Bytes(msg))) = PbFields(frame).next() else {
        return None;
    };
    let data = PbFields(msg).find_map(|f| match f {
        (3, Pb::Bytes(d)) => Some(d),
        _ => None,
    })?;
    PbFields(data).find_map(|f| match f {
        (2, Pb::Bytes(b)) => Some(b),
        _ => None,
    })
}

impl Raw {
    fn connect(url: &str) -> R<Raw> {
        Raw::connect_speaking(url, Subprotocol::JsonReliable)
    }

    fn connect_speaking(url: &str, subprotocol: Subprotocol) -> R<Raw> {
        let (ws, conn_id, token) = dial_speaking(url, WAIT, subprotocol)?;
        Ok(Raw {
            ws,
            subprotocol,
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
            if self.subprotocol.is_binary() {
                self.ws
                    .write(Message::binary(pb_sequence_ack(id)))
                    .map_err(|e| e.to_string())?;
            } else {
                self.send(format!("{{\"type\":\"sequenceAck\",\"sequenceId\":{id}}}"))?;
            }
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

    /// Queues an acked `sendToGroup` of bytes (JSON: base64, encoded for each send as an
    /// application's varying data would be); returns its ack id.
    fn send_to_group_bytes(&mut self, group: &str, data: &[u8], no_echo: bool) -> R<u64> {
        let id = self.next_ack_id;
        self.next_ack_id += 1;
        let message = if self.subprotocol.is_binary() {
            Message::binary(pb_send_to_group(group, id, no_echo, data))
        } else {
            let mut frame = String::with_capacity(data.len() * 4 / 3 + group.len() + 96);
            frame.push_str("{\"type\":\"sendToGroup\",\"group\":\"");
            frame.push_str(group);
            frame.push_str(&format!("\",\"ackId\":{id}"));
            if no_echo {
                frame.push_str(",\"noEcho\":true");
            }
            frame.push_str(",\"dataType\":\"binary\",\"data\":\"");
            STANDARD.encode_string(data, &mut frame);
            frame.push_str("\"}");
            Message::text(frame)
        };
        self.ws.write(message).map_err(|e| e.to_string())?;
        Ok(id)
    }

    /// Whether the hand-made frames are the codec's, byte for byte (the acked send of
    /// `data` to `group`, and a `sequenceAck`).
    fn check_frames(&self, group: &str, data: &[u8]) -> R<()> {
        let send = ClientMessage::SendToGroup {
            group: group.into(),
            ack_id: Some(300),
            no_echo: true,
            data: Data::Binary(data.to_vec()),
            ttl_seconds: None,
            metadata: Metadata::new(),
        };
        let ack = ClientMessage::SequenceAck { sequence_id: 300 };
        if pb_send_to_group(group, 300, true, data) != send.encode_protobuf()
            || pb_sequence_ack(300) != ack.encode_protobuf()
        {
            return Err("the hand-encoded protobuf frames are not the codec's".into());
        }
        Ok(())
    }

    /// A new sequence id `seq` of a message: false for a redelivery after recovery; sends
    /// a `sequenceAck` every `ACK_EVERY`.
    fn on_sequence_id(&mut self, seq: u64) -> R<bool> {
        if seq <= self.largest {
            return Ok(false);
        }
        self.largest = seq;
        if self.largest - self.acked >= ACK_EVERY {
            self.send_ack()?;
        }
        Ok(true)
    }

    /// A protobuf frame: a data message (its sequence id, if any, counted) or an ack.
    fn on_binary(&mut self, frame: Bytes) -> R<In> {
        match PbFields(&frame).next() {
            Some((2, Pb::Bytes(msg))) => {
                let seq = PbFields(msg).find_map(|f| match f {
                    (4, Pb::Varint(seq)) => Some(seq),
                    _ => None,
                });
                if let Some(seq) = seq {
                    if !self.on_sequence_id(seq)? {
                        return Ok(In::Nothing);
                    }
                }
                Ok(In::Bin(frame))
            }
            Some((1, Pb::Bytes(ack))) => {
                let (mut id, mut success, mut duplicate) = (0, false, false);
                for field in PbFields(ack) {
                    match field {
                        (1, Pb::Varint(v)) => id = v,
                        (2, Pb::Varint(v)) => success = v != 0,
                        (3, Pb::Bytes(error)) => {
                            duplicate =
                                PbFields(error).any(|f| matches!(f, (1, Pb::Bytes(b"Duplicate"))));
                        }
                        _ => {}
                    }
                }
                if !success && !duplicate {
                    return Err(format!("request {id} failed"));
                }
                Ok(In::Ack(id))
            }
            _ => Ok(In::Nothing),
        }
    }

    /// Reads one frame. `Err` is a dead connection.
    fn read(&mut self) -> R<In> {
        match self.ws.read() {
            Ok(Message::Binary(b)) => self.on_binary(b),
            Ok(Message::Text(t)) => {
                if t.contains("\"type\":\"message\"") {
                    if let Some(seq) = field_u64(&t, "sequenceId") {
                        if !self.on_sequence_id(seq)? {
                            return Ok(In::Nothing); // a redelivery after recovery
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
            match dial_speaking(&url, WAIT, self.subprotocol) {
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
        let r = receive(emu, out, "b.cb");
        record("raw", out, "b.cb", r);
    }
    if enabled("b") {
        out.insert(
            "b.rx",
            Val::Na("no Receiver: the reading loop is the callback".into()),
        );
    }
    if named("bstep") {
        let r = receive_stepped(emu, out);
        record("raw", out, "bstep.cb", r);
    }
    if enabled("c") {
        let r = recovery(emu, out);
        record("raw", out, "c.lost", r);
    }
    if enabled("d") {
        idle_child("raw", &client_url(emu, "raw-d", "raw-d"), out);
    }
    if enabled("bbin") {
        rounds("raw", out, &RECEIVE_ROWS, "bbin.ratio", |p, round| {
            receive_binary(emu, p, round)
        });
    }
    if enabled("a2bin") {
        rounds("raw", out, &SEND_ROWS, "a2bin.ratio", |p, round| {
            pipelined_binary(emu, p, round)
        });
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
    let rate = pipeline(&mut c, PIPELINED, |c| c.send_to_group(group, &data, true))?;
    out.insert("a2.rate", Val::Num(rate));
    Ok(())
}

/// `n` acked requests queued by `send`, at most `WINDOW` in flight, the window topped up in
/// batches of 64 with a flush per batch; requests/s.
fn pipeline(c: &mut Raw, n: usize, mut send: impl FnMut(&mut Raw) -> R<u64>) -> R<f64> {
    let (mut sent, mut acked) = (0usize, 0usize);
    let begin = Instant::now();
    let deadline = begin + WAIT;
    while acked < n {
        if sent < n && sent - acked <= WINDOW - 64 {
            while sent < n && sent - acked < WINDOW {
                send(c)?;
                sent += 1;
            }
            c.flush()?;
        }
        if let In::Ack(_) = c.read()? {
            acked += 1;
        }
        if Instant::now() > deadline {
            return Err(format!("{acked} of {n} acked within {WAIT:?}"));
        }
    }
    Ok(n as f64 / begin.elapsed().as_secs_f64())
}

/// (a2bin): as (a2), with 1 KiB binary payloads in `protocol`.
fn pipelined_binary(emu: &Emulator, protocol: Protocol, round: usize) -> R<f64> {
    let user = format!("raw-a2bin-{}-{round}", short(protocol));
    let url = client_url(emu, &user, &format!("{user}-member"));
    let mut c = Raw::connect_speaking(&url, protocol.subprotocol())?;
    let data = bin_payload();
    c.check_frames(&user, &data)?;
    pipeline(&mut c, BIN_PIPELINED, |c| {
        c.send_to_group_bytes(&user, &data, true)
    })
}

/// (bbin): binary messages counted in the reading loop, each payload's length checked —
/// JSON: decoded from base64 into a reused buffer; protobuf: the bytes in the frame.
fn receive_binary(emu: &Emulator, protocol: Protocol, round: usize) -> R<f64> {
    let group = format!("raw-bbin-{}-{round}", short(protocol));
    let url = client_url(emu, &group, &group);
    let mut c = Raw::connect_speaking(&url, protocol.subprotocol())?;
    c.check_frames(&group, &bin_payload())?;
    let mut buf = Vec::with_capacity(BIN_SIZE);
    let begin = Instant::now();
    let deadline = begin + WAIT;
    let sender = blast_binary(emu.hub(HUB), group, BIN_RECEIVE);
    let (mut got, mut wrong) = (0, 0);
    while got < BIN_RECEIVE && Instant::now() < deadline {
        let len = match c.read()? {
            In::Msg(t) => {
                buf.clear();
                field_str(&t, "data")
                    .and_then(|d| STANDARD.decode_vec(d, &mut buf).ok())
                    .map(|()| buf.len())
            }
            In::Bin(frame) => pb_binary_data(&frame).map(<[u8]>::len),
            _ => continue,
        };
        if len != Some(BIN_SIZE) {
            wrong += 1;
        }
        got += 1;
    }
    let end = Instant::now();
    let _ = sender.join();
    if got < BIN_RECEIVE {
        return Err(format!("{got} of {BIN_RECEIVE} within {WAIT:?}"));
    }
    if wrong > 0 {
        return Err(format!(
            "{wrong} payloads were not {BIN_SIZE} bytes of binary"
        ));
    }
    Ok(BIN_RECEIVE as f64 / (end - begin).as_secs_f64())
}

/// (b1): (b) against an emulator that writes each frame with a system call of its own.
pub fn run_each_frame(emu: &Emulator, out: &mut Figures) {
    let r = receive(emu, out, "b1.cb");
    record("raw", out, "b1.cb", r);
}

/// (b) and (b1): messages counted in the reading loop, recorded as `id`.
fn receive(emu: &Emulator, out: &mut Figures, id: &'static str) -> R<()> {
    let group = &format!("raw-{id}");
    let mut c = Raw::connect(&client_url(emu, group, group))?;
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
    out.insert(id, Val::Num(RECEIVE as f64 / (end - begin).as_secs_f64()));
    Ok(())
}

/// (bstep): one message at a time, counted in the reading loop, which asks for the next.
fn receive_stepped(emu: &Emulator, out: &mut Figures) -> R<()> {
    let group = "raw-bstep";
    let mut c = Raw::connect(&client_url(emu, group, group))?;
    let (next_tx, next_rx) = crossbeam_channel::bounded(1);
    let begin = Instant::now();
    let deadline = begin + WAIT;
    let sender = blast_stepped(emu.hub(HUB), group.into(), RECEIVE, next_rx);
    let mut got = 0;
    while got < RECEIVE && Instant::now() < deadline {
        if let In::Msg(_) = c.read()? {
            got += 1;
            let _ = next_tx.try_send(());
        }
    }
    let end = Instant::now();
    drop(next_tx);
    let _ = sender.join();
    if got < RECEIVE {
        return Err(format!("{got} of {RECEIVE} within {WAIT:?}"));
    }
    out.insert(
        "bstep.cb",
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
