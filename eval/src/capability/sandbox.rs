//! Running one untrusted Python program in its own process, never inside the daemon.
//!
//! Each run gets a fresh scratch directory (its working directory, `HOME` and `TMPDIR`, removed
//! afterwards), an environment holding only those and a minimal `PATH`, stdin from `/dev/null`,
//! and stdout/stderr in unnamed temporary files whose size the file-size limit bounds. Before the
//! interpreter starts, the child:
//!
//! - leaves the network: a private network namespace (only a loopback that is down), created
//!   directly when the daemon is root, else inside a new unprivileged user namespace;
//! - when the daemon is root, switches to an unprivileged account (`nobody` by default), because
//!   root is exempt from the process limit and may write anywhere; a user namespace is then
//!   entered as well, where the kernel counts processes per namespace, so one program's fork bomb
//!   does not starve another sandbox running beside it as the same account;
//! - sets `no_new_privs` (setuid binaries gain nothing) and dies with the daemon;
//! - gets resource limits: address space, CPU seconds, file size, open files, processes, no
//!   core dumps.
//!
//! A wall-clock timeout kills the whole process group; the group is killed after every run too,
//! so background children do not outlive it.
//!
//! What this does not protect against, so that callers can judge where to run it:
//!
//! - It is no filesystem jail. The program reads whatever its account may read. A daemon that is
//!   not root runs programs as its own account: they could write that user's files and signal
//!   or trace that user's processes, the daemon included. A root daemon's programs run as
//!   `nobody`, which can still write world-writable places such as `/tmp`.
//! - A network namespace cuts TCP/UDP and abstract sockets, not Unix sockets on the filesystem
//!   (a session bus, a container runtime's socket) that the account may open.
//! - There is no system-call filter: the whole kernel interface is reachable.
//! - A process that leaves the group (`setsid`) escapes the final kill; it keeps the limits and
//!   the missing network, and stays within the process limit.
//! - The address-space limit is per process: parallel runs may use `parallelism ×
//!   memory_bytes`, and a program may spend it `processes` times over.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The `PATH` a sandboxed program sees, and where a bare interpreter name is looked up.
pub const MINIMAL_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The account a root daemon runs programs as: `nobody` on Debian, Fedora and Arch.
pub const NOBODY: u32 = 65534;

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// A path, or a bare name looked up in [`MINIMAL_PATH`].
    pub interpreter: PathBuf,
    /// Wall-clock limit per program.
    pub timeout: Duration,
    /// Address-space limit (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// CPU-time limit; SIGXCPU at this, SIGKILL a second later.
    pub cpu_seconds: u64,
    /// Largest file the program may write, its captured output included.
    pub file_size_bytes: u64,
    pub open_files: u64,
    /// Processes and threads the program may have at once, itself included.
    pub processes: u64,
    /// How much of the end of stdout and stderr is kept.
    pub output_tail_bytes: usize,
    /// Run even where no network namespace can be made. Off: such a host is refused.
    pub allow_network: bool,
    /// The account (uid, gid) a root daemon drops to.
    pub unprivileged_account: (u32, u32),
    /// Where scratch directories are made; the system temporary directory when `None`.
    pub scratch_parent: Option<PathBuf>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            interpreter: PathBuf::from("python3"),
            // HumanEval's harness allows 3 s; more here because runs share busy cores.
            timeout: Duration::from_secs(10),
            memory_bytes: 1 << 30,
            cpu_seconds: 10,
            file_size_bytes: 16 << 20,
            open_files: 64,
            processes: 32,
            output_tail_bytes: 4096,
            allow_network: false,
            unprivileged_account: (NOBODY, NOBODY),
            scratch_parent: None,
        }
    }
}

/// How a program was confined, recorded with results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolation {
    /// The program had a private network namespace.
    pub network_isolated: bool,
    /// The account a root daemon switched to; `None` when the daemon is not root.
    pub dropped_to_uid: Option<u32>,
    /// The process limit counted this program's processes alone (a user namespace of its own).
    pub private_process_count: bool,
}

