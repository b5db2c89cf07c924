//! The socket protocol, with no I/O: one JSON object per line in, one per line out.
//!
//! Request: `{"id": <any JSON>, "op": "<name>", ...arguments}`.
//! Reply: `{"id": <same>, "ok": true, ...}` or
//! `{"id": <same>, "ok": false, "error": {"code": "<code>", "message": "<text>"}}`.

use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Longest request line accepted, in bytes (newline excluded).
pub const MAX_LINE: usize = 64 * 1024;

/// Machine-readable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    UnknownOp,
    LineTooLong,
    NotARepository,
    NotRegistered,
    NoAdapter,
    Timeout,
    Busy,
    ShuttingDown,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::LineTooLong => "line_too_long",
            ErrorCode::NotARepository => "not_a_repository",
            ErrorCode::NotRegistered => "not_registered",
            ErrorCode::NoAdapter => "no_adapter",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Busy => "busy",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
        }
    }
}

/// An error reply's payload.
#[derive(Debug, Clone, PartialEq)]
pub struct OpError {
    pub code: ErrorCode,
    pub message: String,
}

impl OpError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        OpError { code, message: message.into() }
    }
}

/// Operations and their arguments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    Ping,
    Register {
        repo: String,
        /// Refs to follow instead of the checked-out branches (e.g. on a git server).
        #[serde(default)]
        refs: Vec<String>,
    },
    Unregister { repo: String },
    Notify { repo: String },
    Adapter {
        repo: String,
        /// A ref to ask about instead of the one checked out at `repo`.
        #[serde(default, rename = "ref")]
        refname: Option<String>,
        /// Wait up to this long for an adapter that covers the tracked ref's tip.
        #[serde(default)]
        wait_ms: u64,
    },
    Status {
        #[serde(default)]
        repo: Option<String>,
    },
    Regenerate { repo: String },
    Reset { repo: String },
    /// Keep an adapter through every retention rule: a directory name or a commit (prefix
    /// of at least 7 hex digits); the current adapter of the checked-out ref by default.
    Pin {
        repo: String,
        #[serde(default)]
        adapter: Option<String>,
    },
    Unpin {
        repo: String,
        #[serde(default)]
        adapter: Option<String>,
    },
    Shutdown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: Value,
    pub op: Op,
}

/// Parses one line. On failure returns the id (if one could be read) and the error.
pub fn parse_request(line: &[u8]) -> Result<Request, (Value, OpError)> {
    let value: Value = serde_json::from_slice(line)
        .map_err(|e| (Value::Null, OpError::new(ErrorCode::BadRequest, format!("not JSON: {e}"))))?;
    let Value::Object(mut obj) = value else {
        return Err((Value::Null, OpError::new(ErrorCode::BadRequest, "a request is a JSON object")));
    };
    let id = obj.remove("id").unwrap_or(Value::Null);
    let op_name = match obj.get("op") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err((id, OpError::new(ErrorCode::BadRequest, "`op` must be a string"))),
        None => return Err((id, OpError::new(ErrorCode::BadRequest, "missing `op`"))),
    };
    match serde_json::from_value::<Op>(Value::Object(obj)) {
        Ok(op) => Ok(Request { id, op }),
        Err(e) => {
            let msg = e.to_string();
            if msg.starts_with("unknown variant") {
                Err((id, OpError::new(ErrorCode::UnknownOp, format!("unknown op `{op_name}`"))))
            } else {
                Err((id, OpError::new(ErrorCode::BadRequest, format!("op `{op_name}`: {msg}"))))
            }
        }
    }
}

/// A success reply with the given fields.
pub fn ok_reply(id: &Value, fields: Map<String, Value>) -> Value {
    let mut obj = Map::new();
    obj.insert("id".into(), id.clone());
    obj.insert("ok".into(), Value::Bool(true));
    obj.extend(fields);
    Value::Object(obj)
}

pub fn error_reply(id: &Value, err: &OpError) -> Value {
    json!({"id": id, "ok": false, "error": {"code": err.code.as_str(), "message": err.message}})
}

/// Serialises a reply as one line.
pub fn encode_line(reply: &Value) -> Vec<u8> {
    let mut v = serde_json::to_vec(reply).expect("replies serialise");
    v.push(b'\n');
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ops_with_arguments() {
        let r = parse_request(br#"{"id":7,"op":"adapter","repo":"/r","wait_ms":100}"#).unwrap();
        assert_eq!(r.id, json!(7));
        assert_eq!(r.op, Op::Adapter { repo: "/r".into(), refname: None, wait_ms: 100 });
        assert_eq!(parse_request(br#"{"op":"status"}"#).unwrap().op, Op::Status { repo: None });
        let pin = parse_request(br#"{"op":"pin","repo":"/r","adapter":"abcdef0"}"#).unwrap().op;
        assert_eq!(pin, Op::Pin { repo: "/r".into(), adapter: Some("abcdef0".into()) });
    }

    #[test]
    fn errors_keep_the_id_and_name_the_problem() {
        let (id, e) = parse_request(br#"{"id":"x","op":"frobnicate"}"#).unwrap_err();
        assert_eq!((id, e.code), (json!("x"), ErrorCode::UnknownOp));
        let (_, e) = parse_request(br#"{"id":1,"op":"adapter"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("repo"), "{}", e.message);
        let (_, e) = parse_request(b"\xff\x00garbage").unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let (_, e) = parse_request(b"[1,2]").unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
    }
}
