//! WebSocket frames at the socket boundary, the server's side of RFC 6455: the one place
//! where bytes from a client become messages ([`Reader`]) and frames for it become bytes
//! (`text`, `close`, ...).
//!
//! Headers are parsed by tungstenite's [`FrameHeader`]; the buffers are ours, so that an
//! idle connection holds none: a [`Reader`] keeps bytes only while a frame is incomplete
//! (or handling stopped in the middle of a read), and the loop reads into and writes from
//! buffers it shares among its connections.

use crate::frames::OutFrame;
use std::fmt;
use std::io::Cursor;
use std::ops::ControlFlow;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;
use webpubsub_protocol::MAX_MESSAGE_BYTES;

/// Frames and messages over this end the connection (those over 1 MB get an ack error).
pub(crate) const MAX_SIZE: usize = 4 * MAX_MESSAGE_BYTES;

/// The fault `drop_connection_mid_frame`: the header of a 100-byte text frame and 10 bytes
/// of it.
pub(crate) const PARTIAL_TEXT: &[u8] = b"\x81\x64{\"type\":\"m";

/// A message (or control frame) from the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong,
    /// The close code and reason, if the frame had them.
    Close(Option<(CloseCode, &'a str)>),
}

/// A stream of frames that breaks the protocol; the socket is dropped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FrameError(&'static str);

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebSocket protocol error: {}", self.0)
    }
}

/// Turns the bytes a client sends into messages, across reads.
#[derive(Default)]
pub(crate) struct Reader {
    /// Bytes read but not handled yet: an incomplete frame, or frames after a handler
    /// said stop. Empty (no allocation) otherwise.
    partial: Vec<u8>,
    /// A fragmented message being assembled: whether it is text, and its payload so far.
    message: Option<(bool, Vec<u8>)>,
}

/// Larger buffers are let go once the connection is idle, so that a burst leaves nothing
/// behind.
const KEEP_CAPACITY: usize = 4096;
/// The longest frame header (64-bit length and a mask).
const MAX_HEADER: usize = 14;

impl Reader {
    /// A reader that starts with bytes already read (behind an upgrade request).
    pub fn with_bytes(bytes: Vec<u8>) -> Reader {
        Reader {
            partial: bytes,
            message: None,
        }
    }

    /// Whether complete frames may be waiting (a handler stopped in the middle of a read).
    pub fn has_buffered(&self) -> bool {
        !self.partial.is_empty()
    }

