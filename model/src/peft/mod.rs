//! PEFT LoRA adapter directories, the format vLLM, SGLang, LoRAX, Hugging Face PEFT and
//! llama.cpp's converter load: [`write`] lays out the hypernetwork's adapters, [`read`] loads
//! any LoRA directory the way those loaders do and says by name what they would refuse or
//! silently ignore.
//!
//! Layout: `adapter_config.json` (`r`, `lora_alpha`, `target_modules`, ...) and
//! `adapter_model.safetensors` with keys
//! `base_model.model.model.layers.{i}.{self_attn|mlp}.{type}.lora_{A,B}.weight`, A [r, in] and
//! B [out, r], metadata format=pt. The daemon adds `evolora.json` beside them; on request
//! [`gguf`] adds `adapter_model.gguf`, the same adapter for llama.cpp.

pub mod gguf;
pub mod read;
pub mod write;

pub use gguf::{GGUF_FILE, gguf_tensor_name, write_gguf};
pub use read::{PeftAdapter, PeftConfig};
pub use write::{AdapterDirWriter, AdapterDtype, Formats, TEMP_PREFIX, adapter_config, write_adapter_dir, write_adapter_dir_with};

use crate::ModuleType;

pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

/// The safetensors key of one factor in one layer.
pub fn tensor_key(layer: usize, module: ModuleType, factor: char) -> String {
    format!("base_model.model.model.layers.{layer}.{}.{}.lora_{factor}.weight", module.block(), module.peft_name())
}
