//! A synchronous client for the daemon's newline-delimited JSON socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the evolora daemon is not running (no socket at {0}); start it with `evolora daemon`")]
    NotRunning(String),
    #[error("talking to the daemon at {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the daemon closed the connection without replying")]
    NoReply,
    #[error("the daemon sent a reply that is not JSON: {0}")]
    BadReply(String),
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The socket a daemon listens on unless told otherwise: `$EVOLORA_SOCKET`, else
/// `$RUNTIME_DIRECTORY/evolora.sock` (systemd), else `$XDG_RUNTIME_DIR/evolora/evolora.sock`,
/// else `/tmp/evolora-<uid>/evolora.sock`.
pub fn default_socket() -> PathBuf {
    if let Some(s) = env_path("EVOLORA_SOCKET") {
        return s;
    }
    if let Some(d) = env_path("RUNTIME_DIRECTORY") {
        let first = d.to_string_lossy().split(':').next().unwrap_or_default().to_owned();
        return PathBuf::from(first).join("evolora.sock");
    }
    if let Some(d) = env_path("XDG_RUNTIME_DIR") {
        return d.join("evolora/evolora.sock");
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    PathBuf::from(format!("/tmp/evolora-{uid}/evolora.sock"))
}

/// Sends one request and waits (at most `timeout`) for its reply line.
pub fn request(socket: &Path, req: &serde_json::Value, timeout: Duration) -> Result<serde_json::Value, ClientError> {
    let path = socket.display().to_string();
    let io = |source| ClientError::Io { path: path.clone(), source };
    let stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => ClientError::NotRunning(path.clone()),
        _ => io(e),
    })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_vec(req).expect("a JSON value serialises");
    line.push(b'\n');
    // A daemon that refuses a client replies and hangs up at once, possibly before our
    // write lands: read its reply even when the write fails.
    let written = (&stream).write_all(&line);
    let mut reader = BufReader::new(&stream);
    let mut reply = String::new();
    let read = reader.read_line(&mut reply);
    if reply.is_empty() {
        written.map_err(io)?;
        read.map_err(io)?;
    }
    if reply.is_empty() {
        return Err(ClientError::NoReply);
    }
    serde_json::from_str(&reply).map_err(|_| ClientError::BadReply(reply.trim_end().to_owned()))
}

/// Waits for the daemon's reply to a wake-up for the repository at `repo` (what a person
/// running `evolora notify` wants to see).
pub fn notify(socket: &Path, repo: &Path, timeout: Duration) -> Result<(), ClientError> {
    let req = serde_json::json!({"op": "notify", "repo": repo.display().to_string()});
    let reply = request(socket, &req, timeout)?;
    match reply.get("ok") {
        Some(serde_json::Value::Bool(true)) => Ok(()),
        _ => Err(ClientError::BadReply(reply.to_string())),
    }
}

/// What hooks call: hands the wake-up to the socket and returns without waiting for the
/// daemon to read it. A commit never waits for the daemon.
pub fn notify_and_forget(socket: &Path, repo: &Path, timeout: Duration) -> Result<(), ClientError> {
    let path = socket.display().to_string();
    let stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => ClientError::NotRunning(path.clone()),
        _ => ClientError::Io { path: path.clone(), source: e },
    })?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| ClientError::Io { path: path.clone(), source: e })?;
    let mut line = serde_json::to_vec(&serde_json::json!({"op": "notify", "repo": repo.display().to_string()})).expect("json");
    line.push(b'\n');
    (&stream).write_all(&line).map_err(|e| ClientError::Io { path, source: e })?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}
