//! The Qwen transformer against an independent numpy reference (tests/reference/qwen_ref.py)
//! on tiny random configurations, and against Hugging Face transformers' own outputs
//! (tests/fixtures/qwen/, made by tests/reference/make_qwen_fixtures.py).

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use common::{Tensors, host, reference, relative_error, root};
use evolora_model::transformer::{Head, Qwen};

/// Runs the model of `dir` on its inputs and compares with `expected.safetensors`; returns
/// the worst relative error.
fn compare(dir: &Path, head: Head) -> f64 {
    let model = Qwen::load(dir, head, &Device::flex()).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let inputs = Tensors::read(&dir.join("inputs.safetensors"));
    let expected = Tensors::read(&dir.join("expected.safetensors"));
    let (shape, ids) = inputs.get("input_ids").unwrap();
    let (batch, len) = (shape[0], shape[1]);
    let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
    let real: Vec<bool> = inputs.get("attention_mask").unwrap().1.iter().map(|&m| m != 0.0).collect();
    let hidden = model.forward(&ids, batch, Some(&real), None);
    let hidden_size = model.config().hidden_size;
    let mut worst = 0.0f64;
    let (_, want) = expected.get("last_hidden_state").unwrap();
    let got = host(hidden.clone());
    worst = worst.max(relative_error(&got, want, |i| real[i / hidden_size]));
    if let Some((_, want)) = expected.get("masked_mean") {
        let mut means = vec![0.0f32; batch * hidden_size];
        for b in 0..batch {
            let n = real[b * len..(b + 1) * len].iter().filter(|&&r| r).count() as f32;
            for t in (0..len).filter(|&t| real[b * len + t]) {
                for h in 0..hidden_size {
                    means[b * hidden_size + h] += got[(b * len + t) * hidden_size + h] / n;
                }
            }
        }
        worst = worst.max(relative_error(&means, want, |_| true));
    }
    if head == Head::CausalLm
        && let Some((_, want)) = expected.get("logits")
    {
        let vocab = model.config().vocab_size;
        let logits = host(model.logits(hidden).unwrap());
        worst = worst.max(relative_error(&logits, want, |i| real[i / vocab]));
    }
    worst
}

fn make(dir: &Path, seed: u32, args: &[&str]) {
    let seed = seed.to_string();
    let mut all = vec!["make", dir.to_str().unwrap(), "--seed", &seed];
    all.extend_from_slice(args);
    reference(&all);
}

#[test]
fn random_configurations_match_the_numpy_reference() {
    let cases: &[(&str, &[&str])] = &[
        ("qwen2 GQA 4:2, q/k/v bias, tied", &["--arch", "qwen2"]),
        ("qwen2 MHA, untied, 2 shards", &["--arch", "qwen2", "--heads", "2", "--kv-heads", "2", "--untied", "--shards", "2"]),
        ("qwen2 GQA 6:2, head_dim 4, bf16", &["--arch", "qwen2", "--hidden", "24", "--heads", "6", "--kv-heads", "2", "--dtype", "bf16"]),
        ("qwen3 head_dim 16 ≠ 32/4, GQA 4:2", &["--arch", "qwen3"]),
        ("qwen3 bare (no model. prefix), 8:1, head_dim 8", &["--arch", "qwen3", "--prefix", "none", "--heads", "8", "--kv-heads", "1", "--head-dim", "8"]),
        ("qwen3 attention bias, f16, untied, 3 layers", &["--arch", "qwen3", "--attention-bias", "--dtype", "f16", "--untied", "--layers", "3"]),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (i, (what, args)) in cases.iter().enumerate() {
        let dir = tmp.path().join(format!("case{i}"));
        make(&dir, 10 + i as u32, args);
        let head = if args.contains(&"none") { Head::None } else { Head::CausalLm };
        let err = compare(&dir, head);
        println!("{what}: max relative error {err:.2e}");
        assert!(err < 1e-5, "{what}: max relative error {err:.2e}");
    }
}

#[test]
fn hugging_face_outputs_are_reproduced() {
    let fixtures = root().join("tests/fixtures/qwen");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&fixtures).unwrap().flatten().map(|e| e.path()).filter(|p| p.join("config.json").is_file()).collect();
    dirs.sort();
    assert!(dirs.len() >= 4, "fixtures missing under {}", fixtures.display());
    for dir in dirs {
        let expected = Tensors::read(&dir.join("expected.safetensors"));
        let head = if expected.get("logits").is_some() { Head::CausalLm } else { Head::None };
        let err = compare(&dir, head);
        println!("{}: max relative error {err:.2e}", dir.display());
        assert!(err < 1e-5, "{}: max relative error {err:.2e}", dir.display());
    }
}

#[test]
fn decoding_with_the_cache_equals_a_full_forward() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    make(&dir, 3, &["--arch", "qwen3", "--batch", "2", "--seq", "9"]);
    let model = Qwen::load(&dir, Head::CausalLm, &Device::flex()).unwrap();
    let ids: Vec<u32> = (0..18).map(|i| (i * 7 % 97) as u32).collect();
    let full = host(model.forward(&ids, 2, None, None));
    let h = model.config().hidden_size;
    let mut cache = model.cache();
    // Rows of 9: a prefix of 5 at once, then one token at a time.
    let rows = |from: usize, to: usize| -> Vec<u32> { (0..2).flat_map(|r| ids[r * 9 + from..r * 9 + to].to_vec()).collect() };
    let mut stepped = [Vec::new(), Vec::new()];
    let mut push = |out: Vec<f32>, len: usize| {
        for (r, row) in stepped.iter_mut().enumerate() {
            row.extend_from_slice(&out[r * len * h..(r + 1) * len * h]);
        }
    };
    push(host(model.forward(&rows(0, 5), 2, None, Some(&mut cache))), 5);
    for t in 5..9 {
        push(host(model.forward(&rows(t, t + 1), 2, None, Some(&mut cache))), 1);
    }
    assert_eq!(cache.len(), 9);
    let stepped: Vec<f32> = stepped.concat();
    let scale = full.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = full.iter().zip(&stepped).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst / scale < 1e-5, "cached decoding differs by {worst} (scale {scale})");
}

#[test]
fn broken_directories_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    make(&dir, 4, &["--arch", "qwen2"]);
    let device = Device::flex();
    let load = |d: &Path| Qwen::load(d, Head::CausalLm, &device).map(|_| ()).unwrap_err().to_string();

    let missing = load(&tmp.path().join("nowhere"));
    assert!(missing.contains("nowhere"), "{missing}");

    let weights = dir.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let torn = load(&dir);
    assert!(torn.contains("model.safetensors"), "{torn}");
    std::fs::write(&weights, &bytes).unwrap();

    let config = dir.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("\"qwen2\"", "\"gpt_neox\"").replace("Qwen2ForCausalLM", "GPTNeoXForCausalLM")).unwrap();
    let other = load(&dir);
    assert!(other.contains("unsupported model") && other.contains("gpt_neox"), "{other}");

    // A config that does not match the weights: the tensor is named.
    std::fs::write(&config, text.replace("\"intermediate_size\": 48", "\"intermediate_size\": 40")).unwrap();
    let shape = load(&dir);
    assert!(shape.contains("mlp.gate_proj.weight"), "{shape}");
}
