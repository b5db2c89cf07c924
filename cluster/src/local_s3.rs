//! A local S3-compatible server for the tests: moto's `moto_server` (PyPI `moto[server]`,
//! which scripts/install-build-deps.sh installs), keeping everything in memory, on a free
//! port of 127.0.0.1. The binary is `$EVOLORA_MOTO_SERVER` or `moto_server` on the PATH. moto
//! takes any credentials and does not check signatures.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct LocalS3 {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

/// The moto_server binary to run.
pub fn binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("EVOLORA_MOTO_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("moto_server"))
        .find(|p| p.is_file())
        .ok_or_else(|| "moto_server not found: run scripts/install-build-deps.sh (PyPI moto[server]) or set EVOLORA_MOTO_SERVER".to_owned())
}

impl LocalS3 {
    /// Starts a server logging to `dir/moto.log`, and returns once it answers requests.
    pub fn start(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let binary = binary()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| format!("no free port: {e}"))?.port();
        let log = dir.join("moto.log");
        let log_file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| format!("{}: {e}", log.display()))?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let mut server = LocalS3 { child: Some(child), port, log };
        // Python takes a moment to import moto before it listens.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if server.request("GET", "/").is_ok_and(|status| status == 200) {
                return Ok(server);
            }
            if let Some(Ok(Some(status))) = server.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!("moto_server exited with {status}; see {}", server.log.display()));
            }
            if Instant::now() > deadline {
                return Err(format!("moto_server not answering after 30 s; see {}", server.log.display()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URL to give as the S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket`; object_store has no call for it.
    pub fn create_bucket(&self, bucket: &str) -> Result<(), String> {
        match self.request("PUT", &format!("/{bucket}")) {
            Ok(200) => Ok(()),
            Ok(status) => Err(format!("creating bucket {bucket}: HTTP {status}; see {}", self.log.display())),
            Err(e) => Err(format!("creating bucket {bucket}: {e}")),
        }
    }

    /// One HTTP/1.1 request without a body; returns the status code.
    fn request(&self, method: &str, path: &str) -> std::io::Result<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        // An Authorization header in SigV4's shape, so moto files the request under its
        // default account like the signed requests that follow.
        let auth = "AWS4-HMAC-SHA256 Credential=evolora-test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";
        write!(stream, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: {auth}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", self.port)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let status_line = response.split(|&b| b == b'\r').next().unwrap_or_default();
        std::str::from_utf8(status_line)
            .ok()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response"))
    }

    /// SIGKILL; moto keeps nothing, so every bucket goes with it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for LocalS3 {
    fn drop(&mut self) {
        self.kill();
    }
}
