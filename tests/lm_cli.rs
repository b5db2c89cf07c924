//! `evolora lm` and `evolora verify`, the real binary on the tiny Qwen2 fixture
//! (tests/fixtures/lm, made by transformers + peft): logits and generations agree with the
//! fixture, `verify` passes on the daemon's own output and on PEFT's, and fails, naming what
//! is wrong, on adapters a server would serve as the base model.

mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use safetensors::SafeTensors;
use serde_json::Value;
use util::Repo;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/lm")
}

fn evolora(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evolora")).args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn generations() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("generations.json")).unwrap()).unwrap()
}

#[test]
fn logits_and_generation_agree_with_the_fixture() {
    let tmp = tempfile::tempdir().unwrap();
    let gens = generations();
    let prompt = tmp.path().join("prompt.txt");
    std::fs::write(&prompt, gens["prompts"][0]["text"].as_str().unwrap()).unwrap();
    let base = fixtures().join("base");
    let adapter = fixtures().join("adapters/per-layer");
    let out_file = tmp.path().join("logits.safetensors");
    let out = evolora(&["lm", "logits", "--base-dir", base.to_str().unwrap(), "--adapter", adapter.to_str().unwrap(), "--prompt-file", prompt.to_str().unwrap(), "--out", out_file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let bytes = std::fs::read(&out_file).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let ids: Vec<i64> = st.tensor("ids").unwrap().data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    let want_ids: Vec<i64> = gens["prompts"][0]["ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert_eq!(ids, want_ids);
    let logits = st.tensor("logits").unwrap();
    let vocab = logits.shape()[1];
    assert_eq!(logits.shape(), [ids.len(), 384]);
    let values: Vec<f32> = logits.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    let last = &values[(ids.len() - 1) * vocab..];
    let top = last.iter().enumerate().fold(0, |b, (i, &v)| if v > last[b] { i } else { b });
    assert_eq!(top as u64, gens["greedy"]["per-layer"][0][0].as_u64().unwrap(), "the last position's argmax is the first greedy token");

    // Generation prints the decoded greedy tokens; with and without the adapter they differ.
    let generate = |adapter: Option<&Path>| {
        let mut args = vec!["lm", "generate", "--base-dir", base.to_str().unwrap(), "--prompt-file", prompt.to_str().unwrap(), "--max-new-tokens", "10"];
        if let Some(a) = adapter {
            args.extend(["--adapter", a.to_str().unwrap()]);
        }
        let out = evolora(&args);
        assert!(out.status.success(), "{}", text(&out));
        out.stdout
    };
    let adapted = generate(Some(&adapter));
    assert_ne!(adapted, generate(None));
    assert!(!adapted.is_empty());
}

/// Rewrites `dir`'s tensors in place: `edit` gets each name and its f32 values and returns the
/// name to store it under.
fn rewrite_tensors(dir: &Path, mut edit: impl FnMut(&str, &mut Vec<f32>) -> String) {
    let path = dir.join("adapter_model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut raw = Vec::new();
    for (name, view) in st.tensors() {
        let mut values: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
            other => panic!("{name}: {other:?}"),
        };
        let new_name = edit(&name, &mut values);
        raw.push((new_name, view.shape().to_vec(), values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = raw.iter().map(|(n, s, b)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())).collect();
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn verify_passes_on_the_daemons_output_and_fails_by_name_on_broken_adapters() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fixtures().join("base");
    let base_s = base.to_str().unwrap();
    let verify = |dir: &Path| evolora(&["verify", dir.to_str().unwrap(), "--base-dir", base_s]);

    // The daemon's own layout, made by `evolora snapshot` for this base.
    let repo = Repo::with_file(&tmp.path().join("repo"), "src/lib.py", "def total(xs):\n    return sum(xs)\n");
    let ours = tmp.path().join("ours");
    let config = base.join("config.json");
    let out = evolora(&["snapshot", repo.path.to_str().unwrap(), "--out", ours.to_str().unwrap(), "--preset", "tiny", "--base", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = verify(&ours);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("file vs in-memory adapter: largest logit difference 0.00e0"), "{}", text(&out));
    let out = evolora(&["verify", ours.to_str().unwrap(), "--base-dir", base_s, "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["movement"]["max_abs_logit_change"].as_f64().unwrap() > 1e-3, "{report}");
    assert!(report["failures"].as_array().unwrap().is_empty());

    let out = verify(&fixtures().join("adapters/rslora-partial"));
    assert!(out.status.success(), "{}", text(&out));

    let broken = |name: &str, edit: &dyn Fn(&Path)| {
        let dir = tmp.path().join(name);
        copy_dir(&ours, &dir);
        edit(&dir);
        let out = verify(&dir);
        assert!(!out.status.success(), "{name} passed:\n{}", text(&out));
        text(&out)
    };
    let misnamed = broken("misnamed", &|d| rewrite_tensors(d, |n, _| n.replace("layers.0.mlp.up_proj", "layers.0.mlp.up")));
    assert!(misnamed.contains("layers.0.mlp.up.lora_") && misnamed.contains("no module of the base"), "{misnamed}");
    let rank = broken("rank", &|d| {
        let p = d.join("adapter_config.json");
        let mut c: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        c["r"] = (c["r"].as_u64().unwrap() * 2).into();
        std::fs::write(&p, serde_json::to_vec(&c).unwrap()).unwrap();
    });
    assert!(rank.contains("r = ") && rank.contains(".lora_"), "{rank}");
    let transposed = broken("transposed", &|d| {
        let path = d.join("adapter_model.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let raw: Vec<(String, Vec<usize>, Vec<u8>)> = st
            .tensors()
            .into_iter()
            .map(|(n, v)| {
                let mut shape = v.shape().to_vec();
                if n.contains("layers.1.self_attn.k_proj.lora_A") {
                    shape.reverse();
                }
                (n, shape, v.data().to_vec())
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = raw.iter().map(|(n, s, b)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())).collect();
        std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    });
    assert!(transposed.contains("layers.1.self_attn.k_proj.lora_A.weight") && transposed.contains("transposed"), "{transposed}");
    let zero_b = broken("zero-b", &|d| {
        rewrite_tensors(d, |n, v| {
            if n.contains("lora_B") {
                v.iter_mut().for_each(|x| *x = 0.0);
            }
            n.to_owned()
        })
    });
    assert!(zero_b.contains("does not move the logits") && zero_b.contains("all zero"), "{zero_b}");
}

#[test]
fn the_daemon_verifies_each_adapter_it_publishes_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fixtures().join("base");
    let config = |base_dir: &Path| {
        format!(
            "verify_after_publish = true\n[model]\npreset = \"tiny\"\nbase = \"{}\"\nbase_dir = \"{}\"\n",
            base.join("config.json").display(),
            base_dir.display()
        )
    };
    let daemon = util::Daemon::start_configured(&tmp.path().join("d"), &config(&base));
    let repo = Repo::with_file(&tmp.path().join("repo"), "src/app.py", "def main():\n    return 0\n");
    daemon.register_and_wait(&repo);
    let v = daemon.wait_for(std::time::Duration::from_secs(60), "the verification", || {
        let s = daemon.repo_status(&repo.path);
        let v = s["refs"][0]["verification"].clone();
        (!v.is_null()).then_some(v)
    });
    assert_eq!(v["passed"], true, "{v}");
    assert!(v["max_abs_logit_change"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["file_vs_memory"].as_f64(), Some(0.0), "{v}");
    assert!(String::from_utf8_lossy(&daemon.cli(&["status", repo.path.to_str().unwrap()]).stdout).contains("last adapter verified"));

    // A base of another depth: the adapter names layers it does not have, and the check says so.
    let shallow = tmp.path().join("shallow");
    copy_dir(&base, &shallow);
    let cfg_path = shallow.join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    cfg["num_hidden_layers"] = 2.into();
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    daemon.reconfigure(&config(&shallow));
    // [model] settings take effect at a restart.
    let mut daemon = daemon;
    daemon.signal_and_wait(libc::SIGTERM, std::time::Duration::from_secs(20));
    daemon.restart();
    repo.write("src/app.py", "def main():\n    return 1\n");
    let tip = repo.commit("change");
    daemon.wait_for(std::time::Duration::from_secs(60), "a failed verification", || {
        let s = daemon.repo_status(&repo.path);
        let v = s["refs"][0]["verification"].clone();
        (v["passed"] == false && s["refs"][0]["adapter_commit"] == tip.as_str()).then_some(v)
    });
    let v = daemon.repo_status(&repo.path)["refs"][0]["verification"].clone();
    let failure = v["failures"][0].as_str().unwrap();
    assert!(failure.contains("could not run"), "{v}");
    assert!(daemon.log_text().contains("FAILED verification"));
}

#[test]
fn logits_with_the_hypernetworks_adapter_match_the_numpy_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fixtures().join("base");
    let repo = Repo::with_file(&tmp.path().join("repo"), "src/lib.py", "def mean(xs):\n    return sum(xs) / len(xs)\n");
    let adapter = tmp.path().join("adapter");
    let config = base.join("config.json");
    let out = evolora(&["snapshot", repo.path.to_str().unwrap(), "--out", adapter.to_str().unwrap(), "--preset", "compact", "--base", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let prompt = tmp.path().join("prompt.txt");
    std::fs::write(&prompt, "def test_mean():\n    assert mean([1, 2, 3]) == ").unwrap();
    let logits = tmp.path().join("logits.safetensors");
    let out = evolora(&["lm", "logits", "--base-dir", base.to_str().unwrap(), "--adapter", adapter.to_str().unwrap(), "--prompt-file", prompt.to_str().unwrap(), "--bos", "--out", logits.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/reference/qwen_ref.py");
    let check = Command::new("python3").arg(&script).args(["lm-check", base.to_str().unwrap(), logits.to_str().unwrap(), "--adapter", adapter.to_str().unwrap(), "--tol", "1e-5"]).output().unwrap();
    assert!(check.status.success(), "numpy disagrees:\n{}", text(&check));
    // The same logits file against the base alone must fail: the check sees the adapter.
    let base_only = Command::new("python3").arg(&script).args(["lm-check", base.to_str().unwrap(), logits.to_str().unwrap(), "--tol", "1e-5"]).output().unwrap();
    assert!(!base_only.status.success(), "the adapter changed nothing numpy can see:\n{}", text(&base_only));
}