    /// Hands every complete message in the bytes kept plus `fresh` to `on`, in order,
    /// until `on` breaks; keeps the rest for the next call. `fresh` is unmasked in place.
    pub fn feed(
        &mut self,
        mut fresh: &mut [u8],
        on: &mut dyn FnMut(Inbound<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, FrameError> {
        while !self.partial.is_empty() {
            // The kept frame gets only the bytes it lacks: a read that ended inside a
            // frame costs a copy of that frame, not of the whole next read.
            let take = self.lacking().min(fresh.len());
            let (head, rest) = std::mem::take(&mut fresh).split_at_mut(take);
            fresh = rest;
            self.partial.extend_from_slice(head);
            let mut buf = std::mem::take(&mut self.partial);
            let (used, flow) = frames(&mut buf, &mut self.message, on)?;
            buf.drain(..used);
            self.partial = buf;
            if flow.is_break() || (used == 0 && take == 0) {
                self.partial.extend_from_slice(fresh);
                return Ok(flow);
            }
        }
        let (used, flow) = frames(fresh, &mut self.message, on)?;
        self.partial.extend_from_slice(&fresh[used..]);
        Ok(flow)
    }

    /// How many bytes the first kept frame lacks (a whole header's worth while its header
    /// is incomplete; none if it cannot be parsed, which `frames` reports).
    fn lacking(&self) -> usize {
        let mut cursor = Cursor::new(&self.partial[..]);
        match FrameHeader::parse(&mut cursor) {
            Ok(Some((_, len))) => (cursor.position() as usize)
                .saturating_add(len.min(MAX_SIZE as u64 + 1) as usize)
                .saturating_sub(self.partial.len()),
            Ok(None) => MAX_HEADER.saturating_sub(self.partial.len()).max(1),
            Err(_) => 0,
        }
    }

    /// Lets go of a buffer a large frame left (call when the connection is idle).
    pub fn trim(&mut self) {
        if self.partial.is_empty() && self.partial.capacity() > KEEP_CAPACITY {
            self.partial = Vec::new();
        }
    }
}

/// Handles the complete frames at the start of `buf`. Returns how many bytes they took.
fn frames(
    buf: &mut [u8],
    message: &mut Option<(bool, Vec<u8>)>,
    on: &mut dyn FnMut(Inbound<'_>) -> ControlFlow<()>,
) -> Result<(usize, ControlFlow<()>), FrameError> {
    let mut pos = 0;
    loop {
        let mut cursor = Cursor::new(&buf[pos..]);
        let parsed = FrameHeader::parse(&mut cursor).map_err(|_| FrameError("bad frame header"))?;
        let Some((header, len)) = parsed else {
            return Ok((pos, ControlFlow::Continue(())));
        };
        if len > MAX_SIZE as u64 {
            return Err(FrameError("frame too large"));
        }
        let start = pos + cursor.position() as usize;
        let end = start + len as usize;
        if buf.len() < end {
            return Ok((pos, ControlFlow::Continue(())));
        }
        pos = end;
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(FrameError("reserved bits set"));
        }
        let Some(mask) = header.mask else {
            return Err(FrameError("unmasked frame from a client"));
        };
        let payload = &mut buf[start..end];
        unmask(payload, mask);
        let flow = match header.opcode {
            OpCode::Control(ctl) => {
                if !header.is_final || payload.len() > 125 {
                    return Err(FrameError("fragmented or oversized control frame"));
                }
                match ctl {
                    Control::Close => on(Inbound::Close(close_payload(payload)?)),
                    Control::Ping => on(Inbound::Ping(payload)),
                    Control::Pong => on(Inbound::Pong),
                    Control::Reserved(_) => return Err(FrameError("unknown control frame")),
                }
            }
            OpCode::Data(data) => match (data, message.as_mut()) {
                (Data::Continue, None) => return Err(FrameError("unexpected continuation")),
                (Data::Continue, Some((_, so_far))) => {
                    if so_far.len() + payload.len() > MAX_SIZE {
                        return Err(FrameError("message too large"));
                    }
                    so_far.extend_from_slice(payload);
                    match message.take() {
                        Some((text, whole)) if header.is_final => deliver(text, &whole, on)?,
                        unfinished => {
                            *message = unfinished;
                            ControlFlow::Continue(())
                        }
                    }
                }
                (_, Some(_)) => return Err(FrameError("expected a continuation")),
                (Data::Text | Data::Binary, None) if header.is_final => {
                    deliver(data == Data::Text, payload, on)?
                }
                (Data::Text | Data::Binary, None) => {
                    *message = Some((data == Data::Text, payload.to_vec()));
                    ControlFlow::Continue(())
                }
                (Data::Reserved(_), None) => return Err(FrameError("unknown data frame")),
            },
        };
        if flow.is_break() {
            return Ok((pos, flow));
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

fn close_payload(p: &[u8]) -> Result<Option<(CloseCode, &str)>, FrameError> {
    match p {
        [] => Ok(None),
        [_] => Err(FrameError("close frame of one byte")),
        [hi, lo, reason @ ..] => {
            let reason =
                std::str::from_utf8(reason).map_err(|_| FrameError("close reason is not UTF-8"))?;
            Ok(Some((
                CloseCode::from(u16::from_be_bytes([*hi, *lo])),
                reason,
            )))
        }
    }
}

/// XORs the client's mask into `buf`, eight bytes at a time.
fn unmask(buf: &mut [u8], mask: [u8; 4]) {
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

// ---- frames to the client (unmasked, final) ----

fn header(first: u8, len: usize, out: &mut Vec<u8>) {
    if len < 126 {
        out.extend_from_slice(&[first, len as u8]);
    } else if len <= 0xffff {
        out.extend_from_slice(&[first, 126]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&[first, 127]);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Appends a text frame.
pub(crate) fn text(payload: &str, out: &mut Vec<u8>) {
    header(0x81, payload.len(), out);
    out.extend_from_slice(payload.as_bytes());
}

/// Appends a queued frame: text for the JSON subprotocols, binary for protobuf.
pub(crate) fn frame(f: &OutFrame, out: &mut Vec<u8>) {
    match f {
        OutFrame::Text(t) => text(t, out),
        OutFrame::Binary(b) => binary(b, out),
    }
}

/// Appends a binary frame.
pub(crate) fn binary(payload: &[u8], out: &mut Vec<u8>) {
    header(0x82, payload.len(), out);
    out.extend_from_slice(payload);
}

/// Appends the answer to a ping.
pub(crate) fn pong(payload: &[u8], out: &mut Vec<u8>) {
    header(0x8a, payload.len(), out);
    out.extend_from_slice(payload);
}

/// Appends a close frame; the reason is cut to fit the 125 bytes of a control frame.
pub(crate) fn close(code: CloseCode, reason: &str, out: &mut Vec<u8>) {
    let reason = crate::checks::truncate(reason, 123);
    header(0x88, 2 + reason.len(), out);
    out.extend_from_slice(&u16::from(code).to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
}

/// The close frame answering the client's: its code and reason, or a protocol error for
/// a code no one may send.
pub(crate) fn close_reply(received: Option<(CloseCode, &str)>, out: &mut Vec<u8>) {
    match received {
        None => header(0x88, 0, out),
        Some((code, reason)) if code.is_allowed() => close(code, reason, out),
        Some(_) => close(CloseCode::Protocol, "Protocol violation", out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::protocol::frame::Frame;

    /// A frame as a client sends it (masked).
    fn client_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let f = Frame::from_payload(
            FrameHeader {
                is_final: fin,
                opcode,
                mask: Some([0x12, 0x34, 0x56, 0x78]),
                ..FrameHeader::default()
            },
            payload.to_vec().into(),
        );
        let mut out = Vec::new();
        f.format(&mut out).unwrap();
        out
    }

    fn text_frame(s: &str) -> Vec<u8> {
        client_frame(OpCode::Data(Data::Text), true, s.as_bytes())
    }

    /// Everything `bytes` decode to, fed in pieces of `step` bytes.
    fn decode(bytes: &[u8], step: usize) -> Result<Vec<String>, FrameError> {
        let mut r = Reader::default();
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
        let long = "x".repeat(70_000); // a 64-bit length
        let mut bytes = text_frame("hello");
        bytes.extend(text_frame(&"é".repeat(100))); // a 16-bit length
        bytes.extend(text_frame(&long));
        bytes.extend(client_frame(OpCode::Data(Data::Binary), true, &[1, 2, 3]));
        let whole = decode(&bytes, bytes.len()).unwrap();
        assert_eq!(whole.len(), 4);
        assert_eq!(whole[0], r#"Text("hello")"#);
        assert_eq!(whole[3], "Binary([1, 2, 3])");
        for step in [1, 2, 3, 7, 13, 4096] {
            assert_eq!(decode(&bytes, step).unwrap(), whole, "step {step}");
        }
    }

    #[test]
    fn fragments_join_into_one_message_and_control_frames_may_come_between() {
        let mut bytes = client_frame(OpCode::Data(Data::Text), false, b"hel");
        bytes.extend(client_frame(OpCode::Control(Control::Ping), true, b"p"));
        bytes.extend(client_frame(OpCode::Data(Data::Continue), false, b"l"));
        bytes.extend(client_frame(OpCode::Data(Data::Continue), true, b"o"));
        bytes.extend(client_frame(
            OpCode::Control(Control::Close),
            true,
            b"\x03\xe8bye",
        ));
        for step in [1, 5, 100] {
            assert_eq!(
                decode(&bytes, step).unwrap(),
                [
                    "Ping([112])",
                    r#"Text("hello")"#,
                    r#"Close(Some((Normal, "bye")))"#
                ]
            );
        }
    }

    #[test]
    fn frames_that_break_the_protocol_are_errors() {
        let unmasked = [0x81u8, 1, b'a'];
        assert_eq!(
            decode(&unmasked, 3),
            Err(FrameError("unmasked frame from a client"))
        );
        let mut reserved = text_frame("a");
        reserved[0] |= 0x40;
        assert!(decode(&reserved, 100).is_err());
        let lone_continuation = client_frame(OpCode::Data(Data::Continue), true, b"a");
        assert!(decode(&lone_continuation, 100).is_err());
        let not_utf8 = client_frame(OpCode::Data(Data::Text), true, &[0xff, 0xfe]);
        assert!(decode(&not_utf8, 100).is_err());
        let long_ping = client_frame(OpCode::Control(Control::Ping), true, &[0; 126]);
        assert!(decode(&long_ping, 200).is_err());
        // Refused from the header alone, before its payload is buffered.
        let mut huge = vec![0x81u8, 0xff];
        huge.extend_from_slice(&((MAX_SIZE as u64) + 1).to_be_bytes());
        huge.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(decode(&huge, 100), Err(FrameError("frame too large")));
    }

    #[test]
    fn a_handler_that_stops_leaves_the_next_frames_for_later() {
        let mut bytes = text_frame("one");
        bytes.extend(text_frame("two"));
        let mut r = Reader::default();
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
        let frame = text_frame(&"z".repeat(200_000));
        let mut r = Reader::default();
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
        assert!(r.partial.capacity() >= 200_000, "it held the frame");
        r.trim();
        assert_eq!(r.partial.capacity(), 0);
    }

    #[test]
    fn server_frames_parse_as_tungstenite_reads_them() {
        let mut out = Vec::new();
        text("hi", &mut out);
        text(&"y".repeat(300), &mut out);
        close(CloseCode::Away, &"r".repeat(200), &mut out);
        close_reply(Some((CloseCode::Status, "")), &mut out);
        let mut cursor = Cursor::new(&out[..]);
        let mut lens = Vec::new();
        while let Some((h, len)) = FrameHeader::parse(&mut cursor).unwrap() {
            assert!(h.is_final && h.mask.is_none());
            lens.push((h.opcode, len));
            cursor.set_position(cursor.position() + len);
        }
        assert_eq!(
            lens,
            [
                (OpCode::Data(Data::Text), 2),
                (OpCode::Data(Data::Text), 300),
                (OpCode::Control(Control::Close), 125),
                (OpCode::Control(Control::Close), 20),
            ]
        );
        assert_eq!(&out[out.len() - 20..out.len() - 18], &1002u16.to_be_bytes());
    }

    #[test]
    fn unmasking_matches_the_bytewise_definition() {
        let mask = [1, 2, 3, 4];
        for n in 0..20 {
            let mut buf: Vec<u8> = (0..n as u8).collect();
            unmask(&mut buf, mask);
            let want: Vec<u8> = (0..n as u8).map(|i| i ^ mask[i as usize % 4]).collect();
            assert_eq!(buf, want);
        }
    }
}
