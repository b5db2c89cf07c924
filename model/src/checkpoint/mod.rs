//! Checkpoints: evolora's `.safetensors` and the released PyTorch `.pt` files.
//!
//! Tensor names are the released PyTorch state-dict keys prefixed `gru.` (Evo `gru_state`)
//! or `head.` (Evo `head_state`, Static `state_dict`), in PyTorch layout ([out, in] Linear
//! weights, GRU gates packed (r, z, n)). Each format's reader ([`safetensors`],
//! [`pytorch`]) returns the tensors and what the file says about them; this module infers
//! the dimensions and assembles the [`ModelMeta`].

mod pytorch;
mod safetensors;

use std::path::Path;

pub use self::safetensors::save_safetensors;
use crate::meta::{ModelMeta, StepPolicy};
use crate::nn::Weights;
use crate::{BaseModelShapes, HyperConfig, ModelError, ModuleType};

/// A checkpoint read from disk, before it is turned into a model.
pub struct LoadedCheckpoint {
    pub config: HyperConfig,
    pub base: Option<BaseModelShapes>,
    pub meta: ModelMeta,
    pub weights: Weights,
}

/// What a format reader found: the tensors, and what the file says about them (with the
/// format's defaults where it says nothing).
pub(crate) struct RawCheckpoint {
    pub weights: Weights,
    pub fingerprint: String,
    /// LoRA alpha, where the file records it.
    pub alpha: Option<f32>,
    pub encoder: String,
    pub step_policy: StepPolicy,
    pub trained: bool,
}

/// LoRA alpha of checkpoints that do not record one: the paper's.
const DEFAULT_ALPHA: f32 = 32.0;

/// Reads a checkpoint: `.safetensors` (evolora's flat names) or `.pt`/`.pth` (the released
/// PyTorch layouts). Dimensions come from the tensors' shapes and the base model; metadata,
/// where present, supplies alpha, encoder and step policy.
pub fn load(path: &Path, base: &BaseModelShapes) -> Result<LoadedCheckpoint, ModelError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "pt" | "pth" | "bin" => assemble(path, pytorch::read(path)?, base),
        _ => load_safetensors(path, base),
    }
}

/// Reads an evolora safetensors checkpoint (any float dtype; converted to f32).
pub fn load_safetensors(path: &Path, base: &BaseModelShapes) -> Result<LoadedCheckpoint, ModelError> {
    assemble(path, safetensors::read(path)?, base)
}

fn assemble(path: &Path, raw: RawCheckpoint, base: &BaseModelShapes) -> Result<LoadedCheckpoint, ModelError> {
    let config = infer_config(&raw.weights, base, raw.alpha.unwrap_or(DEFAULT_ALPHA)).map_err(|e| match e {
        ModelError::Checkpoint { reason, .. } => ModelError::Checkpoint { path: path.to_path_buf(), reason },
        other => other,
    })?;
    let meta = ModelMeta {
        architecture: architecture_of(&raw.weights).into(),
        encoder: raw.encoder,
        step_policy: raw.step_policy,
        trained: raw.trained,
        fingerprint: raw.fingerprint,
        task: 0,
    };
    Ok(LoadedCheckpoint { config, base: Some(base.clone()), meta, weights: raw.weights })
}

fn architecture_of(weights: &Weights) -> &'static str {
    if weights.names().any(|n| n.starts_with("gru.")) { "code2lora-evo" } else { "code2lora-static" }
}

/// Reads the hypernetwork's dimensions off its tensors. The rank follows from
/// `heads_A.<t>.weight` rows ÷ the base model's in_features for that type, so a checkpoint
/// made for another base model is refused here, naming the tensor.
pub fn infer_config(weights: &Weights, base: &BaseModelShapes, alpha: f32) -> Result<HyperConfig, ModelError> {
    let shape = |name: &str| weights.get(name).map(|t| t.shape.clone()).ok_or_else(|| ModelError::MissingTensor(name.into()));
    let trunk = shape("head.trunk.0.weight")?;
    if trunk.len() != 2 {
        return Err(ModelError::ShapeMismatch { name: "head.trunk.0.weight".into(), found: trunk, expected: vec![0, 0] });
    }
    let (head_hidden, head_in) = (trunk[0], trunk[1]);
    let mut module_types: Vec<ModuleType> = weights
        .names()
        .filter_map(|n| n.strip_prefix("head.heads_A.")?.strip_suffix(".weight"))
        .filter_map(ModuleType::from_peft_name)
        .collect();
    module_types.sort();
    let Some(&first) = module_types.first() else {
        return Err(ModelError::MissingTensor("head.heads_A.<type>.weight".into()));
    };
    let first_name = format!("head.heads_A.{}.weight", first.peft_name());
    let rows = shape(&first_name)?[0];
    let (in_f, _) = base.in_out(first);
    if in_f == 0 || rows % in_f != 0 {
        return Err(ModelError::Checkpoint {
            path: "<checkpoint>".into(),
            reason: format!("`{first_name}` has {rows} rows, not a multiple of {in_f} (in_features of {} in {}): the checkpoint was made for another base model", first.peft_name(), base.name),
        });
    }
    let rank = rows / in_f;
    let (num_tasks, task_dim) = match weights.get("head.task_embedding.weight") {
        Some(t) if t.shape.len() == 2 => (t.shape[0], t.shape[1]),
        _ => (0, 0),
    };
    let (input_dim, gru_hidden) = if weights.contains("gru.diff_proj.0.weight") {
        let d = shape("gru.diff_proj.0.weight")?;
        (d[1], d[0])
    } else {
        (head_in - task_dim, head_in - task_dim)
    };
    Ok(HyperConfig { input_dim, gru_hidden, head_hidden, rank, alpha, module_types, num_tasks, task_dim })
}
