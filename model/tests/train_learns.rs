//! Training learns conditioning: scripted repositories whose tests expect a value that only
//! the repository's own code tells (a different name in each), a tiny frozen LM that cannot
//! know it, and a tiny hypernetwork trained end to end through the LM. On held-out tasks the
//! repository's own adapter must answer, while another repository's adapter and the mean
//! adapter must not; with the repository embedding replaced by a constant, nothing can. A
//! run stopped and resumed ends where an uninterrupted one does.

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use evolora_model::encoder::HashedEncoder;
use evolora_model::hypernet::seeded_weights;
use evolora_model::nn::Seeded;
use evolora_model::nn::init::SplitMix64;
use evolora_model::checkpoint;
use evolora_model::train::{Conditioning, Example, OptimSettings, RepoData, Schedule, Task, TrainSettings, TrainableHypernet, Trainer, target_loss};
use evolora_model::transformer::{Head, Lora, Qwen, QwenConfig};
use evolora_model::{Architecture, BaseModelShapes, HyperConfig, Hypernetwork, StepPolicy};

const REPOS: usize = 10;
const VOCAB: usize = 40;
/// Token ids: 2 ends a target, 3 asks the question, 4..20 are context, 20.. are the values.
const EOS: u32 = 2;
const QUERY: u32 = 3;
const FIRST_VALUE: u32 = 20;

fn tiny_lm(device: &Device) -> (Qwen, BaseModelShapes) {
    let json = br#"{"model_type":"qwen2","hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,
        "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":40,"tie_word_embeddings":true}"#;
    let cfg = QwenConfig::from_json(json, Path::new("<tiny>")).unwrap();
    assert_eq!(cfg.vocab_size, VOCAB);
    let lm = Qwen::new(&cfg, Head::CausalLm, &mut Seeded::new(3), device).unwrap().no_grad();
    (lm, cfg.shapes("tiny"))
}

/// Repository `k`'s code: the value its tests expect is named in its settings module.
fn code(k: usize) -> String {
    let names = ["amber", "birch", "cobalt", "dune", "ember", "fjord", "garnet", "harbor", "indigo", "juniper"];
    format!(
        "DEFAULT_BACKEND = \"{n}\"\n\ndef backend_name():\n    return DEFAULT_BACKEND\n\nclass {N}Client:\n    def connect(self, host):\n        return open_{n}(host)\n",
        n = names[k],
        N = names[k].to_uppercase()
    )
}

/// A task: some context, the question, and the repository's value.
fn task(k: usize, rng: &mut SplitMix64) -> Task {
    let len = 3 + rng.below(6);
    let mut prefix: Vec<u32> = (0..len).map(|_| 4 + rng.below(16) as u32).collect();
    prefix.push(QUERY);
    Task { commit: 0, example: Example { prefix, target: vec![FIRST_VALUE + k as u32, EOS] } }
}

fn corpus(constant_embedding: bool) -> (Vec<RepoData>, Vec<Vec<Task>>) {
    let mut rng = SplitMix64::new(42);
    let mut repos = Vec::new();
    let mut held_out = Vec::new();
    for k in 0..REPOS {
        let text = code(k);
        let snapshot = if constant_embedding { HashedEncoder::LATEST.encode_snapshot([("app/settings.py", code(0).as_str())]).vector } else { HashedEncoder::LATEST.encode_snapshot([("app/settings.py", text.as_str())]).vector };
        let tasks = (0..24).map(|_| task(k, &mut rng)).collect();
        held_out.push((0..8).map(|_| task(k, &mut rng)).collect());
        repos.push(RepoData { name: format!("repo{k}"), snapshot, diffs: Vec::new(), tasks });
    }
    (repos, held_out)
}

/// The hypernetwork the Static tests train: the snapshot is the state, a small head.
fn static_config() -> HyperConfig {
    let mut cfg = HyperConfig::preset("tiny").unwrap();
    (cfg.gru_hidden, cfg.head_hidden, cfg.rank, cfg.alpha) = (HashedEncoder::DIM, 16, 4, 8.0);
    cfg
}

