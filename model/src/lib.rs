//! Code2LoRA-Evo in burn.
//!
//! The flow inside this crate: an [`encoder`] turns a diff or a repository snapshot into a
//! fixed-size vector; the [`gru::CommitGru`] folds diff vectors into a hidden state; the
//! [`head::Code2LoraHead`] turns that state into one (A, B) pair per projection type; the
//! [`peft`] writer lays those out as a PEFT adapter directory for a base model whose shapes
//! come from [`base`]. [`Hypernetwork`] ties the parts together. Nothing here knows about
//! git, sockets or storage: callers hand in text and vectors and get vectors and files back.

pub mod base;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod encoder;
pub mod error;
pub mod gru;
pub mod head;
pub mod hypernet;
pub mod init;
pub mod peft;
pub mod replay;
mod pytorch;
mod tensor_io;
pub mod weights;

pub use base::BaseModelShapes;
pub use config::{HyperConfig, ModuleType};
pub use device::select_device;
pub use error::ModelError;
pub use hypernet::{AdapterWeights, Hypernetwork};
