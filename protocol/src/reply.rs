//! Replies: one struct per kind of answer, the error payload, and the envelope that carries
//! either on one line.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Machine-readable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    UnknownOp,
    LineTooLong,
    NotARepository,
    NotRegistered,
    NoAdapter,
    /// No adapter yet: the ref's first walk of its history is under way (the message says
    /// how far it is).
    FirstWalk,
    Timeout,
    Busy,
    ShuttingDown,
    Internal,
}

/// An error reply's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct OpError {
    pub code: ErrorCode,
    pub message: String,
}

impl OpError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        OpError { code, message: message.into() }
    }
}

/// `ping`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pong {
    pub pong: bool,
    pub version: String,
    pub pid: u32,
    pub model_loaded: bool,
}

/// `register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    pub repo_key: String,
    pub git_dir: String,
    pub bare: bool,
    pub already_registered: bool,
}

/// `unregister`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unregistered {
    pub repo_key: String,
    pub unregistered: bool,
}

/// `notify`, `regenerate`, `reset`: the job is queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queued {
    pub queued: bool,
    pub repo_key: String,
}

/// `adapter`: the newest adapter of the ref asked about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterReply {
    /// Absolute path of the version directory.
    pub path: String,
    /// The name to give an inference server for this version: `<repo key>/<version dir>`,
    /// unique per version and never reused, and the version's path under the adapter root
    /// (vLLM's filesystem resolver loads it by this name). Never `…/current`. Absent for an
    /// ephemeral adapter, which is loaded by path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub served_name: String,
    /// Commit the adapter was generated at.
    pub commit: String,
    #[serde(rename = "ref")]
    pub refname: String,
    /// The ref's tip now.
    pub tip: Option<String>,
    /// The adapter reflects every commit up to the tip: made there, or made from the same
    /// state (the commits since did not step the GRU, as most do not under the paper policy).
    pub covers_tip: bool,
    pub trained: bool,
    /// Set when the model is untrained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// An adapter of uncommitted work (`worktree`): removed after its TTL, never pushed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
}

/// `pin`, `unpin`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pinned {
    pub path: String,
    pub commit: String,
    #[serde(rename = "ref")]
    pub refname: String,
    pub pinned: bool,
}

/// `shutdown`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stopping {
    pub stopping: bool,
}

/// What clients are told about the loaded model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub architecture: String,
    pub encoder: String,
    /// The encoder's model directory (transformer encoders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder_dir: Option<String>,
    /// The checkpoint file (none: the seeded untrained model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    pub fingerprint: String,
    pub trained: bool,
    pub base: String,
    pub gru_hidden: usize,
    pub head_hidden: usize,
    pub rank: usize,
}

/// `status`: every registered repository, or one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub repos: Vec<RepoStatus>,
    /// Repositories waiting for the model thread.
    pub queued: usize,
    pub model: Option<ModelInfo>,
    /// Why the model did not load (no adapter is generated until it does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_error: Option<String>,
    pub state_dir: String,
    /// Each `[[serve.push]]` server and its last outcome.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub push: Vec<PushStatus>,
}

/// One inference server evolora loads versions into, and how its last call went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PushStatus {
    pub endpoint: String,
    pub kind: String,
    /// Without credentials.
    pub url: String,
    /// `load` or `unload`.
    pub last_op: Option<String>,
    /// The served name it was about.
    pub last_adapter: Option<String>,
    /// Unix seconds.
    pub last_at: Option<u64>,
    /// None when the last call succeeded.
    pub last_error: Option<String>,
    /// Versions evolora loaded there and has not unloaded.
    pub loaded: usize,
}

/// `metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsReply {
    pub content_type: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoStatus {
    pub repo_key: String,
    pub git_dir: String,
    pub work_dir: Option<String>,
    pub bare: bool,
    /// Queued or being worked on, or pruned adapter versions (of any repository) still being
    /// deleted from disk.
    pub pending: bool,
    /// The last job's error, cleared by a successful job.
    pub error: Option<String>,
    pub refs: Vec<RefStatus>,
    /// Only when one repository was asked about: bytes of its versions on record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_bytes: Option<u64>,
    /// Only when one repository was asked about: bytes its refs' restore points take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_point_bytes: Option<u64>,
    /// Only when one repository was asked about: its versions, oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapters: Option<Vec<AdapterVersion>>,
}

/// Where one followed ref stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefStatus {
    #[serde(rename = "ref")]
    pub refname: String,
    pub last_commit: String,
    pub origin_commit: String,
    pub steps: u64,
    pub walked: u64,
    pub steps_since_adapter: u64,
    /// sha256 of the state vector's little-endian bytes.
    pub state_sha256: String,
    /// Absolute path of the current adapter.
    pub adapter: Option<String>,
    pub adapter_commit: Option<String>,
    pub model_fingerprint: String,
    /// The ref's current walk, or its last one since the daemon started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walk: Option<WalkProgress>,
    /// Restore points kept for this ref.
    #[serde(default)]
    pub restore_points: usize,
    /// The fidelity check of the ref's last published adapter (`verify_after_publish`),
    /// since the daemon started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

/// The outcome of `evolora verify` run by the daemon on an adapter it published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub adapter: String,
    pub passed: bool,
    /// Why it failed (empty when it passed), or why it could not run.
    pub failures: Vec<String>,
    pub warnings: Vec<String>,
    /// Largest |Δlogit| the adapter causes on the check's prompts.
    pub max_abs_logit_change: f32,
    /// Largest logit difference between the file and the in-memory adapter, relative.
    pub file_vs_memory: Option<f32>,
    pub secs: f64,
}

