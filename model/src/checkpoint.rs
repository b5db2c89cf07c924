//! Checkpoints as safetensors with flat, documented names.
//!
//! Tensor names are the released PyTorch state-dict keys prefixed `gru.` (Evo `gru_state`)
//! or `head.` (Evo `head_state`, Static `state_dict`), in PyTorch layout ([out, in] Linear
//! weights, GRU gates packed (r, z, n)). Metadata (all strings):
//! `format`=`pt`, `evolora.architecture`, `evolora.config` (HyperConfig JSON),
//! `evolora.base` (BaseModelShapes JSON), `evolora.encoder`, `evolora.step_policy`.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use sha2::{Digest, Sha256};

use crate::hypernet::{ModelMeta, StepPolicy};
use crate::weights::Weights;
use crate::{BaseModelShapes, HyperConfig, ModelError, ModuleType};

/// How a state is computed from the weights, beyond the weights themselves. It is part of
/// every fingerprint, so that changing it makes stored states rebuild from snapshots
/// instead of continuing with different arithmetic. 2: the GRU's input side in fixed
/// blocks of 16 steps (`gru::INPUT_BLOCK`).
const NUMERICS: &[u8] = b"evolora-numerics-2\0";

/// The fingerprint of a model loaded from a checkpoint file's bytes.
pub(crate) fn fingerprint_of_bytes(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(NUMERICS);
    h.update(bytes);
    hex(&h.finalize())
}

pub fn fingerprint_of_seed(cfg: &HyperConfig, base: &BaseModelShapes, seed: u64, encoder: &str) -> String {
    let mut h = Sha256::new();
    h.update(NUMERICS);
    h.update(b"evolora-untrained-v1\0");
    h.update(serde_json::to_vec(cfg).unwrap_or_default());
    h.update(serde_json::to_vec(base).unwrap_or_default());
    h.update(seed.to_le_bytes());
    h.update(encoder.as_bytes());
    hex(&h.finalize())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A checkpoint read from disk, before it is turned into a model.
pub struct LoadedCheckpoint {
    pub config: HyperConfig,
    pub base: Option<BaseModelShapes>,
    pub meta: ModelMeta,
    pub weights: Weights,
}

pub fn save_safetensors(
    path: &Path,
    weights: &Weights,
    cfg: &HyperConfig,
    base: &BaseModelShapes,
    meta: &ModelMeta,
) -> Result<(), ModelError> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = weights
        .iter()
        .map(|(n, t)| (n.to_owned(), t.shape.clone(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| ModelError::Safetensors(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut md = HashMap::new();
    md.insert("format".to_string(), "pt".to_string());
    md.insert("evolora.architecture".into(), meta.architecture.clone());
    md.insert("evolora.config".into(), serde_json::to_string(cfg).unwrap());
    md.insert("evolora.alpha".into(), cfg.alpha.to_string());
    md.insert("evolora.base".into(), serde_json::to_string(base).unwrap());
    md.insert("evolora.encoder".into(), meta.encoder.clone());
    md.insert("evolora.step_policy".into(), serde_json::to_value(meta.step_policy).unwrap().as_str().unwrap().to_owned());
    md.insert("evolora.trained".into(), meta.trained.to_string());
    safetensors::serialize_to_file(views, Some(md), path).map_err(|e| ModelError::Safetensors(e.to_string()))
}

/// Reads a checkpoint: `.safetensors` (evolora's flat names) or `.pt`/`.pth` (the released
/// PyTorch layouts). Dimensions come from the tensors' shapes and the base model; metadata,
/// where present, supplies alpha, encoder and step policy.
pub fn load(path: &Path, base: &BaseModelShapes) -> Result<LoadedCheckpoint, ModelError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "pt" | "pth" | "bin" => crate::pytorch::load_pt(path, base),
        _ => load_safetensors(path, base),
    }
}

/// Reads an evolora safetensors checkpoint (any float dtype; converted to f32).
pub fn load_safetensors(path: &Path, base: &BaseModelShapes) -> Result<LoadedCheckpoint, ModelError> {
    let fail = |reason: String| ModelError::Checkpoint { path: path.to_path_buf(), reason };
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let fingerprint = fingerprint_of_bytes(&bytes);
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| fail(e.to_string()))?;
    let md = header.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(&bytes).map_err(|e| fail(e.to_string()))?;
    let mut weights = Weights::default();
    for (name, view) in st.tensors() {
        let data = to_f32(view.dtype(), view.data()).ok_or_else(|| fail(format!("tensor `{name}` has unsupported dtype {:?}", view.dtype())))?;
        weights.insert(name, view.shape().to_vec(), data);
    }
    let alpha = md.get("evolora.alpha").and_then(|s| s.parse().ok()).or_else(|| {
        md.get("evolora.config").and_then(|s| serde_json::from_str::<HyperConfig>(s).ok()).map(|c| c.alpha)
    });
    let config = infer_config(&weights, base, alpha.unwrap_or(32.0)).map_err(|e| match e {
        ModelError::Checkpoint { reason, .. } => fail(reason),
        other => other,
    })?;
    let step_policy = match md.get("evolora.step_policy").map(String::as_str) {
        Some("paper") => StepPolicy::Paper,
        _ => StepPolicy::EveryCommit,
    };
    let meta = ModelMeta {
        architecture: architecture_of(&weights).into(),
        encoder: md.get("evolora.encoder").cloned().unwrap_or_else(|| "unknown".into()),
        step_policy,
        trained: md.get("evolora.trained").map(|s| s == "true").unwrap_or(true),
        fingerprint,
        task: 0,
    };
    Ok(LoadedCheckpoint { config, base: Some(base.clone()), meta, weights })
}

pub(crate) fn architecture_of(weights: &Weights) -> &'static str {
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

/// Little-endian float bytes to f32.
pub(crate) fn to_f32(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
        Dtype::BF16 => data.chunks_exact(2).map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)).collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect(),
        _ => return None,
    })
}

/// IEEE half → single, exact.
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_conversion_known_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }
}

#[cfg(test)]
mod fingerprint_tests {
    use super::*;

    /// Stored states are keyed by this value: changing it silently rebuilds every state.
    #[test]
    fn the_seed_fingerprint_is_pinned() {
        let cfg = HyperConfig::preset("compact").unwrap();
        let base = BaseModelShapes::preset("qwen2.5-coder-1.5b").unwrap();
        let found = fingerprint_of_seed(&cfg, &base, 7, "hashed-v1");
        assert_eq!(found, "3cc39e03a2a4ab889fb8db344e4e124bcc725575bb590190eb3ebe3026b4f421");
    }
}
