//! Test harness: real git repositories, the real `evolora` binary, its real socket.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_evolora");

/// A daemon process with its own state directory and socket.
pub struct Daemon {
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    extra: Vec<String>,
    /// Start with the tests' small model (`--preset tiny --base qwen2.5-coder-0.5b`) unless
    /// the configuration chooses its own.
    small_model: bool,
    /// RLIMIT_FSIZE for the daemon: writes past it fail as on a full disk.
    pub file_size_limit: Option<u64>,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `evolora daemon` on the tiny model preset and the Qwen2.5-Coder-0.5B shapes.
    pub fn start(root: &Path) -> Daemon {
        Self::start_with(root, &[])
    }

    /// Starts the daemon with `<root>/evolora.toml` holding `config` (see
    /// [`Daemon::reconfigure`]).
    pub fn start_with_config(root: &Path, config: &str) -> Daemon {
        std::fs::create_dir_all(root).unwrap();
        let file = root.join("evolora.toml");
        std::fs::write(&file, config).unwrap();
        Self::start_with(root, &["--config", file.to_str().unwrap()])
    }

    pub fn start_with(root: &Path, extra: &[&str]) -> Daemon {
        let mut d = Daemon {
            state_dir: root.join("state"),
            socket: root.join("run/evolora.sock"),
            log: root.join("daemon.log"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            small_model: true,
            file_size_limit: None,
            child: None,
        };
        d.spawn();
        d
    }

    /// A daemon whose model comes entirely from `config` (no test defaults).
    pub fn start_configured(root: &Path, config: &str) -> Daemon {
        std::fs::create_dir_all(root).unwrap();
        let file = root.join("evolora.toml");
        std::fs::write(&file, config).unwrap();
        let mut d = Daemon {
            state_dir: root.join("state"),
            socket: root.join("run/evolora.sock"),
            log: root.join("daemon.log"),
            extra: vec!["--config".into(), file.display().to_string()],
            small_model: false,
            file_size_limit: None,
            child: None,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = Command::new(BIN);
        if let Some(limit) = self.file_size_limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches only the child.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit { rlim_cur: limit, rlim_max: limit };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd
            .arg("daemon")
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--socket")
            .arg(&self.socket)
            .args(if self.small_model { &["--preset", "tiny", "--base", "qwen2.5-coder-0.5b"][..] } else { &[] })
            .args(&self.extra)
            .env("RUST_LOG", "info,sled=warn")
            .env_remove("EVOLORA_SOCKET")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start evolora daemon");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(reply) = self.try_request(&serde_json::json!({"op": "ping"}))
                && reply["ok"] == true
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon exited during start ({status}):\n{}", self.log_text());
            }
            assert!(Instant::now() < deadline, "daemon did not answer within 60 s:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A repository's version directories on disk (no `current` link, no temporaries).
    pub fn versions_on_disk(&self, key: &str) -> std::collections::BTreeSet<String> {
        std::fs::read_dir(self.state_dir.join("adapters").join(key))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.') && n != "current")
            .collect()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal and waits (bounded) for the process to exit.
    pub fn signal_and_wait(&mut self, signal: i32, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("daemon did not exit within {within:?} of signal {signal}:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGHUP, then waits until the daemon logs that it reloaded its configuration.
    pub fn reload(&self) {
        let count = |d: &Daemon| d.log_text().matches("configuration reloaded").count();
        let before = count(self);
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid() as i32, libc::SIGHUP) };
        self.wait_for(Duration::from_secs(10), "the configuration reload", || (count(self) > before).then_some(()));
    }

    /// Rewrites the config file the daemon was started with, then waits for its reload.
    pub fn reconfigure(&self, config: &str) {
        let file = self.extra.iter().skip_while(|a| *a != "--config").nth(1).expect("started with --config");
        std::fs::write(file, config).unwrap();
        self.reload();
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the daemon first");
        self.spawn();
    }

    pub fn try_request(&self, req: &Value) -> std::io::Result<Value> {
        let stream = UnixStream::connect(&self.socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut line = serde_json::to_vec(req).unwrap();
        line.push(b'\n');
        (&stream).write_all(&line)?;
        let mut reply = String::new();
        BufReader::new(&stream).read_line(&mut reply)?;
        serde_json::from_str(&reply).map_err(std::io::Error::other)
    }

    pub fn request(&self, req: Value) -> Value {
        self.try_request(&req).unwrap_or_else(|e| panic!("request {req} failed: {e}\n{}", self.log_text()))
    }

    /// Runs the CLI against this daemon's socket.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN).args(args).env("EVOLORA_SOCKET", &self.socket).output().expect("run evolora")
    }

    /// `evolora register` (hooks included) and a wait for the cold-start adapter at HEAD.
    pub fn register_and_wait(&self, repo: &Repo) {
        let out = self.cli(&["register", repo.path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let head = repo.head();
        self.wait_for(Duration::from_secs(60), "the cold-start adapter", || {
            (self.repo_status(&repo.path)["refs"][0]["adapter_commit"] == head.as_str()).then_some(())
        });
    }

    /// `status --json` for one repository.
    pub fn repo_status(&self, repo: &Path) -> Value {
        let reply = self.request(serde_json::json!({"op": "status", "repo": repo}));
        assert_eq!(reply["ok"], true, "{reply}");
        reply["repos"][0].clone()
    }

    /// Waits until `refname`'s state reaches `tip`, with an adapter there and nothing
    /// pending; returns that ref's status.
    pub fn settled(&self, repo: &Path, refname: &str, tip: &str) -> Value {
        self.wait_for(Duration::from_secs(60), &format!("{refname} to reach {tip}"), || {
            let s = self.repo_status(repo);
            let r = s["refs"].as_array()?.iter().find(|r| r["ref"] == refname)?.clone();
            (r["last_commit"] == tip && r["adapter_commit"] == tip && s["pending"] == false).then_some(r)
        })
    }

    /// Polls `f` until it returns Some, failing after `within`.
    pub fn wait_for<T>(&self, within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The state digest a fresh daemon reaches registering a clone of `source` at `origin` and
/// then walking on to `tip`: the whole first-parent history from the root, what a daemon
/// under test must have reached by whatever path. Works in `<root>/reference-<tip>`.
pub fn reference_digest(root: &Path, source: &Repo, origin: &str, tip: &str) -> String {
    let dir = root.join(format!("reference-{}", &tip[..8]));
    std::fs::create_dir_all(&dir).unwrap();
    let clone = source.clone_to(&dir.join("repo"));
    clone.git(&["checkout", "-q", "-B", "main", origin]);
    let daemon = Daemon::start(&dir);
    let out = daemon.cli(&["register", "--no-hooks", clone.path.to_str().unwrap()]);
    assert!(out.status.success());
    daemon.settled(&clone.path, "refs/heads/main", origin);
    clone.git(&["reset", "-q", "--hard", tip]);
    daemon.request(serde_json::json!({"op": "notify", "repo": clone.path}));
    let r = daemon.settled(&clone.path, "refs/heads/main", tip);
    let walked: u64 = clone.git(&["rev-list", "--first-parent", "--count", tip]).parse().unwrap();
    assert_eq!(r["steps"], walked, "the reference walked every first-parent commit from the root");
    r["state_sha256"].as_str().unwrap().to_owned()
}

/// A work-tree repository driven with the git CLI, isolated from the user's git config.
pub struct Repo {
    pub path: PathBuf,
}

pub fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Repo {
    pub fn init(path: &Path) -> Repo {
        std::fs::create_dir_all(path).unwrap();
        git_in(path, &["init", "-q", "-b", "main"]);
        Repo { path: std::fs::canonicalize(path).unwrap() }
    }

    /// A new repository whose one commit holds one file.
    pub fn with_file(path: &Path, rel: &str, text: &str) -> Repo {
        let repo = Repo::init(path);
        repo.write(rel, text);
        repo.commit("initial");
        repo
    }

    pub fn git(&self, args: &[&str]) -> String {
        git_in(&self.path, args)
    }

    /// `git clone` of this repository into `dest`, with a work tree.
    pub fn clone_to(&self, dest: &Path) -> Repo {
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        git_in(dest.parent().unwrap(), &["clone", "-q", self.path.to_str().unwrap(), dest.to_str().unwrap()]);
        Repo { path: std::fs::canonicalize(dest).unwrap() }
    }

    /// `git clone --bare` of this repository into `dest`; returns its canonical path.
    pub fn bare_clone_to(&self, dest: &Path) -> PathBuf {
        git_in(dest.parent().unwrap(), &["clone", "-q", "--bare", self.path.to_str().unwrap(), dest.to_str().unwrap()]);
        std::fs::canonicalize(dest).unwrap()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Stages everything and commits; returns the new HEAD.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.head()
    }

    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }
}

impl Repo {
    /// Appends `n` first-parent commits to `main` in one `git fast-import` run (fast enough
    /// for hundreds of commits). Each touches a Python module, a test file every third commit
    /// and a dependency manifest every tenth. Returns the new tip.
    pub fn append_history(&self, n: usize) -> String {
        let parent = self.head();
        let mut stream = String::new();
        for i in 0..n {
            let module = format!("def f_{i}(x):\n    return x * {i} + helper_{}(x)\n", i % 7);
            let mut files = format!("M 100644 inline pkg/mod_{}.py\ndata {}\n{module}\n", i % 10, module.len());
            if i % 3 == 0 {
                let t = format!("from pkg.mod_{m} import f_{i}\n\ndef test_f_{i}():\n    assert f_{i}(1) == {i}\n", m = i % 10);
                files += &format!("M 100644 inline tests/test_mod_{}.py\ndata {}\n{t}\n", i % 10, t.len());
            }
            if i % 10 == 9 {
                let r = format!("requests=={}.0\n", i);
                files += &format!("M 100644 inline requirements.txt\ndata {}\n{r}\n", r.len());
            }
            let msg = format!("commit {i}");
            let from = if i == 0 { format!("from {parent}\n") } else { String::new() };
            stream += &format!(
                "commit refs/heads/main\nmark :{}\ncommitter Test <test@example.invalid> {} +0000\ndata {}\n{msg}\n{from}{files}\n",
                i + 1,
                1_700_000_000 + i,
                msg.len()
            );
        }
        let mut child = Command::new("git")
            .arg("-C")
            .arg(&self.path)
            .args(["fast-import", "--quiet"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stream.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "fast-import failed");
        self.git(&["reset", "-q", "--hard", "main"]);
        self.head()
    }
}

/// A small deterministic generator for test schedules (seed printed by the caller).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// Checks a published adapter directory is complete: config parses, safetensors loads with
/// the expected number of tensors and finite values. Returns its evolora.json.
pub fn assert_complete_adapter(dir: &Path, tensors: usize) -> Value {
    let cfg: Value = serde_json::from_slice(&std::fs::read(dir.join("adapter_config.json")).unwrap_or_else(|e| panic!("{}: {e}", dir.display())))
        .unwrap_or_else(|e| panic!("{}: adapter_config.json: {e}", dir.display()));
    assert_eq!(cfg["peft_type"], "LORA", "{}", dir.display());
    let bytes = std::fs::read(dir.join("adapter_model.safetensors")).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    assert_eq!(st.len(), tensors, "{}", dir.display());
    serde_json::from_slice(&std::fs::read(dir.join("evolora.json")).unwrap()).unwrap()
}