/// How far a ref's walk is, and where it started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalkProgress {
    /// `snapshot` (h₀ from a new snapshot), `resumed`, `restored` (a restore point, after a
    /// rewrite) or `forked` (another branch's state).
    pub start: String,
    /// The commit the walk continues from (the snapshot's for `snapshot`).
    pub from_commit: String,
    /// Commits this walk has to fold, and has folded.
    pub to_walk: u64,
    pub walked: u64,
    pub running: bool,
    /// The ref had no adapter when the walk began.
    pub first: bool,
    /// Seconds the walk has run, and an estimate of those left while it runs.
    pub elapsed_secs: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_secs: Option<f64>,
}

impl WalkProgress {
    /// "1,200 of 2,663 commits walked, about 40 s left".
    pub fn describe(&self) -> String {
        let eta = self.eta_secs.map(|s| format!(", about {s:.0} s left")).unwrap_or_default();
        format!("{} of {} commits walked{eta}", self.walked, self.to_walk)
    }
}

/// One adapter version on record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterVersion {
    pub dir: String,
    /// See [`AdapterReply::served_name`].
    #[serde(default)]
    pub served_name: String,
    pub commit: String,
    #[serde(rename = "ref")]
    pub refname: String,
    pub trigger: String,
    pub created_at: u64,
    pub last_queried: u64,
    pub pinned: bool,
    pub bytes: u64,
}

/// Any successful reply's fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ReplyBody {
    Pong(Pong),
    Registered(Registered),
    Unregistered(Unregistered),
    Queued(Queued),
    Adapter(AdapterReply),
    Pinned(Pinned),
    Stopping(Stopping),
    Status(Status),
    Metrics(MetricsReply),
}

macro_rules! into_body {
    ($($ty:ident => $variant:ident),* $(,)?) => {
        $(impl From<$ty> for ReplyBody {
            fn from(r: $ty) -> Self {
                ReplyBody::$variant(r)
            }
        })*
    };
}

into_body!(Pong => Pong, Registered => Registered, Unregistered => Unregistered, Queued => Queued, AdapterReply => Adapter, Pinned => Pinned, Stopping => Stopping, Status => Status, MetricsReply => Metrics);

/// One reply line: the request's id and its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<T = ReplyBody> {
    pub id: Value,
    pub result: Result<T, OpError>,
}

impl<T: Serialize> Reply<T> {
    /// An error reply to a request whose id may be unknown.
    pub fn error(id: Value, err: OpError) -> Self {
        Reply { id, result: Err(err) }
    }

    /// The reply as one JSON object: `id`, `ok`, then the body's fields or `error`.
    pub fn to_value(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("id".into(), self.id.clone());
        match &self.result {
            Ok(body) => {
                obj.insert("ok".into(), Value::Bool(true));
                if let Value::Object(fields) = serde_json::to_value(body).expect("replies serialise") {
                    obj.extend(fields);
                }
            }
            Err(e) => {
                obj.insert("ok".into(), Value::Bool(false));
                obj.insert("error".into(), serde_json::to_value(e).expect("errors serialise"));
            }
        }
        Value::Object(obj)
    }

    /// The reply as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(&self.to_value()).expect("replies serialise");
        line.push(b'\n');
        line
    }
}

impl<T: DeserializeOwned> Reply<T> {
    /// Reads a reply line as the reply type the request expects.
    pub fn parse(line: &[u8]) -> Result<Self, serde_json::Error> {
        let Value::Object(mut obj) = serde_json::from_slice::<Value>(line)? else {
            return Err(serde::de::Error::custom("a reply is a JSON object"));
        };
        let id = obj.remove("id").unwrap_or(Value::Null);
        let result = match obj.remove("ok") {
            Some(Value::Bool(true)) => Ok(serde_json::from_value(Value::Object(obj))?),
            _ => {
                let error = obj.remove("error").ok_or_else(|| serde::de::Error::custom("a failed reply carries `error`"))?;
                Err(serde_json::from_value(error)?)
            }
        };
        Ok(Reply { id, result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replies_are_flat_objects_with_id_and_ok() {
        let body = Queued { queued: true, repo_key: "r-1".into() };
        let line = Reply { id: json!(4), result: Ok(ReplyBody::from(body.clone())) }.to_line();
        let value: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value, json!({"id": 4, "ok": true, "queued": true, "repo_key": "r-1"}));
        let back: Reply<Queued> = Reply::parse(&line).unwrap();
        assert_eq!(back, Reply { id: json!(4), result: Ok(body) });
    }

    #[test]
    fn errors_carry_their_code_by_name() {
        let err = OpError::new(ErrorCode::NoAdapter, "none yet");
        let line = Reply::<ReplyBody>::error(json!("a"), err.clone()).to_line();
        let value: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value, json!({"id": "a", "ok": false, "error": {"code": "no_adapter", "message": "none yet"}}));
        let back: Reply<AdapterReply> = Reply::parse(&line).unwrap();
        assert_eq!(back.result, Err(err));
    }

    #[test]
    fn optional_fields_are_left_out_not_null() {
        let reply = AdapterReply {
            path: "/a".into(),
            served_name: "k/c".into(),
            commit: "c".into(),
            refname: "refs/heads/main".into(),
            tip: None,
            covers_tip: false,
            trained: true,
            warning: None,
            ephemeral: false,
        };
        let value = serde_json::to_value(&reply).unwrap();
        assert!(value.get("warning").is_none());
        assert_eq!(value["ref"], "refs/heads/main");
        assert_eq!(value["tip"], Value::Null, "a missing tip is said, not omitted");
    }
}
