//! The GGUF LoRA writer against llama.cpp's own reader (PyPI `gguf`, in
//! tests/reference/check_gguf.py): the hypernetwork's adapter written as PEFT and GGUF in one
//! directory, for every dtype, must hold the same tensors bit for bit under llama.cpp's names
//! and orientation, with the metadata and shapes llama.cpp's loader requires of the base.

mod common;

use std::path::Path;
use std::process::Command;

use burn::tensor::Device;
use common::root;
use evolora_model::peft::{AdapterDtype, Formats, GGUF_FILE, TEMP_PREFIX, write_adapter_dir, write_adapter_dir_with, write_gguf};
use evolora_model::{AdapterWeights, BaseModelShapes, HyperConfig, Hypernetwork, ModelError, ModuleType};

/// A Hugging Face config.json of a small base: no projection is square, so an A and B (or
/// ne) swapped anywhere changes a shape the check sees; with rank 3 no tensor fills whole
/// 32-byte blocks, so every tensor is followed by padding.
fn base_config(dir: &Path, model_type: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{model_type}-config.json"));
    let config = serde_json::json!({
        "_name_or_path": format!("test/{model_type}-small"),
        "model_type": model_type,
        "hidden_size": 20,
        "intermediate_size": 36,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 6,
        "num_hidden_layers": 3,
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    path
}

fn adapter(base: &BaseModelShapes, modules: &[ModuleType]) -> AdapterWeights {
    let mut cfg = HyperConfig::preset("tiny").unwrap();
    cfg.rank = 3;
    cfg.alpha = 12.0;
    cfg.module_types = modules.to_vec();
    let hyper = Hypernetwork::untrained(cfg, base.clone(), 5, "hashed", Device::flex()).unwrap();
    let state: Vec<f32> = (0..hyper.state_dim()).map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0).collect();
    hyper.adapter(&state).unwrap()
}

fn check(dir: &Path, config: &Path) {
    let script = root().join("tests/reference/check_gguf.py");
    let out = Command::new("python3").arg(&script).arg(dir).arg(config).output().expect("python3 is needed by the tests (./scripts/test.sh installs it)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("No module named 'numpy'"), "numpy is needed by the tests: run ./scripts/test.sh or `python3 -m pip install numpy`");
    assert!(!err.contains("No module named 'gguf'"), "gguf is needed by the tests: run ./scripts/test.sh or `python3 -m pip install gguf`");
    assert!(out.status.success(), "check_gguf.py {} failed:\n{}{err}", dir.display(), String::from_utf8_lossy(&out.stdout));
    print!("{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn gguf_matches_peft_for_every_dtype_under_llama_cpp_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("qwen2", AdapterDtype::F32, ModuleType::ALL.to_vec()),
        ("qwen2", AdapterDtype::F16, ModuleType::ALL.to_vec()),
        ("qwen2", AdapterDtype::Bf16, ModuleType::ALL.to_vec()),
        ("qwen3", AdapterDtype::F32, vec![ModuleType::Down, ModuleType::O, ModuleType::Q, ModuleType::V]),
    ];
    for (model_type, dtype, modules) in cases {
        let config = base_config(tmp.path(), model_type);
        let base = BaseModelShapes::resolve(config.to_str().unwrap()).unwrap();
        let weights = adapter(&base, &modules);
        let dir = tmp.path().join(format!("{model_type}-{dtype}"));
        write_adapter_dir_with(&dir, &weights, &base, dtype, &[("evolora.json", b"{}".to_vec())], Formats { gguf: true }).unwrap();
        check(&dir, &config);

        // The returned size is the file's, and the file holds every layer's copy.
        let again = tmp.path().join(format!("{model_type}-{dtype}.gguf"));
        let size = write_gguf(&again, &weights, &base, dtype).unwrap();
        assert_eq!(size, std::fs::metadata(&again).unwrap().len());
        assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(dir.join(GGUF_FILE)).unwrap(), "the same adapter writes the same bytes");
        let per_layer: usize = weights.pairs.iter().map(|p| p.a.len() + p.b.len()).sum();
        let bytes = if dtype == AdapterDtype::F32 { 4 } else { 2 };
        assert!(size as usize > per_layer * base.num_hidden_layers * bytes, "{size} bytes cannot hold {} layers", base.num_hidden_layers);
    }
}

#[test]
fn the_plain_writer_writes_no_gguf_and_a_base_of_unknown_family_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let config = base_config(tmp.path(), "qwen2");
    let mut base = BaseModelShapes::resolve(config.to_str().unwrap()).unwrap();
    let weights = adapter(&base, &ModuleType::ALL);

    let plain = tmp.path().join("plain");
    write_adapter_dir(&plain, &weights, &base, AdapterDtype::F32, &[]).unwrap();
    assert!(plain.join("adapter_model.safetensors").exists() && !plain.join(GGUF_FILE).exists());

    // llama.cpp refuses an adapter whose architecture differs from the base's: with none
    // known, the whole directory fails rather than carrying a guessed one.
    base.family = None;
    let dir = tmp.path().join("unknown");
    let err = write_adapter_dir_with(&dir, &weights, &base, AdapterDtype::F32, &[], Formats { gguf: true }).unwrap_err();
    assert!(matches!(&err, ModelError::Gguf { .. }), "{err}");
    assert!(err.to_string().contains("Qwen2 or Qwen3"), "{err}");
    assert!(!dir.exists());
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX)).collect();
    assert!(left.is_empty(), "temporary directory left behind: {left:?}");
}
