//! The request and reply envelopes.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::Event;

/// One request: `{"id": N, "command": "show workers", "args": [...]}`.
///
/// Decoding is strict about types and names the offending field, because the
/// error text goes back to whoever sent the frame (see [`Request::try_from`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Value")]
pub struct Request {
    /// Echoed in the reply; gunicorn treats a missing id as 0.
    pub id: u64,
    /// The command text, e.g. `"worker add 2"`; split like a shell would.
    pub command: String,
    /// Extra words appended to the split command.
    pub args: Vec<Arg>,
}

impl Request {
    /// A request without extra args, the way gunicornc sends everything.
    pub fn new(id: u64, command: impl Into<String>) -> Request {
        Request {
            id,
            command: command.into(),
            args: Vec::new(),
        }
    }
}

impl TryFrom<Value> for Request {
    type Error = String;

    fn try_from(value: Value) -> Result<Request, String> {
        let Value::Object(mut map) = value else {
            return Err(format!(
                "request must be a JSON object, got {}",
                describe(&value)
            ));
        };
        let id = match map.remove("id") {
            None | Some(Value::Null) => 0,
            Some(other) => other.as_u64().ok_or_else(|| {
                format!(
                    "'id' must be a non-negative integer, got {}",
                    describe(&other)
                )
            })?,
        };
        let command = match map.remove("command") {
            Some(Value::String(s)) => s,
            None => return Err("missing 'command'".to_string()),
            Some(other) => {
                return Err(format!(
                    "'command' must be a string, got {}",
                    describe(&other)
                ))
            }
        };
        let args = match map.remove("args") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| Arg::try_from(item).map_err(|e| format!("args[{i}] {e}")))
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(format!("'args' must be an array, got {}", describe(&other)))
            }
        };
        Ok(Request { id, command, args })
    }
}

/// The id of a request that failed to decode, when it can still be read, so
/// that the error reply can carry it.
pub(crate) fn salvage_id(value: &Value) -> Option<u64> {
    value.get("id").and_then(Value::as_u64)
}

/// An extra command word. gunicorn converts every arg with `str()`; we take
/// the two types that make sense (`"2"` and `2`) and refuse the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Arg {
    Int(i64),
    Str(String),
}

impl TryFrom<Value> for Arg {
    type Error = String;

    fn try_from(value: Value) -> Result<Arg, String> {
        match value {
            Value::String(s) => Ok(Arg::Str(s)),
            other => other
                .as_i64()
                .map(Arg::Int)
                .ok_or_else(|| format!("must be a string or an integer, got {}", describe(&other))),
        }
    }
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Int(n) => write!(f, "{n}"),
            Arg::Str(s) => f.write_str(s),
        }
    }
}

impl From<&str> for Arg {
    fn from(s: &str) -> Arg {
        Arg::Str(s.to_string())
    }
}

impl From<i64> for Arg {
    fn from(n: i64) -> Arg {
        Arg::Int(n)
    }
}

/// A reply frame. `Ok` and `Error` answer one request; `Event` frames follow
/// an acknowledged `events` request (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Response {
    Ok { id: u64, data: Value },
    Error { id: u64, error: String },
    Event { id: u64, data: Event },
}

impl Response {
    /// A success reply carrying any serialisable reply type. A value that
    /// cannot be represented as JSON (a map with non-string keys) becomes an
    /// error reply rather than a panic in the master.
    pub fn ok<T: Serialize>(id: u64, data: &T) -> Response {
        match serde_json::to_value(data) {
            Ok(data) => Response::Ok { id, data },
            Err(e) => Response::error(id, format!("internal error: cannot encode the reply: {e}")),
        }
    }

    pub fn error(id: u64, error: impl Into<String>) -> Response {
        Response::Error {
            id,
            error: error.into(),
        }
    }

    pub fn event(id: u64, event: Event) -> Response {
        Response::Event { id, data: event }
    }

    pub fn id(&self) -> u64 {
        match self {
            Response::Ok { id, .. } | Response::Error { id, .. } | Response::Event { id, .. } => {
                *id
            }
        }
    }
}

/// Names a JSON value's type for error messages ("got an array").
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_round_trips_and_matches_gunicornc_shape() {
        let req = Request {
            id: 3,
            command: "worker add".into(),
            args: vec![Arg::Int(2), "x".into()],
        };
        let text = serde_json::to_string(&req).unwrap();
        assert_eq!(text, r#"{"id":3,"command":"worker add","args":[2,"x"]}"#);
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), req);
    }

    #[test]
    fn request_defaults_match_gunicorn() {
        let req: Request = serde_json::from_value(json!({"command": "reload"})).unwrap();
        assert_eq!(req, Request::new(0, "reload"));
        let req: Request =
            serde_json::from_value(json!({"id": null, "command": "x", "args": null})).unwrap();
        assert_eq!(req, Request::new(0, "x"));
    }

    #[test]
    fn request_shape_errors_name_the_field() {
        let cases = [
            (json!([1]), "request must be a JSON object, got an array"),
            (
                json!({"id": -1, "command": "x"}),
                "'id' must be a non-negative integer, got -1",
            ),
            (
                json!({"id": "a", "command": "x"}),
                "'id' must be a non-negative integer, got the string \"a\"",
            ),
            (json!({"id": 1}), "missing 'command'"),
            (json!({"command": 5}), "'command' must be a string, got 5"),
            (
                json!({"command": "x", "args": "2"}),
                "'args' must be an array, got the string \"2\"",
            ),
            (
                json!({"command": "x", "args": [1, {}]}),
                "args[1] must be a string or an integer, got an object",
            ),
            (
                json!({"command": "x", "args": [2.5]}),
                "args[0] must be a string or an integer, got 2.5",
            ),
            (
                json!({"command": "x", "args": [true]}),
                "args[0] must be a string or an integer, got true",
            ),
        ];
        for (value, message) in cases {
            assert_eq!(
                Request::try_from(value.clone()).unwrap_err(),
                message,
                "{value}"
            );
        }
    }

    #[test]
    fn responses_have_gunicorns_shape() {
        let ok = Response::ok(1, &json!({"status": "reloading"}));
        assert_eq!(
            serde_json::to_value(&ok).unwrap(),
            json!({"id": 1, "status": "ok", "data": {"status": "reloading"}})
        );
        let err = Response::error(2, "boom");
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"id": 2, "status": "error", "error": "boom"})
        );
        for r in [ok, err] {
            let back: Response = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn unencodable_data_becomes_an_error_reply() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(vec![1u8], 1);
        assert!(matches!(
            Response::ok(4, &map),
            Response::Error { id: 4, .. }
        ));
    }
}
