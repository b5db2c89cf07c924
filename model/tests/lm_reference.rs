//! The base LM with LoRA against Hugging Face transformers + peft (tests/fixtures/lm/, made by
//! tests/reference/make_lm_fixtures.py and re-checked there by the numpy reference): logits
//! with and without adapters of every layout, greedy generations token for token, the
//! hypernetwork's adapter in memory against the same adapter from disk, and adapters that
//! PEFT or vLLM would refuse or silently ignore.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use common::{Tensors, host, relative_error, root};
use evolora_model::peft::{AdapterDtype, PeftAdapter, write_adapter_dir};
use evolora_model::transformer::{Greedy, Input, Lora, greedy, greedy_until};
use evolora_model::{HyperConfig, Hypernetwork, LanguageModel};
use safetensors::SafeTensors;
use serde_json::Value;

fn fixtures() -> PathBuf {
    root().join("tests/fixtures/lm")
}

fn load() -> LanguageModel {
    LanguageModel::load(&fixtures().join("base"), &Device::flex()).unwrap()
}

fn generations() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("generations.json")).unwrap()).unwrap()
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// The padded batch's logits with `lora`, and the worst relative error against `logits.{name}`.
fn batch_error(lm: &LanguageModel, lora: Option<&Lora>, name: &str) -> f64 {
    let expected = Tensors::read(&fixtures().join("expected.safetensors"));
    let (shape, ids) = expected.get("input_ids").unwrap();
    let (rows, len) = (shape[0], shape[1]);
    let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
    let real: Vec<bool> = expected.get("attention_mask").unwrap().1.iter().map(|&m| m != 0.0).collect();
    let hidden = lm.model.forward_with(&Input { ids: &ids, rows, mask: Some(&real), positions: None }, None, lora);
    let logits = host(lm.model.logits(hidden).unwrap());
    let vocab = lm.model.config().vocab_size;
    assert_eq!(logits.len(), rows * len * vocab);
    relative_error(&logits, expected.get(&format!("logits.{name}")).unwrap().1, |i| real[i / vocab])
}

#[test]
fn logits_with_and_without_adapters_match_transformers_and_peft() {
    let lm = load();
    let base = batch_error(&lm, None, "base");
    println!("base: {base:.2e}");
    assert!(base < 1e-4, "base logits off by {base:.2e}");
    for name in ["per-layer", "replicated", "rslora-partial"] {
        let (_, lora) = lm.load_adapter(&fixtures().join("adapters").join(name)).unwrap();
        let err = batch_error(&lm, Some(&lora), name);
        println!("{name}: {err:.2e}");
        assert!(err < 1e-4, "{name}: logits off by {err:.2e}");
        // The adapter must matter, or the comparison above proves nothing about it.
        let unadapted = batch_error(&lm, None, name);
        assert!(unadapted > 1e-2, "{name}: the base alone is within {unadapted:.2e} of the adapted logits");
    }
}

#[test]
fn greedy_generations_are_token_identical_alone_and_batched() {
    let lm = load();
    let gens = generations();
    let prompts: Vec<Vec<u32>> = gens["prompts"].as_array().unwrap().iter().map(|p| ids_of(&p["ids"])).collect();
    let max_new = gens["max_new_tokens"].as_u64().unwrap() as usize;
    let opts = Greedy { max_new_tokens: max_new, stop: ids_of(&gens["eos"]), pad: 0 };
    for name in ["base", "per-layer", "replicated", "rslora-partial"] {
        let lora = (name != "base").then(|| lm.load_adapter(&fixtures().join("adapters").join(name)).unwrap().1);
        for (i, prompt) in prompts.iter().enumerate() {
            let alone = greedy(&lm.model, std::slice::from_ref(prompt), &opts, lora.as_ref()).unwrap();
            assert_eq!(alone[0].tokens, ids_of(&gens["greedy"][name][i]), "{name}, prompt {i} alone");
        }
        let batched = greedy(&lm.model, &prompts, &opts, lora.as_ref()).unwrap();
        for (i, g) in batched.iter().enumerate() {
            assert_eq!(g.tokens, ids_of(&gens["greedy_batched"][name][i]), "{name}, prompt {i} in the batch");
        }
    }
    // Rows stop on their own stop ids while the others go on.
    let stop = Greedy { stop: ids_of(&gens["stop"]["eos"]), ..opts };
    let batched = greedy(&lm.model, &prompts, &stop, None).unwrap();
    for (i, g) in batched.iter().enumerate() {
        let want = ids_of(&gens["stop"]["greedy_batched"][i]);
        assert_eq!(g.tokens, want, "prompt {i} with stop ids");
        assert_eq!(g.stopped, want.len() < max_new, "prompt {i}: stopped");
    }
    assert!(batched.iter().any(|g| g.stopped) && batched.iter().any(|g| !g.stopped), "the fixture stops one row and not another");

    // A row the caller calls settled ends there; the others decode on, unchanged.
    let full = greedy(&lm.model, &prompts, &opts, None).unwrap();
    let cut = greedy_until(&lm.model, &prompts, &opts, None, |row, tokens| row == 1 && tokens.len() == 3).unwrap();
    assert_eq!(cut[1].tokens, full[1].tokens[..3]);
    assert!(cut[1].settled && !cut[0].settled);
    assert_eq!((&cut[0].tokens, &cut[2].tokens), (&full[0].tokens, &full[2].tokens));
}

