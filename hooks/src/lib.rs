//! How commits reach the daemon: git hook scripts, their installer, and the small
//! `evolora-notify` binary the hooks run (it speaks the socket protocol through
//! `evolora-protocol`'s client).
//!
//! Hooks are wake-ups, never payloads: the daemon re-reads refs from git on every wake-up,
//! so a lost or duplicated hook call costs nothing but latency.

pub mod install;
pub mod script;

pub use install::{HookError, InstallReport, install, status, uninstall};
