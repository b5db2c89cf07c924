//! The Qwen tokenizer's speed on the golden corpus (tests/fixtures/tokenizer/corpus: real
//! Python, diffs and edge cases), one thread (results go to docs/BENCHMARKS.md).
//!
//! ./scripts/fetch-qwen-tokenizer.sh && cargo bench -p evolora-model --bench tokenizer [-- --rounds N]
//!
//! Rows: `encode` without special tokens (the recipe's first pass over a whole text),
//! `encode_truncated` at 512 with the Qwen3-Embedding post-processor (a diff window's second
//! pass), `decode` of 512-token windows, and the whole window recipe for diffs (encode,
//! windows of 512 overlapping by 64, decode, re-encode truncated). Tokens per second count
//! the text's own tokens; the best of N rounds.

use std::path::{Path, PathBuf};
use std::time::Instant;

use evolora_model::encoder::qwen3::{self, Tokenize};
use evolora_model::tokenizer::{QwenTokenizer, with_appended_eos};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn best_of(rounds: usize, mut f: impl FnMut()) -> f64 {
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    // One thread: the crate's pool is not used by single encodes, and this keeps it idle.
    // SAFETY: set before any other thread exists.
    unsafe { std::env::set_var("TOKENIZERS_PARALLELISM", "false") };
    let rounds = arg("--rounds", 5);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let json = std::env::var_os("EVOLORA_QWEN_TOKENIZER").map(PathBuf::from).unwrap_or_else(|| root.join("target/qwen-tokenizer/tokenizer.json"));
    assert!(json.is_file(), "{} is missing: run ./scripts/fetch-qwen-tokenizer.sh", json.display());
    let plain = QwenTokenizer::from_file(&json).unwrap();
    let tmp = std::env::temp_dir().join(format!("evolora-tokenizer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let embed_json = tmp.join("tokenizer.json");
    std::fs::write(&embed_json, with_appended_eos(&std::fs::read(&json).unwrap()).unwrap()).unwrap();
    let embed = QwenTokenizer::from_file(&embed_json).unwrap();
    std::fs::remove_dir_all(&tmp).unwrap();

    let corpus_dir = root.join("tests/fixtures/tokenizer/corpus");
    let mut names: Vec<_> = std::fs::read_dir(&corpus_dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    let texts: Vec<String> = names.iter().map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned()).collect();
    let bytes: usize = texts.iter().map(String::len).sum();
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| plain.encode(t, false).unwrap()).collect();
    let tokens: usize = ids.iter().map(Vec::len).sum();
    let windows: Vec<&[u32]> = ids.iter().flat_map(|i| qwen3::windows(i, &qwen3::DIFF)).collect();
    let window_tokens: usize = windows.iter().map(|w| w.len()).sum();
    println!("corpus: {} files, {bytes} bytes, {tokens} tokens; {} diff windows ({window_tokens} tokens); best of {rounds}", texts.len(), windows.len());

    let row = |what: &str, n: usize, secs: f64| println!("{what:<40} {:>8.1} ms  {:>7.2} M tokens/s  {:>6.1} MB/s", secs * 1e3, n as f64 / secs / 1e6, bytes as f64 / secs / 1e6);
    let s = best_of(rounds, || {
        for t in &texts {
            std::hint::black_box(plain.encode(t, false).unwrap());
        }
    });
    row("encode", tokens, s);
    let s = best_of(rounds, || {
        for t in &texts {
            std::hint::black_box(embed.encode_truncated(t, 512).unwrap());
        }
    });
    let kept: usize = texts.iter().map(|t| embed.encode_truncated(t, 512).unwrap().len()).sum();
    println!("{:<40} {:>8.1} ms  (keeps {kept} tokens of {tokens})", "encode_truncated 512 (embedding)", s * 1e3);
    let s = best_of(rounds, || {
        for w in &windows {
            std::hint::black_box(plain.decode(w).unwrap());
        }
    });
    println!("{:<40} {:>8.1} ms  {:>7.2} M tokens/s", "decode 512-windows", s * 1e3, window_tokens as f64 / s / 1e6);
    let s = best_of(rounds, || {
        for t in &texts {
            let ids = plain.encode(t, false).unwrap();
            for w in qwen3::windows(&ids, &qwen3::DIFF) {
                std::hint::black_box(embed.encode_truncated(&plain.decode(w).unwrap(), 512).unwrap());
            }
        }
    });
    row("diff recipe (encode, decode, re-encode)", tokens, s);
}
