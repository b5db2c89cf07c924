//! The whole generator: snapshot → h₀, diffs → h_t, h_t → adapter weights.

pub mod config;
pub mod gru;
pub mod head;

use burn::tensor::Device;

use self::config::HyperConfig;
use self::gru::CommitGru;
use self::head::{Code2LoraHead, LoraPair};
pub use crate::meta::{Architecture, ModelMeta, StepPolicy};
use crate::fingerprint::fingerprint_of_seed;
use crate::nn::Weights;
use crate::nn::params::{ParamSource, Seeded};
use crate::nn::tensor::tensor2;
use crate::{BaseModelShapes, ModelError};

/// An adapter's weights: one pair per projection type, shared by every layer.
#[derive(Debug, Clone)]
pub struct AdapterWeights {
    pub rank: usize,
    pub alpha: f32,
    pub pairs: Vec<LoraPair>,
}

#[derive(Debug)]
pub struct Hypernetwork {
    pub config: HyperConfig,
    pub base: BaseModelShapes,
    pub meta: ModelMeta,
    device: Device,
    gru: Option<CommitGru>,
    head: Code2LoraHead,
}

/// The untrained model's tensors, in PyTorch layout with PyTorch's default initialisation
/// ranges: what `model export` saves as a checkpoint.
pub fn seeded_weights(cfg: &HyperConfig, base: &BaseModelShapes, seed: u64, evo: bool) -> Weights {
    let mut params = Seeded::recording(seed);
    let architecture = if evo { Architecture::Evo } else { Architecture::Static };
    // The modules are built for their declarations only (briefly holding the model beside
    // the map); the recorded map is the result.
    build_parts(cfg, base, architecture, 0, &mut params, &Device::flex()).expect("a seeded source has every tensor, and task 0 exists");
    params.into_recorded().expect("the source records")
}

/// Declares and builds the modules `architecture` has, from `params`.
fn build_parts(
    cfg: &HyperConfig,
    base: &BaseModelShapes,
    architecture: Architecture,
    task: usize,
    params: &mut impl ParamSource,
    device: &Device,
) -> Result<(Option<CommitGru>, Code2LoraHead), ModelError> {
    let gru = if architecture.has_gru() { Some(CommitGru::new(cfg, params, device)?) } else { None };
    let head = Code2LoraHead::new(cfg, base, task, params, device)?;
    Ok((gru, head))
}

impl Hypernetwork {
    /// A deterministic, untrained model. Adapters it makes are structurally valid and
    /// repository-dependent, but carry no learned knowledge.
    pub fn untrained(cfg: HyperConfig, base: BaseModelShapes, seed: u64, encoder: &str, device: Device) -> Result<Self, ModelError> {
        let fingerprint = fingerprint_of_seed(&cfg, &base, seed, encoder);
        let meta = ModelMeta {
            architecture: Architecture::Evo,
            encoder: encoder.into(),
            step_policy: StepPolicy::EveryCommit,
            trained: false,
            fingerprint,
            task: 0,
        };
        let (gru, head) = build_parts(&cfg, &base, Architecture::Evo, 0, &mut Seeded::new(seed), &device)?;
        Ok(Hypernetwork { config: cfg, base, meta, device, gru, head })
    }

    /// Builds the model from PyTorch-layout tensors. Unknown leftover tensors are refused so
    /// that a checkpoint for a different architecture is not half-loaded.
    pub fn from_weights(cfg: HyperConfig, base: BaseModelShapes, weights: &mut Weights, meta: ModelMeta, device: Device) -> Result<Self, ModelError> {
        let (gru, head) = build_parts(&cfg, &base, meta.architecture, meta.task, weights, &device)?;
        if let Some(extra) = weights.names().next() {
            return Err(ModelError::UnexpectedTensor { name: extra.into(), architecture: meta.architecture.as_str() });
        }
        Ok(Hypernetwork { config: cfg, base, meta, device, gru, head })
    }

    pub fn is_evo(&self) -> bool {
        self.gru.is_some()
    }

    /// Size of a state vector: the GRU hidden size (Evo) or the snapshot size (Static).
    pub fn state_dim(&self) -> usize {
        if self.is_evo() { self.config.gru_hidden } else { self.config.input_dim }
    }

    fn check_input(&self, v: &[f32]) -> Result<(), ModelError> {
        if v.len() != self.config.input_dim {
            return Err(ModelError::InputDim { found: v.len(), expected: self.config.input_dim });
        }
        Ok(())
    }

    /// The state a repository starts from: h₀ for Evo, the snapshot itself for Static.
    pub fn initial_state(&self, snapshot: &[f32]) -> Result<Vec<f32>, ModelError> {
        self.check_input(snapshot)?;
        Ok(match &self.gru {
            Some(gru) => gru.initial_state(snapshot, &self.device),
            None => snapshot.to_vec(),
        })
    }

    /// Advances a state over diff vectors, each `input_dim` long. A Static model has no
    /// recurrence: its state does not change. The result has the same bits however the
    /// diffs are split across calls (see [`CommitGru`]).
    pub fn advance(&self, state: &[f32], diffs: &[Vec<f32>]) -> Result<Vec<f32>, ModelError> {
        if state.len() != self.state_dim() {
            return Err(ModelError::InputDim { found: state.len(), expected: self.state_dim() });
        }
        let Some(gru) = &self.gru else { return Ok(state.to_vec()) };
        let mut flat = Vec::with_capacity(diffs.len() * self.config.input_dim);
        for d in diffs {
            self.check_input(d)?;
            flat.extend_from_slice(d);
        }
        Ok(gru.advance(state, &flat))
    }

    /// The adapter for a state.
    pub fn adapter(&self, state: &[f32]) -> Result<AdapterWeights, ModelError> {
        self.adapter_each(state, |_| Ok(()))
    }

    /// [`Hypernetwork::adapter`], handing each projection type's pair to `each` as soon as it
    /// is made, largest first (`head::Code2LoraHead::production_order`): writing one type's
    /// files overlaps computing the next. The pairs returned are in
    /// [`Hypernetwork::adapter_layout`]'s order.
    pub fn adapter_each(&self, state: &[f32], mut each: impl FnMut(&LoraPair) -> Result<(), ModelError>) -> Result<AdapterWeights, ModelError> {
        if state.len() != self.state_dim() {
            return Err(ModelError::InputDim { found: state.len(), expected: self.state_dim() });
        }
        let ctx = match &self.gru {
            Some(gru) => gru.context(state, &self.device),
            None => tensor2(state.to_vec(), [1, state.len()], &self.device),
        };
        let mut pairs = Vec::with_capacity(self.head.layout().len());
        self.head.forward_each(ctx, |pair| {
            each(&pair)?;
            pairs.push(pair);
            Ok(())
        })?;
        self.head.in_layout_order(&mut pairs);
        Ok(AdapterWeights { rank: self.config.rank, alpha: self.config.alpha, pairs })
    }

    /// The adapter's projection types (module, in, out) in module order: the order of the
    /// adapter's pairs and files.
    pub fn adapter_layout(&self) -> &[(crate::ModuleType, usize, usize)] {
        self.head.layout()
    }
}

#[cfg(test)]
mod tests;
