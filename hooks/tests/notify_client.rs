//! The hook client against a real Unix socket.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixListener;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_evolora-notify");

#[test]
fn sends_one_notify_line_and_does_not_wait_for_a_reply() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("s.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    // The daemon never answers: the client must still return at once.
    let out = Command::new(BIN).arg("--socket").arg(&sock).arg("--repo").arg(&repo).output().unwrap();
    assert!(out.status.success() && out.stdout.is_empty() && out.stderr.is_empty());
    let (conn, _) = listener.accept().unwrap();
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["op"], "notify");
    assert_eq!(v["repo"], std::fs::canonicalize(&repo).unwrap().display().to_string());
}

#[test]
fn no_daemon_is_silent_success() {
    let tmp = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let out = Command::new(BIN).arg("--socket").arg(tmp.path().join("missing.sock")).arg("--repo").arg(tmp.path()).output().unwrap();
    assert!(out.status.success() && out.stdout.is_empty() && out.stderr.is_empty());
    assert!(t.elapsed() < Duration::from_secs(5));
}