/// A seeded model of `cfg` on `device`.
fn seeded(cfg: &HyperConfig, base: &BaseModelShapes, architecture: Architecture, seed: u64, device: &Device) -> TrainableHypernet {
    let mut weights = seeded_weights(cfg, base, seed, architecture.has_gru());
    TrainableHypernet::from_weights(cfg, base, architecture, 0, &mut weights, device).unwrap()
}

/// What the tests train with: a step per micro-batch of 8 tasks, short examples.
fn settings(steps: usize, peak: f64, warmup: usize, seed: u64) -> TrainSettings {
    TrainSettings {
        optim: OptimSettings { accumulate: 1, ..OptimSettings::paper(Schedule { peak, warmup, total: steps }) },
        tasks_per_batch: 8,
        bptt: 16,
        max_len: 64,
        seed,
        detach_branch_input: true,
        kl_weight: 0.0,
    }
}

/// Before and after training, and the exact match the saved checkpoint gives through the
/// serving path (loader, host GRU and head, adapter attached to the LM without autodiff):
/// own and shuffled.
fn train(constant_embedding: bool) -> (Conditioning, Conditioning, (f64, f64)) {
    let device = Device::flex().autodiff();
    let (lm, base) = tiny_lm(&device);
    let cfg = static_config();
    let model = seeded(&cfg, &base, Architecture::Static, 5, &device);
    let steps = 1000;
    let (repos, held_out) = corpus(constant_embedding);
    let mut trainer = Trainer::new(model, &lm, cfg, settings(steps, 2e-2, 15, 1), EOS);
    let before = trainer.conditioning(&repos, &held_out).unwrap();
    let started = Instant::now();
    while trainer.steps() < steps {
        let (loss, _) = trainer.micro_step(&repos).unwrap();
        assert!(loss.is_finite());
    }
    let after = trainer.conditioning(&repos, &held_out).unwrap();
    eprintln!("constant embedding {constant_embedding}: {steps} steps in {:.1} s; before {before:?}; after {after:?}", started.elapsed().as_secs_f32());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trained.safetensors");
    trainer.save(&path, &base, HashedEncoder::LATEST.id(), StepPolicy::EveryCommit).unwrap();
    (before, after, served(&path, &repos, &held_out))
}

/// Exact match with the checkpoint loaded the daemon's way.
fn served(path: &Path, repos: &[RepoData], held_out: &[Vec<Task>]) -> (f64, f64) {
    let device = Device::flex();
    let (lm, base) = tiny_lm(&device);
    let mut ck = checkpoint::load(path, &base).unwrap();
    assert!(ck.meta.trained);
    let model = Hypernetwork::from_weights(ck.config, base, &mut ck.weights, ck.meta, device.clone()).unwrap();
    let adapters: Vec<Lora> = repos
        .iter()
        .map(|r| {
            let state = model.initial_state(&r.snapshot).unwrap();
            Lora::from_adapter_weights(&model.adapter(&state).unwrap(), lm.config().num_hidden_layers, &device)
        })
        .collect();
    let (mut own, mut shuffled, mut total) = (0, 0, 0);
    for (k, tasks) in held_out.iter().enumerate() {
        let examples: Vec<Example> = tasks.iter().map(|t| t.example.clone()).collect();
        let hits = |lora: &Lora| target_loss(&lm, Some(lora), &examples, EOS).unwrap().exact.iter().filter(|&&e| e).count();
        own += hits(&adapters[k]);
        shuffled += hits(&adapters[(k + 1) % repos.len()]);
        total += examples.len();
    }
    (own as f64 / total as f64, shuffled as f64 / total as f64)
}

