//! The released PyTorch checkpoints (`torch.save` dicts), read with burn-store's reader.
//!
//! Static (`code2lora_direct.pt`): `{state_dict, config, type_dims, args}`.
//! Evo (`code2lora_gru.pt`): `{gru_state, head_state, head_config, gru_config, args, ...}`.
//! Tensors keep their PyTorch names; they are prefixed `head.` / `gru.` to join the common
//! [`Weights`] map. Index renumbering is disabled: the files' `trunk.2.*` and
//! `repo_init_proj.2.*` must keep their names (index 1 is the parameter-less GELU).

use std::collections::HashMap;
use std::path::Path;

use burn::store::pytorch_reader::{PickleValue, PytorchReader};
use burn::store::{ModuleStore, PytorchStore};

use super::raw::RawCheckpoint;
use crate::ModelError;
use crate::fingerprint::fingerprint_of_bytes;
use crate::meta::StepPolicy;
use crate::nn::Weights;

/// The pickled top-level dict. Its keys tell the two layouts apart; its `args` may hold
/// alpha. Tensors in it are not read here.
fn top_level(path: &Path) -> Result<HashMap<String, PickleValue>, ModelError> {
    let fail = |reason: String| ModelError::Checkpoint { path: path.to_path_buf(), reason };
    match PytorchReader::read_pickle_data(path, None).map_err(|e| fail(e.to_string()))? {
        PickleValue::Dict(entries) => Ok(entries),
        _ => Err(fail("the file does not hold a dict at its top level".into())),
    }
}

/// Reads the tensors of section `key`, which the caller has seen in the top-level dict.
fn read_section(path: &Path, key: &str, prefix: &str, into: &mut Weights) -> Result<(), ModelError> {
    let fail = |reason: String| ModelError::Checkpoint { path: path.to_path_buf(), reason };
    let mut store = PytorchStore::from_file(path).with_top_level_key(key).map_indices_contiguous(false);
    let tensors = store.get_all_tensors().map_err(|e| fail(format!("reading `{key}`: {e}")))?;
    for (name, tensor) in tensors {
        let data = burn::store::bridge::to_data(tensor).map_err(|e| fail(format!("tensor `{key}.{name}`: {e}")))?;
        let shape: Vec<usize> = data.shape().iter().copied().collect();
        let values = data
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| fail(format!("tensor `{key}.{name}`: {e:?}")))?;
        into.insert(format!("{prefix}{name}"), shape, values);
    }
    Ok(())
}

/// `args.alpha` when `args` is a plain dict (an argparse Namespace is not readable without
/// Python; the paper's 32 is used then).
fn read_alpha(top: &HashMap<String, PickleValue>) -> Option<f32> {
    match top.get("args")? {
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
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let fingerprint = fingerprint_of_bytes(&bytes);
    drop(bytes);
    let top = top_level(path)?;
    let evo = top.contains_key("gru_state");
    let head_key = if evo { "head_state" } else { "state_dict" };
    if !top.contains_key(head_key) {
        return Err(ModelError::Checkpoint {
            path: path.to_path_buf(),
            reason: "neither the Evo layout (gru_state, head_state) nor the Static layout (state_dict) was found".into(),
        });
    }
    let mut weights = Weights::default();
    if evo {
        read_section(path, "gru_state", "gru.", &mut weights)?;
    }
    read_section(path, head_key, "head.", &mut weights)?;
    // The released checkpoints were trained on Qwen3-Embedding-0.6B vectors; one exported
    // by evolora says what it was trained on.
    let mut raw = RawCheckpoint {
        weights,
        fingerprint,
        alpha: read_alpha(&top),
        encoder: "qwen3-embedding-0.6b".into(),
        step_policy: if evo { StepPolicy::Paper } else { StepPolicy::EveryCommit },
        trained: true,
        architecture: None,
    };
    if let Some(PickleValue::Dict(ours)) = top.get("evolora") {
        if let Some(PickleValue::String(encoder)) = ours.get("encoder") {
            raw.encoder = encoder.clone();
        }
        if let Some(PickleValue::String(policy)) = ours.get("step_policy") {
            raw.step_policy = policy.parse()?;
        }
        if let Some(PickleValue::Bool(trained)) = ours.get("trained") {
            raw.trained = *trained;
        }
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/released-layouts").join(name)
    }

    #[test]
    fn the_layout_follows_the_top_level_keys() {
        let evo = read(&fixture("evo.pt")).unwrap();
        assert!(evo.weights.names().any(|n| n.starts_with("gru.")) && evo.weights.contains("head.trunk.0.weight"));
        assert_eq!(evo.step_policy, StepPolicy::Paper);
        let flat = read(&fixture("static.pt")).unwrap();
        assert!(!flat.weights.names().any(|n| n.starts_with("gru.")) && flat.weights.contains("head.trunk.0.weight"));
        assert_eq!(flat.step_policy, StepPolicy::EveryCommit);
    }

    #[test]
    fn a_dict_without_either_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config-only.pt");
        // pickle.dumps({"config": {"alpha": 8}}, protocol=2)
        std::fs::write(&path, b"\x80\x02}q\x00X\x06\x00\x00\x00configq\x01}q\x02X\x05\x00\x00\x00alphaq\x03K\x08ss.").unwrap();
        let err = read(&path).err().unwrap();
        assert!(matches!(&err, ModelError::Checkpoint { reason, .. } if reason.contains("neither the Evo layout")), "{err}");
    }
}
