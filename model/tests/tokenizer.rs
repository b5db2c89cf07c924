//! The Qwen tokenizer against Python's `tokenizers` (tests/fixtures/tokenizer/golden.json,
//! made by tests/reference/make_tokenizer_golden.py) on real code, diffs and edge cases.
//! The genuine tokenizer.json comes from ./scripts/fetch-qwen-tokenizer.sh.

use std::path::{Path, PathBuf};

use evolora_model::ModelError;
use evolora_model::encoder::qwen3::{self, Tokenize};
use evolora_model::tokenizer::{QwenTokenizer, with_appended_eos};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The genuine Qwen tokenizer.json: `$EVOLORA_QWEN_TOKENIZER` (set by ./scripts/test.sh), else
/// where the fetch script puts it.
fn qwen_tokenizer_json() -> PathBuf {
    let path = std::env::var_os("EVOLORA_QWEN_TOKENIZER").map(PathBuf::from).unwrap_or_else(|| root().join("target/qwen-tokenizer/tokenizer.json"));
    assert!(path.is_file(), "{} is missing: run ./scripts/fetch-qwen-tokenizer.sh (./scripts/test.sh does)", path.display());
    path
}

/// The Qwen3-Embedding variant (as the golden script derives it).
fn embedding_variant(dir: &Path) -> PathBuf {
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, with_appended_eos(&std::fs::read(qwen_tokenizer_json()).unwrap()).unwrap()).unwrap();
    path
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn token_ids_equal_python_tokenizers_on_real_code() {
    let golden: Value = serde_json::from_slice(&std::fs::read(root().join("tests/fixtures/tokenizer/golden.json")).unwrap()).unwrap();
    let plain = QwenTokenizer::from_file(&qwen_tokenizer_json()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let embed = QwenTokenizer::from_file(&embedding_variant(tmp.path())).unwrap();
    let files = golden["files"].as_object().unwrap();
    assert!(files.len() >= 30, "{} corpus files", files.len());
    let mut corpus: Vec<String> = std::fs::read_dir(root().join("tests/fixtures/tokenizer/corpus")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    corpus.sort();
    assert_eq!(corpus, files.keys().cloned().collect::<Vec<_>>(), "every corpus file has golden ids (regenerate with tests/reference/make_tokenizer_golden.py)");
    let mut tokens = 0;
    for (name, want) in files {
        let bytes = std::fs::read(root().join("tests/fixtures/tokenizer/corpus").join(name)).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let got = plain.encode(&text, false).unwrap();
        assert_eq!(got, ids(&want["plain"]), "{name}: plain ids");
        tokens += got.len();
        assert_eq!(embed.encode(&text, true).unwrap(), ids(&want["embedding"]), "{name}: with the embedding post-processor");
        for n in [64, 512] {
            assert_eq!(embed.encode_truncated(&text, n).unwrap(), ids(&want[format!("truncated_{n}")]), "{name}: truncated to {n}");
        }
        for (key, recipe) in [("windows_512", qwen3::DIFF), ("windows_2048", qwen3::SNAPSHOT)] {
            let mine: Vec<Vec<u32>> = qwen3::windows(&got, &recipe)
                .into_iter()
                .map(|w| embed.encode_truncated(&plain.decode(w).unwrap(), recipe.max_length).unwrap())
                .collect();
            let theirs: Vec<Vec<u32>> = want[key].as_array().unwrap().iter().map(ids).collect();
            assert_eq!(mine, theirs, "{name}: {key} re-encoded windows");
        }
    }
    assert!(tokens > 10_000, "the corpus is real work: {tokens} tokens");
}

#[test]
fn the_embedding_variant_appends_eos_inside_the_truncation() {
    let tmp = tempfile::tempdir().unwrap();
    let embed = QwenTokenizer::from_file(&embedding_variant(tmp.path())).unwrap();
    let eos = embed.token_id("<|endoftext|>").unwrap();
    assert_eq!(eos, 151643);
    let long = "def f(x):\n    return x\n".repeat(200);
    let cut = embed.encode_truncated(&long, 100).unwrap();
    assert_eq!((cut.len(), cut.last().copied()), (100, Some(eos)), "the EOS is kept within max_length");
    let plain = QwenTokenizer::from_file(&qwen_tokenizer_json()).unwrap();
    assert_ne!(plain.encode("x = 1", true).unwrap().last().copied(), Some(eos), "the plain Qwen3 file appends nothing");
}

#[test]
fn missing_and_truncated_files_are_named_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("none.json");
    assert!(matches!(QwenTokenizer::from_file(&missing), Err(ModelError::Tokenizer { ref path, .. }) if *path == missing));
    let bytes = std::fs::read(qwen_tokenizer_json()).unwrap();
    let torn = tmp.path().join("tokenizer.json");
    std::fs::write(&torn, &bytes[..bytes.len() / 2]).unwrap();
    let err = QwenTokenizer::from_file(&torn).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json") && err.contains("not a readable"), "{err}");
}

#[test]
fn batches_give_the_ids_of_single_texts_and_decode_can_keep_special_tokens() {
    let golden: Value = serde_json::from_slice(&std::fs::read(root().join("tests/fixtures/tokenizer/golden.json")).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let embed = QwenTokenizer::from_file(&embedding_variant(tmp.path())).unwrap();
    let files = golden["files"].as_object().unwrap();
    let texts: Vec<String> = files.keys().map(|name| String::from_utf8_lossy(&std::fs::read(root().join("tests/fixtures/tokenizer/corpus").join(name)).unwrap()).into_owned()).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let want = |key: &str| files.values().map(|w| ids(&w[key])).collect::<Vec<_>>();
    assert_eq!(embed.encode_batch(&texts, false).unwrap(), want("plain"));
    assert_eq!(embed.encode_batch(&texts, true).unwrap(), want("embedding"));
    assert_eq!(embed.encode_truncated_batch(&texts, 64).unwrap(), want("truncated_64"));
    let plain = want("plain");
    let slices: Vec<&[u32]> = plain.iter().map(Vec::as_slice).collect();
    let decoded = embed.decode_batch(&slices, true).unwrap();
    for (text, got) in texts.iter().zip(&decoded) {
        assert_eq!(got, &embed.decode(&embed.encode(text, false).unwrap()).unwrap());
    }

    let with_eos = embed.encode("x = 1", true).unwrap();
    assert_eq!(embed.decode_with(&with_eos, false).unwrap(), "x = 1<|endoftext|>");
    assert_eq!(embed.decode_with(&with_eos, true).unwrap(), "x = 1");
}