#[test]
fn training_makes_each_repository_s_adapter_answer_for_it() {
    let (before, after, (served_own, served_shuffled)) = train(false);
    assert!(before.own <= 0.2, "the untrained model does not know the values: {before:?}");
    assert!(after.own >= 0.8, "own adapter: {after:?}");
    assert!(after.shuffled <= 0.2, "another repository's adapter: {after:?}");
    assert!(after.mean <= 0.2, "the mean adapter: {after:?}");
    assert!(after.own_loss < before.own_loss);
    // The saved checkpoint, served the daemon's way, answers as the trained twin did.
    assert!((served_own - after.own).abs() < 0.05 && served_shuffled <= 0.2, "served: own {served_own}, shuffled {served_shuffled}; trained {after:?}");
}

#[test]
fn with_a_constant_embedding_no_adapter_can_answer() {
    let (_, after, _) = train(true);
    assert!(after.own < 0.8, "a constant embedding carries no repository: {after:?}");
}

/// Evo: each repository renames its backend in its third commit, so the answer depends on
/// the commit. The GRU must carry the origin's value and replace it when the diff that
/// renames it arrives.
#[test]
fn the_commit_gru_learns_to_follow_a_value_through_history() {
    use evolora_model::encoder::{DiffInput, FileDiff};
    let names = ["amber", "birch", "cobalt", "dune", "ember", "fjord", "garnet", "harbor", "indigo", "juniper"];
    let setting = |n: &str| format!("DEFAULT_BACKEND = \"{n}\"\n");
    let diff = |added: String, removed: String| HashedEncoder::LATEST.encode_diff(&DiffInput { files: vec![FileDiff { path: "app/settings.py".into(), added, removed }], truncated: false }).vector;
    let mut rng = SplitMix64::new(7);
    let (mut repos, mut held_early, mut held_late) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..REPOS {
        let (old, new) = (k, (k + 3) % REPOS);
        let snapshot = HashedEncoder::LATEST.encode_snapshot([("app/settings.py", code(k).as_str())]).vector;
        let diffs = vec![
            diff(format!("def retries():\n    return {}\n", k + 2), String::new()),
            diff(setting(names[new]), setting(names[old])),
            diff("def timeout():\n    return 30\n".into(), String::new()),
        ];
        // The answer at commit c: the old value before the rename (c < 2), the new one after.
        let at = |commit: usize, rng: &mut SplitMix64| {
            let mut t = task(if commit < 2 { old } else { new }, rng);
            t.commit = commit;
            t
        };
        let tasks = (0..32).map(|i| at([0, 1, 2, 3][i % 4], &mut rng)).collect();
        held_early.push((0..6).map(|_| at(1, &mut rng)).collect::<Vec<_>>());
        held_late.push((0..6).map(|_| at(3, &mut rng)).collect::<Vec<_>>());
        repos.push(RepoData { name: format!("repo{k}"), snapshot, diffs, tasks });
    }
    let device = Device::flex().autodiff();
    let (lm, base) = tiny_lm(&device);
    let mut cfg = HyperConfig::preset("tiny").unwrap();
    (cfg.gru_hidden, cfg.head_hidden, cfg.rank, cfg.alpha) = (32, 16, 4, 8.0);
    let model = seeded(&cfg, &base, Architecture::Evo, 5, &device);
    let steps = 2500;
    let mut trainer = Trainer::new(model, &lm, cfg, settings(steps, 1e-2, 50, 3), EOS);
    let started = Instant::now();
    while trainer.steps() < steps {
        trainer.micro_step(&repos).unwrap();
    }
    let early = trainer.conditioning(&repos, &held_early).unwrap();
    let late = trainer.conditioning(&repos, &held_late).unwrap();
    eprintln!("evo: {steps} steps in {:.1} s; before the rename {early:?}; after it {late:?}", started.elapsed().as_secs_f32());
    assert!(early.own >= 0.8, "the origin's value, carried by the state: {early:?}");
    assert!(late.own >= 0.8, "the renamed value, taken from the diff: {late:?}");
    assert!(late.shuffled <= 0.2 && late.mean <= 0.2, "{late:?}");
}

