//! HTTP/1.1 request heads (parsed with httparse), bodies, and responses.

use super::net::{Stream, Waiter};
use std::io;
use std::time::Instant;

/// Longest request head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Longest REST body accepted: a 1 MB message plus slack for JSON escaping.
pub(crate) const MAX_BODY: usize = 4 * 1024 * 1024;

/// A parsed request head.
pub(crate) struct Request {
    pub method: String,
    /// The request target as sent (path and query, still percent-encoded).
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header contains `token` (ASCII case-insensitive).
    pub fn header_has(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The raw path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The raw query, without `?`.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }

    /// Decoded query pairs.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.query().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The bearer token of the `Authorization` header.
    pub fn bearer(&self) -> Option<&str> {
        let v = self.header("authorization")?.trim();
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }
}

/// Why a request could not be read.
pub(crate) enum ReadError {
    /// The peer closed before sending anything (a normal end of a kept-alive connection).
    Eof,
    Io(io::Error),
    Bad(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// Reads a request head. Returns it and the bytes read past it.
pub(crate) fn read_head(
    w: &mut Waiter,
    s: &mut Stream,
    mut buf: Vec<u8>,
    deadline: Instant,
) -> Result<(Request, Vec<u8>), ReadError> {
    let mut chunk = [0u8; 4096];
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let head = Request {
                        method: req.method.unwrap_or("").to_owned(),
                        target: req.path.unwrap_or("").to_owned(),
                        headers: req
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_owned(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect(),
                    };
                    return Ok((head, buf.split_off(n)));
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(ReadError::Bad(format!("bad request head: {e}"))),
            }
            if buf.len() > MAX_HEAD {
                return Err(ReadError::Bad("request head too large".into()));
            }
        }
        let n = w.read_some(s, &mut chunk, deadline)?;
        if n == 0 {
            return Err(if buf.is_empty() {
                ReadError::Eof
            } else {
                ReadError::Bad("connection closed inside the request head".into())
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads the body (`Content-Length` or chunked). `buf` holds bytes already read past the
/// head; returns the body and the bytes past it.
pub(crate) fn read_body(
    w: &mut Waiter,
    s: &mut Stream,
    req: &Request,
    mut buf: Vec<u8>,
    deadline: Instant,
) -> Result<(Vec<u8>, Vec<u8>), ReadError> {
    let mut chunk = [0u8; 16384];
    let mut fill = |buf: &mut Vec<u8>, w: &mut Waiter, s: &mut Stream| -> Result<(), ReadError> {
        let n = w.read_some(s, &mut chunk, deadline)?;
        if n == 0 {
            return Err(ReadError::Bad("connection closed inside the body".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
        Ok(())
    };
    if req.header_has("transfer-encoding", "chunked") {
        let mut body = Vec::new();
        loop {
            let Some(line_end) = find_crlf(&buf) else {
                if buf.len() > 1024 {
                    return Err(ReadError::Bad("bad chunk header".into()));
                }
                fill(&mut buf, w, s)?;
                continue;
            };
            let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| ReadError::Bad("bad chunk size".into()))?;
            if body.len() + size > MAX_BODY {
                return Err(ReadError::Bad("body too large".into()));
            }
            let need = line_end + 2 + size + 2;
            while buf.len() < need {
                fill(&mut buf, w, s)?;
            }
            body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
            buf.drain(..need);
            if size == 0 {
                // Trailers are not supported; the final CRLF was consumed above.
                return Ok((body, buf));
            }
        }
    }
    let len = match req.header("content-length") {
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map_err(|_| ReadError::Bad("bad Content-Length".into()))?,
        None => 0,
    };
    if len > MAX_BODY {
        return Err(ReadError::Bad("body too large".into()));
    }
    while buf.len() < len {
        fill(&mut buf, w, s)?;
    }
    let rest = buf.split_off(len);
    Ok((buf, rest))
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// Standard reason phrases of the statuses the emulator sends.
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A complete response; `Connection: close` unless `keep_alive`.
pub(crate) fn response(
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\n",
        reason_phrase(status),
        body.len()
    );
    if !body.is_empty() {
        out.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    out.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(body);
    }
    bytes
}

/// Decodes `%XX` escapes of a path segment (no `+` → space, unlike forms).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_of_path_segments() {
        assert_eq!(percent_decode("grp%201%2F%C3%A9"), "grp 1/é");
        assert_eq!(percent_decode("a+b%"), "a+b%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%41"), "A");
    }
}
