//! Qwen-family transformers (Qwen2, Qwen3) from Hugging Face model directories: the
//! decoder ([`qwen`]), its configuration ([`config`]), rotary positions ([`rope`]), the
//! key/value cache ([`cache`]) and reading the directory's weights ([`hf`]). The same
//! module serves the Qwen3-Embedding encoder (hidden states) and the base code LM (logits).

pub mod cache;
pub mod config;
pub mod generate;
pub mod hf;
pub mod lora;
pub mod qwen;
pub mod rope;

use std::path::Path;

use burn::tensor::Device;

pub use cache::KvCache;
pub use config::{Family, QwenConfig};
pub use generate::{Generated, Greedy, greedy, greedy_until};
pub use lora::Lora;
pub use qwen::{Head, Input, Qwen};

use crate::ModelError;

impl Qwen {
    /// Loads a Hugging Face directory (`config.json` and its safetensors). Every tensor the
    /// architecture declares must be there with its shape, and every tensor there must be
    /// used, so a checkpoint of another shape or family is refused naming the tensor.
    pub fn load(dir: &Path, head: Head, device: &Device) -> Result<Qwen, ModelError> {
        let config_path = dir.join(hf::CONFIG);
        if !config_path.is_file() {
            return Err(ModelError::ModelDir { dir: dir.to_path_buf(), reason: format!("no {}", hf::CONFIG) });
        }
        let config = QwenConfig::from_file(&config_path)?;
        let mut weights = hf::read_weights(dir)?;
        let model = Qwen::new(&config, head, &mut weights, device)?;
        // Older checkpoints store RoPE frequencies (recomputed here); a tied head may be
        // saved anyway; a bare model loaded from a causal-LM checkpoint leaves its head.
        let ignorable = |name: &str| name.ends_with("rotary_emb.inv_freq") || name == "lm_head.weight";
        if let Some(extra) = weights.names().find(|n| !ignorable(n)) {
            let reason = format!("tensor `{extra}` is not part of a {:?} model with this config.json", config.family);
            return Err(ModelError::ModelDir { dir: dir.to_path_buf(), reason });
        }
        Ok(model)
    }
}
