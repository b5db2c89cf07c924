//! Loading the configured hypernetwork, and describing it to clients.

use evolora_model::encoder::HashedEncoder;
use evolora_model::{BaseModelShapes, HyperConfig, Hypernetwork, ModelError};
use evolora_protocol::reply::ModelInfo;

use crate::config::ModelSettings;

/// Loads the configured model (a checkpoint, or the seeded untrained preset). The daemon
/// requires the hashed encoder it runs (`Some(HashedEncoder::ID)`); `model run` takes any
/// vectors and passes `None`. `task` picks the row of a multi-task checkpoint.
pub fn load(settings: &ModelSettings, expect_encoder: Option<&str>, task: usize) -> Result<Hypernetwork, ModelError> {
    let device = evolora_model::select_device(&settings.device)?;
    let base = BaseModelShapes::resolve(&settings.base)?;
    match &settings.checkpoint {
        None => {
            let cfg = HyperConfig::preset(&settings.preset)?;
            Hypernetwork::untrained(cfg, base, settings.seed, HashedEncoder::ID, device)
        }
        Some(path) => {
            let mut ck = evolora_model::checkpoint::load(path, &base)?;
            if let Some(enc) = expect_encoder.filter(|enc| *enc != ck.meta.encoder) {
                return Err(ModelError::EncoderMismatch { checkpoint: ck.meta.encoder, configured: enc.into() });
            }
            ck.meta.task = task;
            Hypernetwork::from_weights(ck.config, base, &mut ck.weights, ck.meta, device)
        }
    }
}

/// What `status` says about a loaded model.
pub fn describe(model: &Hypernetwork) -> ModelInfo {
    ModelInfo {
        architecture: model.meta.architecture.to_string(),
        encoder: model.meta.encoder.clone(),
        fingerprint: model.meta.fingerprint.clone(),
        trained: model.meta.trained,
        base: model.base.name.clone(),
        gru_hidden: model.config.gru_hidden,
        head_hidden: model.config.head_hidden,
        rank: model.config.rank,
    }
}
