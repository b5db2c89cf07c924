//! What a model is beyond its tensors: architecture, encoder, step policy, fingerprint.
//! Checkpoint readers produce it and the hypernetwork carries it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// The released model families. Their names are stored in checkpoints and reported to
/// clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    /// Snapshot → h₀, a GRU over commit diffs, then the head.
    #[serde(rename = "code2lora-evo")]
    Evo,
    /// The snapshot straight into the head; no recurrence.
    #[serde(rename = "code2lora-static")]
    Static,
}

impl Architecture {
    pub const ALL: [Architecture; 2] = [Architecture::Evo, Architecture::Static];

    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::Evo => "code2lora-evo",
            Architecture::Static => "code2lora-static",
        }
    }

    /// Whether the model folds commits into its state.
    pub fn has_gru(self) -> bool {
        self == Architecture::Evo
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Architecture {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        Self::ALL.into_iter().find(|a| a.as_str() == s).ok_or_else(|| ModelError::UnknownArchitecture(s.into()))
    }
}

/// Which commits step the GRU; stored with a checkpoint because a model only makes sense on
/// the kind of sequence it was trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepPolicy {
    /// Every first-parent commit.
    EveryCommit,
    /// Only commits that add or change test assertions (the released Evo checkpoint).
    Paper,
}

impl StepPolicy {
    pub const ALL: [StepPolicy; 2] = [StepPolicy::EveryCommit, StepPolicy::Paper];

    pub fn as_str(self) -> &'static str {
        match self {
            StepPolicy::EveryCommit => "every-commit",
            StepPolicy::Paper => "paper",
        }
    }
}

impl fmt::Display for StepPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StepPolicy {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        Self::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| ModelError::UnknownStepPolicy(s.into()))
    }
}

/// What a model is, beyond its tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub architecture: Architecture,
    /// Encoder id and version the model was trained with, e.g. `hashed-v1`.
    pub encoder: String,
    pub step_policy: StepPolicy,
    /// False for seeded initialisation: adapters carry a loud warning.
    pub trained: bool,
    /// sha256 identifying the weights; states built with another fingerprint are stale.
    pub fingerprint: String,
    /// Task chosen from a multi-task checkpoint (index into its table).
    pub task: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checkpoints store Display, clients see serde: both must spell the same names.
    #[test]
    fn names_agree_across_display_serde_and_parsing() {
        for a in Architecture::ALL {
            assert_eq!(serde_json::to_value(a).unwrap(), a.to_string());
            assert_eq!(a.to_string().parse::<Architecture>().unwrap(), a);
        }
        for p in StepPolicy::ALL {
            assert_eq!(serde_json::to_value(p).unwrap(), p.to_string());
            assert_eq!(p.to_string().parse::<StepPolicy>().unwrap(), p);
        }
        assert_eq!(Architecture::Evo.to_string(), "code2lora-evo");
        assert_eq!(StepPolicy::EveryCommit.to_string(), "every-commit");
        assert!(matches!("code2lora-gru".parse::<Architecture>(), Err(ModelError::UnknownArchitecture(v)) if v == "code2lora-gru"));
        assert!(matches!("Paper".parse::<StepPolicy>(), Err(ModelError::UnknownStepPolicy(v)) if v == "Paper"));
    }
}