/// The resource limit a program ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    Memory,
    CpuTime,
    FileSize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Exited with status 0: every assertion held.
    Passed,
    /// Exited with another status (an assertion, an exception).
    Failed { exit_code: i32, stderr_tail: String },
    /// Still running at the wall-clock limit; killed.
    TimedOut,
    /// Stopped by a resource limit: a signal for CPU time or file size, a `MemoryError` for
    /// the address space.
    LimitExceeded { limit: Limit, stderr_tail: String },
    /// Ended by another signal.
    Killed { signal: i32 },
}

impl Outcome {
    pub fn passed(&self) -> bool {
        matches!(self, Outcome::Passed)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub outcome: Outcome,
    pub seconds: f64,
    pub stdout_tail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandboxed programs need Linux (namespaces, setrlimit, process groups)")]
    Unsupported,
    #[error("no interpreter {name:?} in {MINIMAL_PATH}")]
    InterpreterNotFound { name: PathBuf },
    #[error(
        "cannot cut generated code off the network ({step}: {source}); enable unprivileged user \
         namespaces (sysctl kernel.unprivileged_userns_clone=1 or user.max_user_namespaces), run \
         as root, or allow running with network explicitly"
    )]
    NoNetworkIsolation { step: &'static str, source: std::io::Error },
    #[error("cannot switch to the unprivileged account {uid}:{gid} ({source})")]
    DropPrivileges { uid: u32, gid: u32, source: std::io::Error },
    #[error("the interpreter {interpreter} does not run a trivial program in the sandbox: {outcome:?}")]
    InterpreterCheck { interpreter: PathBuf, outcome: Outcome },
    #[error("cannot prepare a scratch directory: {0}")]
    Scratch(std::io::Error),
    #[error("cannot start {interpreter}: {source}")]
    Spawn { interpreter: PathBuf, source: std::io::Error },
    #[error("cannot wait for the sandboxed program: {0}")]
    Wait(std::io::Error),
    #[error("cannot read the sandboxed program's output: {0}")]
    Output(std::io::Error),
}

/// A checked configuration: the interpreter is found and runs, and the way to confine programs
/// on this host is settled once.
#[derive(Debug)]
pub struct Sandbox {
    config: SandboxConfig,
    interpreter: PathBuf,
    confinement: Confinement,
}

/// The steps the child takes before the interpreter starts, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Confinement {
    /// `unshare(CLONE_NEWNET)` while still root.
    network_namespace_first: bool,
    /// Switch to this (uid, gid).
    drop_to: Option<(u32, u32)>,
    /// Then a user namespace of its own.
    user_namespace_after: bool,
    /// With a network namespace, where none was made before.
    network_namespace_after: bool,
}

impl Confinement {
    fn isolation(&self) -> Isolation {
        Isolation {
            network_isolated: self.network_namespace_first || self.network_namespace_after,
            dropped_to_uid: self.drop_to.map(|(uid, _)| uid),
            private_process_count: self.user_namespace_after,
        }
    }
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        imp::new(config)
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// The interpreter's resolved path.
    pub fn interpreter(&self) -> &Path {
        &self.interpreter
    }

    pub fn isolation(&self) -> Isolation {
        self.confinement.isolation()
    }

    /// Runs `program` (Python source) to completion, a limit, or the timeout.
    pub fn run(&self, program: &str) -> Result<Execution, SandboxError> {
        imp::run(self, program)
    }
}

