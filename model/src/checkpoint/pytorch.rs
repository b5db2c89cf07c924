//! The released PyTorch checkpoints (`torch.save` dicts), read with burn-store's reader.
//!
//! Static (`code2lora_direct.pt`): `{state_dict, config, type_dims, args}`.
//! Evo (`code2lora_gru.pt`): `{gru_state, head_state, head_config, gru_config, args, ...}`.
//! Tensors keep their PyTorch names; they are prefixed `head.` / `gru.` to join the common
//! [`Weights`] map. Index renumbering is disabled: the files' `trunk.2.*` and
//! `repo_init_proj.2.*` must keep their names (index 1 is the parameter-less GELU).

use std::path::Path;

use burn::store::{ModuleStore, PytorchStore};

use super::RawCheckpoint;
use crate::ModelError;
use crate::fingerprint::fingerprint_of_bytes;
use crate::meta::StepPolicy;
use crate::nn::Weights;

fn read_section(path: &Path, key: &str, prefix: &str, into: &mut Weights) -> Result<bool, ModelError> {
    let fail = |reason: String| ModelError::Checkpoint { path: path.to_path_buf(), reason };
    let mut store = PytorchStore::from_file(path).with_top_level_key(key).map_indices_contiguous(false);
    let tensors = match store.get_all_tensors() {
        Ok(t) => t,
        Err(e) => {
            let msg = e.to_string();
            // A missing section is how the two layouts are told apart.
            if msg.contains("not found") || msg.contains("Available") || msg.contains("available") {
                return Ok(false);
            }
            return Err(fail(format!("reading `{key}`: {msg}")));
        }
    };
    for (name, tensor) in tensors {
        let data = burn::store::bridge::to_data(tensor).map_err(|e| fail(format!("tensor `{key}.{name}`: {e}")))?;
        let shape: Vec<usize> = data.shape().iter().copied().collect();
        let values = data
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| fail(format!("tensor `{key}.{name}`: {e:?}")))?;
        into.insert(format!("{prefix}{name}"), shape, values);
    }
    Ok(true)
}

/// `args.alpha` when `args` is a plain dict (an argparse Namespace is not readable without
/// Python; the paper's 32 is used then).
fn read_alpha(path: &Path) -> Option<f32> {
    use burn::store::pytorch_reader::{PickleValue, PytorchReader};
    match PytorchReader::read_pickle_data(path, Some("args")).ok()? {
        PickleValue::Dict(args) => match args.get("alpha")? {
            PickleValue::Int(a) => Some(*a as f32),
            PickleValue::Float(a) => Some(*a as f32),
            _ => None,
        },
        _ => None,
    }
}

/// Reads either released layout; alpha from `args.alpha` where readable.
pub(super) fn read(path: &Path) -> Result<RawCheckpoint, ModelError> {
    let fail = |reason: String| ModelError::Checkpoint { path: path.to_path_buf(), reason };
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let fingerprint = fingerprint_of_bytes(&bytes);
    drop(bytes);
    let mut weights = Weights::default();
    let evo = read_section(path, "gru_state", "gru.", &mut weights)?;
    let head = if evo {
        read_section(path, "head_state", "head.", &mut weights)?
    } else {
        read_section(path, "state_dict", "head.", &mut weights)?
    };
    if !head {
        return Err(fail(
            "neither the Evo layout (gru_state, head_state) nor the Static layout (state_dict) was found".into(),
        ));
    }
    Ok(RawCheckpoint {
        weights,
        fingerprint,
        alpha: read_alpha(path),
        // The released checkpoints were trained on Qwen3-Embedding-0.6B vectors.
        encoder: "qwen3-embedding-0.6b".into(),
        step_policy: if evo { StepPolicy::Paper } else { StepPolicy::EveryCommit },
        trained: true,
        architecture: None,
    })
}
