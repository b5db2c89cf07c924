//! The model against an independent numpy reference (tests/reference/code2lora_ref.py) on
//! random weights and inputs, and against PyTorch's own outputs for checkpoints in the two
//! released layouts (.pt written by torch.save, and the same weights as safetensors).

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn reference(args: &[&str]) -> std::process::Output {
    let script = root().join("tests/reference/code2lora_ref.py");
    let out = Command::new("python3").arg(&script).args(args).output().expect("python3 is needed by the tests (./scripts/test.sh installs it)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("No module named 'numpy'"), "numpy is needed by the tests: run ./scripts/test.sh or `python3 -m pip install numpy`");
    out
}

fn evolora(args: &[&str]) -> std::process::Output {
    Command::new(util::BIN).args(args).output().unwrap()
}

fn ok(out: &std::process::Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Random weights and embeddings from the reference, our model on them, the reference's check.
fn random_case(seed: u32, arch: &str, extra_make: &[&str], extra_run: &[&str], extra_check: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("case");
    let d_str = d.to_str().unwrap();
    let seed = seed.to_string();
    let mut make = vec!["make", d_str, "--seed", &seed, "--arch", arch];
    make.extend_from_slice(extra_make);
    ok(&reference(&make), "reference make");
    let out = d.join("adapter");
    let state = d.join("state.safetensors");
    let ck = d.join("checkpoint.safetensors");
    let emb = d.join("embeddings.safetensors");
    let base = d.join("base/config.json");
    let mut run = vec!["model", "run", "--checkpoint", ck.to_str().unwrap(), "--embeddings", emb.to_str().unwrap()];
    run.extend_from_slice(&["--base", base.to_str().unwrap(), "--out", out.to_str().unwrap(), "--state-out", state.to_str().unwrap()]);
    run.extend_from_slice(extra_run);
    ok(&evolora(&run), "evolora model run");
    let mut check = vec!["check", d_str, "--adapter", out.to_str().unwrap(), "--state", state.to_str().unwrap()];
    check.extend_from_slice(extra_check);
    let report = ok(&reference(&check), "reference check");
    assert!(report.contains("max relative error"), "{report}");
}

#[test]
fn evo_matches_the_reference_on_random_weights() {
    for seed in [1, 2, 3] {
        random_case(seed, "evo", &[], &[], &[]);
    }
}

#[test]
fn static_with_f16_embeddings_matches_the_reference() {
    random_case(11, "static", &["--f16"], &[], &[]);
}

#[test]
fn half_precision_adapters_hold_the_same_values_rounded() {
    // bf16 keeps 8 bits of mantissa (relative error 2^-8 of a tensor's largest value); f16
    // keeps 11 but goes subnormal below 6e-5, where the smallest clamped scales (1e-5) land.
    random_case(31, "evo", &[], &["--dtype", "bf16"], &["--tol", "4e-3"]);
    random_case(32, "evo", &[], &["--dtype", "f16"], &["--tol", "1e-2"]);
}

#[test]
fn multi_task_checkpoint_uses_the_chosen_task_row() {
    random_case(21, "evo", &["--tasks", "3"], &["--task", "2"], &["--task", "2"]);
}

#[test]
fn the_check_itself_catches_a_wrong_task_row() {
    // Guards the guard: the reference must notice when the adapter came from another input.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("case");
    ok(&reference(&["make", d.to_str().unwrap(), "--seed", "5", "--tasks", "3"]), "make");
    let out = d.join("adapter");
    ok(
        &evolora(&[
            "model", "run", "--checkpoint", d.join("checkpoint.safetensors").to_str().unwrap(),
            "--embeddings", d.join("embeddings.safetensors").to_str().unwrap(),
            "--base", d.join("base").to_str().unwrap(), "--task", "1", "--out", out.to_str().unwrap(),
        ]),
        "run",
    );
    let check = reference(&["check", d.to_str().unwrap(), "--adapter", out.to_str().unwrap(), "--task", "2"]);
    assert!(!check.status.success(), "a mismatching task row must fail the check");
}

fn released_layout(name: &str, task: &str) {
    let fx = root().join("tests/fixtures/released-layouts");
    for ext in ["pt", "safetensors"] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("adapter");
        let state = tmp.path().join("state.safetensors");
        let ck = fx.join(format!("{name}.{ext}"));
        ok(
            &evolora(&[
                "model", "run", "--checkpoint", ck.to_str().unwrap(),
                "--embeddings", fx.join("embeddings.safetensors").to_str().unwrap(),
                "--base", fx.join("base").to_str().unwrap(), "--task", task,
                "--out", out.to_str().unwrap(), "--state-out", state.to_str().unwrap(),
            ]),
            &format!("model run on {name}.{ext}"),
        );
        let weights = fx.join(format!("{name}.safetensors"));
        let expected = fx.join(format!("{name}.torch-expected.safetensors"));
        ok(
            &reference(&[
                "check", fx.to_str().unwrap(), "--checkpoint", weights.to_str().unwrap(),
                "--adapter", out.to_str().unwrap(), "--state", state.to_str().unwrap(), "--task", task,
                "--torch-expected", expected.to_str().unwrap(),
            ]),
            &format!("reference check of {name}.{ext}"),
        );
    }
}

#[test]
fn released_evo_layout_imports_from_pt_and_safetensors() {
    released_layout("evo", "1");
}

#[test]
fn released_static_layout_imports_from_pt_and_safetensors() {
    released_layout("static", "0");
}

#[test]
fn mismatched_checkpoints_are_refused_with_the_tensor_named() {
    let fx = root().join("tests/fixtures/released-layouts");
    let tmp = tempfile::tempdir().unwrap();
    let out = evolora(&[
        "model", "run", "--checkpoint", fx.join("evo.pt").to_str().unwrap(),
        "--embeddings", fx.join("embeddings.safetensors").to_str().unwrap(),
        "--base", "qwen2.5-coder-0.5b", "--out", tmp.path().join("a").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("head.heads_A.down_proj.weight") && err.contains("another base model"), "{err}");
    assert!(!tmp.path().join("a").exists(), "nothing is written on failure");

    // Released checkpoints were trained on Qwen3 embeddings: the hashed encoder is refused.
    let repo = util::Repo::init(&tmp.path().join("r"));
    repo.write("a.py", "x = 1\n");
    repo.commit("one");
    let out = evolora(&[
        "snapshot", repo.path.to_str().unwrap(), "--out", tmp.path().join("b").to_str().unwrap(),
        "--checkpoint", fx.join("static.pt").to_str().unwrap(), "--base", fx.join("base").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("qwen3-embedding-0.6b") && err.contains("hashed-v2"), "{err}");

    // Wrong embedding width: named, not a panic.
    let out = evolora(&[
        "model", "run", "--checkpoint", fx.join("static.pt").to_str().unwrap(),
        "--embeddings", fx.join("embeddings.safetensors").to_str().unwrap(),
        "--base", fx.join("base").to_str().unwrap(), "--preset", "tiny", "--out", tmp.path().join("c").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = evolora(&[
        "model", "run", "--embeddings", fx.join("embeddings.safetensors").to_str().unwrap(),
        "--base", "qwen2.5-coder-0.5b", "--preset", "tiny", "--out", tmp.path().join("d").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("vector has 24 values, the model expects 2048"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn snapshot_adapters_are_deterministic_across_processes_and_follow_the_code() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = util::Repo::init(&tmp.path().join("r"));
    repo.write("pkg/core.py", "def add(a, b):\n    return a + b\n");
    repo.write("README.md", "A small package.\n");
    repo.commit("one");
    let snap = |name: &str| {
        let out = tmp.path().join(name);
        ok(
            &evolora(&["snapshot", repo.path.to_str().unwrap(), "--out", out.to_str().unwrap(), "--preset", "tiny", "--base", "qwen2.5-coder-0.5b"]),
            "snapshot",
        );
        std::fs::read(out.join("adapter_model.safetensors")).unwrap()
    };
    let first = snap("a");
    assert_eq!(first, snap("b"), "same repository, same bytes, in two processes");
    repo.write("pkg/core.py", "import numpy as np\n\ndef add(a, b):\n    return a + b\n");
    repo.commit("import numpy");
    assert_ne!(first, snap("c"), "adding an import changes the adapter");
}

/// A checkpoint trained on an older hashed encoder keeps its encoder: with plain `hashed`
/// configured it runs on the version it names, exactly as with that version configured,
/// and naming another version is refused.
#[test]
fn a_checkpoint_keeps_the_hashed_version_it_was_trained_on() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = util::Repo::init(&tmp.path().join("r"));
    // An f-string: tree-sitter (version 1) sees the call inside it, the lexer (version 2) not.
    repo.write("pkg/core.py", "def show(a):\n    return f\"{render(a)} {a.size}\"\n");
    repo.commit("one");
    let ck = tmp.path().join("v1.safetensors");
    let base = ["--base", "qwen2.5-coder-0.5b"];
    ok(&evolora(&[&["model", "export", "--preset", "tiny", "--encoder", "hashed-v1", "--out", ck.to_str().unwrap()][..], &base].concat()), "export");
    let snap = |name: &str, extra: &[&str]| {
        let out = tmp.path().join(name);
        let args = [&["snapshot", repo.path.to_str().unwrap(), "--out", out.to_str().unwrap()][..], &base, extra].concat();
        (evolora(&args), out.join("adapter_model.safetensors"))
    };
    let (auto, auto_file) = snap("auto", &["--checkpoint", ck.to_str().unwrap()]);
    ok(&auto, "snapshot, hashed");
    let (v1, v1_file) = snap("v1", &["--checkpoint", ck.to_str().unwrap(), "--encoder", "hashed-v1"]);
    ok(&v1, "snapshot, hashed-v1");
    assert_eq!(std::fs::read(&auto_file).unwrap(), std::fs::read(&v1_file).unwrap(), "plain `hashed` ran the checkpoint's version");
    let (v2, _) = snap("v2", &["--checkpoint", ck.to_str().unwrap(), "--encoder", "hashed-v2"]);
    let err = String::from_utf8_lossy(&v2.stderr);
    assert!(!v2.status.success() && err.contains("hashed-v1") && err.contains("hashed-v2"), "{err}");
    // The two versions do see this file differently: the same seeded model on each.
    let seeded = |name: &str, encoder: &str| {
        let (out, file) = snap(name, &["--preset", "tiny", "--encoder", encoder]);
        ok(&out, "snapshot, seeded");
        std::fs::read(file).unwrap()
    };
    assert_ne!(seeded("s1", "hashed-v1"), seeded("s2", "hashed-v2"));

    // `model run` takes any vectors, but not the other hashed version's for this checkpoint.
    let run = |encoder: &str| {
        let emb = tmp.path().join(format!("{encoder}.safetensors"));
        ok(&evolora(&["encode", "history", repo.path.to_str().unwrap(), "--encoder", encoder, "--out", emb.to_str().unwrap()]), "encode");
        let out = tmp.path().join(format!("run-{encoder}"));
        evolora(&[&["model", "run", "--checkpoint", ck.to_str().unwrap(), "--embeddings", emb.to_str().unwrap(), "--out", out.to_str().unwrap()][..], &base].concat())
    };
    ok(&run("hashed-v1"), "model run on the checkpoint's version");
    let other = run("hashed-v2");
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(!other.status.success() && err.contains("hashed-v2 vectors") && err.contains("trained on hashed-v1"), "{err}");
}

/// A checkpoint exported in the released `.pt` layout is the same model: evolora reads it
/// back to the same adapter, and a reader written from PyTorch's format (weights-only
/// globals, 64-byte aligned storages; tests/reference/pt_io.py) recomputes the adapter the
/// safetensors checkpoint gave.
#[test]
fn a_pt_export_is_the_same_model_as_its_safetensors() {
    for (seed, arch, tasks, task) in [(41, "evo", "2", "1"), (42, "static", "0", "0")] {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("case");
        let (d_str, seed) = (d.to_str().unwrap(), seed.to_string());
        ok(&reference(&["make", d_str, "--seed", &seed, "--arch", arch, "--tasks", tasks]), "reference make");
        let (ck, emb, base) = (d.join("checkpoint.safetensors"), d.join("embeddings.safetensors"), d.join("base/config.json"));
        let pt = d.join("exported.pt");
        ok(&evolora(&["model", "export", "--checkpoint", ck.to_str().unwrap(), "--base", base.to_str().unwrap(), "--format", "pt", "--out", pt.to_str().unwrap()]), "export");
        let run = |checkpoint: &Path, out: &Path| {
            let args = ["model", "run", "--checkpoint", checkpoint.to_str().unwrap(), "--embeddings", emb.to_str().unwrap(), "--base", base.to_str().unwrap(), "--out", out.to_str().unwrap(), "--task", task];
            ok(&evolora(&args), "evolora model run");
        };
        let (from_st, from_pt) = (d.join("from-safetensors"), d.join("from-pt"));
        run(&ck, &from_st);
        run(&pt, &from_pt);
        ok(&reference(&["check", d_str, "--adapter", from_st.to_str().unwrap(), "--checkpoint", pt.to_str().unwrap(), "--task", task]), "reference check of the .pt");
        ok(&reference(&["check", d_str, "--adapter", from_pt.to_str().unwrap(), "--task", task]), "reference check of the adapter from the .pt");
        let tensors = |dir: &Path| std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
        assert!(tensors(&from_st) == tensors(&from_pt), "{arch}: the .pt gives other adapter bytes than the safetensors");
    }
}
