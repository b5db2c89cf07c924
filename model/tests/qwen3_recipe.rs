//! The Qwen3 recipe end to end against the authors' recipe run by Hugging Face
//! transformers on the same model directory (tests/fixtures/qwen3-recipe, made by
//! tests/reference/make_qwen3_recipe_fixture.py): a tiny random Qwen3 with the real
//! vocabulary, the genuine tokenizer in its Qwen3-Embedding form, real files and diffs.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use evolora_model::encoder::qwen3::Qwen3Encoder;
use evolora_model::tokenizer::{QwenTokenizer, with_appended_eos};
use safetensors::SafeTensors;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn corpus(name: &str) -> String {
    String::from_utf8_lossy(&std::fs::read(root().join("tests/fixtures/tokenizer/corpus").join(name)).unwrap()).into_owned()
}

fn assert_close(name: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let worst = got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("{name}: max relative error {:.2e}", worst / scale);
    assert!(worst / scale < 1e-4, "{name}: max relative error {:.2e}", worst / scale);
}

#[test]
fn diffs_files_and_snapshots_equal_the_authors_recipe_run_by_transformers() {
    let fixture = root().join("tests/fixtures/qwen3-recipe");
    let tokenizer = std::env::var_os("EVOLORA_QWEN_TOKENIZER").map(PathBuf::from).unwrap_or_else(|| root().join("target/qwen-tokenizer/tokenizer.json"));
    assert!(tokenizer.is_file(), "{} is missing: run ./scripts/fetch-qwen-tokenizer.sh (./scripts/test.sh does)", tokenizer.display());
    let tmp = tempfile::tempdir().unwrap();
    let variant = tmp.path().join("tokenizer.json");
    std::fs::write(&variant, with_appended_eos(&std::fs::read(&tokenizer).unwrap()).unwrap()).unwrap();
    let encoder = Qwen3Encoder::load(&fixture.join("model"), QwenTokenizer::from_file(&variant).unwrap(), &Device::flex()).unwrap();

    let bytes = std::fs::read(fixture.join("expected.safetensors")).unwrap();
    let expected = SafeTensors::deserialize(&bytes).unwrap();
    let want = |name: &str| -> Vec<f32> {
        let t = expected.tensor(name).unwrap_or_else(|_| panic!("fixture lacks `{name}`"));
        t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
    };

    let rust_diff = corpus("rust.diff");
    let diffs = [("diff.rust", rust_diff.clone()), ("diff.python", corpus("python.diff")), ("diff.empty", String::new()), ("diff.long", rust_diff.repeat(4))];
    for (name, text) in &diffs {
        assert_close(name, &encoder.diff_vector(text).unwrap(), &want(name));
    }

    let reference = corpus("code2lora_ref.py");
    let files = [
        ("file.code2lora_ref", reference.clone()),
        ("file.make_qwen_fixtures", corpus("make_qwen_fixtures.py")),
        ("file.edge_cases", corpus("edge_cases.py")),
        ("file.empty", corpus("empty.py")),
        ("file.long", reference.repeat(3)),
    ];
    let mut vectors = Vec::new();
    for (name, text) in &files {
        match encoder.file_vector(text).unwrap() {
            Some(v) => {
                assert_close(name, &v, &want(name));
                vectors.push(v);
            }
            None => assert!(expected.tensor(name).is_err(), "{name}: the recipe gives it a vector, evolora none"),
        }
    }
    assert_close("snapshot", &encoder.snapshot_vector(&vectors), &want("snapshot"));
}
