//! The hypernetwork's dimensions and their presets.

use serde::{Deserialize, Serialize};

use crate::{ModelError, ModuleType};

/// Dimensions of the hypernetwork. The base model's projection shapes are not here: they
/// come from [`crate::BaseModelShapes`], so one configuration can target several bases of the
/// same family only if their shapes agree (the head's output sizes depend on them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HyperConfig {
    /// Size of the encoder's vectors (snapshot and diff).
    pub input_dim: usize,
    /// GRU hidden size (equal to the head's input size).
    pub gru_hidden: usize,
    /// Head trunk width H.
    pub head_hidden: usize,
    /// LoRA rank r.
    pub rank: usize,
    /// LoRA alpha; the adapter's scaling is alpha / rank.
    pub alpha: f32,
    /// Projection types the head emits, sorted as in [`ModuleType::ALL`].
    pub module_types: Vec<ModuleType>,
    /// Multi-task revision: a [num_tasks, task_dim] table concatenated to the head input.
    pub num_tasks: usize,
    pub task_dim: usize,
}

impl HyperConfig {
    pub const PRESETS: &'static [&'static str] = &["paper", "compact", "tiny"];

    /// `paper`: the released checkpoints' sizes. `compact`: the daemon's untrained default,
    /// small enough to initialise in well under a second. `tiny`: for tests.
    pub fn preset(name: &str) -> Result<Self, ModelError> {
        let (gru_hidden, head_hidden) = match name {
            "paper" => (2048, 1024),
            "compact" => (256, 64),
            "tiny" => (16, 8),
            other => {
                return Err(ModelError::UnknownPreset(other.into(), Self::PRESETS.join(", ")));
            }
        };
        Ok(HyperConfig {
            input_dim: 2048,
            gru_hidden,
            head_hidden,
            rank: 16,
            alpha: 32.0,
            module_types: ModuleType::ALL.to_vec(),
            num_tasks: 0,
            task_dim: 0,
        })
    }

    pub fn head_input_dim(&self) -> usize {
        self.gru_hidden + if self.num_tasks > 0 { self.task_dim } else { 0 }
    }
}
