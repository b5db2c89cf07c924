//! Requests: the operations and their arguments, parsed from and written to one line.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::reply::{ErrorCode, OpError};

/// Longest request line accepted, in bytes (newline excluded).
pub const MAX_LINE: usize = 64 * 1024;

/// Operations and their arguments. A repository is always named by an absolute path inside
/// it (work tree, subdirectory, git dir or bare repository).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// A wake-up (hooks, `evolora notify`): catch the repository up with git.
    Notify { repo: String },
    Adapter {
        repo: String,
        /// A ref to ask about instead of the one checked out at `repo`.
        #[serde(default, rename = "ref")]
        refname: Option<String>,
        /// Wait up to this long for an adapter that covers the tracked ref's tip.
        #[serde(default)]
        wait_ms: u64,
        /// Fold the uncommitted changes of the work tree at `repo` (tracked files, index and
        /// work tree, against HEAD) into a copy of the state, and answer with an ephemeral
        /// adapter of that; the stored state is untouched. A clean tree gets the current one.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        worktree: bool,
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
    /// The daemon's metrics in the Prometheus text exposition (OpenMetrics).
    Metrics,
    Shutdown,
}

impl Op {
    /// Every operation's wire name, so an unknown one is told apart from bad arguments.
    pub const NAMES: &'static [&'static str] =
        &["ping", "register", "unregister", "notify", "adapter", "status", "regenerate", "reset", "pin", "unpin", "metrics", "shutdown"];

    /// This operation's wire name.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Ping => "ping",
            Op::Register { .. } => "register",
            Op::Unregister { .. } => "unregister",
            Op::Notify { .. } => "notify",
            Op::Adapter { .. } => "adapter",
            Op::Status { .. } => "status",
            Op::Regenerate { .. } => "regenerate",
            Op::Reset { .. } => "reset",
            Op::Pin { .. } => "pin",
            Op::Unpin { .. } => "unpin",
            Op::Metrics => "metrics",
            Op::Shutdown => "shutdown",
        }
    }
}

/// One request line: the client's id (echoed in the reply) and the operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: Value,
    pub op: Op,
}

impl Request {
    pub fn new(op: Op) -> Self {
        Request { id: Value::Null, op }
    }

    /// Parses one line. On failure returns the id (if one could be read) and the error.
    pub fn parse(line: &[u8]) -> Result<Request, (Value, OpError)> {
        let value: Value = serde_json::from_slice(line)
            .map_err(|e| (Value::Null, OpError::new(ErrorCode::BadRequest, format!("not JSON: {e}"))))?;
        let Value::Object(mut obj) = value else {
            return Err((Value::Null, OpError::new(ErrorCode::BadRequest, "a request is a JSON object")));
        };
        let id = obj.remove("id").unwrap_or(Value::Null);
        let name = match obj.get("op") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err((id, OpError::new(ErrorCode::BadRequest, "`op` must be a string"))),
            None => return Err((id, OpError::new(ErrorCode::BadRequest, "missing `op`"))),
        };
        if !Op::NAMES.contains(&name.as_str()) {
            return Err((id, OpError::new(ErrorCode::UnknownOp, format!("unknown op `{name}`"))));
        }
        match serde_json::from_value::<Op>(Value::Object(obj)) {
            Ok(op) => Ok(Request { id, op }),
            Err(e) => Err((id, OpError::new(ErrorCode::BadRequest, format!("op `{name}`: {e}")))),
        }
    }

    /// The request as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut value = serde_json::to_value(&self.op).expect("requests serialise");
        if !self.id.is_null() {
            value["id"] = self.id.clone();
        }
        let mut line = serde_json::to_vec(&value).expect("requests serialise");
        line.push(b'\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_ops_with_arguments() {
        let r = Request::parse(br#"{"id":7,"op":"adapter","repo":"/r","wait_ms":100}"#).unwrap();
        assert_eq!(r.id, json!(7));
        assert_eq!(r.op, Op::Adapter { repo: "/r".into(), refname: None, wait_ms: 100, worktree: false });
        assert_eq!(Request::parse(br#"{"op":"status"}"#).unwrap().op, Op::Status { repo: None });
        let pin = Request::parse(br#"{"op":"pin","repo":"/r","adapter":"abcdef0"}"#).unwrap().op;
        assert_eq!(pin, Op::Pin { repo: "/r".into(), adapter: Some("abcdef0".into()) });
    }

    #[test]
    fn errors_keep_the_id_and_name_the_problem() {
        let (id, e) = Request::parse(br#"{"id":"x","op":"frobnicate"}"#).unwrap_err();
        assert_eq!((id, e.code), (json!("x"), ErrorCode::UnknownOp));
        let (_, e) = Request::parse(br#"{"id":1,"op":"adapter"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("repo"), "{}", e.message);
        let (_, e) = Request::parse(br#"{"op":"notify","repo":"/r","extra":1}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest, "unknown arguments are refused, not ignored");
        let (_, e) = Request::parse(b"\xff\x00garbage").unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let (_, e) = Request::parse(b"[1,2]").unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
    }

    /// What the client writes is what the server reads, for every operation, and every
    /// operation's name is known to the parser.
    #[test]
    fn every_op_round_trips_through_a_line() {
        let repo = || "/srv/r".to_string();
        let all = [
            Op::Ping,
            Op::Register { repo: repo(), refs: vec!["refs/heads/main".into()] },
            Op::Unregister { repo: repo() },
            Op::Notify { repo: repo() },
            Op::Adapter { repo: repo(), refname: Some("refs/heads/dev".into()), wait_ms: 5, worktree: true },
            Op::Status { repo: None },
            Op::Regenerate { repo: repo() },
            Op::Reset { repo: repo() },
            Op::Pin { repo: repo(), adapter: None },
            Op::Unpin { repo: repo(), adapter: Some("abc1234".into()) },
            Op::Metrics,
            Op::Shutdown,
        ];
        assert_eq!(all.len(), Op::NAMES.len());
        for op in all {
            let line = Request { id: json!(3), op: op.clone() }.to_line();
            assert_eq!(line.last(), Some(&b'\n'));
            let back = Request::parse(&line[..line.len() - 1]).unwrap();
            assert_eq!((back.id, back.op.name()), (json!(3), op.name()));
            assert_eq!(back.op, op);
            assert!(Op::NAMES.contains(&op.name()));
        }
    }
}
