//! WebSocket framing (RFC 6455 §5), sans I/O: bytes read from a socket become messages
//! ([`FrameReader`]), and messages become the bytes of frames ([`write_text`],
//! [`write_binary`], [`write_close`], ...). Both sides of the wire use it: the client reads
//! the service's unmasked frames and writes masked ones; the service (the emulator) does the
//! reverse.
//!
//! The buffers are the caller's, so that an idle connection holds none: a reader keeps bytes
//! only while a frame is incomplete (or a handler stopped in the middle of a read), and lets
//! go of a large buffer once a burst has passed ([`FrameReader::trim`]). A caller reads into
//! a buffer it shares among its connections and hands each read to [`FrameReader::feed`].
//! (tungstenite, which both sides used before, keeps a 128 KiB read buffer per connection,
//! zero-filled on its first read, and never shrinks what its largest frame needed.)

use std::fmt;
use std::ops::ControlFlow;

/// The longest frame header: 2 bytes, a 64-bit length and a mask.
pub const MAX_FRAME_HEADER: usize = 14;

/// Buffers above this are let go by [`FrameReader::trim`], so that a burst leaves nothing
/// behind.
const KEEP_CAPACITY: usize = 4096;

/// Which end of the connection reads: a server reads masked frames, a client unmasked ones
/// (RFC 6455 §5.1: either end fails the connection on a frame of the wrong kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end that opened the connection: it masks what it writes.
    Client,
    /// The end that accepted it: it reads masked frames and writes unmasked ones.
    Server,
}

