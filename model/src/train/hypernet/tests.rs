use std::collections::BTreeSet;
use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};

use super::*;
use crate::hypernet::seeded_weights;
use crate::nn::Seeded;
use crate::nn::init::SplitMix64;
use crate::train::loss::{Example, target_loss};
use crate::train::run::{row, rows};
use crate::transformer::{Head, Lora, Qwen, QwenConfig};
use crate::{Hypernetwork, ModelMeta, StepPolicy};

/// A two-layer Qwen2 with grouped-query attention, small enough for gradient checks.
fn tiny_lm(device: &Device) -> (Qwen, BaseModelShapes) {
    let json = br#"{"model_type":"qwen2","hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,
        "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":40,"tie_word_embeddings":true}"#;
    let cfg = QwenConfig::from_json(json, Path::new("<tiny>")).unwrap();
    let lm = Qwen::new(&cfg, Head::CausalLm, &mut Seeded::new(3), device).unwrap().no_grad();
    (lm, cfg.shapes("tiny"))
}

fn tiny_config(tasks: usize) -> HyperConfig {
    let mut cfg = HyperConfig::preset("tiny").unwrap();
    cfg.input_dim = 24;
    cfg.rank = 4;
    cfg.alpha = 8.0;
    if tasks > 0 {
        (cfg.num_tasks, cfg.task_dim) = (tasks, 3);
    }
    cfg
}

fn vectors(rng: &mut SplitMix64, rows: usize, dim: usize) -> Vec<Vec<f32>> {
    (0..rows).map(|_| (0..dim).map(|_| rng.next_symmetric()).collect()).collect()
}

fn trainable(cfg: &HyperConfig, base: &BaseModelShapes, architecture: Architecture, task: usize, seed: u64, device: &Device) -> TrainableHypernet {
    let mut w = seeded_weights(cfg, base, seed, architecture.has_gru());
    TrainableHypernet::from_weights(cfg, base, architecture, task, &mut w, device).unwrap()
}

/// The twin computes what the serving model computes (which is itself checked against
/// PyTorch in tests/model_reference.rs), for both architectures and a multi-task table.
#[test]
fn the_trainable_twin_matches_the_serving_model() {
    let device = Device::flex();
    let (_, base) = tiny_lm(&device);
    for (architecture, tasks, task) in [(Architecture::Evo, 0, 0), (Architecture::Static, 0, 0), (Architecture::Evo, 2, 1)] {
        let mut cfg = tiny_config(tasks);
        if architecture == Architecture::Static {
            cfg.gru_hidden = cfg.input_dim;
        }
        let mut rng = SplitMix64::new(9);
        let snapshot = vectors(&mut rng, 1, cfg.input_dim).remove(0);
        let diffs = vectors(&mut rng, 5, cfg.input_dim);
        let twin = trainable(&cfg, &base, architecture, task, 4, &device);
        let mut weights = seeded_weights(&cfg, &base, 4, architecture.has_gru());
        let meta = ModelMeta { architecture, encoder: "hashed-v1".into(), step_policy: StepPolicy::EveryCommit, trained: false, fingerprint: "t".into(), task };
        let serving = Hypernetwork::from_weights(cfg.clone(), base.clone(), &mut weights, meta, device.clone()).unwrap();

        let h = twin.advance(twin.initial_state(row(&snapshot, &device)), rows(&diffs, &device));
        let expected = serving.advance(&serving.initial_state(&snapshot).unwrap(), &diffs).unwrap();
        close(&host(h.clone()), &expected, 1e-5, "state");
        let factors = twin.adapter(h);
        let adapter = serving.adapter(&expected).unwrap();
        assert_eq!(factors.len(), adapter.pairs.len());
        for (f, p) in factors.iter().zip(&adapter.pairs) {
            assert_eq!(f.module, p.module);
            assert_eq!(f.a.dims(), [cfg.rank, p.in_features]);
            assert_eq!(f.b.dims(), [p.out_features, cfg.rank]);
            close(&host(f.a.clone()), &p.a, 1e-5, "A");
            close(&host(f.b.clone()), &p.b, 1e-5, "B");
        }
    }
}

fn close(found: &[f32], expected: &[f32], tol: f32, what: &str) {
    assert_eq!(found.len(), expected.len(), "{what}: length");
    let worst = found.iter().zip(expected).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0.0f32, f32::max);
    assert!(worst <= tol, "{what}: differs by {worst}");
}

