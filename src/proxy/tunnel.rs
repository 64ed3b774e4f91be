//! The `CONNECT` exchange with an HTTP proxy (RFC 9110 §9.3.6), driven through `WouldBlock`
//! like the other dial stages: write the request, read the answer's head, and hand the
//! stream on as a tunnel to the service.

use super::Proxy;
use crate::error::{Error, ProxyErrorKind, Result};
use std::io::{self, Read, Write};

/// A proxy's answer head larger than this is not a proxy's answer.
const MAX_HEAD: usize = 16 * 1024;

/// One `CONNECT` exchange in progress.
pub(crate) struct Tunnel<S> {
    stream: S,
    proxy: Proxy,
    /// Holds the proxy's credentials: dropped once written, and never logged.
    request: Vec<u8>,
    written: usize,
    response: Vec<u8>,
}

impl<S: Read + Write> Tunnel<S> {
    /// A `CONNECT` to `target` (`host:port`, IPv6 in brackets) over `stream`, connected to
    /// `proxy`.
    pub(crate) fn new(stream: S, proxy: &Proxy, target: &str, user_agent: &str) -> Tunnel<S> {
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(auth) = proxy.authorization() {
            request.push_str("Proxy-Authorization: ");
            request.push_str(auth);
            request.push_str("\r\n");
        }
        let ua: String = user_agent.chars().filter(|c| !c.is_control()).collect();
        request.push_str("User-Agent: ");
        request.push_str(&ua);
        request.push_str("\r\n\r\n");
        Tunnel {
            stream,
            proxy: proxy.clone(),
            request: request.into_bytes(),
            written: 0,
            response: Vec::with_capacity(256),
        }
    }

