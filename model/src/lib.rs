//! Code2LoRA-Evo in burn.
//!
//! The flow inside this crate:
//!
//! ```text
//! snapshot, diffs ─encoder─▶ vectors ─hypernet::gru─▶ state ─hypernet::head─▶ (A, B) per type ─peft─▶ adapter directory
//! ```
//!
//! An [`encoder`] turns a diff or a repository snapshot into a fixed-size vector; the
//! [`hypernet::gru::CommitGru`] folds diff vectors into a hidden state; the
//! [`hypernet::head::Code2LoraHead`] turns that state into one (A, B) pair per projection
//! type; the [`peft`] writer lays those out as a PEFT adapter directory for a base model whose
//! shapes come from [`base`]. [`Hypernetwork`] ties the parts together.
//!
//! Where the weights come from: every module declares each tensor once (name, PyTorch shape,
//! initialisation) against an [`nn::ParamSource`]. A [`checkpoint`] reader yields a
//! [`nn::Weights`] map, which hands each tensor over shape-checked; an [`nn::Seeded`] source
//! draws the untrained model from a seed. [`meta`] says what a model is (architecture, step
//! policy, encoder) and [`fingerprint`] identifies its weights and arithmetic.
//!
//! [`train`] holds the differentiable twin of the hypernetwork, the loss through the frozen
//! LM and the optimiser: how a model is trained rather than served.
//!
//! [`nn`] holds the building blocks that are not specific to the hypernetwork (named
//! tensors, parameter sources, initialisation, PyTorch layers), so that another model family
//! can sit beside [`hypernet`] and reuse them. Nothing here knows about git, sockets or
//! storage: callers hand in text and vectors and get vectors and files back.

pub mod base;
pub mod checkpoint;
pub mod device;
pub mod encoder;
pub mod error;
pub mod files;
pub mod fingerprint;
pub mod floats;
pub mod hypernet;
pub mod lm;
pub mod meta;
pub mod module_type;
pub mod nn;
pub mod peft;
pub mod replay;
pub mod tokenizer;
pub mod train;
pub mod verify;
pub mod transformer;

pub use base::BaseModelShapes;
pub use device::select_device;
pub use error::ModelError;
pub use hypernet::config::HyperConfig;
pub use hypernet::{AdapterWeights, Hypernetwork};
pub use lm::LanguageModel;
pub use meta::{Architecture, ModelMeta, StepPolicy};
pub use module_type::ModuleType;
pub use verify::{VerifyReport, verify};
