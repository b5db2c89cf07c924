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

use crate::ops;
use crate::protocol::{self, ErrorCode, MAX_LINE, OpError};
use crate::shared::Shared;

/// A client that sends nothing for this long is disconnected.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves until `shutdown` completes. Connections in flight finish their current request.
pub async fn run(listener: UnixListener, shutdown: impl Future<Output = ()>, shared: Arc<Shared>) {
    let max_clients = shared.config().max_clients.max(1);
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
                let shared = shared.clone();
                match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tokio::spawn(async move {
                            serve_client(stream, shared).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tokio::spawn(async move {
                            let err = OpError::new(ErrorCode::Busy, "too many clients; retry shortly");
                            let mut stream = stream;
                            let _ = stream.write_all(&protocol::encode_line(&protocol::error_reply(&serde_json::Value::Null, &err))).await;
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

async fn serve_client(stream: UnixStream, shared: Arc<Shared>) {
    if !same_user(&stream) {
        let mut stream = stream;
        let err = OpError::new(ErrorCode::BadRequest, "permission denied: the daemon serves only its own user");
        let _ = stream.write_all(&protocol::encode_line(&protocol::error_reply(&serde_json::Value::Null, &err))).await;
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
            Ok(Ok(Some(Err(())))) => protocol::error_reply(
                &serde_json::Value::Null,
                &OpError::new(ErrorCode::LineTooLong, format!("request lines are limited to {MAX_LINE} bytes")),
            ),
            Ok(Ok(Some(Ok(())))) => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match protocol::parse_request(&line) {
                    Err((id, err)) => protocol::error_reply(&id, &err),
                    Ok(req) => match ops::dispatch(&shared, req.op).await {
                        Ok(fields) => protocol::ok_reply(&req.id, fields),
                        Err(err) => protocol::error_reply(&req.id, &err),
                    },
                }
            }
        };
        if write.write_all(&protocol::encode_line(&reply)).await.is_err() {
            return;
        }
    }
}