/// A message (or control frame) read from the peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// A whole text message (fragments joined), checked to be UTF-8.
    Text(&'a str),
    /// A whole binary message (fragments joined).
    Binary(&'a [u8]),
    /// A ping; the answer is a pong with the same payload ([`write_pong`]).
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// A close frame: its code and reason, if it had them.
    Close(Option<(u16, &'a str)>),
}

/// Frames that break RFC 6455, or a message over the reader's size limit: the connection
/// must be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameError(&'static str);

impl FrameError {
    /// What was wrong, in a few words.
    pub fn reason(&self) -> &'static str {
        self.0
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebSocket protocol error: {}", self.0)
    }
}

impl std::error::Error for FrameError {}

/// Turns the bytes a peer sends into messages, across reads.
#[derive(Debug)]
pub struct FrameReader {
    role: Role,
    max_size: usize,
    /// Bytes read but not handled yet: an incomplete frame, or frames after a handler
    /// said stop. Empty (no allocation) otherwise.
    partial: Vec<u8>,
    /// A fragmented message being assembled: whether it is text, and its payload so far.
    message: Option<(bool, Vec<u8>)>,
}

/// What a frame header says.
struct Header {
    fin: bool,
    rsv: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    /// Where the payload begins.
    len: usize,
    payload: u64,
}

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xa;

/// Parses the header at the start of `buf`; `Ok(None)` while it is incomplete.
fn parse_header(buf: &[u8]) -> Result<Option<Header>, FrameError> {
    let [b0, b1, rest @ ..] = buf else {
        return Ok(None);
    };
    let masked = b1 & 0x80 != 0;
    let (payload, mut len) = match b1 & 0x7f {
        126 => match rest {
            [a, b, ..] => (u64::from(u16::from_be_bytes([*a, *b])), 4),
            _ => return Ok(None),
        },
        127 => match rest.get(..8) {
            Some(b) => {
                let n = u64::from_be_bytes(b.try_into().expect("eight bytes"));
                if n >> 63 != 0 {
                    return Err(FrameError("frame length with the high bit set"));
                }
                (n, 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let mask = if masked {
        match buf.get(len..len + 4) {
            Some(m) => {
                len += 4;
                Some(m.try_into().expect("four bytes"))
            }
            None => return Ok(None),
        }
    } else {
        None
    };
    Ok(Some(Header {
        fin: b0 & 0x80 != 0,
        rsv: b0 & 0x70 != 0,
        opcode: b0 & 0x0f,
        mask,
        len,
        payload,
    }))
}

impl FrameReader {
    /// A reader for `role` that refuses frames and messages over `max_size` bytes.
    pub fn new(role: Role, max_size: usize) -> FrameReader {
        FrameReader {
            role,
            max_size,
            partial: Vec::new(),
            message: None,
        }
    }

    /// A reader that starts with bytes already read (behind an upgrade's head).
    pub fn with_bytes(role: Role, max_size: usize, bytes: Vec<u8>) -> FrameReader {
        FrameReader {
            partial: bytes,
            ..FrameReader::new(role, max_size)
        }
    }

    /// Whether complete frames may be waiting (a handler stopped in the middle of a read,
    /// or the reader began with bytes): feed it an empty slice to have them handled.
    pub fn has_buffered(&self) -> bool {
        !self.partial.is_empty()
    }

    /// The bytes this reader holds allocated (kept bytes and a message being assembled):
    /// what an idle connection costs.
    pub fn retained(&self) -> usize {
        self.partial.capacity() + self.message.as_ref().map_or(0, |(_, m)| m.capacity())
    }

    /// Hands every complete message in the bytes kept plus `fresh` to `on`, in order,
    /// until `on` breaks; keeps the rest for the next call. `fresh` is unmasked in place.
    pub fn feed(
        &mut self,
        mut fresh: &mut [u8],
        on: &mut dyn FnMut(Inbound<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, FrameError> {
        while !self.partial.is_empty() {
            self.room_for_frame();
            // The kept frame gets only the bytes it lacks: a read that ended inside a
            // frame costs a copy of that frame, not of the whole next read.
            let take = self.lacking().min(fresh.len());
            let (head, rest) = std::mem::take(&mut fresh).split_at_mut(take);
            fresh = rest;
            self.partial.extend_from_slice(head);
            let mut buf = std::mem::take(&mut self.partial);
            let (used, flow) = self.frames(&mut buf, on)?;
            buf.drain(..used);
            self.partial = buf;
            if flow.is_break() || (used == 0 && take == 0) {
                self.partial.extend_from_slice(fresh);
                return Ok(flow);
            }
        }
        let (used, flow) = self.frames(fresh, on)?;
        self.partial.extend_from_slice(&fresh[used..]);
        Ok(flow)
    }

    /// How many bytes the first kept frame lacks (a whole header's worth while its header
    /// is incomplete; none if it cannot be parsed, which `frames` reports).
    fn lacking(&self) -> usize {
        match parse_header(&self.partial) {
            Ok(Some(h)) => h
                .len
                .saturating_add(h.payload.min(self.max_size as u64 + 1) as usize)
                .saturating_sub(self.partial.len()),
            Ok(None) => MAX_FRAME_HEADER.saturating_sub(self.partial.len()).max(1),
            Err(_) => 0,
        }
    }

    /// Once the kept frame's header is whole, makes room for all of the frame at once: a
    /// large frame arrives over many reads, and growing by doubling would take up to twice
    /// its size and leave more behind in the allocator after a burst (B45).
    fn room_for_frame(&mut self) {
        if let Ok(Some(h)) = parse_header(&self.partial) {
            if h.payload <= self.max_size as u64 {
                let frame = h.len + h.payload as usize;
                self.partial
                    .reserve_exact(frame.saturating_sub(self.partial.len()));
            }
        }
    }

    /// Lets go of a buffer a large frame left (call when the connection is idle).
    pub fn trim(&mut self) {
        if self.partial.is_empty() && self.partial.capacity() > KEEP_CAPACITY {
            self.partial = Vec::new();
        }
    }

    /// Handles the complete frames at the start of `buf`. Returns how many bytes they took.
    fn frames(
        &mut self,
        buf: &mut [u8],
        on: &mut dyn FnMut(Inbound<'_>) -> ControlFlow<()>,
    ) -> Result<(usize, ControlFlow<()>), FrameError> {
        let mut pos = 0;
        loop {
            let Some(h) = parse_header(&buf[pos..])? else {
                return Ok((pos, ControlFlow::Continue(())));
            };
            if h.payload > self.max_size as u64 {
                return Err(FrameError("frame too large"));
            }
            let start = pos + h.len;
            let end = start + h.payload as usize;
            if buf.len() < end {
                return Ok((pos, ControlFlow::Continue(())));
            }
            pos = end;
            if h.rsv {
                return Err(FrameError("reserved bits set"));
            }
            match (self.role, h.mask) {
                (Role::Server, None) => return Err(FrameError("unmasked frame from a client")),
                (Role::Client, Some(_)) => return Err(FrameError("masked frame from a server")),
                _ => {}
            }
            let payload = &mut buf[start..end];
            if let Some(mask) = h.mask {
                apply_mask(payload, mask);
            }
            let flow = if h.opcode & 0x8 != 0 {
                if !h.fin || payload.len() > 125 {
                    return Err(FrameError("fragmented or oversized control frame"));
                }
                match h.opcode {
                    CLOSE => on(Inbound::Close(close_payload(payload)?)),
                    PING => on(Inbound::Ping(payload)),
                    PONG => on(Inbound::Pong(payload)),
                    _ => return Err(FrameError("unknown control frame")),
                }
            } else {
                self.data(h.opcode, h.fin, payload, on)?
            };
            if flow.is_break() {
                return Ok((pos, flow));
            }
        }
    }

    /// A data frame: a whole message, or a fragment of one.
    fn data(
        &mut self,
        opcode: u8,
        fin: bool,
        payload: &[u8],
        on: &mut dyn FnMut(Inbound<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, FrameError> {
        match (opcode, self.message.as_mut()) {
            (CONTINUATION, None) => Err(FrameError("unexpected continuation")),
            (CONTINUATION, Some((_, so_far))) => {
                if so_far.len() + payload.len() > self.max_size {
                    return Err(FrameError("message too large"));
                }
                so_far.extend_from_slice(payload);
                match self.message.take() {
                    Some((text, whole)) if fin => deliver(text, &whole, on),
                    unfinished => {
                        self.message = unfinished;
                        Ok(ControlFlow::Continue(()))
                    }
                }
            }
            (TEXT | BINARY, Some(_)) => Err(FrameError("expected a continuation")),
            (TEXT | BINARY, None) if fin => deliver(opcode == TEXT, payload, on),
            (TEXT | BINARY, None) => {
                self.message = Some((opcode == TEXT, payload.to_vec()));
                Ok(ControlFlow::Continue(()))
            }
            _ => Err(FrameError("unknown data frame")),
        }
    }
}

fn deliver(
    text: bool,
    payload: &[u8],
    on: &mut dyn FnMut(Inbound<'_>) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, FrameError> {
    if !text {
        return Ok(on(Inbound::Binary(payload)));
    }
    let s = std::str::from_utf8(payload).map_err(|_| FrameError("text frame is not UTF-8"))?;
    Ok(on(Inbound::Text(s)))
}

fn close_payload(p: &[u8]) -> Result<Option<(u16, &str)>, FrameError> {
    match p {
        [] => Ok(None),
        [_] => Err(FrameError("close frame of one byte")),
        [hi, lo, reason @ ..] => {
            let reason =
                std::str::from_utf8(reason).map_err(|_| FrameError("close reason is not UTF-8"))?;
            Ok(Some((u16::from_be_bytes([*hi, *lo]), reason)))
        }
    }
}

/// XORs a mask into `buf`, eight bytes at a time (masking and unmasking are the same).
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

// ---- frames to the peer (final; masked with `mask` when it is given: a client's) ----

/// Appends a frame: `first` is the FIN bit and opcode, `mask` the client's masking key.
fn frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    let len = payload.len();
    let masked = if mask.is_some() { 0x80 } else { 0 };
    out.reserve(MAX_FRAME_HEADER + len);
    if len < 126 {
        out.extend_from_slice(&[first, masked | len as u8]);
    } else if len <= 0xffff {
        out.extend_from_slice(&[first, masked | 126]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&[first, masked | 127]);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let start = out.len();
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend_from_slice(payload);
            apply_mask(&mut out[start + 4..], m);
        }
        None => out.extend_from_slice(payload),
    }
}

/// Appends a text frame.
pub fn write_text(payload: &str, mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    frame(0x80 | TEXT, payload.as_bytes(), mask, out);
}

/// Appends a binary frame.
pub fn write_binary(payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    frame(0x80 | BINARY, payload, mask, out);
}

/// Appends a ping (`payload` at most 125 bytes).
pub fn write_ping(payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    frame(0x80 | PING, &payload[..payload.len().min(125)], mask, out);
}

/// Appends the answer to a ping.
pub fn write_pong(payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    frame(0x80 | PONG, &payload[..payload.len().min(125)], mask, out);
}

/// Appends a close frame; the reason is cut (at a character boundary) to fit the 125 bytes
/// of a control frame.
pub fn write_close(code: u16, reason: &str, mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0u8; 125];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    frame(0x80 | CLOSE, &payload[..2 + end], mask, out);
}

/// Appends the close frame that answers the peer's: its code and reason, an empty close for
/// an empty one, or a protocol error (1002) for a code no one may send.
pub fn write_close_reply(received: Option<(u16, &str)>, mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    match received {
        None => frame(0x80 | CLOSE, &[], mask, out),
        Some((code, reason)) if close_code_may_be_sent(code) => {
            write_close(code, reason, mask, out)
        }
        Some(_) => write_close(1002, "Protocol violation", mask, out),
    }
}

/// Whether a close frame may carry `code` (RFC 6455 §7.4): the defined codes apart from
/// those that only describe a connection (1005, 1006, 1015), the registered ones, and the
/// ranges for libraries and applications.
pub fn close_code_may_be_sent(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

    /// A frame as `role`'s peer sends it: masked when the reader is a server.
    fn peer_frame(role: Role, first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mask = (role == Role::Server).then_some(MASK);
        frame(first, payload, mask, &mut out);
        out
    }

    fn text_frame(role: Role, s: &str) -> Vec<u8> {
        peer_frame(role, 0x81, s.as_bytes())
    }

    /// Everything `bytes` decode to, fed in pieces of `step` bytes.
    fn decode(role: Role, bytes: &[u8], step: usize) -> Result<Vec<String>, FrameError> {
        let mut r = FrameReader::new(role, 1 << 20);
        let mut seen = Vec::new();
        for piece in bytes.chunks(step.max(1)) {
            let mut piece = piece.to_vec();
            let flow = r.feed(&mut piece, &mut |m| {
                seen.push(format!("{m:?}"));
                ControlFlow::Continue(())
            })?;
            assert!(flow.is_continue());
        }
        assert!(!r.has_buffered(), "nothing left over");
        Ok(seen)
    }

    #[test]
    fn messages_decode_whatever_the_reads_cut_them_into() {
        for role in [Role::Client, Role::Server] {
            let long = "x".repeat(70_000); // a 64-bit length
            let mut bytes = text_frame(role, "hello");
            bytes.extend(text_frame(role, &"é".repeat(100))); // a 16-bit length
            bytes.extend(text_frame(role, &long));
            bytes.extend(peer_frame(role, 0x82, &[1, 2, 3]));
            let whole = decode(role, &bytes, bytes.len()).unwrap();
            assert_eq!(whole.len(), 4);
            assert_eq!(whole[0], r#"Text("hello")"#);
            assert_eq!(whole[3], "Binary([1, 2, 3])");
            for step in [1, 2, 3, 7, 13, 4096] {
                assert_eq!(decode(role, &bytes, step).unwrap(), whole, "step {step}");
            }
        }
    }

    #[test]
    fn fragments_join_into_one_message_and_control_frames_may_come_between() {
        for role in [Role::Client, Role::Server] {
            let mut bytes = peer_frame(role, 0x01, b"hel");
            bytes.extend(peer_frame(role, 0x89, b"p"));
            bytes.extend(peer_frame(role, 0x00, b"l"));
            bytes.extend(peer_frame(role, 0x8a, b"q"));
            bytes.extend(peer_frame(role, 0x80, b"o"));
            bytes.extend(peer_frame(role, 0x88, b"\x03\xe8bye"));
            for step in [1, 5, 100] {
                assert_eq!(
                    decode(role, &bytes, step).unwrap(),
                    [
                        "Ping([112])",
                        "Pong([113])",
                        r#"Text("hello")"#,
                        r#"Close(Some((1000, "bye")))"#
                    ]
                );
            }
        }
    }

    #[test]
    fn frames_that_break_the_protocol_are_errors() {
        // Each end refuses the other's kind of frame (RFC 6455 §5.1).
        assert_eq!(
            decode(Role::Server, &[0x81u8, 1, b'a'], 3),
            Err(FrameError("unmasked frame from a client"))
        );
        assert_eq!(
            decode(Role::Client, &text_frame(Role::Server, "a"), 100),
            Err(FrameError("masked frame from a server"))
        );
        for role in [Role::Client, Role::Server] {
            let mut reserved = text_frame(role, "a");
            reserved[0] |= 0x40;
            assert!(decode(role, &reserved, 100).is_err());
            let lone_continuation = peer_frame(role, 0x80, b"a");
            assert!(decode(role, &lone_continuation, 100).is_err());
            let not_utf8 = peer_frame(role, 0x81, &[0xff, 0xfe]);
            assert!(decode(role, &not_utf8, 100).is_err());
            let long_ping = peer_frame(role, 0x89, &[0; 126]);
            assert!(decode(role, &long_ping, 200).is_err());
            let unknown = peer_frame(role, 0x83, b"a");
            assert!(decode(role, &unknown, 100).is_err());
            let mut nested = peer_frame(role, 0x01, b"a");
            nested.extend(peer_frame(role, 0x81, b"b"));
            assert_eq!(
                decode(role, &nested, 100),
                Err(FrameError("expected a continuation"))
            );
        }
        // Refused from the header alone, before its payload is buffered.
        let mut huge = vec![0x81u8, 0x7f];
        huge.extend_from_slice(&((1u64 << 20) + 1).to_be_bytes());
        assert_eq!(
            decode(Role::Client, &huge, 100),
            Err(FrameError("frame too large"))
        );
        let mut high_bit = vec![0x81u8, 0x7f];
        high_bit.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(decode(Role::Client, &high_bit, 100).is_err());
    }

    #[test]
    fn a_fragmented_message_over_the_limit_is_refused() {
        let mut r = FrameReader::new(Role::Client, 10);
        let mut bytes = peer_frame(Role::Client, 0x01, b"123456");
        bytes.extend(peer_frame(Role::Client, 0x80, b"789012"));
        let got = r.feed(&mut bytes, &mut |_| ControlFlow::Continue(()));
        assert_eq!(got, Err(FrameError("message too large")));
    }

    #[test]
    fn a_handler_that_stops_leaves_the_next_frames_for_later() {
        let mut bytes = text_frame(Role::Client, "one");
        bytes.extend(text_frame(Role::Client, "two"));
        let mut r = FrameReader::new(Role::Client, 1 << 20);
        let mut seen = Vec::new();
        let flow = r
            .feed(&mut bytes, &mut |m| {
                seen.push(format!("{m:?}"));
                ControlFlow::Break(())
            })
            .unwrap();
        assert!(flow.is_break());
        assert_eq!(seen, [r#"Text("one")"#]);
        assert!(r.has_buffered());
        let flow = r
            .feed(&mut [], &mut |m| {
                seen.push(format!("{m:?}"));
                ControlFlow::Continue(())
            })
            .unwrap();
        assert!(flow.is_continue());
        assert_eq!(seen[1], r#"Text("two")"#);
        assert!(!r.has_buffered());
    }

    #[test]
    fn a_large_frame_leaves_no_buffer_behind() {
        // B45: what a burst needed is let go once it passed.
        let frame = text_frame(Role::Client, &"z".repeat(200_000));
        let mut r = FrameReader::new(Role::Client, 1 << 20);
        let (first, rest) = frame.split_at(70_000);
        let mut seen = 0;
        for piece in [first, rest] {
            let flow = r
                .feed(&mut piece.to_vec(), &mut |_| {
                    seen += 1;
                    ControlFlow::Continue(())
                })
                .unwrap();
            assert!(flow.is_continue());
        }
        assert_eq!(seen, 1);
        assert!(r.retained() >= 200_000, "it held the frame");
        r.trim();
        assert_eq!(r.retained(), 0);
    }

    #[test]
    fn a_frame_read_in_many_pieces_is_held_in_one_buffer_of_its_size() {
        // B45: not grown by doubling (up to twice the frame) as its reads come in.
        let frame = text_frame(Role::Client, &"z".repeat(300_000));
        let mut r = FrameReader::new(Role::Client, 1 << 20);
        let mut seen = 0;
        let mut most = 0;
        for piece in frame.chunks(16 * 1024) {
            let flow = r
                .feed(&mut piece.to_vec(), &mut |m| {
                    assert!(matches!(m, Inbound::Text(t) if t.len() == 300_000));
                    seen += 1;
                    ControlFlow::Continue(())
                })
                .unwrap();
            assert!(flow.is_continue());
            most = most.max(r.retained());
        }
        assert_eq!(seen, 1);
        assert_eq!(most, frame.len(), "one buffer of the frame's size");
    }

    #[test]
    fn what_one_end_writes_the_other_reads() {
        for (writer, reader) in [(Role::Client, Role::Server), (Role::Server, Role::Client)] {
            let mask = (writer == Role::Client).then_some(MASK);
            let mut out = Vec::new();
            write_text("hi", mask, &mut out);
            write_binary(&[7; 300], mask, &mut out);
            write_ping(b"p", mask, &mut out);
            write_pong(b"q", mask, &mut out);
            write_close(1001, &"r".repeat(200), mask, &mut out);
            write_close_reply(Some((1005, "")), mask, &mut out);
            write_close_reply(None, mask, &mut out);
            let seen = decode(reader, &out, 3).unwrap();
            assert_eq!(seen[0], r#"Text("hi")"#);
            assert!(seen[1].starts_with("Binary([7, 7"));
            assert_eq!(seen[2..4], ["Ping([112])", "Pong([113])"]);
            assert_eq!(
                seen[4],
                format!("Close(Some((1001, {:?})))", "r".repeat(123))
            );
            assert_eq!(seen[5], r#"Close(Some((1002, "Protocol violation")))"#);
            assert_eq!(seen[6], "Close(None)");
        }
    }

    #[test]
    fn a_close_reason_is_cut_at_a_character_boundary() {
        let mut out = Vec::new();
        write_close(1000, &"é".repeat(100), None, &mut out);
        let seen = decode(Role::Client, &out, 1000).unwrap();
        assert_eq!(seen, [format!("Close(Some((1000, {:?})))", "é".repeat(61))]);
    }

    #[test]
    fn masking_matches_the_bytewise_definition_and_undoes_itself() {
        let mask = [1, 2, 3, 4];
        for n in 0..20 {
            let mut buf: Vec<u8> = (0..n as u8).collect();
            apply_mask(&mut buf, mask);
            let want: Vec<u8> = (0..n as u8).map(|i| i ^ mask[i as usize % 4]).collect();
            assert_eq!(buf, want);
            apply_mask(&mut buf, mask);
            assert_eq!(buf, (0..n as u8).collect::<Vec<_>>());
        }
    }

    #[test]
    fn close_codes_that_describe_a_connection_are_not_sent() {
        for code in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert!(!close_code_may_be_sent(code), "{code}");
        }
        for code in [1000, 1001, 1008, 1011, 1012, 3000, 4999] {
            assert!(close_code_may_be_sent(code), "{code}");
        }
    }
}
