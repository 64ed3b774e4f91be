//! The emulator's end of RFC 6455: the server role of the protocol crate's frame codec
//! ([`webpubsub_protocol::websocket`], where the wire's framing rules live once, for both
//! ends), with the emulator's own choices around it: how large a frame or message it takes
//! ([`MAX_SIZE`]), the frames its queues hold ([`OutFrame`]), tungstenite's close codes, which
//! the rest of the emulator speaks, and the partial frame a fault sends ([`PARTIAL_TEXT`]).
//!
//! The codec's buffers are the caller's, so that an idle connection holds none: a reader keeps
//! bytes only while a frame is incomplete (or handling stopped in the middle of a read), and
//! the loop reads into and writes from buffers it shares among its connections.

use crate::frames::OutFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use webpubsub_protocol::websocket::{self as codec, FrameReader, Role};
use webpubsub_protocol::MAX_MESSAGE_BYTES;

/// Frames and messages over this end the connection (those over 1 MB get an ack error).
pub(crate) const MAX_SIZE: usize = 4 * MAX_MESSAGE_BYTES;

/// The fault `drop_connection_mid_frame`: the header of a 100-byte text frame and 10 bytes
/// of it.
pub(crate) const PARTIAL_TEXT: &[u8] = b"\x81\x64{\"type\":\"m";

/// The reader of a client's frames, starting with bytes already read (behind an upgrade
/// request).
pub(crate) fn reader(bytes: Vec<u8>) -> FrameReader {
    FrameReader::with_bytes(Role::Server, MAX_SIZE, bytes)
}

/// Appends a queued frame: text for the JSON subprotocols, binary for protobuf.
pub(crate) fn frame(f: &OutFrame, out: &mut Vec<u8>) {
    match f {
        OutFrame::Text(t) => codec::write_text(t, None, out),
        OutFrame::Binary(b) => codec::write_binary(b, None, out),
    }
}

/// Appends the answer to a ping.
pub(crate) fn pong(payload: &[u8], out: &mut Vec<u8>) {
    codec::write_pong(payload, None, out);
}

/// Appends a close frame; the reason is cut to fit the 125 bytes of a control frame.
pub(crate) fn close(code: CloseCode, reason: &str, out: &mut Vec<u8>) {
    codec::write_close(code.into(), reason, None, out);
}

/// The close frame answering the client's: its code and reason, or a protocol error for
/// a code no one may send.
pub(crate) fn close_reply(received: Option<(u16, &str)>, out: &mut Vec<u8>) {
    codec::write_close_reply(received, None, out);
}

#[cfg(test)]
mod tests {
    //! The codec's rules are tested in the protocol crate; these check the emulator's end of
    //! it against tungstenite's framing, written apart from ours, and the emulator's choices.
    use super::*;
    use std::io::Cursor;
    use std::ops::ControlFlow;
    use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
    use tungstenite::protocol::frame::{Frame, FrameHeader};
    use tungstenite::{Bytes, Utf8Bytes};
    use webpubsub_protocol::websocket::FrameError;

    /// A frame as tungstenite's client sends it (masked).
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

    /// Everything `bytes` decode to in one read, and whether bytes were left over.
    fn decode(bytes: &[u8]) -> Result<(Vec<String>, bool), FrameError> {
        let mut r = reader(Vec::new());
        let mut seen = Vec::new();
        let flow = r.feed(&mut bytes.to_vec(), &mut |m| {
            seen.push(format!("{m:?}"));
            ControlFlow::Continue(())
        })?;
        assert!(flow.is_continue());
        Ok((seen, r.has_buffered()))
    }

    #[test]
    fn a_clients_frames_decode_as_tungstenite_writes_them() {
        let mut bytes = client_frame(OpCode::Data(Data::Text), false, b"hel");
        bytes.extend(client_frame(OpCode::Control(Control::Ping), true, b"p"));
        bytes.extend(client_frame(OpCode::Data(Data::Continue), true, b"lo"));
        bytes.extend(client_frame(OpCode::Data(Data::Binary), true, &[7; 70_000]));
        bytes.extend(client_frame(
            OpCode::Control(Control::Close),
            true,
            b"\x03\xe8bye",
        ));
        let (seen, left) = decode(&bytes).unwrap();
        assert!(!left);
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[..2], ["Ping([112])", r#"Text("hello")"#]);
        assert!(seen[2].starts_with("Binary([7, 7"));
        assert_eq!(seen[3], r#"Close(Some((1000, "bye")))"#);
    }

    #[test]
    fn a_frame_over_the_emulators_limit_is_refused_from_its_header() {
        let mut huge = vec![0x81u8, 0xff];
        huge.extend_from_slice(&((MAX_SIZE as u64) + 1).to_be_bytes());
        huge.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(decode(&huge).unwrap_err().reason(), "frame too large");
        let at_limit = client_frame(OpCode::Data(Data::Binary), true, &vec![0; MAX_SIZE]);
        assert_eq!(decode(&at_limit).unwrap().0.len(), 1);
    }

    #[test]
    fn the_partial_fault_is_a_text_frame_cut_short() {
        let mut cursor = Cursor::new(PARTIAL_TEXT);
        let (h, len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
        assert_eq!((h.opcode, h.is_final), (OpCode::Data(Data::Text), true));
        assert!(cursor.position() + len > PARTIAL_TEXT.len() as u64);
    }

    #[test]
    fn server_frames_parse_as_tungstenite_reads_them() {
        let mut out = Vec::new();
        frame(&OutFrame::Text(Utf8Bytes::from_static("hi")), &mut out);
        frame(&OutFrame::Text("y".repeat(300).into()), &mut out);
        frame(&OutFrame::Binary(Bytes::from(vec![1; 70_000])), &mut out);
        pong(b"p", &mut out);
        close(CloseCode::Away, &"r".repeat(200), &mut out);
        close_reply(Some((1005, "")), &mut out);
        close_reply(None, &mut out);
        let mut cursor = Cursor::new(&out[..]);
        let mut lens = Vec::new();
        while let Some((h, len)) = FrameHeader::parse(&mut cursor).unwrap() {
            assert!(h.is_final && h.mask.is_none());
            lens.push((h.opcode, len));
            cursor.set_position(cursor.position() + len);
        }
        assert_eq!(cursor.position(), out.len() as u64);
        assert_eq!(
            lens,
            [
                (OpCode::Data(Data::Text), 2),
                (OpCode::Data(Data::Text), 300),
                (OpCode::Data(Data::Binary), 70_000),
                (OpCode::Control(Control::Pong), 1),
                (OpCode::Control(Control::Close), 125),
                (OpCode::Control(Control::Close), 20),
                (OpCode::Control(Control::Close), 0),
            ]
        );
        let reply = &out[out.len() - 22..out.len() - 2];
        assert_eq!(&reply[..2], &1002u16.to_be_bytes());
        assert_eq!(&out[out.len() - 2..], &[0x88, 0]);
    }
}
