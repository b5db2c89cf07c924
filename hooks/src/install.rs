//! Installs the managed block into a repository's hooks without disturbing anything else.
//!
//! The hooks directory comes from `git rev-parse --path-format=absolute --git-path hooks`,
//! which honours `core.hooksPath` and linked worktrees. Where no other hook exists, the file
//! is a direct one (git starts `evolora-notify` itself, see [`script::direct_shebang`]). A
//! hook file that already exists gets the sh block inserted (after its first line, or at
//! its end for hooks that read stdin); uninstalling removes exactly the inserted bytes, so a
//! foreign hook comes back unchanged, and a file that only existed for the block is deleted.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::script::{self, BEGIN, END};

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{0} is not inside a git repository")]
    NotARepository(PathBuf),
    #[error("running git in {path}: {reason}")]
    Git { path: PathBuf, reason: String },
    #[error("cannot run git in {path}: {source}")]
    Spawn { path: PathBuf, source: std::io::Error },
    #[error("hook file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// What an install or status call found, per hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    pub hooks_dir: PathBuf,
    /// (hook name, installed?)
    pub hooks: Vec<(String, bool)>,
}

/// Marker that the file was created for the block (delete it on uninstall).
const CREATED: &str = "# evolora created this file";
const SHEBANG: &str = "#!/bin/sh";

fn git(repo: &Path, args: &[&str]) -> Result<String, HookError> {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(repo).args(args);
    // Run against `repo`, not whatever repository a calling hook is in.
    for var in ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY", "GIT_PREFIX"] {
        cmd.env_remove(var);
    }
    let out = cmd.output().map_err(|e| HookError::Spawn { path: repo.into(), source: e })?;
    if !out.status.success() {
        return Err(HookError::Git { path: repo.into(), reason: String::from_utf8_lossy(&out.stderr).trim().to_owned() });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The hooks directory git will actually use for `repo`, and whether the repo is bare.
pub fn hooks_dir(repo: &Path) -> Result<(PathBuf, bool), HookError> {
    // The first question fails outside a repository: say so by name rather than pass on
    // git's message.
    let dir = git(repo, &["rev-parse", "--path-format=absolute", "--git-path", "hooks"]).map_err(|e| match e {
        HookError::Git { .. } => HookError::NotARepository(repo.into()),
        other => other,
    })?;
    let bare = git(repo, &["rev-parse", "--is-bare-repository"])? == "true";
    Ok((PathBuf::from(dir), bare))
}

fn hook_names(bare: bool) -> &'static [&'static str] {
    if bare { script::BARE_HOOKS } else { script::WORK_TREE_HOOKS }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HookError + '_ {
    move |source| HookError::Io { path: path.into(), source }
}

/// Splits a hook file into (text without our block, block present?).
fn strip_block(text: &str) -> (String, bool) {
    let Some(start) = text.find(BEGIN) else { return (text.to_owned(), false) };
    let Some(end_rel) = text[start..].find(END) else { return (text.to_owned(), false) };
    let mut end = start + end_rel + END.len();
    if text[end..].starts_with('\n') {
        end += 1;
    }
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..start]);
    out.push_str(&text[end..]);
    (out, true)
}

/// Installs (or refreshes) the block in every relevant hook. Idempotent.
pub fn install(repo: &Path, binary: &Path, socket: Option<&Path>) -> Result<InstallReport, HookError> {
    let (dir, bare) = hooks_dir(repo)?;
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    // Prefer the small client installed beside the main binary.
    let small = binary.with_file_name("evolora-notify");
    let binary = if small.is_file() { small.display().to_string() } else { binary.display().to_string() };
    let socket = socket.map(|s| s.display().to_string());
    let mut hooks = Vec::new();
    for &hook in hook_names(bare) {
        let path = dir.join(hook);
        let block = script::block(hook, &binary, socket.as_deref());
        let existing = match fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(HookError::Io { path, source: e }),
        };
        let foreign = existing.as_deref().map(|t| strip_block(t).0).filter(|rest| !created_by_us(rest)).map(|rest| shell_first_line(&rest));
        let direct = script::direct_shebang(&binary);
        let text = match (foreign, direct) {
            (None, Some(shebang)) => format!("{shebang}\n{CREATED}\n{}", script::direct_block(socket.as_deref())),
            (None, None) => format!("{SHEBANG}\n{CREATED}\n{block}"),
            (Some(foreign), _) => {
                if script::reads_stdin(hook) {
                    format!("{foreign}{block}")
                } else {
                    match foreign.find('\n') {
                        Some(nl) => format!("{}{block}{}", &foreign[..=nl], &foreign[nl + 1..]),
                        None => format!("{foreign}\n{block}"),
                    }
                }
            }
        };
        write_executable(&path, &text)?;
        hooks.push((hook.to_owned(), true));
    }
    Ok(InstallReport { hooks_dir: dir, hooks })
}

