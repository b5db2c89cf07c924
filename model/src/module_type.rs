//! The projections of a base model that an adapter targets.

use serde::{Deserialize, Serialize};

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

    /// Position in [`ModuleType::ALL`] (the declaration order), for per-type arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_peft_name(name: &str) -> Option<ModuleType> {
        ModuleType::ALL.into_iter().find(|t| t.peft_name() == name)
    }
}
