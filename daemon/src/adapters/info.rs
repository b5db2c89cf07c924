//! `evolora.json`, the description every adapter directory carries: which repository, ref
//! and commit it was made at, by which model, and how to check a replayed state against it.
//! Written and read only here. The daemon's versions fill the repository fields; one-shot
//! adapters (`evolora snapshot`, `evolora model run`) fill `source` and their own fields.

use std::path::Path;

use evolora_model::HyperConfig;
use evolora_model::hypernet::StepPolicy;
use serde::{Deserialize, Serialize};

pub const FILE: &str = "evolora.json";

/// Version of this layout. Files from before it was recorded read as 1.
pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdapterInfo {
    pub schema: u32,
    /// How a one-shot adapter was made (`snapshot`, `model run`); absent for the daemon's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The repository's common git dir.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_key: Option<String>,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub refname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The commit whose snapshot gave h₀ (a replay starts there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    /// Commits folded since the origin (the origin's own step included when it was taken:
    /// a replay tells the two walks apart by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walked: Option<u64>,
    /// Commits walked by the job that published it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commits_walked: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<u64>,
    pub model: ModelStamp,
    /// sha256 of the state vector the adapter was made from (see `job::vector_digest`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_sha256: Option<String>,
    /// `model run`: the embeddings file and how many commits it held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embeddings: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commits: Option<usize>,
    /// Set when the model is untrained.
    pub warning: Option<String>,
}

/// The model that made an adapter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelStamp {
    pub architecture: String,
    pub fingerprint: String,
    pub encoder: String,
    /// The encoder's model directory (transformer encoders).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoder_dir: Option<String>,
    /// The checkpoint file (none: the seeded untrained model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    pub trained: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_policy: Option<StepPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<HyperConfig>,
}

impl ModelStamp {
    pub fn of(model: &evolora_model::Hypernetwork) -> Self {
        let meta = &model.meta;
        ModelStamp {
            architecture: meta.architecture.to_string(),
            fingerprint: meta.fingerprint.clone(),
            encoder: meta.encoder.clone(),
            encoder_dir: None,
            checkpoint: None,
            trained: meta.trained,
            step_policy: None,
            config: None,
        }
    }
}

impl AdapterInfo {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("adapter info serialises")
    }

    /// Reads a version directory's `evolora.json`; `None` when missing or unreadable.
    pub fn read(dir: &Path) -> Option<AdapterInfo> {
        let mut info: AdapterInfo = serde_json::from_slice(&std::fs::read(dir.join(FILE)).ok()?).ok()?;
        if info.schema == 0 {
            info.schema = 1;
        }
        Some(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_from_before_the_schema_field_still_read() {
        let tmp = tempfile::tempdir().unwrap();
        let old = br#"{"repo":"/r/.git","repo_key":"r-1","ref":"refs/heads/main","commit":"abc","origin_commit":"abc",
            "steps":4,"commits_walked":4,"trigger":"cold-start","created_at":9,
            "model":{"architecture":"code2lora-evo","fingerprint":"f","encoder":"hashed-v1","trained":false},
            "state_sha256":"00","warning":"untrained"}"#;
        std::fs::write(tmp.path().join(FILE), old).unwrap();
        let info = AdapterInfo::read(tmp.path()).unwrap();
        assert_eq!((info.schema, info.refname.as_deref(), info.steps, info.created_at), (1, Some("refs/heads/main"), Some(4), Some(9)));
        assert_eq!(info.model.fingerprint, "f");
        let again: serde_json::Value = serde_json::from_slice(&info.to_bytes()).unwrap();
        let before: serde_json::Value = serde_json::from_slice(old).unwrap();
        for (k, v) in before.as_object().unwrap() {
            assert_eq!(&again[k], v, "field `{k}` is written back as it was read");
        }
    }
}
