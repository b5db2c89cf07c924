//! What the format readers hand to [`super`] for assembly.

use crate::meta::{Architecture, StepPolicy};
use crate::nn::Weights;

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
    /// The architecture the file names, if it does; checked against the tensors.
    pub architecture: Option<Architecture>,
}
