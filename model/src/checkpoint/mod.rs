//! Checkpoints: evolora's `.safetensors` and the released PyTorch `.pt` files.
//!
//! Tensor names are the released PyTorch state-dict keys prefixed `gru.` (Evo `gru_state`)
//! or `head.` (Evo `head_state`, Static `state_dict`), in PyTorch layout ([out, in] Linear
//! weights, GRU gates packed (r, z, n)). Each format's reader (`safetensors.rs`,
//! `pytorch.rs`) returns the tensors and what the file says about them; this module infers
//! the dimensions and assembles the [`ModelMeta`].

mod pt_write;
mod pytorch;
mod raw;
mod safetensors;

use std::path::Path;

use self::raw::RawCheckpoint;
pub use self::pt_write::save_pt;
pub use self::safetensors::save_safetensors;
use crate::meta::{Architecture, ModelMeta};
use crate::nn::Weights;
use crate::{BaseModelShapes, HyperConfig, ModelError, ModuleType};

/// A checkpoint read from disk, before it is turned into a model.
pub struct LoadedCheckpoint {
    pub config: HyperConfig,
    pub base: Option<BaseModelShapes>,
    pub meta: ModelMeta,
    pub weights: Weights,
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
    let architecture = architecture_of(&raw.weights);
    if let Some(claimed) = raw.architecture.filter(|&claimed| claimed != architecture) {
        return Err(ModelError::ArchitectureMismatch { path: path.to_path_buf(), claimed: claimed.as_str(), found: architecture.as_str() });
    }
    let meta = ModelMeta {
        architecture,
        encoder: raw.encoder,
        step_policy: raw.step_policy,
        trained: raw.trained,
        fingerprint: raw.fingerprint,
        task: 0,
    };
    Ok(LoadedCheckpoint { config, base: Some(base.clone()), meta, weights: raw.weights })
}

/// Evo checkpoints are the ones with GRU tensors.
fn architecture_of(weights: &Weights) -> Architecture {
    if weights.names().any(|n| n.starts_with("gru.")) { Architecture::Evo } else { Architecture::Static }
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

#[cfg(test)]
mod tests {
    use ::safetensors::SafeTensors;

    use super::*;
    use crate::hypernet::seeded_weights;
    use crate::meta::StepPolicy;

    fn small_base() -> BaseModelShapes {
        BaseModelShapes {
            name: "test/small".into(),
            hidden_size: 32,
            intermediate_size: 48,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 8,
            num_hidden_layers: 1,
            family: None,
        }
    }

    /// A seeded Evo checkpoint with `policy`, as `model export` writes it.
    fn export(path: &Path, policy: StepPolicy) {
        let cfg = HyperConfig::preset("tiny").unwrap();
        let meta = ModelMeta {
            architecture: Architecture::Evo,
            encoder: "hashed-v1".into(),
            step_policy: policy,
            trained: false,
            fingerprint: String::new(),
            task: 0,
        };
        save_safetensors(path, &seeded_weights(&cfg, &small_base(), 7, true), &cfg, &small_base(), &meta).unwrap();
    }

    fn set_metadata(path: &Path, key: &str, value: &str) {
        let bytes = std::fs::read(path).unwrap();
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let mut md = header.metadata().clone().unwrap();
        md.insert(key.into(), value.into());
        let st = SafeTensors::deserialize(&bytes).unwrap();
        ::safetensors::serialize_to_file(st.tensors(), Some(md), path).unwrap();
    }

    #[test]
    fn an_exported_checkpoint_reads_back_with_its_meta() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seeded.safetensors");
        export(&path, StepPolicy::Paper);
        let ck = load(&path, &small_base()).unwrap();
        assert_eq!(ck.config, HyperConfig::preset("tiny").unwrap());
        assert_eq!((ck.meta.architecture, ck.meta.step_policy, ck.meta.trained), (Architecture::Evo, StepPolicy::Paper, false));
        assert_eq!(ck.meta.encoder, "hashed-v1");
    }

    #[test]
    fn unknown_metadata_names_are_refused_not_defaulted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seeded.safetensors");
        export(&path, StepPolicy::Paper);
        set_metadata(&path, "evolora.step_policy", "papers");
        let err = load(&path, &small_base()).err().unwrap();
        assert!(
            matches!(&err, ModelError::CheckpointMetadata { key: "evolora.step_policy", source, .. } if matches!(**source, ModelError::UnknownStepPolicy(ref v) if v == "papers")),
            "{err}"
        );
        export(&path, StepPolicy::Paper);
        set_metadata(&path, "evolora.architecture", "code2lora-gru");
        let err = load(&path, &small_base()).err().unwrap();
        assert!(matches!(&err, ModelError::CheckpointMetadata { key: "evolora.architecture", .. }), "{err}");
        set_metadata(&path, "evolora.architecture", "code2lora-static");
        let err = load(&path, &small_base()).err().unwrap();
        assert!(matches!(&err, ModelError::ArchitectureMismatch { claimed: "code2lora-static", found: "code2lora-evo", .. }), "{err}");
    }
}
