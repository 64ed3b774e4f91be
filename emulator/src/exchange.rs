//! One REST exchange, apart from the route tables: the answer ([`Reply`], with the service's
//! error body), the decoded query of the request, and the bearer-token check. Shared by the
//! REST API (`rest`) and the emulator's fault routes (`faults`).

use crate::access;
use crate::http::Request;
use crate::shared::Shared;
use crate::types::Observation;

/// A REST answer: status, body and its content type.
pub(crate) struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
}

/// An operation's outcome: an error is a reply too, so that `?` returns it.
pub(crate) type Answer = Result<Reply, Reply>;

impl Reply {
    /// A status without a body.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            body: Vec::new(),
            content_type: "text/plain; charset=utf-8",
        }
    }

    /// A plain-text body.
    pub fn text(status: u16, msg: impl Into<String>) -> Reply {
        Reply {
            status,
            body: msg.into().into_bytes(),
            content_type: "text/plain; charset=utf-8",
        }
    }

    /// A JSON body.
    pub fn json(status: u16, value: serde_json::Value) -> Reply {
        Reply {
            status,
            body: value.to_string().into_bytes(),
            content_type: "application/json",
        }
    }

    /// The service's error body (its `ErrorDetail`): `{"code", "message", "target"}`.
    pub fn error(status: u16, code: &str, message: impl Into<String>, target: &str) -> Reply {
        Reply::json(
            status,
            serde_json::json!({ "code": code, "message": message.into(), "target": target }),
        )
    }

    /// 400 with code `Error.BadRequest`; `target` names the parameter at fault.
    pub fn bad_request(message: impl Into<String>, target: &str) -> Reply {
        Reply::error(400, "Error.BadRequest", message, target)
    }

    /// 404 with code `Error.NotFound`.
    pub fn not_found(message: impl Into<String>, target: &str) -> Reply {
        Reply::error(404, "Error.NotFound", message, target)
    }

    /// 200 when `b`, else 404 (the answers of HEAD checks).
    pub fn exists(b: bool) -> Reply {
        Reply::status(if b { 200 } else { 404 })
    }
}

/// A request's decoded query parameters, in order.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub fn of(req: &Request) -> Query {
        Query(req.query_pairs())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The first value of `name`.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a parameter that may appear at most once, not empty; else a 400 that
    /// names it.
    pub fn single(&self, name: &str) -> Result<Option<&str>, Reply> {
        let mut values = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(v), None) if !v.trim().is_empty() => Ok(Some(v)),
            (Some(_), None) => Err(Reply::bad_request(
                format!("Invalid {name}: it is empty."),
                name,
            )),
            (Some(_), Some(_)) => Err(Reply::bad_request(
                format!("Invalid {name}: it is given more than once."),
                name,
            )),
        }
    }

    /// A whole number parameter in `min..=max` (digits only), if present.
    pub fn number(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, Reply> {
        let Some(v) = self.single(name)? else {
            return Ok(None);
        };
        v.parse::<u64>()
            .ok()
            .filter(|n| v.bytes().all(|b| b.is_ascii_digit()) && (min..=max).contains(n))
            .map(Some)
            .ok_or_else(|| {
                Reply::bad_request(
                    format!("Invalid {name}: `{v}` is not a whole number from {min} to {max}."),
                    name,
                )
            })
    }
}

/// Checks a REST call's bearer token (HS256 with the access key, `aud` = the request URL);
/// a refusal is a 401 that says why, and is observed.
pub(crate) fn authorise(shared: &Shared, req: &Request) -> Result<(), Reply> {
    access::check_rest(&shared.cfg, req).map_err(|e| {
        let reason = format!("Unauthorized: {e}");
        shared.observe(Observation::AuthRefused {
            status: 401,
            reason: reason.clone(),
        });
        Reply::text(401, reason)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_head;

    fn query(target: &str) -> Query {
        let head = format!("GET {target} HTTP/1.1\r\n\r\n");
        Query::of(&parse_head(head.as_bytes()).unwrap().unwrap().0)
    }

    #[test]
    fn single_parameters_refuse_repeats_and_empty_values() {
        let q = query("/x?a=1&b=&c=1&c=2&e=%20x");
        assert_eq!(q.single("a").ok().flatten(), Some("1"));
        assert_eq!(q.single("none").ok().flatten(), None);
        assert_eq!(q.single("b").err().map(|r| r.status), Some(400));
        assert_eq!(q.single("c").err().map(|r| r.status), Some(400));
        assert_eq!(q.single("e").ok().flatten(), Some(" x"));
        assert_eq!(q.all("c"), ["1", "2"]);
    }

    #[test]
    fn numbers_are_digits_within_their_range() {
        let q = query("/x?ok=300&big=301&neg=-1&plus=%2B1&word=ten");
        assert_eq!(q.number("ok", 0, 300).ok().flatten(), Some(300));
        for bad in ["big", "neg", "plus", "word"] {
            let r = q.number(bad, 0, 300).expect_err(bad);
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["target"], bad);
            assert_eq!(body["code"], "Error.BadRequest");
        }
    }
}
