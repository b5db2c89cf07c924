//! The client git hooks run: `evolora-notify [--socket PATH] [--repo PATH]`.
//!
//! A separate, small binary because a hook pays for every process it starts: this one
//! execs in about a millisecond where the full `evolora` binary takes several. It hands the
//! wake-up to the daemon's socket without waiting for a reply, prints nothing, and exits 0
//! whatever happens, so it can never slow or fail a git command.

use std::path::PathBuf;
use std::time::Duration;

fn main() {
    let mut socket: Option<PathBuf> = None;
    let mut repo = PathBuf::from(".");
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--socket") => socket = args.next().map(PathBuf::from),
            Some("--repo") => repo = args.next().map(PathBuf::from).unwrap_or(repo),
            Some("--quiet") => {}
            _ => {}
        }
    }
    let socket = socket.unwrap_or_else(evolora_protocol::default_socket);
    let Ok(repo) = std::fs::canonicalize(&repo) else { return };
    let _ = evolora_protocol::Client::new(socket).with_timeout(Duration::from_millis(250)).notify_and_forget(&repo);
}
