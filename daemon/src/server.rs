//! The Unix-socket server: accepts clients, reads bounded lines, dispatches each request to
//! its op, writes one reply per request. `run` takes the listener and a shutdown future so
//! tests can drive it in-process.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use evolora_protocol::{ErrorCode, MAX_LINE, OpError, Reply, Request};

use crate::context::Daemon;
use crate::ops;

/// A client that sends nothing for this long is disconnected.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves until `shutdown` completes. Connections in flight finish their current request.
pub async fn run(listener: UnixListener, shutdown: impl Future<Output = ()>, daemon: Arc<Daemon>) {
    let max_clients = daemon.config.get().max_clients.max(1);
    let slots = Arc::new(Semaphore::new(max_clients));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let daemon = daemon.clone();
                match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tokio::spawn(async move {
                            serve_client(stream, daemon).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tokio::spawn(async move {
                            let err = OpError::new(ErrorCode::Busy, "too many clients; retry shortly");
                            let mut stream = stream;
                            let _ = stream.write_all(&Reply::<()>::error(serde_json::Value::Null, err).to_line()).await;
                        });
                    }
                }
            }
        }
    }
}

/// Reads one line of at most `MAX_LINE` bytes. Returns Ok(None) at end of stream; an
/// over-long line is consumed up to its newline and reported as `Err(())`.
async fn read_bounded_line<R: AsyncBufReadExt + Unpin>(reader: &mut R, buf: &mut Vec<u8>) -> std::io::Result<Option<Result<(), ()>>> {
    buf.clear();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buf.is_empty() && !too_long { None } else if too_long { Some(Err(())) } else { Some(Ok(())) });
        }
        let (chunk, found) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if !too_long {
            if buf.len() + chunk.len() > MAX_LINE {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let consumed = found.unwrap_or(available.len());
        reader.consume(consumed);
        if found.is_some() {
            return Ok(Some(if too_long { Err(()) } else { Ok(()) }));
        }
    }
}

fn same_user(stream: &UnixStream) -> bool {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    match stream.peer_cred() {
        Ok(cred) => cred.uid() == me || cred.uid() == 0,
        Err(_) => false,
    }
}

async fn serve_client(stream: UnixStream, daemon: Arc<Daemon>) {
    if !same_user(&stream) {
        let mut stream = stream;
        let err = OpError::new(ErrorCode::BadRequest, "permission denied: the daemon serves only its own user");
        let _ = stream.write_all(&Reply::<()>::error(serde_json::Value::Null, err).to_line()).await;
        return;
    }
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        let next = tokio::time::timeout(IDLE_TIMEOUT, read_bounded_line(&mut reader, &mut line)).await;
        let reply = match next {
            Err(_) => {
                debug!("idle client disconnected");
                return;
            }
            Ok(Err(_)) | Ok(Ok(None)) => return,
            Ok(Ok(Some(Err(())))) => {
                Reply::error(serde_json::Value::Null, OpError::new(ErrorCode::LineTooLong, format!("request lines are limited to {MAX_LINE} bytes")))
            }
            Ok(Ok(Some(Ok(())))) => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match Request::parse(&line) {
                    Err((id, err)) => Reply::error(id, err),
                    Ok(req) => {
                        let result = ops::dispatch(&daemon, req.op).await;
                        if matches!(&result, Err(e) if e.code == ErrorCode::Internal) {
                            daemon.metrics.error("request");
                        }
                        Reply { id: req.id, result }
                    }
                }
            }
        };
        if write.write_all(&reply.to_line()).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evolora_protocol::{Client, ClientError};
    use std::io::{BufRead, BufReader, Write};

    /// The server on a real socket in this process, with a state store but no model thread:
    /// requests that need no model are answered, and the shutdown future stops it.
    #[test]
    fn serves_typed_requests_in_process_and_stops_on_its_shutdown_future() {
        let tmp = tempfile::tempdir().unwrap();
        let config = crate::config::Config { state_dir: tmp.path().join("state"), socket: tmp.path().join("d.sock"), ..Default::default() };
        std::fs::create_dir_all(&config.state_dir).unwrap();
        let store = evolora_state::StateStore::open(&config.db_dir()).unwrap();
        let daemon = Daemon::new(config.clone(), store);
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = {
            let _guard = runtime.enter();
            UnixListener::bind(&config.socket).unwrap()
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = runtime.spawn(run(listener, async move { let _ = stop_rx.await; }, daemon.clone()));

        let client = Client::new(&config.socket);
        let pong = client.ping().unwrap();
        assert_eq!((pong.pong, pong.pid, pong.model_loaded), (true, std::process::id(), false));
        let status = client.status(None).unwrap();
        assert!(status.repos.is_empty() && status.model.is_none());
        match client.notify(tmp.path()) {
            Err(ClientError::Refused(e)) => assert_eq!(e.code, ErrorCode::NotARepository, "{e}"),
            other => panic!("expected a refusal, got {other:?}"),
        }

        // Raw lines: an unknown op and an over-long line get coded errors, and the
        // connection goes on serving.
        let mut raw = std::os::unix::net::UnixStream::connect(&config.socket).unwrap();
        raw.write_all(b"{\"id\":1,\"op\":\"frobnicate\"}\n").unwrap();
        raw.write_all(&vec![b'x'; MAX_LINE + 10]).unwrap();
        raw.write_all(b"\n{\"id\":2,\"op\":\"ping\"}\n").unwrap();
        let mut lines = BufReader::new(raw).lines();
        let mut next = || serde_json::from_str::<serde_json::Value>(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(next()["error"]["code"], "unknown_op");
        assert_eq!(next()["error"]["code"], "line_too_long");
        let pong = next();
        assert_eq!((pong["id"].as_i64(), pong["ok"].as_bool()), (Some(2), Some(true)));

        stop_tx.send(()).unwrap();
        runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), server).await }).expect("the server stops on its shutdown future").unwrap();
    }
}
