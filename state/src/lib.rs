//! evolora's durable state: one sled database per daemon.
//!
//! Schema (trees and keys; every value is a versioned bincode-2 envelope, see [`records`]):
//!
//! | tree       | key                                   | value            |
//! |------------|---------------------------------------|------------------|
//! | `meta`     | `schema_version`                      | u32 big-endian   |
//! | `repos`    | repo key                              | [`RepoRecord`]   |
//! | `refs`     | repo key, 0x00, ref name              | [`RefState`]     |
//! | `adapters` | repo key, 0x00, sequence (u64 BE)     | [`AdapterRecord`]|
//! | `restore_points` | repo key, 0x00, ref name, 0x00, walked (u64 BE) | [`RefState`] |
//! | `issued_names` | repo key, 0x00, commit             | u32 big-endian: version names issued at that commit |
//!
//! Git is the event log: a [`RefState`] remembers only the last commit folded into its GRU
//! vector, so every write here is "the state after commit X", applied in one transaction and
//! flushed before it is acknowledged. Restore points are earlier states of a ref, each exact
//! for its own commit, kept so a rewritten history re-walks only what changed. Issued names
//! outlive their versions and their repository's registration: servers cache adapters by
//! name, so a name once handed out is never given to other weights.

mod error;
pub mod records;
mod store;

pub use error::StateError;
pub use records::{AdapterRecord, Folded, RefState, RepoRecord};
pub use store::{AdapterKey, SCHEMA_VERSION, StateStore, thin};