/// Removes the block from every hook; restores foreign hooks byte for byte and deletes files
/// that only held the block.
pub fn uninstall(repo: &Path) -> Result<InstallReport, HookError> {
    let (dir, bare) = hooks_dir(repo)?;
    let mut hooks = Vec::new();
    for &hook in hook_names(bare) {
        let path = dir.join(hook);
        let Ok(existing) = fs::read_to_string(&path) else {
            hooks.push((hook.to_owned(), false));
            continue;
        };
        let (rest, had) = strip_block(&existing);
        if had {
            if created_by_us(&rest) {
                fs::remove_file(&path).map_err(io(&path))?;
            } else {
                write_executable(&path, &rest)?;
            }
        }
        hooks.push((hook.to_owned(), false));
    }
    Ok(InstallReport { hooks_dir: dir, hooks })
}

/// Which hooks currently carry the block.
pub fn status(repo: &Path) -> Result<InstallReport, HookError> {
    let (dir, bare) = hooks_dir(repo)?;
    let hooks = hook_names(bare)
        .iter()
        .map(|&h| {
            let present = fs::read_to_string(dir.join(h)).map(|t| strip_block(&t).1).unwrap_or(false);
            (h.to_owned(), present)
        })
        .collect();
    Ok(InstallReport { hooks_dir: dir, hooks })
}

/// Lines someone added to a direct hook file are shell: give them a shell again.
fn shell_first_line(rest: &str) -> String {
    match rest.split_once('\n') {
        Some((first, tail)) if first.starts_with("#!") && first.ends_with(&format!("evolora-notify {}", script::HOOK_FLAG)) => format!("{SHEBANG}\n{tail}"),
        _ => rest.to_owned(),
    }
}

/// Whether what is left of a hook file without the block is only what the installer wrote
/// around it: a `#!` line (sh, or the client of a direct hook) and the creation marker.
fn created_by_us(rest: &str) -> bool {
    let mut lines = rest.split_inclusive('\n');
    matches!((lines.next(), lines.next(), lines.next()), (Some(first), Some(marker), None) if first.starts_with("#!") && marker == format!("{CREATED}\n"))
}