#[test]
fn exported_weights_are_the_loaded_ones_under_the_same_names() {
    let device = Device::flex();
    let (_, base) = tiny_lm(&device);
    for (architecture, tasks) in [(Architecture::Evo, 0), (Architecture::Static, 2)] {
        let cfg = tiny_config(tasks);
        let original = seeded_weights(&cfg, &base, 6, architecture.has_gru());
        let twin = trainable(&cfg, &base, architecture, 0, 6, &device);
        let exported = twin.to_weights();
        assert_eq!(exported.names().collect::<Vec<_>>(), original.names().collect::<Vec<_>>());
        for (name, t) in original.iter() {
            let e = exported.get(name).unwrap();
            assert_eq!((&e.shape, &e.data), (&t.shape, &t.data), "{name}");
        }
    }
    // A tensor the architecture lacks is refused, as the serving loader does.
    let cfg = tiny_config(0);
    let mut evo = seeded_weights(&cfg, &base, 6, true);
    let err = TrainableHypernet::from_weights(&cfg, &base, Architecture::Static, 0, &mut evo, &device).unwrap_err();
    assert!(matches!(err, ModelError::UnexpectedTensor { .. }), "{err}");
}

/// Every parameter's id and element count, by visiting the module.
fn param_ids<M: Module>(m: &M) -> Vec<(burn::module::ParamId, usize)> {
    struct Ids(Vec<(burn::module::ParamId, usize)>);
    impl ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.push((p.id, p.shape().num_elements()));
        }
    }
    let mut ids = Ids(Vec::new());
    m.visit(&mut ids);
    ids.0
}

fn examples() -> Vec<Example> {
    vec![
        Example { prefix: vec![1, 5, 7, 9, 2], target: vec![11, 3] },
        Example { prefix: vec![4, 4, 8], target: vec![12, 13, 3] },
        Example { prefix: vec![6, 1, 2, 3, 4, 5, 6], target: vec![30] },
    ]
}

fn loss_of(twin: &TrainableHypernet, lm: &Qwen, cfg: &HyperConfig, snapshot: &[f32], diffs: &[Vec<f32>], detach: bool, device: &Device) -> Tensor<1> {
    let h = twin.advance(twin.initial_state(row(snapshot, device)), rows(diffs, device));
    let lora = Lora::from_factors(&twin.adapter(h), cfg.rank, cfg.alpha, lm.config().num_hidden_layers, detach);
    target_loss(lm, Some(&lora), &examples(), 0).unwrap().mean
}

/// Every hypernetwork tensor (GRU, trunk, heads, log-scales) gets a finite, non-zero
/// gradient through the frozen LM, and none of the LM's tensors get one: a fused op without
/// a backward pass, or a kernel that reads the raw weights, would silently break this.
#[test]
fn gradients_reach_every_hypernetwork_tensor_and_no_lm_tensor() {
    let device = Device::flex().autodiff();
    let (lm, base) = tiny_lm(&device);
    let cfg = tiny_config(0);
    let twin = trainable(&cfg, &base, Architecture::Evo, 0, 8, &device);
    let mut rng = SplitMix64::new(2);
    let snapshot = vectors(&mut rng, 1, cfg.input_dim).remove(0);
    let diffs = vectors(&mut rng, 3, cfg.input_dim);
    let loss = loss_of(&twin, &lm, &cfg, &snapshot, &diffs, true, &device);
    let mut grads = loss.backward();
    let hyper = GradientsParams::from_module(&mut grads, &twin);
    struct Check<'a>(&'a GradientsParams, usize);
    impl ModuleVisitor for Check<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let g = host(self.0.get::<D>(p.id).unwrap_or_else(|| panic!("no gradient for parameter {}", p.id)));
            assert!(g.iter().all(|v| v.is_finite()), "a non-finite gradient");
            assert!(g.iter().any(|&v| v != 0.0), "an all-zero gradient for parameter {}", p.id);
            self.1 += 1;
        }
    }
    let mut check = Check(&hyper, 0);
    twin.visit(&mut check);
    assert_eq!(check.1, 7 * 2 + 2 * 2 + 7 * 2 * 2 + 7 * 2, "the GRU's and the head's tensors");
    let frozen = GradientsParams::from_module(&mut grads, &lm);
    assert!(frozen.is_empty(), "{} LM tensors received gradients", frozen.len());
    assert!(!param_ids(&lm).is_empty());
}

