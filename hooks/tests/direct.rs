//! Direct hook files run by git itself: the real `evolora-notify` as the `#!` interpreter of
//! the installed files, in real repositories, reporting to a listening Unix socket.

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use evolora_hooks::{install, uninstall};

const NOTIFY: &str = env!("CARGO_BIN_EXE_evolora-notify");

fn git(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) {
    use std::io::Write;
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.unwrap_or_default().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    // A hook git could not run shows up on stderr, not in the exit status.
    assert!(!String::from_utf8_lossy(&out.stderr).contains("hook"), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The wake-ups that reached the socket since the last call (git waits for the hook, and
/// the client writes before it exits, so they are all there).
fn received(listener: &UnixListener) -> Vec<String> {
    let mut lines = Vec::new();
    while let Ok((mut conn, _)) = listener.accept() {
        conn.set_nonblocking(false).unwrap();
        let mut text = String::new();
        conn.read_to_string(&mut text).unwrap();
        lines.push(text.trim().to_owned());
    }
    lines
}

/// A new repository at `dir/name` (`--bare` among `flags` for a server).
fn init(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    let repo = dir.join(name);
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &[&["init", "-q", "-b", "main"], flags].concat(), &[], None);
    repo
}

fn listen(path: &Path) -> UnixListener {
    let listener = UnixListener::bind(path).unwrap();
    listener.set_nonblocking(true).unwrap();
    listener
}

fn canonical(p: PathBuf) -> String {
    std::fs::canonicalize(p).unwrap().display().to_string()
}

#[test]
fn git_runs_the_client_directly_with_the_guards_of_the_sh_block() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = init(tmp.path(), "r", &[]);
    let socket = tmp.path().join("d.sock");
    let listener = listen(&socket);
    install(&repo, Path::new(NOTIFY), Some(&socket)).unwrap();
    let hook = std::fs::read_to_string(repo.join(".git/hooks/post-commit")).unwrap();
    assert!(hook.starts_with(&format!("#!{NOTIFY} --hook\n")), "{hook}");

    let git_dir = canonical(repo.join(".git"));
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "one"], &[], None);
    let lines = received(&listener);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("notify") && lines[0].contains(&format!("\"{git_dir}\"")), "{lines:?}");

    git(&repo, &["commit", "-q", "--allow-empty", "-m", "off"], &[("EVOLORA", "0")], None);
    assert!(received(&listener).is_empty(), "EVOLORA=0 disables");

    // Amends wake through post-commit only; a rebase wakes once, through post-rewrite.
    git(&repo, &["commit", "-q", "--amend", "--allow-empty", "-m", "amended"], &[], None);
    assert_eq!(received(&listener).len(), 1, "an amend is one wake-up");
    for i in 0..3 {
        git(&repo, &["commit", "-q", "--allow-empty", "-m", &format!("c{i}")], &[], None);
    }
    received(&listener);
    // Three replayed commits stay quiet: post-checkout speaks as the rebase starts (as in
    // the sh block), post-rewrite once at the end.
    git(&repo, &["rebase", "-q", "--force-rebase", "HEAD~3"], &[], None);
    assert_eq!(received(&listener).len(), 2, "replayed commits are quiet");

    // A linked worktree names its own git directory.
    let wt = tmp.path().join("wt");
    git(&repo, &["worktree", "add", "-q", wt.to_str().unwrap()], &[], None);
    received(&listener);
    git(&wt, &["commit", "-q", "--allow-empty", "-m", "in wt"], &[], None);
    let lines = received(&listener);
    assert!(lines.len() == 1 && lines[0].contains(&canonical(repo.join(".git/worktrees/wt"))), "{lines:?}");

    // No daemon: the commit neither fails nor prints (checked in `git`).
    drop(listener);
    std::fs::remove_file(&socket).unwrap();
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "down"], &[], None);

    uninstall(&repo).unwrap();
    assert!(!repo.join(".git/hooks/post-commit").exists(), "a file that only held evolora is removed");
}

#[test]
fn a_bare_repository_is_woken_by_a_push_and_its_stdin_drained() {
    let tmp = tempfile::tempdir().unwrap();
    let server = init(tmp.path(), "srv.git", &["--bare"]);
    let socket = tmp.path().join("d.sock");
    let listener = listen(&socket);
    install(&server, Path::new(NOTIFY), Some(&socket)).unwrap();
    let work = init(tmp.path(), "w", &[]);
    git(&work, &["commit", "-q", "--allow-empty", "-m", "x"], &[], None);
    git(&work, &["push", "-q", server.to_str().unwrap(), "main"], &[], None);
    let lines = received(&listener);
    assert!(lines.len() == 1 && lines[0].contains(&canonical(server.clone())), "{lines:?}");
}

#[test]
fn a_foreign_hook_turns_the_direct_file_back_into_a_shell_block() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = init(tmp.path(), "r", &[]);
    install(&repo, Path::new(NOTIFY), None).unwrap();
    let path = repo.join(".git/hooks/post-commit");
    // Someone adds a line of their own under evolora's: it must run as shell, with ours.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("echo mine > \"$(git rev-parse --git-dir)/ran\"\n");
    std::fs::write(&path, &text).unwrap();
    install(&repo, Path::new(NOTIFY), None).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("#!/bin/sh\n") && text.contains("exec ") && text.contains("echo mine"), "{text}");
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "x"], &[], None);
    assert!(repo.join(".git/ran").exists(), "the added line ran");
    uninstall(&repo).unwrap();
    let left = std::fs::read_to_string(&path).unwrap();
    assert!(left.contains("echo mine") && !left.contains("evolora >>>"), "{left}");
}