/// The last `max` bytes of `file`, as text; a split character at the cut is replaced.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn read_tail(file: &mut File, max: usize) -> std::io::Result<String> {
    let length = file.seek(SeekFrom::End(0))?;
    let start = length.saturating_sub(max as u64);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity((length - start) as usize);
    file.take(max as u64).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Python reports an exhausted address space as a `MemoryError` and exits with status 1.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn ran_out_of_memory(stderr_tail: &str) -> bool {
    stderr_tail
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .is_some_and(|line| line.starts_with("MemoryError"))
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn resolve_interpreter(name: &Path) -> Result<PathBuf, SandboxError> {
    if name.components().count() > 1 || name.is_absolute() {
        return Ok(name.to_path_buf());
    }
    MINIMAL_PATH
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| SandboxError::InterpreterNotFound { name: name.to_path_buf() })
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::*;

    pub(super) fn new(_config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        Err(SandboxError::Unsupported)
    }

    pub(super) fn run(_sandbox: &Sandbox, _program: &str) -> Result<Execution, SandboxError> {
        Err(SandboxError::Unsupported)
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io::{Error, ErrorKind};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{Command, Stdio};

    use super::*;

    /// The steps of [`confine`], for errors.
    #[derive(Debug, Clone, Copy)]
    #[repr(u32)]
    enum Step {
        NetworkNamespace = 1,
        DropPrivileges = 2,
        UserNamespace = 3,
    }

    impl Step {
        fn from_code(code: u32) -> Self {
            match code {
                1 => Step::NetworkNamespace,
                2 => Step::DropPrivileges,
                _ => Step::UserNamespace,
            }
        }

        fn describe(self) -> &'static str {
            match self {
                Step::NetworkNamespace => "unshare(CLONE_NEWNET)",
                Step::DropPrivileges => "setgroups/setgid/setuid",
                Step::UserNamespace => "unshare(CLONE_NEWUSER)",
            }
        }
    }

    fn last_errno() -> i32 {
        Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL)
    }

    /// Runs in a forked child before exec: system calls only, no allocation.
    fn confine(confinement: &Confinement) -> Result<(), (Step, i32)> {
        // SAFETY: plain system calls on this (single-threaded, forked) process.
        unsafe {
            if confinement.network_namespace_first && libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err((Step::NetworkNamespace, last_errno()));
            }
            if let Some((uid, gid)) = confinement.drop_to
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0)
            {
                return Err((Step::DropPrivileges, last_errno()));
            }
            if confinement.user_namespace_after {
                let (flags, step) = if confinement.network_namespace_after {
                    (libc::CLONE_NEWUSER | libc::CLONE_NEWNET, Step::NetworkNamespace)
                } else {
                    (libc::CLONE_NEWUSER, Step::UserNamespace)
                };
                if libc::unshare(flags) != 0 {
                    return Err((step, last_errno()));
                }
            }
        }
        Ok(())
    }

    /// Tries `confinement` in a throwaway child, so that a host that cannot confine is found
    /// before any program runs, with the step that failed.
    fn probe(confinement: &Confinement) -> Result<(), (Step, Error)> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors, owned from here on.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err((Step::NetworkNamespace, Error::last_os_error()));
        }
        // SAFETY: both descriptors were just created and are not owned elsewhere.
        let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the child only makes system calls (confine, write, _exit): safe after fork in
        // a multi-threaded process.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err((Step::NetworkNamespace, Error::last_os_error()));
        }
        if pid == 0 {
            let report = match confine(confinement) {
                Ok(()) => [0u32, 0u32],
                Err((step, errno)) => [step as u32, errno as u32],
            };
            // SAFETY: writes the 8-byte report and leaves without running destructors.
            unsafe {
                libc::write(write_end.as_raw_fd(), report.as_ptr().cast(), 8);
                libc::_exit(0);
            }
        }
        drop(write_end);
        let mut report = [0u8; 8];
        let mut pipe = File::from(read_end);
        let read = pipe.read_exact(&mut report);
        let mut status = 0;
        // SAFETY: reaps the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        read.map_err(|error| (Step::NetworkNamespace, error))?;
        let step = u32::from_ne_bytes(report[..4].try_into().expect("four bytes"));
        let errno = u32::from_ne_bytes(report[4..].try_into().expect("four bytes"));
        if step == 0 { Ok(()) } else { Err((Step::from_code(step), Error::from_raw_os_error(errno as i32))) }
    }

    /// The strongest confinement this host allows, strongest first.
    fn choose_confinement(config: &SandboxConfig) -> Result<Confinement, SandboxError> {
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let drop_to = root.then_some(config.unprivileged_account);
        let step = |network_first, user_after, network_after| Confinement {
            network_namespace_first: network_first,
            drop_to,
            user_namespace_after: user_after,
            network_namespace_after: network_after,
        };
        let mut candidates = if root {
            vec![step(true, true, false), step(true, false, false), step(false, true, true)]
        } else {
            vec![step(false, true, true)]
        };
        if config.allow_network {
            candidates.push(step(false, false, false));
        }
        let mut first_failure = None;
        for candidate in candidates {
            match probe(&candidate) {
                Ok(()) => return Ok(candidate),
                Err(failure) => {
                    first_failure.get_or_insert(failure);
                }
            }
        }
        let (step, source) = first_failure.expect("at least one candidate");
        Err(match step {
            Step::DropPrivileges => SandboxError::DropPrivileges {
                uid: config.unprivileged_account.0,
                gid: config.unprivileged_account.1,
                source,
            },
            step => SandboxError::NoNetworkIsolation { step: step.describe(), source },
        })
    }

    pub(super) fn new(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        let interpreter = resolve_interpreter(&config.interpreter)?;
        let confinement = choose_confinement(&config)?;
        let sandbox = Sandbox { config, interpreter, confinement };
        let check = sandbox.run("import sys\nsys.exit(0)\n")?;
        if !check.outcome.passed() {
            return Err(SandboxError::InterpreterCheck {
                interpreter: sandbox.interpreter.clone(),
                outcome: check.outcome,
            });
        }
        Ok(sandbox)
    }

    fn scratch_directory(sandbox: &Sandbox) -> Result<tempfile::TempDir, SandboxError> {
        let parent = sandbox.config.scratch_parent.clone().unwrap_or_else(std::env::temp_dir);
        let scratch = tempfile::Builder::new()
            .prefix("evolora-sandbox-")
            .tempdir_in(parent)
            .map_err(SandboxError::Scratch)?;
        std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(SandboxError::Scratch)?;
        if let Some((uid, gid)) = sandbox.confinement.drop_to {
            std::os::unix::fs::chown(scratch.path(), Some(uid), Some(gid)).map_err(SandboxError::Scratch)?;
        }
        Ok(scratch)
    }

    pub(super) fn run(sandbox: &Sandbox, program: &str) -> Result<Execution, SandboxError> {
        let config = &sandbox.config;
        let scratch = scratch_directory(sandbox)?;
        let program_path = scratch.path().join("program.py");
        std::fs::write(&program_path, program).map_err(SandboxError::Scratch)?;
        // Unnamed files: no path the program could find, and no pipe to drain while it runs.
        let mut stdout = tempfile::tempfile().map_err(SandboxError::Output)?;
        let mut stderr = tempfile::tempfile().map_err(SandboxError::Output)?;

        let confinement = sandbox.confinement;
        let cpu = config.cpu_seconds.max(1);
        // The resource type differs between C libraries; the constants carry the right one.
        let limits = [
            (libc::RLIMIT_AS, config.memory_bytes, config.memory_bytes),
            (libc::RLIMIT_CPU, cpu, cpu + 1),
            (libc::RLIMIT_FSIZE, config.file_size_bytes, config.file_size_bytes),
            (libc::RLIMIT_NOFILE, config.open_files, config.open_files),
            (libc::RLIMIT_NPROC, config.processes, config.processes),
            (libc::RLIMIT_CORE, 0, 0),
        ];
        let mut command = Command::new(&sandbox.interpreter);
        // -I: ignore PYTHON* variables and user site-packages; -B: write no bytecode.
        command
            .args(["-I", "-B", "program.py"])
            .current_dir(scratch.path())
            .env_clear()
            .env("PATH", MINIMAL_PATH)
            .env("HOME", scratch.path())
            .env("TMPDIR", scratch.path())
            .stdin(Stdio::null())
            .stdout(stdout.try_clone().map_err(SandboxError::Output)?)
            .stderr(stderr.try_clone().map_err(SandboxError::Output)?)
            .process_group(0);
        // SAFETY: the closure runs between fork and exec and only makes system calls.
        unsafe {
            command.pre_exec(move || {
                confine(&confinement).map_err(|(_, errno)| Error::from_raw_os_error(errno))?;
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    // After the account switch, which clears it: die with the daemon.
                    || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0
                {
                    return Err(Error::last_os_error());
                }
                for (resource, soft, hard) in limits {
                    let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
                    if libc::setrlimit(resource, &limit) != 0 {
                        return Err(Error::last_os_error());
                    }
                }
                Ok(())
            });
        }

        let started = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|source| SandboxError::Spawn { interpreter: sandbox.interpreter.clone(), source })?;
        let pid = child.id() as libc::pid_t;
        let exited = wait_for_exit(pid, config.timeout).map_err(SandboxError::Wait);
        // The group is killed whether or not the program ended: its children go with it. The
        // leader is not reaped yet, so its group id cannot have been reused.
        // SAFETY: signals the child's own process group.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let status = child.wait().map_err(SandboxError::Wait)?;
        let seconds = started.elapsed().as_secs_f64();
        let timed_out = !exited?;

        let stdout_tail = read_tail(&mut stdout, config.output_tail_bytes).map_err(SandboxError::Output)?;
        let stderr_tail = read_tail(&mut stderr, config.output_tail_bytes).map_err(SandboxError::Output)?;
        let outcome = if timed_out {
            Outcome::TimedOut
        } else if let Some(signal) = status.signal() {
            match signal {
                libc::SIGXCPU => Outcome::LimitExceeded { limit: Limit::CpuTime, stderr_tail },
                libc::SIGXFSZ => Outcome::LimitExceeded { limit: Limit::FileSize, stderr_tail },
                signal => Outcome::Killed { signal },
            }
        } else {
            match status.code() {
                Some(0) => Outcome::Passed,
                _ if ran_out_of_memory(&stderr_tail) => {
                    Outcome::LimitExceeded { limit: Limit::Memory, stderr_tail }
                }
                code => Outcome::Failed { exit_code: code.unwrap_or(-1), stderr_tail },
            }
        };
        remove_scratch(scratch).map_err(SandboxError::Scratch)?;
        Ok(Execution { outcome, seconds, stdout_tail })
    }

    /// Waits until `pid` has exited, without reaping it; `false` when `timeout` passed first.
    fn wait_for_exit(pid: libc::pid_t, timeout: Duration) -> std::io::Result<bool> {
        let deadline = Instant::now() + timeout;
        // SAFETY: pidfd_open on our own child; the descriptor is owned from here on.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if pidfd >= 0 {
            // SAFETY: a fresh descriptor from pidfd_open.
            let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let mut poll = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                let millis = left.as_millis().min(i32::MAX as u128) as i32;
                // SAFETY: polls one valid descriptor.
                match unsafe { libc::poll(&mut poll, 1, millis) } {
                    1 => return Ok(true),
                    0 if Instant::now() >= deadline => return Ok(false),
                    0 => continue,
                    _ => {
                        let error = Error::last_os_error();
                        if error.kind() != ErrorKind::Interrupted {
                            return Err(error);
                        }
                    }
                }
            }
        }
        // Kernels before 5.3 have no pidfd: look without reaping, every few milliseconds.
        loop {
            // SAFETY: waitid fills a zeroed siginfo for our own child.
            let exited = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                if libc::waitid(
                    libc::P_PID,
                    pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                ) != 0
                {
                    return Err(Error::last_os_error());
                }
                info.si_pid() != 0
            };
            if exited {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Removes the scratch directory, first making writable again what the program locked.
    fn remove_scratch(scratch: tempfile::TempDir) -> std::io::Result<()> {
        let path = scratch.path().to_path_buf();
        match scratch.close() {
            Ok(()) => Ok(()),
            Err(_) => {
                unlock(&path);
                std::fs::remove_dir_all(&path)
            }
        }
    }

    fn unlock(dir: &Path) {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                    unlock(&entry.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_error_is_recognised_from_the_last_line() {
        assert!(ran_out_of_memory("Traceback (most recent call last):\n  File \"x\"\nMemoryError\n\n"));
        assert!(!ran_out_of_memory("MemoryError\nAssertionError\n"));
    }

    #[test]
    fn tail_keeps_the_end() {
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, b"0123456789").unwrap();
        assert_eq!(read_tail(&mut file, 4).unwrap(), "6789");
        assert_eq!(read_tail(&mut file, 40).unwrap(), "0123456789");
    }
}