/// The analytic derivative along a random direction over every parameter equals the central
/// finite difference of the loss (perturbing through the exported weights), when the branch
/// input is not detached (detached, the gradient is the paper's on purpose, not the loss's).
#[test]
fn gradients_match_finite_differences() {
    let device = Device::flex().autodiff();
    let (lm, base) = tiny_lm(&device);
    for architecture in [Architecture::Evo, Architecture::Static] {
        let mut cfg = tiny_config(0);
        if architecture == Architecture::Static {
            cfg.gru_hidden = cfg.input_dim;
        }
        let twin = trainable(&cfg, &base, architecture, 0, 12, &device);
        let mut rng = SplitMix64::new(21);
        let snapshot = vectors(&mut rng, 1, cfg.input_dim).remove(0);
        let diffs = vectors(&mut rng, 2, cfg.input_dim);
        let gradients = |detach: bool| {
            let mut grads = loss_of(&twin, &lm, &cfg, &snapshot, &diffs, detach, &device).backward();
            gradient_weights(&twin, &GradientsParams::from_module(&mut grads, &twin))
        };
        let weights = twin.to_weights();
        let mut direction = SplitMix64::new(77);
        let step: Weights = {
            let mut w = Weights::default();
            for (name, t) in weights.iter() {
                w.insert(name, t.shape.clone(), t.data.iter().map(|_| direction.next_symmetric()).collect());
            }
            w
        };
        let along = |g: &Weights| -> f64 { g.iter().map(|(name, g)| g.data.iter().zip(&step.get(name).unwrap().data).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>()).sum() };
        let analytic = along(&gradients(false));
        let eps = 1e-2f32;
        let at = |sign: f32| -> f64 {
            let mut w = Weights::default();
            for (name, t) in weights.iter() {
                let d = &step.get(name).unwrap().data;
                w.insert(name, t.shape.clone(), t.data.iter().zip(d).map(|(v, s)| v + sign * eps * s).collect());
            }
            let moved = TrainableHypernet::from_weights(&cfg, &base, architecture, 0, &mut w, &device).unwrap();
            host(loss_of(&moved, &lm, &cfg, &snapshot, &diffs, false, &device))[0] as f64
        };
        let numeric = (at(1.0) - at(-1.0)) / (2.0 * eps as f64);
        let rel = (analytic - numeric).abs() / numeric.abs().max(1e-3);
        assert!(rel < 2e-2, "{architecture}: analytic {analytic} vs finite difference {numeric} (relative {rel})");
        assert!(numeric.abs() > 1e-3, "the direction moves the loss ({numeric})");
        // The paper's detached branch input drops the paths through later layers' inputs.
        let detached = along(&gradients(true));
        assert!((detached - analytic).abs() > 1e-3 * analytic.abs(), "detaching the branch input changes the gradient ({detached} vs {analytic})");
    }
}

/// The gradients as a [`Weights`] map under the parameters' names: the twin with each
/// parameter replaced by its gradient, exported.
fn gradient_weights(twin: &TrainableHypernet, grads: &GradientsParams) -> Weights {
    struct Swap<'a>(&'a GradientsParams);
    impl burn::module::ModuleMapper for Swap<'_> {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let g = self.0.get::<D>(p.id).expect("a gradient for every parameter");
            p.map(|_| g)
        }
    }
    twin.clone().map(&mut Swap(grads)).to_weights()
}

#[test]
fn the_loss_of_a_batch_is_the_token_weighted_mean_of_its_rows() {
    let device = Device::flex();
    let (lm, _) = tiny_lm(&device);
    let all = examples();
    let batch = target_loss(&lm, None, &all, 0).unwrap();
    let mut sum = 0.0f64;
    let mut tokens = 0;
    for e in &all {
        let one = target_loss(&lm, None, std::slice::from_ref(e), 0).unwrap();
        sum += host(one.mean)[0] as f64 * one.tokens as f64;
        tokens += one.tokens;
    }
    assert_eq!(batch.tokens, tokens);
    let batched = host(batch.mean)[0] as f64;
    assert!((batched - sum / tokens as f64).abs() < 1e-5, "{batched} vs {}", sum / tokens as f64);
    let ids: BTreeSet<u32> = all.iter().flat_map(|e| e.target.clone()).collect();
    assert!(ids.len() > 3);
    assert!(target_loss(&lm, None, &[Example { prefix: vec![1], target: vec![99] }], 0).is_err(), "ids outside the vocabulary are refused");
}

