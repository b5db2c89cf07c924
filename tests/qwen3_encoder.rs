//! The daemon with the paper's model: a released-layout Code2LoRA-Evo checkpoint on vectors
//! from the Qwen3 recipe (a tiny random Qwen3 directory with the genuine Qwen tokenizer),
//! real commits through the real daemon, against `evolora encode` + `evolora model run` on
//! the same commits; and clear refusals for broken encoder directories.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use evolora_model::tokenizer::with_appended_eos;
use util::{BIN, Daemon, Repo};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn fixtures() -> PathBuf {
    root().join("tests/fixtures/released-layouts")
}

/// A tiny random Qwen3-Embedding-style directory whose vectors are `2 × hidden` long, with
/// the genuine Qwen tokenizer in its Qwen3-Embedding form.
fn encoder_dir(dir: &Path, hidden: usize) -> PathBuf {
    let hidden = hidden.to_string();
    let args = ["make", dir.to_str().unwrap(), "--seed", "7", "--arch", "qwen3", "--prefix", "none", "--vocab", "151669", "--hidden", &hidden, "--heads", "2", "--kv-heads", "1", "--head-dim", "8", "--intermediate", "16"];
    let out = Command::new("python3").arg(root().join("tests/reference/qwen_ref.py")).args(args).output().expect("python3 with numpy");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tokenizer = std::env::var_os("EVOLORA_QWEN_TOKENIZER").map(PathBuf::from).unwrap_or_else(|| root().join("target/qwen-tokenizer/tokenizer.json"));
    assert!(tokenizer.is_file(), "{} is missing: run ./scripts/fetch-qwen-tokenizer.sh (./scripts/test.sh does)", tokenizer.display());
    std::fs::write(dir.join("tokenizer.json"), with_appended_eos(&std::fs::read(tokenizer).unwrap()).unwrap()).unwrap();
    dir.to_path_buf()
}

fn config(encoder: &Path) -> String {
    format!(
        "[model]\nencoder = \"qwen3\"\nencoder_dir = \"{}\"\ncheckpoint = \"{}\"\nbase = \"{}\"\n",
        encoder.display(),
        fixtures().join("evo.pt").display(),
        fixtures().join("base").display()
    )
}

fn evolora(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "evolora {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The named f32 tensors of a safetensors file.
fn tensors(path: &Path) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<_> = st.tensors().into_iter().map(|(n, v)| (n, v.shape().to_vec(), v.data().to_vec())).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn released_checkpoint_adapters_on_qwen3_vectors_equal_the_offline_pipeline() {
    let tmp = tempfile::tempdir().unwrap();
    // The released-layout fixture takes 24-value vectors: hidden 12.
    let enc = encoder_dir(&tmp.path().join("qwen3"), 12);
    let repo = Repo::with_file(&tmp.path().join("repo"), "pkg/core.py", "def add(a, b):\n    return a + b\n");
    repo.write("tests/test_core.py", "from pkg.core import add\n\ndef test_add():\n    assert add(1, 2) == 3\n");
    let c1 = repo.commit("tests");
    let d = Daemon::start_configured(&tmp.path().join("d"), &config(&enc));
    d.register_and_wait(&repo);

    // Under the released checkpoint's paper policy: c1, c2 and c4 add assertions and step (c2
    // on the diff since c1, c4 since c2); the root and c3 only walk.
    repo.write("pkg/core.py", "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    \"\"\"Product.\"\"\"\n    return a * b\n");
    repo.write("tests/test_core.py", "from pkg.core import add, mul\n\ndef test_add():\n    assert add(1, 2) == 3\n\ndef test_mul():\n    assert mul(2, 3) == 6\n");
    let c2 = repo.commit("mul");
    repo.write("README.md", "# pkg\n\nAdds and multiplies.\n");
    repo.commit("readme");
    repo.write("pkg/core.py", "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    \"\"\"Product.\"\"\"\n    return a * b\n\n\ndef neg(a):\n    return -a\n");
    repo.write("tests/test_core.py", "from pkg.core import add, mul, neg\n\ndef test_add():\n    assert add(1, 2) == 3\n\ndef test_mul():\n    assert mul(2, 3) == 6\n\ndef test_neg():\n    assert neg(4) == -4\n");
    let c4 = repo.commit("neg");
    let out = d.cli(&["notify", "--repo", repo.path.to_str().unwrap()]);
    assert!(out.status.success());
    let status = d.settled(&repo.path, "refs/heads/main", &c4);
    assert_eq!(status["steps"], 3, "c1 (the first kept commit, against the empty tree), c2 and c4: {status}");
    let adapter = PathBuf::from(status["adapter"].as_str().unwrap());

    // The same vectors offline, then the hypernetwork on them.
    let enc_args = ["--encoder", "qwen3", "--encoder-dir", enc.to_str().unwrap()];
    let repo_path = repo.path.to_str().unwrap();
    // The whole stepped history offline: h₀ at c1 (the first kept commit), then c1 against
    // the empty tree, c2 since c1 and c4 since c2.
    let emb = tmp.path().join("history.safetensors");
    evolora(&[&["encode", "history", repo_path, "--step-policy", "paper", "--out", emb.to_str().unwrap()][..], &enc_args].concat());
    let diffs = tensors(&emb).into_iter().find(|(n, _, _)| n == "diffs").unwrap();
    assert_eq!(diffs.1, vec![3, 24], "three stepped commits");
    let metadata = safetensors::SafeTensors::read_metadata(&std::fs::read(&emb).unwrap()).unwrap().1;
    let listed = metadata.metadata().as_ref().and_then(|m| m.get("commits").cloned()).unwrap();
    assert_eq!(listed, [c1.as_str(), c2.as_str(), c4.as_str()].join(","));
    let offline = tmp.path().join("offline-adapter");
    let fx = fixtures();
    evolora(&["model", "run", "--checkpoint", fx.join("evo.pt").to_str().unwrap(), "--base", fx.join("base").to_str().unwrap(), "--embeddings", emb.to_str().unwrap(), "--out", offline.to_str().unwrap()]);
    let (served, reference) = (tensors(&adapter.join("adapter_model.safetensors")), tensors(&offline.join("adapter_model.safetensors")));
    assert_eq!(served.len(), reference.len());
    for (a, b) in served.iter().zip(&reference) {
        assert!(a == b, "tensor {} differs between the daemon's adapter and the offline pipeline's", a.0);
    }

    // Which encoder and checkpoint made it, in status and in the adapter's evolora.json.
    let reply = d.request(serde_json::json!({"op": "status"}));
    assert_eq!(reply["model"]["encoder"], "qwen3-embedding-0.6b", "{reply}");
    assert_eq!(reply["model"]["encoder_dir"], enc.to_str().unwrap());
    assert!(reply["model"]["checkpoint"].as_str().unwrap().ends_with("evo.pt"));
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(adapter.join("evolora.json")).unwrap()).unwrap();
    assert_eq!((info["model"]["encoder"].as_str(), info["model"]["encoder_dir"].as_str()), (Some("qwen3-embedding-0.6b"), enc.to_str()));
    assert!(!d.log_text().contains("hashed"), "no hashed-encoder fallback:\n{}", d.log_text());
}

