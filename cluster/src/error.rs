/// What can go wrong talking to the cluster. Each names the JetStream or S3 object involved,
/// so a log line says which bucket or stream refused.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot reach NATS at {url}: {source}")]
    Connect { url: String, source: async_nats::ConnectError },
    #[error("JetStream {what}: {message}")]
    JetStream { what: String, message: String },
    #[error("{what}: stored record is unreadable ({message}); it was written by another version or is damaged")]
    Record { what: String, message: String },
    #[error("invalid cluster name `{0}`: use letters, digits, `-` and `_`")]
    BadName(String),
    #[error("adapter file {path}: {source}")]
    File { path: String, source: std::io::Error },
    #[error("invalid adapter objects location `{location}`: {reason}")]
    BadObjectsLocation { location: String, reason: String },
    #[error("S3 {what}: {source}")]
    S3 { what: String, source: object_store::Error },
    #[error("object {object} already holds other bytes ({message}); adapter objects are written once")]
    WriteOnce { object: String, message: String },
}

impl ClusterError {
    pub(crate) fn js(what: impl Into<String>, err: impl std::fmt::Display) -> Self {
        ClusterError::JetStream { what: what.into(), message: err.to_string() }
    }
}
