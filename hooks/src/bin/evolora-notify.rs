//! The client git hooks run: `evolora-notify [--socket PATH] [--repo PATH]`, or, as the
//! interpreter of a direct hook file, `evolora-notify --hook FILE [HOOK ARGS…]`.
//!
//! A separate, small binary because a hook pays for every process it starts: this one
//! execs in about a millisecond where the full `evolora` binary takes several. It hands the
//! wake-up to the daemon's socket without waiting for a reply, prints nothing, and exits 0
//! whatever happens, so it can never slow or fail a git command.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use evolora_hooks::script::{self, HOOK_FLAG, SOCKET_LINE};

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == HOOK_FLAG) {
        if let Some(file) = args.get(1) {
            as_hook(Path::new(file), &args[2..]);
        }
        return;
    }
    let mut socket: Option<PathBuf> = None;
    let mut repo = PathBuf::from(".");
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--socket") => socket = args.next().map(PathBuf::from),
            Some("--repo") => repo = args.next().map(PathBuf::from).unwrap_or(repo),
            _ => {}
        }
    }
    notify(socket, &repo);
}

fn notify(socket: Option<PathBuf>, repo: &Path) {
    let socket = socket.unwrap_or_else(evolora_protocol::default_socket);
    let Ok(repo) = std::fs::canonicalize(repo) else { return };
    let _ = evolora_protocol::Client::new(socket).with_timeout(Duration::from_millis(250)).notify_and_forget(&repo);
}

/// What the sh block does, for a hook file git runs through its `#!` line: the same
/// guards, the git directory found the same way (git runs hooks in the work tree's top
/// directory, or in the git directory of a bare repository, with GIT_DIR often set).
fn as_hook(file: &Path, hook_args: &[OsString]) {
    let hook = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if script::reads_stdin(hook) {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    }
    if std::env::var_os("EVOLORA").is_some_and(|v| v == "0") {
        return;
    }
    let git_dir = git_dir();
    let go = match hook {
        // One wake-up per rebase (see script::block).
        "post-commit" => !git_dir.join("rebase-merge").is_dir() && !git_dir.join("rebase-apply").is_dir(),
        "post-rewrite" => hook_args.first().is_some_and(|a| a == "rebase"),
        _ => true,
    };
    if go {
        notify(socket_named_in(file), &git_dir);
    }
}

fn git_dir() -> PathBuf {
    let dir = std::env::var_os("GIT_DIR").map_or_else(|| PathBuf::from(".git"), PathBuf::from);
    if !dir.exists() {
        return PathBuf::from(".");
    }
    if dir.is_file() {
        // A linked worktree's `.git` file: "gitdir: PATH".
        let text = std::fs::read_to_string(&dir).unwrap_or_default();
        if let Some(path) = text.lines().next().and_then(|l| l.strip_prefix("gitdir: ")) {
            return PathBuf::from(path.trim_end());
        }
    }
    dir
}

fn socket_named_in(file: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| l.strip_prefix(SOCKET_LINE)).map(PathBuf::from)
}
