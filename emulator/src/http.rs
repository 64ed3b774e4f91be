//! HTTP/1.1 request heads (parsed with httparse), bodies, and responses, over byte
//! buffers: the socket side reads and writes them (`server`, `upgrade`).

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

/// Parses a request head from the start of `buf`. Returns the head and its length once
/// it is complete, `None` while more bytes are needed.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize)>, String> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
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
            Ok(Some((head, n)))
        }
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            Err("request head too large".into())
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(format!("bad request head: {e}")),
    }
}

/// Decodes a request body (`Content-Length` or chunked) from the bytes read past its head,
/// as they arrive.
pub(crate) enum BodyDecoder {
    Length(usize),
    /// The chunks decoded so far (their bytes are removed from the buffer).
    Chunked(Vec<u8>),
}

impl BodyDecoder {
    pub fn new(req: &Request) -> Result<BodyDecoder, String> {
        if req.header_has("transfer-encoding", "chunked") {
            return Ok(BodyDecoder::Chunked(Vec::new()));
        }
        let len = match req.header("content-length") {
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map_err(|_| "bad Content-Length".to_owned())?,
            None => 0,
        };
        if len > MAX_BODY {
            return Err("body too large".into());
        }
        Ok(BodyDecoder::Length(len))
    }

    /// Takes what it can from the front of `buf`. Returns the body once it is complete
    /// (`buf` then holds the bytes past it), `None` while more bytes are needed.
    pub fn decode(&mut self, buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, String> {
        match self {
            BodyDecoder::Length(len) => {
                if buf.len() < *len {
                    return Ok(None);
                }
                let rest = buf.split_off(*len);
                Ok(Some(std::mem::replace(buf, rest)))
            }
            BodyDecoder::Chunked(body) => loop {
                let Some(line_end) = find_crlf(buf) else {
                    if buf.len() > 1024 {
                        return Err("bad chunk header".into());
                    }
                    return Ok(None);
                };
                let line = String::from_utf8_lossy(&buf[..line_end]);
                let size_text = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_text, 16)
                    .map_err(|_| "bad chunk size".to_owned())?;
                if body.len() + size > MAX_BODY {
                    return Err("body too large".into());
                }
                let need = line_end + 2 + size + 2;
                if buf.len() < need {
                    return Ok(None);
                }
                body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
                buf.drain(..need);
                if size == 0 {
                    // Trailers are not supported; the final CRLF was consumed above.
                    return Ok(Some(std::mem::take(body)));
                }
            },
        }
    }
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

    fn head(text: &str) -> Request {
        parse_head(text.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn a_head_is_parsed_once_complete() {
        let text = "GET /a?b=1 HTTP/1.1\r\nHost: h\r\n\r\nrest";
        assert!(parse_head(&text.as_bytes()[..20]).unwrap().is_none());
        let (req, n) = parse_head(text.as_bytes()).unwrap().unwrap();
        assert_eq!(
            (req.method.as_str(), req.path(), req.query()),
            ("GET", "/a", "b=1")
        );
        assert_eq!(&text[n..], "rest");
        assert!(parse_head(b"\x01\x02 nonsense\r\n\r\n").is_err());
    }

    #[test]
    fn bodies_are_decoded_as_their_bytes_arrive() {
        let req = head("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n");
        let mut dec = BodyDecoder::new(&req).unwrap();
        let mut buf = b"ab".to_vec();
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"cNEXT");
        assert_eq!(dec.decode(&mut buf).unwrap().as_deref(), Some(&b"abc"[..]));
        assert_eq!(buf, b"NEXT");

        let req = head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        let mut dec = BodyDecoder::new(&req).unwrap();
        let mut buf = b"3\r\nabc\r\n2;x=y\r\nd".to_vec();
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"e\r\n0\r\n\r\nNEXT");
        assert_eq!(
            dec.decode(&mut buf).unwrap().as_deref(),
            Some(&b"abcde"[..])
        );
        assert_eq!(buf, b"NEXT");

        let mut dec = BodyDecoder::new(&req).unwrap();
        assert!(dec.decode(&mut b"zz\r\n".to_vec()).is_err());
        let big = head("POST / HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n");
        assert!(BodyDecoder::new(&big).is_err());
    }

    #[test]
    fn percent_decoding_of_path_segments() {
        assert_eq!(percent_decode("grp%201%2F%C3%A9"), "grp 1/é");
        assert_eq!(percent_decode("a+b%"), "a+b%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%41"), "A");
    }
}