#[test]
fn the_hypernetworks_adapter_in_memory_equals_the_same_adapter_written_and_read() {
    let lm = load();
    let hyper = Hypernetwork::untrained(HyperConfig::preset("tiny").unwrap(), lm.shapes.clone(), 5, "hashed", Device::flex()).unwrap();
    let state: Vec<f32> = (0..hyper.state_dim()).map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0).collect();
    let weights = hyper.adapter(&state).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("adapter");
    write_adapter_dir(&dir, &weights, &lm.shapes, AdapterDtype::F32, &[]).unwrap();
    let memory = lm.adapter_from_weights(&weights);
    let (_, disk) = lm.load_adapter(&dir).unwrap();
    let ids: Vec<u32> = lm.encode("def test_total():\n    assert total(3) == ").unwrap();
    let a = lm.logits(&ids, Some(&memory)).unwrap();
    let b = lm.logits(&ids, Some(&disk)).unwrap();
    assert_eq!(a, b, "f32 on disk holds the same numbers");
    let base = lm.logits(&ids, None).unwrap();
    assert_ne!(a, base, "the untrained adapter moves the logits");
}

/// Copies a fixture adapter, letting `edit` change its config JSON and its tensors.
fn edited(name: &str, to: &Path, edit: impl FnOnce(&mut Value, &mut HashMap<String, (Vec<usize>, Vec<f32>)>)) -> PathBuf {
    let from = fixtures().join("adapters").join(name);
    let dir = to.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut config: Value = serde_json::from_slice(&std::fs::read(from.join("adapter_config.json")).unwrap()).unwrap();
    let bytes = std::fs::read(from.join("adapter_model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: HashMap<String, (Vec<usize>, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.shape().to_vec(), v.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())))
        .collect();
    edit(&mut config, &mut tensors);
    std::fs::write(dir.join("adapter_config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> = tensors.into_iter().map(|(n, (s, v))| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect())).collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> =
        raw.iter().map(|(n, s, b)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())).collect();
    std::fs::write(dir.join("adapter_model.safetensors"), safetensors::serialize(views, None).unwrap()).unwrap();
    dir
}

#[test]
fn a_zero_b_leaves_the_base_exactly() {
    let lm = load();
    let tmp = tempfile::tempdir().unwrap();
    let dir = edited("per-layer", tmp.path(), |_, t| {
        for (name, (_, v)) in t.iter_mut() {
            if name.contains("lora_B") {
                v.iter_mut().for_each(|x| *x = 0.0);
            }
        }
    });
    let (_, lora) = lm.load_adapter(&dir).unwrap();
    let ids = lm.encode("assert x == ").unwrap();
    assert_eq!(lm.logits(&ids, Some(&lora)).unwrap(), lm.logits(&ids, None).unwrap());
}

#[test]
fn adapters_that_loaders_would_refuse_or_ignore_are_refused_by_name() {
    let lm = load();
    let tmp = tempfile::tempdir().unwrap();
    let err = |dir: PathBuf| PeftAdapter::load(&dir, &lm.shapes).map(|_| ()).unwrap_err().to_string();
    let key = "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight";

    let misnamed = err(edited("per-layer", &tmp.path().join("a"), |_, t| {
        let v = t.remove(key).unwrap();
        t.insert(key.replace("q_proj", "query"), v);
    }));
    assert!(misnamed.contains("layers.1.self_attn.query.lora_A.weight") && misnamed.contains("no module of the base"), "{misnamed}");

    let wrong_prefix = err(edited("per-layer", &tmp.path().join("b"), |_, t| {
        let v = t.remove(key).unwrap();
        t.insert(key.replace("base_model.model.model.", "base_model.model."), v);
    }));
    assert!(wrong_prefix.contains("base_model.model.layers.1") && wrong_prefix.contains("serve the base model"), "{wrong_prefix}");

    let target = err(edited("per-layer", &tmp.path().join("c"), |c, _| c["target_modules"] = serde_json::json!(["q_proj", "c_attn"])));
    assert!(target.contains("`c_attn`") && target.contains("matches no module"), "{target}");

    let rank = err(edited("per-layer", &tmp.path().join("d"), |c, _| c["r"] = 8.into()));
    assert!(rank.contains(".lora_") && rank.contains("rank 4") && rank.contains("r = 8"), "{rank}");

    let transposed = err(edited("per-layer", &tmp.path().join("e"), |_, t| {
        let (shape, v) = t.remove(key).unwrap();
        t.insert(key.into(), (vec![shape[1], shape[0]], v));
    }));
    assert!(transposed.contains(key) && transposed.contains("transposed"), "{transposed}");

    let layer = err(edited("per-layer", &tmp.path().join("f"), |_, t| {
        let v = t.remove(key).unwrap();
        t.insert(key.replace("layers.1.", "layers.7."), v);
    }));
    assert!(layer.contains("layer 7") && layer.contains("3 layers"), "{layer}");

    let unlisted = err(edited("rslora-partial", &tmp.path().join("g"), |c, _| c["target_modules"] = serde_json::json!(["q_proj"])));
    assert!(unlisted.contains("v_proj") && unlisted.contains("does not list"), "{unlisted}");

    let alpha = err(edited("per-layer", &tmp.path().join("h"), |c, _| c["lora_alpha"] = Value::Null));
    assert!(alpha.contains("lora_alpha"), "{alpha}");

    let nan = err(edited("per-layer", &tmp.path().join("i"), |_, t| t.get_mut(key).unwrap().1[3] = f32::NAN));
    assert!(nan.contains(key) && nan.contains("non-finite"), "{nan}");

    let dora = err(edited("per-layer", &tmp.path().join("j"), |c, _| c["use_dora"] = true.into()));
    assert!(dora.contains("DoRA"), "{dora}");
}
