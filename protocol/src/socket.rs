//! Where the daemon listens unless told otherwise. Hooks, the CLI and the daemon must agree.

use std::path::PathBuf;

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// `$EVOLORA_SOCKET`, else `$RUNTIME_DIRECTORY/evolora.sock` (systemd), else
/// `$XDG_RUNTIME_DIR/evolora/evolora.sock`, else `/tmp/evolora-<uid>/evolora.sock`.
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
