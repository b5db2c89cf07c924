use serde::{Deserialize, Serialize};

use crate::ModelError;

/// The seven projection types Code2LoRA adapts, in the order the released checkpoints sort
/// them (alphabetically by PEFT module name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum ModuleType {
    #[serde(rename = "down_proj")]
    Down,
    #[serde(rename = "gate_proj")]
    Gate,
    #[serde(rename = "k_proj")]
    K,
    #[serde(rename = "o_proj")]
    O,
    #[serde(rename = "q_proj")]
    Q,
    #[serde(rename = "up_proj")]
    Up,
    #[serde(rename = "v_proj")]
    V,
}

impl ModuleType {
    pub const ALL: [ModuleType; 7] = [
        ModuleType::Down,
        ModuleType::Gate,
        ModuleType::K,
        ModuleType::O,
        ModuleType::Q,
        ModuleType::Up,
        ModuleType::V,
    ];

    /// The PEFT / Hugging Face module name (`q_proj`, ...).
    pub fn peft_name(self) -> &'static str {
        match self {
            ModuleType::Q => "q_proj",
            ModuleType::K => "k_proj",
            ModuleType::V => "v_proj",
            ModuleType::O => "o_proj",
            ModuleType::Gate => "gate_proj",
            ModuleType::Up => "up_proj",
            ModuleType::Down => "down_proj",
        }
    }

    /// `self_attn` or `mlp`: the parent module in Qwen2/Llama/Mistral layers.
    pub fn block(self) -> &'static str {
        match self {
            ModuleType::Q | ModuleType::K | ModuleType::V | ModuleType::O => "self_attn",
            ModuleType::Gate | ModuleType::Up | ModuleType::Down => "mlp",
        }
    }

    pub fn from_peft_name(name: &str) -> Option<ModuleType> {
        ModuleType::ALL.into_iter().find(|t| t.peft_name() == name)
    }
}

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