/// Under autodiff, attention runs burn's fallback, which needs the key/value heads repeated
/// for grouped-query attention: the loss must not change with the device.
#[test]
fn the_loss_is_the_same_with_and_without_autodiff() {
    let losses: Vec<f32> = [Device::flex(), Device::flex().autodiff()]
        .iter()
        .map(|device| {
            let (lm, base) = tiny_lm(device);
            assert!(lm.config().num_key_value_heads < lm.config().num_attention_heads);
            let cfg = tiny_config(0);
            let twin = trainable(&cfg, &base, Architecture::Evo, 0, 8, device);
            let mut rng = SplitMix64::new(2);
            let snapshot = vectors(&mut rng, 1, cfg.input_dim).remove(0);
            let diffs = vectors(&mut rng, 3, cfg.input_dim);
            host(loss_of(&twin, &lm, &cfg, &snapshot, &diffs, true, device))[0]
        })
        .collect();
    assert!((losses[0] - losses[1]).abs() < 1e-5, "{losses:?}");
}

/// The clipping norm is the global one over every parameter (PyTorch's `clip_grad_norm_`),
/// not burn's per-tensor norm: it equals the norm of all exported gradients together.
#[test]
fn the_global_gradient_norm_covers_every_parameter() {
    let device = Device::flex().autodiff();
    let (lm, base) = tiny_lm(&device);
    let cfg = tiny_config(0);
    let twin = trainable(&cfg, &base, Architecture::Evo, 0, 8, &device);
    let mut rng = SplitMix64::new(4);
    let snapshot = vectors(&mut rng, 1, cfg.input_dim).remove(0);
    let diffs = vectors(&mut rng, 2, cfg.input_dim);
    let mut grads = loss_of(&twin, &lm, &cfg, &snapshot, &diffs, true, &device).backward();
    let grads = GradientsParams::from_module(&mut grads, &twin);
    let by_name = gradient_weights(&twin, &grads);
    let expected = by_name.iter().flat_map(|(_, g)| g.data.iter()).map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
    let largest_tensor = by_name.iter().map(|(_, g)| g.data.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt()).fold(0.0, f64::max);
    let found = crate::train::optim::global_norm(&twin, &grads) as f64;
    assert!((found - expected).abs() <= 1e-5 * expected, "{found} vs {expected}");
    assert!(expected > largest_tensor * 1.01, "the test tells the global norm from one tensor's");
}

/// The capability-protection term is zero when the adapter changes nothing, positive when it
/// does, and its gradient reaches the hypernetwork.
#[test]
fn the_general_text_kl_is_zero_without_change_and_trains_the_adapter() {
    use crate::train::loss::kl_to_base;
    let device = Device::flex().autodiff();
    let (lm, base) = tiny_lm(&device);
    let mut cfg = tiny_config(0);
    cfg.gru_hidden = cfg.input_dim;
    let twin = trainable(&cfg, &base, Architecture::Static, 0, 8, &device);
    let mut rng = SplitMix64::new(3);
    let snapshot = vectors(&mut rng, 1, cfg.input_dim).remove(0);
    let windows = vec![(0..12).map(|i| (i * 7 % 40) as u32).collect::<Vec<_>>(), (0..12).map(|i| (i * 11 % 40) as u32).collect()];
    let factors = twin.adapter(twin.initial_state(row(&snapshot, &device)));
    let zero: Vec<Factors> = factors.iter().map(|f| Factors { module: f.module, a: f.a.clone().mul_scalar(0.0), b: f.b.clone() }).collect();
    let layers = lm.config().num_hidden_layers;
    let none = host(kl_to_base(&lm, &Lora::from_factors(&zero, cfg.rank, cfg.alpha, layers, true), &windows).unwrap())[0];
    assert!(none.abs() < 1e-6, "{none}");
    let kl = kl_to_base(&lm, &Lora::from_factors(&factors, cfg.rank, cfg.alpha, layers, true), &windows).unwrap();
    assert!(host(kl.clone())[0] > 0.0);
    let mut grads = kl.backward();
    let grads = GradientsParams::from_module(&mut grads, &twin);
    let by_name = gradient_weights(&twin, &grads);
    assert!(by_name.get("head.trunk.0.weight").unwrap().data.iter().any(|&g| g != 0.0));
    assert!(kl_to_base(&lm, &Lora::from_factors(&factors, cfg.rank, cfg.alpha, layers, true), &[vec![1, 2], vec![3]]).is_err(), "ragged windows are refused");
}