    /// Drives the exchange as far as the stream allows: `Ok(true)` once the tunnel is open,
    /// `Ok(false)` while waiting for readiness.
    pub(crate) fn step(&mut self) -> Result<bool> {
        while self.written < self.request.len() {
            match self.stream.write(&self.request[self.written..]) {
                Ok(0) => return Err(self.proxy.error(ProxyErrorKind::Closed)),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.proxy.io_error(&e)),
            }
        }
        if !self.request.is_empty() {
            let _ = self.stream.flush();
            self.request = Vec::new();
            self.written = 0;
        }
        let mut buf = [0u8; 4096];
        loop {
            if self.answer()? {
                return Ok(true);
            }
            if self.response.len() > MAX_HEAD {
                return Err(self.malformed(format!("its answer exceeds {MAX_HEAD} bytes")));
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(self.proxy.error(ProxyErrorKind::Closed)),
                Ok(n) => self.response.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.proxy.io_error(&e)),
            }
        }
    }

    /// Judges what was read so far: `Ok(true)` for a complete 2xx head, `Ok(false)` while
    /// incomplete; a refusal or a malformed answer is the error.
    fn answer(&mut self) -> Result<bool> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut head = httparse::Response::new(&mut headers);
            let len = match head.parse(&self.response) {
                Ok(httparse::Status::Partial) => return Ok(false),
                Ok(httparse::Status::Complete(len)) => len,
                Err(e) => return Err(self.malformed(format!("not an HTTP response ({e})"))),
            };
            let status = head.code.unwrap_or(0);
            let reason: String = head
                .reason
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            match status {
                // An interim answer: the final one follows.
                100 | 102..=199 => {
                    self.response.drain(..len);
                }
                200..=299 => {
                    // The service speaks only after the client (the TLS client hello, the
                    // upgrade request), so bytes here can only come from the proxy, and
                    // passing them on would corrupt the stream. Refused rather than dropped.
                    let extra = self.response.len() - len;
                    if extra > 0 {
                        return Err(self.malformed(format!(
                            "{extra} bytes followed its {status} answer before the client sent any"
                        )));
                    }
                    return Ok(true);
                }
                _ => return Err(self.proxy.error(ProxyErrorKind::Status { status, reason })),
            }
        }
    }

    fn malformed(&self, why: String) -> Error {
        self.proxy.error(ProxyErrorKind::Malformed(why))
    }

    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The stream, now a tunnel to the service.
    pub(crate) fn into_inner(self) -> S {
        self.stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ConnectError, ProxyError};
    use std::collections::VecDeque;

    /// A scripted proxy: what it answers, in chunks, with `None` for "would block"; and what
    /// it was sent.
    #[derive(Default)]
    struct Script {
        reads: VecDeque<Option<Vec<u8>>>,
        sent: Vec<u8>,
        /// Bytes accepted per write before `WouldBlock` (0: no limit).
        write_chunk: usize,
        blocked_once: bool,
    }

    impl Script {
        fn answering(chunks: &[Option<&[u8]>]) -> Script {
            Script {
                reads: chunks.iter().map(|c| c.map(<[u8]>::to_vec)).collect(),
                ..Script::default()
            }
        }
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.reads.pop_front() {
                None => Ok(0),
                Some(None) => Err(io::ErrorKind::WouldBlock.into()),
                Some(Some(mut chunk)) => {
                    let n = chunk.len().min(buf.len());
                    buf[..n].copy_from_slice(&chunk[..n]);
                    if n < chunk.len() {
                        self.reads.push_front(Some(chunk.split_off(n)));
                    }
                    Ok(n)
                }
            }
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.write_chunk > 0 {
                if !self.blocked_once {
                    self.blocked_once = true;
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                self.blocked_once = false;
                let n = buf.len().min(self.write_chunk);
                self.sent.extend_from_slice(&buf[..n]);
                return Ok(n);
            }
            self.sent.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn proxy() -> Proxy {
        Proxy::new("http://alice:SECRET@proxy.corp:3128").unwrap()
    }

    /// Steps until done or an error; panics if it stalls (more than 100 steps).
    fn run(script: Script) -> (Result<()>, Vec<u8>) {
        let mut t = Tunnel::new(script, &proxy(), "svc.example.com:443", "ua/1\r\nX: y");
        for _ in 0..100 {
            match t.step() {
                Ok(true) => return (Ok(()), t.into_inner().sent),
                Ok(false) => {}
                Err(e) => return (Err(e), t.into_inner().sent),
            }
        }
        panic!("the exchange stalled");
    }

    fn kind(r: Result<()>) -> ProxyErrorKind {
        match r {
            Err(Error::Connect(ConnectError::Proxy(ProxyError { proxy, kind, .. }))) => {
                assert_eq!(proxy, "proxy.corp:3128");
                kind
            }
            other => panic!("not a proxy error: {other:?}"),
        }
    }

    #[test]
    fn request_names_the_target_with_basic_credentials() {
        let (r, sent) = run(Script::answering(&[Some(b"HTTP/1.1 200 OK\r\n\r\n")]));
        r.unwrap();
        assert_eq!(
            String::from_utf8(sent).unwrap(),
            "CONNECT svc.example.com:443 HTTP/1.1\r\nHost: svc.example.com:443\r\n\
             Proxy-Authorization: Basic YWxpY2U6U0VDUkVU\r\nUser-Agent: ua/1X: y\r\n\r\n"
        );
    }

    #[test]
    fn a_request_written_in_pieces_and_an_answer_read_in_pieces_open_the_tunnel() {
        let mut script = Script::answering(&[
            None,
            Some(b"HTTP/1.0 20"),
            None,
            Some(b"0 Connection established\r\nProxy-agent: x\r"),
            None,
            Some(b"\n\r\n"),
        ]);
        script.write_chunk = 7;
        let (r, sent) = run(script);
        r.unwrap();
        assert!(sent.starts_with(b"CONNECT svc.example.com:443 HTTP/1.1\r\n"));
        assert!(sent.ends_with(b"\r\n\r\n"));
    }

    #[test]
    fn interim_answers_are_skipped() {
        let (r, _) = run(Script::answering(&[Some(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
        )]));
        r.unwrap();
    }

    #[test]
    fn refusals_carry_the_status_and_reason() {
        for (answer, status, reason, retryable) in [
            (
                &b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\r\n"[..],
                407,
                "Proxy Authentication Required",
                false,
            ),
            (&b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!"[..], 403, "Forbidden", false),
            (&b"HTTP/1.1 502 Bad Gateway\r\n\r\n"[..], 502, "Bad Gateway", true),
            (&b"HTTP/1.1 504 \r\n\r\n"[..], 504, "", true),
            (&b"HTTP/1.1 429 Too Many Requests\r\n\r\n"[..], 429, "Too Many Requests", true),
            (&b"HTTP/1.1 101 Switching Protocols\r\n\r\n"[..], 101, "Switching Protocols", false),
        ] {
            let (r, _) = run(Script::answering(&[Some(answer)]));
            let e = r.unwrap_err();
            assert_eq!(e.is_retryable(), retryable, "{e}");
            // Never the service's status.
            assert_eq!(e.http_status(), None);
            let shown = e.to_string();
            assert!(shown.contains(&status.to_string()) && shown.contains("proxy.corp:3128"), "{shown}");
            assert!(!shown.contains("SECRET") && !format!("{e:?}").contains("SECRET"));
            assert_eq!(kind(Err(e)), ProxyErrorKind::Status { status, reason: reason.into() });
        }
    }

    #[test]
    fn a_closed_connection_before_the_answer_is_closed() {
        assert_eq!(kind(run(Script::answering(&[])).0), ProxyErrorKind::Closed);
        let (r, _) = run(Script::answering(&[Some(b"HTTP/1.1 200 OK\r\n")]));
        assert_eq!(kind(r), ProxyErrorKind::Closed);
    }

    #[test]
    fn a_non_http_answer_is_malformed_and_final() {
        let (r, _) = run(Script::answering(&[Some(b"SSH-2.0-OpenSSH_9.6\r\n")]));
        let e = r.unwrap_err();
        assert!(!e.is_retryable());
        assert!(matches!(kind(Err(e)), ProxyErrorKind::Malformed(_)));
    }

    #[test]
    fn an_endless_head_is_malformed() {
        let mut chunks = vec![Some(b"HTTP/1.1 200 OK\r\n".to_vec())];
        chunks
            .extend((0..5).map(|_| Some(format!("X-Pad: {}\r\n", "a".repeat(4000)).into_bytes())));
        let script = Script {
            reads: chunks.into(),
            ..Script::default()
        };
        let (r, _) = run(script);
        match kind(r) {
            ProxyErrorKind::Malformed(why) => assert!(why.contains("exceeds"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bytes_after_the_answer_are_refused_not_dropped() {
        let (r, _) = run(Script::answering(&[Some(
            b"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x01",
        )]));
        match kind(r) {
            ProxyErrorKind::Malformed(why) => assert!(why.starts_with("3 bytes"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_request_with_the_credentials_is_dropped_once_written() {
        let mut t = Tunnel::new(Script::answering(&[None]), &proxy(), "h:1", "ua");
        assert!(!t.step().unwrap());
        assert!(t.request.is_empty());
    }
}
