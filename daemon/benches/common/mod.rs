//! What the daemon benchmarks share: arguments, starting the real daemon, one request.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_evolora");

/// The value after `--name` on the command line, or `default`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::args().skip_while(|a| a != name).nth(1).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `evolora daemon ARGS --state-dir STATE --socket SOCK`, quiet, once its socket answers.
pub fn start_daemon<I: AsRef<OsStr>>(args: impl IntoIterator<Item = I>, state: &Path, sock: &Path) -> Child {
    let child = Command::new(BIN)
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

/// One request on its own connection.
pub fn request(sock: &Path, v: &serde_json::Value) -> serde_json::Value {
    let s = UnixStream::connect(sock).unwrap();
    (&s).write_all(format!("{v}\n").as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap()
}

/// Memory bandwidth in GB/s: every core sums its share of a 512 MiB buffer with eight
/// independent accumulators (vectorised), best of five.
pub fn bandwidth_gbs() -> f64 {
    let n: usize = 128 << 20;
    let buf: Vec<f32> = (0..n).map(|i| (i % 5) as f32).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        std::thread::scope(|s| {
            for part in buf.chunks(n.div_ceil(threads)) {
                s.spawn(move || {
                    let mut acc = [0.0f32; 8];
                    for c in part.chunks_exact(8) {
                        for k in 0..8 {
                            acc[k] += c[k];
                        }
                    }
                    std::hint::black_box(acc);
                });
            }
        });
        best = best.min(t.elapsed().as_secs_f64());
    }
    (n * 4) as f64 / best / 1e9
}
