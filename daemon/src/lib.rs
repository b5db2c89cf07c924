//! The evolora daemon and its command-line client.
//!
//! Flow of one commit: a wake-up (a hook's `notify` through [`server`] and [`ops`], or the
//! [`watcher`]) queues the repository on the [`scheduler`]. The model thread ([`job`]) takes
//! it: reads the new commits through [`git`], folds them into the ref's GRU state in
//! evolora-state, and publishes adapters through [`adapters`], which also decides what stays
//! on disk. [`daemon`] owns the lifecycle and [`signals`]; [`context`] holds what the parts
//! share; [`cluster`] makes the daemon an edge or a worker of a JetStream cluster; [`cli`] is the binary; [`rebuild`], [`offline`] and [`encode`] run without a daemon.

pub mod adapters;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod context;
pub mod daemon;
pub mod encode;
pub mod git;
pub mod job;
pub mod measure;
pub mod metrics;
pub mod metrics_http;
pub mod offline;
pub mod ops;
pub mod parallel;
pub mod progress;
pub mod push;
pub mod rebuild;
pub mod repo_cache;
pub mod scheduler;
pub mod server;
pub mod signals;
pub mod train;
pub mod watcher;
