//! Loading the configured hypernetwork, and describing it to clients.

use evolora_model::encoder::HashedEncoder;
use evolora_model::{BaseModelShapes, HyperConfig, Hypernetwork, ModelError};
use evolora_protocol::reply::ModelInfo;

use crate::config::ModelSettings;

/// The encoder a model must fit: its id and the size of its vectors.
#[derive(Debug, Clone, Copy)]
pub struct EncoderFit<'a> {
    pub id: &'a str,
    pub dim: usize,
    /// Where the encoder comes from, for error messages.
    pub source: Option<&'a std::path::Path>,
    /// Any version of the hashed encoder fits (it follows the checkpoint's).
    pub any_hashed: bool,
}

/// Loads the configured model (a checkpoint, or the seeded untrained preset). The daemon
/// requires the encoder it runs (`Some(fit)`): a checkpoint trained on another encoder, or
/// on vectors of another width, is refused naming both; an untrained model is made for it.
/// `model run` takes any vectors and passes `None`. `task` picks the row of a multi-task
/// checkpoint.
pub fn load(settings: &ModelSettings, encoder: Option<EncoderFit>, task: usize) -> Result<Hypernetwork, ModelError> {
    let device = evolora_model::select_device(&settings.device)?;
    let base = BaseModelShapes::resolve(&settings.base)?;
    match &settings.checkpoint {
        None => {
            let mut cfg = HyperConfig::preset(&settings.preset)?;
            let id = match encoder {
                Some(fit) => {
                    cfg.input_dim = fit.dim;
                    fit.id
                }
                None => HashedEncoder::LATEST.id(),
            };
            Hypernetwork::untrained(cfg, base, settings.seed, id, device)
        }
        Some(path) => {
            let mut ck = evolora_model::checkpoint::load(path, &base)?;
            if let Some(fit) = encoder {
                let follows = fit.any_hashed && HashedEncoder::from_id(&ck.meta.encoder).is_some();
                if fit.id != ck.meta.encoder && !follows {
                    return Err(ModelError::EncoderMismatch { checkpoint: ck.meta.encoder, configured: fit.id.into() });
                }
                if fit.dim != ck.config.input_dim {
                    let from = fit.source.map(|p| format!(" in {}", p.display())).unwrap_or_default();
                    return Err(ModelError::Checkpoint {
                        path: path.clone(),
                        reason: format!("trained on {}-value vectors, but the {} encoder{from} makes {}-value vectors", ck.config.input_dim, fit.id, fit.dim),
                    });
                }
            }
            ck.meta.task = task;
            Hypernetwork::from_weights(ck.config, base, &mut ck.weights, ck.meta, device)
        }
    }
}

/// The configured encoder, then the model made for (or checked against) it, on `task`'s
/// row: what the daemon, `state rebuild`, `evolora snapshot` and `eval` run.
pub fn load_with_encoder(settings: &ModelSettings, cache: Option<(&std::path::Path, u64)>, task: usize) -> Result<(Hypernetwork, super::encoder::Encoder), ModelError> {
    let mut encoder = super::encoder::Encoder::load(settings, cache)?;
    let model = load(settings, Some(encoder.fit()), task)?;
    encoder.follow(&model.meta.encoder);
    Ok((model, encoder))
}

/// What `status` says about a loaded model.
pub fn describe(model: &Hypernetwork, settings: &ModelSettings, encoder: &super::encoder::Encoder) -> ModelInfo {
    ModelInfo {
        architecture: model.meta.architecture.to_string(),
        encoder: model.meta.encoder.clone(),
        encoder_dir: encoder.dir().map(|d| d.display().to_string()),
        checkpoint: settings.checkpoint.as_ref().map(|c| c.display().to_string()),
        fingerprint: model.meta.fingerprint.clone(),
        trained: model.meta.trained,
        base: model.base.name.clone(),
        gru_hidden: model.config.gru_hidden,
        head_hidden: model.config.head_hidden,
        rank: model.config.rank,
    }
}
