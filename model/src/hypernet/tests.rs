use sha2::{Digest, Sha256};

use super::*;
use crate::nn::init::SplitMix64;

/// The state's bits must not depend on how commits were grouped into calls.
#[test]
fn a_state_is_bit_identical_however_the_steps_were_grouped() {
    let mut cfg = HyperConfig::preset("compact").unwrap();
    cfg.head_hidden = 8;
    let model = Hypernetwork::untrained(cfg.clone(), small_base(), 11, "hashed-v1", Device::default()).unwrap();
    let mut rng = SplitMix64::new(5);
    let diffs: Vec<Vec<f32>> = (0..45).map(|_| (0..cfg.input_dim).map(|_| rng.next_symmetric()).collect()).collect();
    let h0 = model.initial_state(&diffs[0]).unwrap();
    let at_once = model.advance(&h0, &diffs).unwrap();
    for cuts in [vec![1, 44], vec![7, 9, 16, 13], vec![3; 15], vec![1; 45], vec![20, 25]] {
        let (mut h, mut steps) = (h0.clone(), 0usize);
        for n in cuts {
            h = model.advance(&h, &diffs[steps..steps + n]).unwrap();
            steps += n;
        }
        let same = h.iter().zip(&at_once).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "grouping changed the state's bits");
    }
    assert_ne!(model.advance(&h0, &diffs[..44]).unwrap(), at_once, "the test can tell states apart");
    // Nor on the machine's core count.
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let h = pool.install(|| model.advance(&h0, &diffs).unwrap());
        assert!(h.iter().zip(&at_once).all(|(a, b)| a.to_bits() == b.to_bits()), "{threads} threads changed the state's bits");
    }
}

fn small_base() -> BaseModelShapes {
    BaseModelShapes {
        name: "test/small".into(),
        hidden_size: 32,
        intermediate_size: 48,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 8,
        num_hidden_layers: 1,
        family: None,
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
/// deployment has published so far. They changed deliberately when the head's products
/// moved to the streamed few-row kernel (adapters only), and when the GRU's recurrence moved
/// to host kernels with a fixed order of sums (states and adapters; numerics version 3 in
/// the fingerprint, so stored states rebuild rather than mix), and when the head's tanh
/// became our own vectorised one instead of the system libm's (adapters only, within two
/// units in the last place).
#[test]
fn the_untrained_model_keeps_its_outputs() {
    let cfg = HyperConfig::preset("compact").unwrap();
    let model = Hypernetwork::untrained(cfg.clone(), small_base(), 7, "hashed-v1", Device::default()).unwrap();
    let mut rng = SplitMix64::new(3);
    let mut vector = || (0..cfg.input_dim).map(|_| rng.next_symmetric()).collect::<Vec<f32>>();
    let snapshot = vector();
    let diffs: Vec<Vec<f32>> = (0..3).map(|_| vector()).collect();
    let h0 = model.initial_state(&snapshot).unwrap();
    let h = model.advance(&h0, &diffs).unwrap();
    let adapter: Vec<f32> = model.adapter(&h).unwrap().pairs.iter().flat_map(|p| p.a.iter().chain(&p.b).copied()).collect();
    let found = [bits_digest(&h0), bits_digest(&h), bits_digest(&adapter)];
    let expected = [
        "500ec3f9bef2056d08339b0d5d7148a225ad3e95ec0fa95d46e0130b682071d6",
        "c88ada630e9db37a304362f848ab66a449b9f0a214eb2d30ad0c62283636bc69",
        "bb45762ed4242361eb11c22365dde5a79afdb5107dd9af4ed4c4f89557a89ca5",
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
