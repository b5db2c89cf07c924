//! What the daemon benchmarks share: arguments, starting the real daemon, one request.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_evolora");

/// The daemon binary the benchmark runs: `EVOLORA_BENCH_BIN` when set (to compare two builds
/// on the same host, alternating), else this build's.
pub fn bin() -> std::ffi::OsString {
    std::env::var_os("EVOLORA_BENCH_BIN").unwrap_or_else(|| BIN.into())
}

/// The value after `--name` on the command line, or `default`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::args().skip_while(|a| a != name).nth(1).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `evolora daemon ARGS --state-dir STATE --socket SOCK`, quiet, once its socket answers.
pub fn start_daemon<I: AsRef<OsStr>>(args: impl IntoIterator<Item = I>, state: &Path, sock: &Path) -> Child {
    let child = Command::new(bin())
        .arg("daemon")
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .arg("--socket")
        .arg(sock)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while UnixStream::connect(sock).is_err() {
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// `git -C dir ARGS` with a fixed identity and no user configuration; its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.invalid")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// One request on its own connection.
pub fn request(sock: &Path, v: &serde_json::Value) -> serde_json::Value {
    let s = UnixStream::connect(sock).unwrap();
    (&s).write_all(format!("{v}\n").as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap()
}

/// The model crate's floors, shared by path so every benchmark measures bandwidth alike.
#[path = "../../../model/benches/floors/mod.rs"]
pub mod floors;
#[allow(unused_imports)] // not every benchmark reads the floor
pub use floors::bandwidth_gbs;

/// (sum of seconds, count) of each of the daemon's latency histograms, from its `metrics` op.
pub fn histograms(sock: &Path) -> std::collections::BTreeMap<String, (f64, f64)> {
    let reply = request(sock, &serde_json::json!({"op": "metrics"}));
    let mut out = std::collections::BTreeMap::<String, (f64, f64)>::new();
    for line in reply["text"].as_str().unwrap_or_default().lines() {
        let Some((name, value)) = line.split_once(' ') else { continue };
        let Ok(value) = value.trim().parse::<f64>() else { continue };
        if let Some(h) = name.strip_prefix("evolora_").and_then(|n| n.strip_suffix("_seconds_sum")) {
            out.entry(h.to_owned()).or_default().0 = value;
        } else if let Some(h) = name.strip_prefix("evolora_").and_then(|n| n.strip_suffix("_seconds_count")) {
            out.entry(h.to_owned()).or_default().1 = value;
        }
    }
    out
}
