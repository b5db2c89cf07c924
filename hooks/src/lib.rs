//! How commits reach the daemon: git hook scripts, their installer, and the small client
//! the hooks (and the CLI) use to talk to the daemon's socket.
//!
//! Hooks are wake-ups, never payloads: the daemon re-reads refs from git on every wake-up,
//! so a lost or duplicated hook call costs nothing but latency.

pub mod client;
pub mod install;
pub mod script;

pub use client::{ClientError, default_socket, notify, notify_and_forget, request};
pub use install::{HookError, InstallReport, install, status, uninstall};
