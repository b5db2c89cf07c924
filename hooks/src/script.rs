//! The hook files: where evolora's is the only hook, a file that git runs as
//! `evolora-notify --hook FILE ARGS…` through its `#!` line, with no shell in between (a
//! process start is most of a hook's cost); beside a foreign hook, a POSIX sh block inside it.

/// Hooks installed in a repository with a work tree.
pub const WORK_TREE_HOOKS: &[&str] = &["post-commit", "post-rewrite", "post-merge", "post-checkout"];
/// Hooks installed in a bare repository (a git server).
pub const BARE_HOOKS: &[&str] = &["post-receive"];

pub const BEGIN: &str = "# >>> evolora >>>";
pub const END: &str = "# <<< evolora <<<";

/// Hooks that receive data on stdin: their block goes last and drains what is left, so a
/// foreign hook before it still sees all of its input.
pub fn reads_stdin(hook: &str) -> bool {
    matches!(hook, "post-receive" | "post-rewrite")
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The managed block for `hook`, calling the binary at `binary` (absolute) with a fallback
/// to `evolora` on PATH. The block never exits, never fails, and never prints. It spawns one
/// process (the client): the git directory is found with shell builtins (git runs hooks in
/// the work tree's top directory, or in the git directory for a bare repository), so no
/// `git rev-parse` is paid on every commit.
/// `binary` is either the small `evolora-notify` client or the full `evolora` binary (then
/// called as `evolora notify --quiet`).
pub fn block(hook: &str, binary: &str, socket: Option<&str>) -> String {
    let small = binary.ends_with("evolora-notify");
    let guard = match hook {
        // One wake-up per rebase: post-commit fires for every replayed commit, so it stays
        // quiet while a rebase is running and post-rewrite speaks once at the end. Amends
        // already woke the daemon through post-commit.
        "post-commit" => "[ -d \"$evolora_gd/rebase-merge\" ] || [ -d \"$evolora_gd/rebase-apply\" ] || evolora_go=1",
        "post-rewrite" => "[ \"$1\" = rebase ] && evolora_go=1",
        _ => "evolora_go=1",
    };
    let drain = if reads_stdin(hook) { "cat >/dev/null 2>&1 || true\n" } else { "" };
    format!(
        "{BEGIN}
# Wakes the evolora daemon. Managed by `evolora hooks install`; EVOLORA=0 disables it.
{drain}if [ \"${{EVOLORA:-1}}\" != 0 ]; then
  evolora_bin={bin}
  [ -x \"$evolora_bin\" ] || evolora_bin=$(command -v {fallback} 2>/dev/null || true)
  evolora_gd=${{GIT_DIR:-.git}}
  [ -e \"$evolora_gd\" ] || evolora_gd=.
  if [ -f \"$evolora_gd\" ]; then
    read -r evolora_gd < \"$evolora_gd\" || true
    evolora_gd=${{evolora_gd#gitdir: }}
  fi
  evolora_go=0
  {guard}
  if [ -n \"$evolora_bin\" ] && [ \"$evolora_go\" = 1 ]; then
    (
      unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_COMMON_DIR \\
        GIT_ALTERNATE_OBJECT_DIRECTORIES GIT_PREFIX GIT_QUARANTINE_PATH
      exec \"$evolora_bin\"{sub}{sock} --repo \"$evolora_gd\"
    ) </dev/null >/dev/null 2>&1 || true
  fi
fi
{END}
",
        bin = sh_quote(binary),
        sub = if small { "" } else { " notify --quiet" },
        fallback = if small { "evolora-notify" } else { "evolora" },
        sock = socket.map(|s| format!(" --socket {}", sh_quote(s))).unwrap_or_default(),
    )
}

/// Flag `evolora-notify` takes from a direct hook file's `#!` line.
pub const HOOK_FLAG: &str = "--hook";
/// Line of a direct hook file naming the daemon's socket.
pub const SOCKET_LINE: &str = "# socket: ";

/// The `#!` line that makes git run `binary` on the hook file directly, if the kernel can
/// take it: an absolute path without whitespace, the whole line within the 127 bytes every
/// Linux version reads.
pub fn direct_shebang(binary: &str) -> Option<String> {
    let line = format!("#!{binary} {HOOK_FLAG}");
    let usable = binary.starts_with('/') && binary.ends_with("evolora-notify") && !binary.chars().any(char::is_whitespace) && line.len() <= 127;
    usable.then_some(line)
}

/// The managed block of a direct hook file: comments only, read by `evolora-notify` (the
/// socket) and by the installer (the markers).
pub fn direct_block(socket: Option<&str>) -> String {
    let socket = socket.map(|s| format!("{SOCKET_LINE}{s}\n")).unwrap_or_default();
    format!(
        "{BEGIN}
# Wakes the evolora daemon: git runs the client named above on this file, no shell in
# between. Managed by `evolora hooks install`; EVOLORA=0 disables it. To add your own hook
# here, write it as usual and run `evolora hooks install` again: evolora moves into it.
{socket}{END}
"
    )
}
