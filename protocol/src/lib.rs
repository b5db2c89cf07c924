//! The daemon's socket protocol, shared by the server, the `evolora` CLI and the hooks'
//! `evolora-notify`: one JSON object per line in ([`Request`]), one per line out ([`Reply`]).
//!
//! Request: `{"id": <any JSON>, "op": "<name>", ...arguments}`.
//! Reply: `{"id": <same>, "ok": true, ...fields}` or
//! `{"id": <same>, "ok": false, "error": {"code": "<code>", "message": "<text>"}}`.
//!
//! [`request`] and [`reply`] define the messages and their framing with no I/O; [`client`]
//! is the blocking client; [`socket`] says where the daemon listens by default.

pub mod client;
pub mod reply;
pub mod request;
pub mod socket;

pub use client::{Client, ClientError};
pub use reply::{ErrorCode, OpError, Reply, ReplyBody};
pub use request::{MAX_LINE, Op, Request};
pub use socket::default_socket;
