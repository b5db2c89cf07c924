//! A blocking client for the daemon's socket: one connection per request. Each operation has
//! a method returning its reply type, so the CLI and the hooks speak the protocol through
//! the same types the server answers with.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::reply::{AdapterReply, MetricsReply, OpError, Pinned, Pong, Queued, Registered, Reply, Status, Stopping, Unregistered};
use crate::request::{Op, Request};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the evolora daemon is not running (no socket at {0}); start it with `evolora daemon`")]
    NotRunning(String),
    #[error("talking to the daemon at {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the daemon closed the connection without replying")]
    NoReply,
    #[error("the daemon sent a reply this client cannot read ({reason}): {line}")]
    BadReply { line: String, reason: String },
    /// The daemon answered with an error.
    #[error("{0}")]
    Refused(OpError),
}

/// The default time a request may take (waits add their own length).
pub const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client { socket: socket.into(), timeout: TIMEOUT }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn connect(&self) -> Result<UnixStream, ClientError> {
        UnixStream::connect(&self.socket).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => ClientError::NotRunning(self.path()),
            _ => self.io(e),
        })
    }

    fn path(&self) -> String {
        self.socket.display().to_string()
    }

    fn io(&self, source: std::io::Error) -> ClientError {
        ClientError::Io { path: self.path(), source }
    }

    /// Sends `op` and waits (at most the timeout, plus `extra`) for its reply, read as `T`.
    pub fn call<T: DeserializeOwned>(&self, op: Op, extra: Duration) -> Result<T, ClientError> {
        let stream = self.connect()?;
        let timeout = self.timeout + extra;
        stream.set_read_timeout(Some(timeout)).map_err(|e| self.io(e))?;
        stream.set_write_timeout(Some(timeout)).map_err(|e| self.io(e))?;
        // A daemon that refuses a client replies and hangs up at once, possibly before our
        // write lands: read its reply even when the write fails.
        let written = (&stream).write_all(&Request::new(op).to_line());
        let mut reply = String::new();
        let read = BufReader::new(&stream).read_line(&mut reply);
        if reply.is_empty() {
            written.map_err(|e| self.io(e))?;
            read.map_err(|e| self.io(e))?;
            return Err(ClientError::NoReply);
        }
        let parsed: Reply<T> = Reply::parse(reply.as_bytes())
            .map_err(|e| ClientError::BadReply { line: reply.trim_end().to_owned(), reason: e.to_string() })?;
        parsed.result.map_err(ClientError::Refused)
    }

    pub fn ping(&self) -> Result<Pong, ClientError> {
        self.call(Op::Ping, Duration::ZERO)
    }

    pub fn register(&self, repo: &Path, refs: Vec<String>) -> Result<Registered, ClientError> {
        self.call(Op::Register { repo: text(repo), refs }, Duration::ZERO)
    }

    pub fn unregister(&self, repo: &Path) -> Result<Unregistered, ClientError> {
        self.call(Op::Unregister { repo: text(repo) }, Duration::ZERO)
    }

    /// Waits for the daemon to queue a wake-up (what a person running `evolora notify` wants
    /// to see; hooks use [`Client::notify_and_forget`]).
    pub fn notify(&self, repo: &Path) -> Result<Queued, ClientError> {
        self.call(Op::Notify { repo: text(repo) }, Duration::ZERO)
    }

    /// The newest adapter; with `wait`, one that covers the ref's tip, waiting that long.
    pub fn adapter(&self, repo: &Path, refname: Option<String>, wait: Duration) -> Result<AdapterReply, ClientError> {
        self.call(Op::Adapter { repo: text(repo), refname, wait_ms: wait.as_millis() as u64, worktree: false }, wait)
    }

    /// An adapter that includes the uncommitted changes of the work tree at `repo` (see
    /// [`Op::Adapter`]); generating one takes the model thread, so allow `wait` for it.
    pub fn adapter_for_worktree(&self, repo: &Path, wait: Duration) -> Result<AdapterReply, ClientError> {
        self.call(Op::Adapter { repo: text(repo), refname: None, wait_ms: wait.as_millis() as u64, worktree: true }, wait)
    }

    pub fn status(&self, repo: Option<&Path>) -> Result<Status, ClientError> {
        self.call(Op::Status { repo: repo.map(text) }, Duration::ZERO)
    }

    pub fn metrics(&self) -> Result<MetricsReply, ClientError> {
        self.call(Op::Metrics, Duration::ZERO)
    }

    pub fn regenerate(&self, repo: &Path) -> Result<Queued, ClientError> {
        self.call(Op::Regenerate { repo: text(repo) }, Duration::ZERO)
    }

    pub fn reset(&self, repo: &Path) -> Result<Queued, ClientError> {
        self.call(Op::Reset { repo: text(repo) }, Duration::ZERO)
    }

    pub fn pin(&self, repo: &Path, adapter: Option<String>, pinned: bool) -> Result<Pinned, ClientError> {
        let repo = text(repo);
        let op = if pinned { Op::Pin { repo, adapter } } else { Op::Unpin { repo, adapter } };
        self.call(op, Duration::ZERO)
    }

    pub fn shutdown(&self) -> Result<Stopping, ClientError> {
        self.call(Op::Shutdown, Duration::ZERO)
    }

    /// What hooks call: hands the wake-up to the socket and returns without waiting for the
    /// daemon to read it. A commit never waits for the daemon.
    pub fn notify_and_forget(&self, repo: &Path) -> Result<(), ClientError> {
        let stream = self.connect()?;
        stream.set_write_timeout(Some(self.timeout)).map_err(|e| self.io(e))?;
        (&stream).write_all(&Request::new(Op::Notify { repo: text(repo) }).to_line()).map_err(|e| self.io(e))?;
        let _ = stream.shutdown(std::net::Shutdown::Write);
        Ok(())
    }
}

fn text(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::{ErrorCode, ReplyBody};
    use std::os::unix::net::UnixListener;

    /// A one-shot server that answers the first request with `answer(request)`.
    fn serve_once(answer: impl FnOnce(Request) -> Reply + Send + 'static) -> (tempfile::TempDir, Client) {
        let tmp = tempfile::tempdir().unwrap();
        let sock = tmp.path().join("s.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut line = Vec::new();
            BufReader::new(&conn).read_until(b'\n', &mut line).unwrap();
            let req = Request::parse(line.trim_ascii_end()).unwrap();
            (&conn).write_all(&answer(req).to_line()).unwrap();
        });
        (tmp, Client::new(sock))
    }

    #[test]
    fn a_typed_call_reads_its_reply_type() {
        let (_tmp, client) = serve_once(|req| {
            assert_eq!(req.op, Op::Notify { repo: "/r".into() });
            Reply { id: req.id, result: Ok(ReplyBody::from(Queued { queued: true, repo_key: "r-9".into() })) }
        });
        assert_eq!(client.notify(Path::new("/r")).unwrap().repo_key, "r-9");
    }

    #[test]
    fn a_refusal_keeps_its_code() {
        let (_tmp, client) = serve_once(|req| Reply::error(req.id, OpError::new(ErrorCode::NotRegistered, "nope")));
        match client.adapter(Path::new("/r"), None, Duration::ZERO) {
            Err(ClientError::Refused(e)) => assert_eq!(e.code, ErrorCode::NotRegistered),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn no_daemon_is_named_as_such() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Client::new(tmp.path().join("missing.sock")).ping().unwrap_err();
        assert!(matches!(err, ClientError::NotRunning(_)), "{err}");
    }
}
