//! evolora's cluster mode: many git servers (edges), a pool of workers, states exactly once,
//! all on NATS JetStream. No protocol of evolora's own crosses machines: every exchange is a
//! JetStream stream, KV bucket or object store, named below.
//!
//! | what | JetStream object | key / subject | value |
//! |---|---|---|---|
//! | wake-ups | stream `<P>_WAKE`, work queue, newest only per subject | `<p>.wake.<rid>` | [`WakeUp`] (JSON) |
//! | ownership | KV `<p>_leases`, entries expire after the lease time | `<rid>` | holder's worker id |
//! | states | KV `<p>_states`, written by compare-and-set on the revision | `<rid>.<ref id>` | [`StateRecord`] (bincode envelope) |
//! | adapter versions | object store `<p>_adapters` (or an S3 bucket, [`ObjectsLocation`]), each name written once | `<rid>/<version>/<file>` | the version directory's files |
//! | newest tips | KV `<p>_tips` | `<rid>` | the last [`WakeUp`] (JSON), for lag |
//! | workers | KV `<p>_workers`, entries expire | `<worker id>` | [`WorkerBeat`] (JSON) |
//! | retention | KV `<p>_versions`, written by compare-and-set | `<rid>` | [`Versions`] (JSON): each version's pointer, pin, last hand-out |
//!
//! `<p>` is the configured prefix (`evolora`), `<rid>` a repository's cluster id
//! ([`names::repo_id`]: the edge's name and the hash in its repository key). Git stays the
//! event log: a wake-up names a repository, the refs it follows and their tips, and where a
//! worker fetches them; it carries no payload a worker could not recompute. Correctness does
//! not rest on delivery: a state advances only by a compare-and-set on the revision the
//! worker read, so a step is applied once even when two workers race or one dies mid-walk.
//!
//! This crate knows NATS and the records; it knows nothing of models, git or sled: the state
//! itself travels as the state crate's own bytes.

mod adapters;
mod blobs;
mod connect;
mod error;
pub mod local_s3;
pub mod local_server;
mod leases;
pub mod names;
mod records;
mod states;
mod status;
mod wakes;
mod versions;
mod workers;

pub use adapters::fetch_adapter_into;
pub use blobs::ObjectsLocation;
pub use connect::{Cluster, ClusterSettings};
pub use error::ClusterError;
pub use leases::Lease;
pub use records::{AdapterFile, AdapterPointer, RefTip, StateRecord, WakeUp, WorkerBeat};
pub use states::{Stored, Written};
pub use versions::{Pruned, VersionEntry, Versions};
pub use status::{Overview, RepoRow};
pub use wakes::{QueueDepth, Delivery, Keepalive, WakeQueue};