fn write_executable(path: &Path, text: &str) -> Result<(), HookError> {
    // Keep the foreign file's mode if it had one, and make sure git can execute it.
    let mode = fs::metadata(path).map(|m| m.permissions().mode()).unwrap_or(0o755) | 0o111;
    let tmp = path.with_extension("evolora-tmp");
    fs::write(&tmp, text).map_err(io(&tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn init(dir: &Path, bare: bool) {
        let mut cmd = Command::new("git");
        cmd.arg("init").arg("-q");
        if bare {
            cmd.arg("--bare");
        }
        assert!(cmd.arg(dir).status().unwrap().success());
    }

    #[test]
    fn foreign_hook_is_kept_and_restored_exactly() {
        let tmp = tempfile::tempdir().unwrap();
        init(tmp.path(), false);
        let hook = tmp.path().join(".git/hooks/post-commit");
        let foreign = "#!/bin/bash\necho foreign\nexit 0\n";
        fs::write(&hook, foreign).unwrap();
        install(tmp.path(), Path::new("/usr/bin/evolora"), None).unwrap();
        install(tmp.path(), Path::new("/usr/bin/evolora"), None).unwrap(); // idempotent
        let text = fs::read_to_string(&hook).unwrap();
        assert_eq!(text.matches(BEGIN).count(), 1);
        assert!(text.starts_with("#!/bin/bash\n# >>> evolora"), "{text}");
        assert!(text.contains("echo foreign"));
        uninstall(tmp.path()).unwrap();
        assert_eq!(fs::read_to_string(&hook).unwrap(), foreign);
        assert!(!tmp.path().join(".git/hooks/post-merge").exists(), "created files are removed");
    }

    /// Runs a hook script as git would, with a fake `evolora` that records its calls.
    fn run_hook(repo: &Path, hook: &str, args: &[&str], env: &[(&str, &str)], stdin: &str) -> String {
        use std::io::Write;
        let log = repo.join("calls.log");
        let _ = fs::remove_file(&log);
        let mut child = Command::new("sh")
            .arg(if hook.starts_with("..") { repo.join(hook) } else { repo.join(".git/hooks").join(hook) })
            .args(args)
            .current_dir(repo)
            .envs(env.iter().copied())
            .env("FAKE_LOG", &log)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "hooks always exit 0");
        fs::read_to_string(&log).unwrap_or_default()
    }

    #[test]
    fn hook_blocks_call_notify_only_when_they_should() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("r");
        init(&repo, false);
        let fake = tmp.path().join("fake-evolora");
        fs::write(&fake, "#!/bin/sh\necho \"$* GIT_DIR=${GIT_DIR:-unset}\" >> \"$FAKE_LOG\"\n").unwrap();
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
        install(&repo, &fake, Some(Path::new("/run/x.sock"))).unwrap();
        let git_dir = fs::canonicalize(repo.join(".git")).unwrap();

        let calls = run_hook(&repo, "post-commit", &[], &[], "");
        assert_eq!(calls, "notify --quiet --socket /run/x.sock --repo .git GIT_DIR=unset\n");
        // git exports GIT_DIR to hooks: it names the repository but is not passed on.
        let calls = run_hook(&repo, "post-commit", &[], &[("GIT_DIR", git_dir.to_str().unwrap())], "");
        assert_eq!(calls, format!("notify --quiet --socket /run/x.sock --repo {} GIT_DIR=unset\n", git_dir.display()));
        // A linked worktree's `.git` file points at its own git directory.
        let env = [("GIT_AUTHOR_NAME", "t"), ("GIT_AUTHOR_EMAIL", "t@e"), ("GIT_COMMITTER_NAME", "t"), ("GIT_COMMITTER_EMAIL", "t@e"), ("EVOLORA", "0")];
        assert!(Command::new("git").arg("-C").arg(&repo).args(["commit", "-q", "--allow-empty", "-m", "x"]).envs(env).status().unwrap().success());
        let wt = tmp.path().join("wt");
        assert!(Command::new("git").arg("-C").arg(&repo).args(["worktree", "add", "-q"]).arg(&wt).status().unwrap().success());
        let calls = run_hook(&wt, "../r/.git/hooks/post-commit", &[], &[], "");
        assert!(calls.contains(".git/worktrees/wt GIT_DIR=unset"), "{calls}");
        assert_eq!(run_hook(&repo, "post-commit", &[], &[("EVOLORA", "0")], ""), "", "EVOLORA=0 disables");

        fs::create_dir(git_dir.join("rebase-merge")).unwrap();
        assert_eq!(run_hook(&repo, "post-commit", &[], &[], ""), "", "quiet while a rebase replays commits");
        fs::remove_dir(git_dir.join("rebase-merge")).unwrap();

        assert_eq!(run_hook(&repo, "post-rewrite", &["amend"], &[], "a b\n"), "", "amends already woke post-commit");
        assert!(!run_hook(&repo, "post-rewrite", &["rebase"], &[], "a b\nc d\n").is_empty(), "one wake-up per rebase");

        // A missing binary is not an error for the committer.
        fs::remove_file(&fake).unwrap();
        assert_eq!(run_hook(&repo, "post-commit", &[], &[("PATH", "/usr/bin:/bin")], ""), "");
    }

    #[test]
    fn bare_repository_gets_post_receive_and_hooks_path_is_respected() {
        let tmp = tempfile::tempdir().unwrap();
        let bare = tmp.path().join("srv.git");
        init(&bare, true);
        let r = install(&bare, Path::new("/x/evolora"), None).unwrap();
        assert_eq!(r.hooks, vec![("post-receive".to_owned(), true)]);
        assert!(bare.join("hooks/post-receive").exists());

        let work = tmp.path().join("w");
        init(&work, false);
        let custom = tmp.path().join("custom-hooks");
        assert!(Command::new("git").arg("-C").arg(&work).args(["config", "core.hooksPath"]).arg(&custom).status().unwrap().success());
        let r = install(&work, Path::new("/x/evolora"), Some(Path::new("/run/e.sock"))).unwrap();
        assert_eq!(r.hooks_dir, custom);
        assert!(custom.join("post-commit").exists());
    }
}