/// A run stopped between two optimiser steps and resumed in a new trainer (built from other
/// weights, so nothing carries over but the saved state) ends bit-identical to a run that
/// never stopped: model, AdamW moments, step count and the data stream all resume.
#[test]
fn a_resumed_run_ends_bit_identical_to_an_uninterrupted_one() {
    let device = Device::flex().autodiff();
    let (lm, base) = tiny_lm(&device);
    let cfg = static_config();
    let fresh = |seed: u64| seeded(&cfg, &base, Architecture::Static, seed, &device);
    let mut settings = settings(12, 2e-2, 3, 9);
    (settings.optim.accumulate, settings.tasks_per_batch) = (2, 4);
    let (repos, _) = corpus(false);
    let run_to = |trainer: &mut Trainer, steps: usize| {
        while trainer.steps() < steps {
            trainer.micro_step(&repos).unwrap();
        }
    };
    let mut straight = Trainer::new(fresh(5), &lm, cfg.clone(), settings.clone(), EOS);
    run_to(&mut straight, 12);

    let mut first = Trainer::new(fresh(5), &lm, cfg.clone(), settings.clone(), EOS);
    run_to(&mut first, 5);
    let saved = first.resume_state().unwrap().expect("between steps");
    first.micro_step(&repos).unwrap();
    assert!(first.resume_state().unwrap().is_none(), "mid-step there is no resumable state");
    drop(first);
    let mut resumed = Trainer::resume(fresh(77), &lm, cfg.clone(), settings, EOS, &saved).unwrap();
    assert_eq!(resumed.steps(), 5);
    run_to(&mut resumed, 12);

    let (a, b) = (straight.weights(), resumed.weights());
    let mut compared = 0;
    for (name, t) in a.iter() {
        let u = b.get(name).unwrap();
        assert!(t.data.iter().zip(&u.data).all(|(x, y)| x.to_bits() == y.to_bits()), "{name} differs after resuming");
        compared += t.data.len();
    }
    assert!(compared > 1000);
    assert_ne!(straight.weights().get("head.trunk.0.weight").unwrap().data, seeded_weights(&cfg, &base, 5, false).get("head.trunk.0.weight").unwrap().data, "training moved the weights");
}

/// The capability-protection term does its job: trained with it, the adapters move the base
/// model less on general text than trained without it, and still answer their repositories.
#[test]
fn the_kl_term_keeps_adapters_closer_to_the_base_on_general_text() {
    let device = Device::flex().autodiff();
    let (lm, base) = tiny_lm(&device);
    let cfg = static_config();
    let (repos, held_out) = corpus(false);
    let mut rng = SplitMix64::new(5);
    let general: Vec<Vec<u32>> = (0..16).map(|_| (0..12).map(|_| 4 + rng.below(36) as u32).collect()).collect();
    let run = |kl_weight: f32| {
        let model = seeded(&cfg, &base, Architecture::Static, 5, &device);
        let steps = 1000;
        let settings = TrainSettings { kl_weight, ..settings(steps, 2e-2, 15, 1) };
        let mut trainer = Trainer::new(model, &lm, cfg.clone(), settings, EOS).with_general_text(general[..8].to_vec());
        while trainer.steps() < steps {
            trainer.micro_step(&repos).unwrap();
        }
        // Drift measured on windows the term never saw.
        (trainer.general_drift(&repos, &general[8..]).unwrap(), trainer.conditioning(&repos, &held_out).unwrap())
    };
    let (free, free_cond) = run(0.0);
    let (kept, kept_cond) = run(20.0);
    eprintln!("general-text KL: {free:.4} without the term ({free_cond:?}), {kept:.4} with it ({kept_cond:?})");
    assert!(kept < 0.5 * free, "the term halves the drift at least: {kept} vs {free}");
    assert!(kept_cond.own >= 0.8, "{kept_cond:?}");
}
