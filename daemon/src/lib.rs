//! The evolora daemon and its command-line client.
//!
//! Flow: a wake-up (hook → `notify`, or a client request) reaches [`server`], which parses it
//! with [`protocol`] and runs one of the [`ops`]. Ops queue jobs on the [`scheduler`]; the
//! [`engine`] (the only thread that touches the model) reads commits through [`git`], folds
//! them into the GRU state in evolora-state, asks [`triggers`] whether to regenerate, and
//! publishes adapters with [`publish`]. [`daemon`] owns the lifecycle; [`cli`] is the binary.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod git;
pub mod inputs;
pub mod offline;
pub mod ops;
pub mod parallel;
pub mod protocol;
pub mod publish;
pub mod rebuild;
pub mod repo_cache;
pub mod retention;
pub mod scheduler;
pub mod server;
pub mod shared;
pub mod triggers;
pub mod watcher;
