//! What a model is beyond its tensors: architecture, encoder, step policy, fingerprint.
//! Checkpoint readers produce it and the hypernetwork carries it.

use serde::{Deserialize, Serialize};

/// Which commits step the GRU; stored with a checkpoint because a model only makes sense on
/// the kind of sequence it was trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepPolicy {
    /// Every first-parent commit.
    EveryCommit,
    /// Only commits that add or change test assertions (the released Evo checkpoint).
    Paper,
}

/// What a model is, beyond its tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// `code2lora-evo` or `code2lora-static`.
    pub architecture: String,
    /// Encoder id and version the model was trained with, e.g. `hashed-v1`.
    pub encoder: String,
    pub step_policy: StepPolicy,
    /// False for seeded initialisation: adapters carry a loud warning.
    pub trained: bool,
    /// sha256 identifying the weights; states built with another fingerprint are stale.
    pub fingerprint: String,
    /// Task chosen from a multi-task checkpoint (index into its table).
    pub task: usize,
}