/// A broken encoder directory is named in `status` and in `adapter` replies, and the daemon
/// keeps serving the adapters it had published.
#[test]
fn broken_encoder_directories_are_named_and_published_adapters_still_served() {
    let tmp = tempfile::tempdir().unwrap();
    let enc = encoder_dir(&tmp.path().join("qwen3"), 12);
    let repo = Repo::with_file(&tmp.path().join("repo"), "pkg/core.py", "def add(a, b):\n    return a + b\n");
    let mut d = Daemon::start_configured(&tmp.path().join("d"), &config(&enc));
    d.register_and_wait(&repo);
    let before = d.repo_status(&repo.path)["refs"][0]["adapter"].as_str().unwrap().to_owned();
    d.signal_and_wait(libc::SIGTERM, std::time::Duration::from_secs(30));

    let tokenizer = enc.join("tokenizer.json");
    let whole = std::fs::read(&tokenizer).unwrap();
    std::fs::write(&tokenizer, &whole[..whole.len() / 3]).unwrap();
    d.restart();
    let reply = d.request(serde_json::json!({"op": "status"}));
    let err = reply["model_error"].as_str().unwrap_or_default();
    assert!(err.contains("tokenizer.json"), "{reply}");
    let served = d.request(serde_json::json!({"op": "adapter", "repo": repo.path}));
    assert_eq!(served["path"].as_str(), Some(before.as_str()), "the published adapter is still served: {served}");
    repo.write("pkg/more.py", "X = 1\n");
    repo.commit("more");
    let waited = d.request(serde_json::json!({"op": "adapter", "repo": repo.path, "wait_ms": 30000}));
    assert!(waited["error"]["message"].as_str().unwrap_or_default().contains("tokenizer.json"), "a wait ends at once, naming the failure: {waited}");
    std::fs::write(&tokenizer, &whole).unwrap();

    let status_error = |name: &str, enc: &Path| -> String {
        let d = Daemon::start_configured(&tmp.path().join(name), &config(enc));
        let reply = d.request(serde_json::json!({"op": "status"}));
        reply["model_error"].as_str().unwrap_or_default().to_owned()
    };
    let wide = encoder_dir(&tmp.path().join("wide"), 8);
    let err = status_error("width", &wide);
    assert!(err.contains("evo.pt") && err.contains("24-value") && err.contains("16-value"), "{err}");

    let corrupt = encoder_dir(&tmp.path().join("corrupt"), 12);
    let weights = std::fs::read(corrupt.join("model.safetensors")).unwrap();
    std::fs::write(corrupt.join("model.safetensors"), &weights[..weights.len() / 2]).unwrap();
    let err = status_error("weights", &corrupt);
    assert!(err.contains("model.safetensors"), "{err}");

    let unknown = encoder_dir(&tmp.path().join("unknown"), 12);
    let cfg = std::fs::read_to_string(unknown.join("config.json")).unwrap();
    std::fs::write(unknown.join("config.json"), cfg.replace("\"qwen3\"", "\"bert\"").replace("Qwen3Model", "BertModel")).unwrap();
    let err = status_error("architecture", &unknown);
    assert!(err.contains("unsupported model") && err.contains("bert"), "{err}");
}
