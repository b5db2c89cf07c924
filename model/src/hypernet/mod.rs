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
    // The modules are built for their declarations only; the recorded map is the result.
    let architecture = if evo { Architecture::Evo } else { Architecture::Static };
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
    /// recurrence: its state does not change.
    /// Folds `diffs` into `state`, which has taken `steps_so_far` GRU steps since its
    /// snapshot (see [`CommitGru::advance`]).
    pub fn advance(&self, state: &[f32], diffs: &[Vec<f32>], steps_so_far: u64) -> Result<Vec<f32>, ModelError> {
        if state.len() != self.state_dim() {
            return Err(ModelError::InputDim { found: state.len(), expected: self.state_dim() });
        }
        let Some(gru) = &self.gru else { return Ok(state.to_vec()) };
        let mut flat = Vec::with_capacity(diffs.len() * self.config.input_dim);
        for d in diffs {
            self.check_input(d)?;
            flat.extend_from_slice(d);
        }
        Ok(gru.advance(state, &flat, steps_so_far, &self.device))
    }

    /// The adapter for a state.
    pub fn adapter(&self, state: &[f32]) -> Result<AdapterWeights, ModelError> {
        if state.len() != self.state_dim() {
            return Err(ModelError::InputDim { found: state.len(), expected: self.state_dim() });
        }
        let ctx = match &self.gru {
            Some(gru) => gru.context(state, &self.device),
            None => tensor2(state.to_vec(), [1, state.len()], &self.device),
        };
        Ok(AdapterWeights { rank: self.config.rank, alpha: self.config.alpha, pairs: self.head.forward(ctx) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::init::SplitMix64;

    /// The state's bits must not depend on how commits were grouped into calls.
    #[test]
    fn a_state_is_bit_identical_however_the_steps_were_grouped() {
        let mut cfg = HyperConfig::preset("compact").unwrap();
        cfg.head_hidden = 8;
        let base = BaseModelShapes {
            name: "test/small".into(),
            hidden_size: 32,
            intermediate_size: 48,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 8,
            num_hidden_layers: 1,
        };
        let model = Hypernetwork::untrained(cfg.clone(), base, 11, "hashed-v1", Device::default()).unwrap();
        let mut rng = SplitMix64::new(5);
        let diffs: Vec<Vec<f32>> = (0..45).map(|_| (0..cfg.input_dim).map(|_| rng.next_symmetric()).collect()).collect();
        let h0 = model.initial_state(&diffs[0]).unwrap();
        let at_once = model.advance(&h0, &diffs, 0).unwrap();
        for cuts in [vec![1, 44], vec![7, 9, 16, 13], vec![3; 15], vec![1; 45], vec![20, 25]] {
            let (mut h, mut steps) = (h0.clone(), 0usize);
            for n in cuts {
                h = model.advance(&h, &diffs[steps..steps + n], steps as u64).unwrap();
                steps += n;
            }
            let same = h.iter().zip(&at_once).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "grouping changed the state's bits");
        }
        assert_ne!(model.advance(&h0, &diffs[..44], 0).unwrap(), at_once, "the test can tell states apart");
    }
}

#[cfg(test)]
mod seeded_tests {
    use sha2::{Digest, Sha256};

    use super::*;

    fn small_base() -> BaseModelShapes {
        BaseModelShapes {
            name: "test/small".into(),
            hidden_size: 32,
            intermediate_size: 48,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 8,
            num_hidden_layers: 1,
        }
    }

    /// Every tensor's name, shape and value bits, in name order.
    fn digest(w: &Weights) -> String {
        let mut h = Sha256::new();
        for (name, t) in w.iter() {
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update((t.shape.len() as u64).to_le_bytes());
            for d in &t.shape {
                h.update((*d as u64).to_le_bytes());
            }
            for v in &t.data {
                h.update(v.to_bits().to_le_bytes());
            }
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn multi_task(mut cfg: HyperConfig) -> HyperConfig {
        cfg.num_tasks = 3;
        cfg.task_dim = 4;
        cfg
    }

    /// The seeded model's bits are part of every untrained fingerprint: they must not move.
    #[test]
    fn seeded_weights_keep_their_bits() {
        let base = small_base();
        let cases = [
            ("tiny", HyperConfig::preset("tiny").unwrap(), true),
            ("tiny", HyperConfig::preset("tiny").unwrap(), false),
            ("compact", HyperConfig::preset("compact").unwrap(), true),
            ("compact", HyperConfig::preset("compact").unwrap(), false),
            ("compact+tasks", multi_task(HyperConfig::preset("compact").unwrap()), true),
        ];
        let found: Vec<String> = cases.iter().map(|(label, cfg, evo)| format!("{label} evo={evo} {}", digest(&seeded_weights(cfg, &base, 7, *evo)))).collect();
        let expected = [
            "tiny evo=true a4b5131563b03cd0b49d61a3cc7aa18ac9285f2c940e59d6f5964f91cb423ebb",
            "tiny evo=false 8b21dca6c0240c7d6f194d1d643899e38df63eb42564f0fd6c09b7958e59c3b4",
            "compact evo=true 188a71019ae929a80f12692707ece069f29bab853409a6e3cf4f79b3561fb6fd",
            "compact evo=false eaf869affadf5fe398391e0529a6f61883b75ba5c54ba3a1ea689400a05a331a",
            "compact+tasks evo=true 341e0aeba05f4aae2e5139905104da7352298775334b358d5ae32131e9943ce4",
        ];
        assert_eq!(found, expected);
    }

    fn bits_digest(values: &[f32]) -> String {
        let mut h = Sha256::new();
        for v in values {
            h.update(v.to_bits().to_le_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The untrained model's states and adapter, pinned: they are what every untrained
    /// deployment has published so far.
    #[test]
    fn the_untrained_model_keeps_its_outputs() {
        let cfg = HyperConfig::preset("compact").unwrap();
        let model = Hypernetwork::untrained(cfg.clone(), small_base(), 7, "hashed-v1", Device::default()).unwrap();
        let mut rng = crate::nn::init::SplitMix64::new(3);
        let mut vector = || (0..cfg.input_dim).map(|_| rng.next_symmetric()).collect::<Vec<f32>>();
        let snapshot = vector();
        let diffs: Vec<Vec<f32>> = (0..3).map(|_| vector()).collect();
        let h0 = model.initial_state(&snapshot).unwrap();
        let h = model.advance(&h0, &diffs, 0).unwrap();
        let adapter: Vec<f32> = model.adapter(&h).unwrap().pairs.iter().flat_map(|p| p.a.iter().chain(&p.b).copied()).collect();
        let found = [bits_digest(&h0), bits_digest(&h), bits_digest(&adapter)];
        let expected = [
            "500ec3f9bef2056d08339b0d5d7148a225ad3e95ec0fa95d46e0130b682071d6",
            "fc0f61b0c67adab36d520b1b16ecd7f92b9709bf41b32da8ddd294d4d1879622",
            "3610538fcdee601f4ec220ec2e5fd7780ad501a78457023476b92d34a61e12ac",
        ];
        assert_eq!(found, expected);
    }

    fn untrained_meta() -> ModelMeta {
        ModelMeta {
            architecture: Architecture::Evo,
            encoder: "hashed-v1".into(),
            step_policy: StepPolicy::EveryCommit,
            trained: false,
            fingerprint: String::new(),
            task: 0,
        }
    }

    /// The seeded map loads back into the model the seed builds directly.
    #[test]
    fn the_seeded_map_loads_into_the_same_model() {
        let cfg = HyperConfig::preset("tiny").unwrap();
        let direct = Hypernetwork::untrained(cfg.clone(), small_base(), 7, "hashed-v1", Device::default()).unwrap();
        let mut weights = seeded_weights(&cfg, &small_base(), 7, true);
        let loaded = Hypernetwork::from_weights(cfg.clone(), small_base(), &mut weights, untrained_meta(), Device::default()).unwrap();
        let snapshot = vec![0.25; cfg.input_dim];
        let (a, b) = (direct.initial_state(&snapshot).unwrap(), loaded.initial_state(&snapshot).unwrap());
        assert_eq!(bits_digest(&a), bits_digest(&b));
        let pairs = |m: &Hypernetwork| m.adapter(&a).unwrap().pairs.iter().flat_map(|p| p.a.iter().chain(&p.b).copied()).collect::<Vec<f32>>();
        assert_eq!(bits_digest(&pairs(&direct)), bits_digest(&pairs(&loaded)));
    }

    #[test]
    fn loading_refuses_a_misshapen_tensor_naming_it() {
        let cfg = HyperConfig::preset("tiny").unwrap();
        let mut weights = seeded_weights(&cfg, &small_base(), 7, true);
        let mut short = weights.clone();
        let trunk = weights.get("head.trunk.2.weight").unwrap().clone();
        short.insert("head.trunk.2.weight", vec![trunk.shape[0], trunk.shape[1] - 1], trunk.data[..trunk.shape[0] * (trunk.shape[1] - 1)].to_vec());
        let err = Hypernetwork::from_weights(cfg.clone(), small_base(), &mut short, untrained_meta(), Device::default()).unwrap_err();
        assert!(matches!(&err, ModelError::ShapeMismatch { name, .. } if name == "head.trunk.2.weight"), "{err}");
        weights.insert("gru.gru.bias_hh_l0", vec![1], vec![0.0]);
        let err = Hypernetwork::from_weights(cfg, small_base(), &mut weights, untrained_meta(), Device::default()).unwrap_err();
        assert!(matches!(&err, ModelError::ShapeMismatch { name, .. } if name == "gru.gru.bias_hh_l0"), "{err}");
    }

    #[test]
    fn loading_refuses_tensors_no_module_asked_for() {
        let cfg = HyperConfig::preset("tiny").unwrap();
        let mut weights = seeded_weights(&cfg, &small_base(), 7, true);
        let static_meta = ModelMeta { architecture: Architecture::Static, ..untrained_meta() };
        let err = Hypernetwork::from_weights(cfg.clone(), small_base(), &mut weights.clone(), static_meta, Device::default()).unwrap_err();
        assert!(matches!(&err, ModelError::UnexpectedTensor { name, architecture: "code2lora-static" } if name.starts_with("gru.")), "{err}");
        weights.insert("head.extra.weight", vec![2], vec![0.0; 2]);
        let err = Hypernetwork::from_weights(cfg, small_base(), &mut weights, untrained_meta(), Device::default()).unwrap_err();
        assert!(matches!(&err, ModelError::UnexpectedTensor { name, .. } if name == "head.extra.weight"), "{err}");
    }
}
