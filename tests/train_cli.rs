//! `evolora train` end to end: scripted git repositories whose tests assert a value only the
//! repository's own code names, the tiny fixture base model (tests/fixtures/lm), the real
//! binary. Checked: it trains (the loss falls, metrics and checkpoints are written); a run
//! killed with SIGKILL and started again ends with the same final checkpoint, byte for byte,
//! as a run that never stopped; the daemon serves the trained checkpoint with no further
//! step.

mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use util::{Daemon, Repo};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

const NAMES: [&str; 6] = ["amber", "birch", "cobalt", "dune", "ember", "fjord"];

/// A repository whose settings name its backend, and `tests` commits each adding a test that
/// asserts it (so the miner keeps every one and splits them 80/10/10 in time).
fn scripted(dir: &Path, k: usize, tests: usize) -> Repo {
    let name = NAMES[k];
    let repo = Repo::with_file(
        &dir.join(name),
        "pkg/settings.py",
        &format!("BACKEND = \"{name}\"\n\n\ndef backend_name():\n    return BACKEND\n\n\ndef open_{name}(host):\n    return (BACKEND, host)\n"),
    );
    for i in 0..tests {
        repo.write(
            &format!("tests/test_case_{i}.py"),
            &format!("from pkg.settings import backend_name\n\n\ndef test_backend_{i}():\n    value = backend_name()\n    assert value == \"{name}\"\n"),
        );
        repo.commit(&format!("test {i}"));
    }
    repo
}

fn train(repos: &[&Repo], out: &Path, steps: usize, extra: &[&str]) -> Command {
    let list: Vec<&str> = repos.iter().map(|r| r.path.to_str().unwrap()).collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_evolora"));
    cmd.args(["train", "--repos", &list.join(","), "--base-dir", base_dir().to_str().unwrap(), "--out", out.to_str().unwrap()]);
    cmd.args(["--preset", "tiny", "--steps", &steps.to_string(), "--lr", "1e-2", "--seed", "4"]);
    cmd.args(extra);
    cmd
}

/// Runs the `evolora` binary to completion and checks that it succeeded.
fn evolora<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_evolora")).args(args).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    out
}

/// A daemon configuration serving `checkpoint` for the fixture base.
fn serving(checkpoint: &Path) -> String {
    format!("[model]\ncheckpoint = \"{}\"\nbase = \"{}\"\n", checkpoint.display(), base_dir().join("config.json").display())
}

fn base_dir() -> PathBuf {
    root().join("tests/fixtures/lm/base")
}

const SHORT_RUN: [&str; 10] = ["--arch", "static", "--accumulate", "2", "--tasks-per-batch", "4", "--eval-every", "10", "--save-every", "3"];

/// A checkpoint's metadata, and its tensors' bytes by name.
type Contents = (std::collections::BTreeMap<String, String>, Vec<(String, Vec<u8>)>);

fn checkpoint(path: &Path) -> Contents {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header.metadata().clone().unwrap_or_default().into_iter().collect();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<u8>)> = st.tensors().into_iter().map(|(n, v)| (n, v.data().to_vec())).collect();
    tensors.sort();
    (metadata, tensors)
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn training_runs_resumes_bit_identically_and_is_served() {
    let tmp = tempfile::tempdir().unwrap();
    let repos: Vec<Repo> = (0..4).map(|k| scripted(tmp.path(), k, 12)).collect();
    let refs: Vec<&Repo> = repos.iter().collect();
    let steps = 30;

    // Uninterrupted.
    let straight = tmp.path().join("straight");
    let out = train(&refs, &straight, steps, &SHORT_RUN).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let metrics = lines(&straight.join("metrics.jsonl"));
    let losses: Vec<f64> = metrics.iter().filter(|m| m["kind"] == "step").map(|m| m["loss"].as_f64().unwrap()).collect();
    assert_eq!(losses.len(), steps, "one line per optimiser step");
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    assert!(mean(&losses[steps - 5..]) < mean(&losses[..5]), "the loss falls: {losses:?}");
    let validations: Vec<&Value> = metrics.iter().filter(|m| m["kind"] == "validation").collect();
    assert_eq!(validations.len(), 3, "validation at steps 10, 20, 30");
    assert!(validations[0]["seen"]["loss"].as_f64().is_some(), "{}", validations[0]);
    assert!(straight.join("best.safetensors").exists());
    // The curves, drawn at each validation, and again on demand with --plot.
    let png = straight.join("training.png");
    let is_png = |p: &Path| std::fs::read(p).is_ok_and(|b| b.len() > 10_000 && b.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(is_png(&png), "no training.png");
    std::fs::remove_file(&png).unwrap();
    evolora(["train", "--plot", "--out", straight.to_str().unwrap()]);
    assert!(is_png(&png), "--plot drew no training.png");
    // The released layout holds the same tensors (the .pt reader is checked against PyTorch's
    // own files in model_reference.rs).
    let base_config = base_dir().join("config.json");
    let st = checkpoint(&straight.join("final.safetensors"));
    let exported = tmp.path().join("from-pt.safetensors");
    evolora(["model", "export", "--checkpoint", straight.join("final.pt").to_str().unwrap(), "--base", base_config.to_str().unwrap(), "--out", exported.to_str().unwrap()]);
    assert!(checkpoint(&exported).1 == st.1, "final.pt holds other tensors than final.safetensors");

    // Killed (SIGKILL) once it has saved a state past the first, then started again.
    let resumed = tmp.path().join("resumed");
    let mut child = train(&refs, &resumed, steps, &SHORT_RUN).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let state = resumed.join("resume/state.json");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let saved = std::fs::read(&state).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok()).and_then(|v| v["steps"].as_u64());
        if saved.is_some_and(|s| s >= 6) {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(Instant::now() < deadline, "no saved state");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!resumed.join("final.safetensors").exists(), "killed before the end");
    let out = train(&refs, &resumed, steps, &SHORT_RUN).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("resuming at step"), "{}", text(&out));
    for name in ["final.safetensors", "final.pt"] {
        let (a, b) = (std::fs::read(straight.join(name)).unwrap(), std::fs::read(resumed.join(name)).unwrap());
        assert!(a == b, "the resumed run's {name} differs from the uninterrupted run's");
    }
    let step_lines = |dir: &Path| lines(&dir.join("metrics.jsonl")).into_iter().filter(|m| m["kind"] == "step").map(|m| (m["step"].clone(), m["loss"].clone())).collect::<Vec<_>>();
    assert_eq!(step_lines(&straight), step_lines(&resumed), "the same steps and losses, none lost or repeated");

    // Evo: the GRU walks each history (one diff per commit); tasks sit at their parents.
    let evo = tmp.path().join("evo");
    let out = train(&refs, &evo, 4, &["--arch", "evo", "--accumulate", "1", "--eval-every", "4"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("13 diffs"), "one diff per commit, the root's against the empty tree:\n{}", text(&out));
    let (metadata, tensors) = checkpoint(&evo.join("final.safetensors"));
    assert_eq!(metadata["evolora.architecture"], "code2lora-evo");
    assert!(tensors.iter().any(|(n, _)| n.starts_with("gru.")));

    // Continuing from a checkpoint: its architecture and size are taken over; a checkpoint
    // trained on another encoder (the released layouts were trained on Qwen3 vectors) is
    // refused by name.
    let further = tmp.path().join("further");
    let out = train(&refs, &further, 2, &["--init", straight.join("final.safetensors").to_str().unwrap(), "--accumulate", "1", "--eval-every", "2"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let (metadata, _) = checkpoint(&further.join("final.safetensors"));
    assert_eq!(metadata["evolora.architecture"], "code2lora-static", "--init's architecture wins over the default evo");
    let released = root().join("tests/fixtures/released-layouts/evo.pt");
    let out = train(&refs, &tmp.path().join("refused"), 2, &["--init", released.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success() && text(&out).contains("qwen3-embedding-0.6b"), "{}", text(&out));

    // Another run's state in the same directory is refused, not mixed in.
    let out = train(&refs[..2], &resumed, steps, &SHORT_RUN).output().unwrap();
    assert!(!out.status.success() && text(&out).contains("another run's state"), "{}", text(&out));

    // The daemon serves the trained checkpoint as it is.
    let daemon = Daemon::start_configured(&tmp.path().join("daemon"), &serving(&straight.join("final.safetensors")));
    daemon.register_and_wait(&repos[0]);
    let out = daemon.cli(&["adapter", repos[0].path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("untrained"), "{}", text(&out));
    let adapter = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let info: Value = serde_json::from_slice(&std::fs::read(Path::new(&adapter).join("evolora.json")).unwrap()).unwrap();
    assert_eq!(info["model"]["trained"], true, "{info}");
    assert_eq!(info["model"]["architecture"], "code2lora-static", "{info}");
}

/// Trains on `repos` (`steps` optimiser steps of `arch`), then runs `evolora eval` on each
/// repository's test tasks with the others as controls; returns the checkpoint and exact
/// match (own, shuffled, mean) over all of them.
fn train_and_evaluate(tmp: &Path, repos: &[Repo], arch: &str, steps: usize) -> (PathBuf, f64, f64, f64) {
    let refs: Vec<&Repo> = repos.iter().collect();
    let out_dir = tmp.join(format!("run-{arch}"));
    let out = train(&refs, &out_dir, steps, &["--arch", arch, "--accumulate", "1", "--tasks-per-batch", "8", "--eval-every", "100", "--save-every", "100"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let checkpoint = out_dir.join("final.safetensors");
    let (mut own, mut shuffled, mut mean, mut tasks) = (0.0, 0.0, 0.0, 0.0);
    for (k, repo) in repos.iter().enumerate() {
        let report = tmp.join(format!("eval-{arch}-{k}.json"));
        let mut args: Vec<String> = ["eval", repo.path.to_str().unwrap(), "--base-dir", base_dir().to_str().unwrap(), "--checkpoint", checkpoint.to_str().unwrap(), "--max-new-tokens", "8", "--out", report.to_str().unwrap()]
            .map(String::from)
            .to_vec();
        for (j, other) in repos.iter().enumerate() {
            if j != k {
                args.extend(["--other".into(), other.path.display().to_string()]);
            }
        }
        evolora(&args);
        let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let n = report["tasks"].as_f64().unwrap();
        let em = |condition: &str| {
            let s = report["summaries"].as_array().unwrap().iter().find(|s| s["condition"] == condition).unwrap_or_else(|| panic!("no {condition} in {report}"));
            s["exact_match"]["mean"].as_f64().unwrap_or_else(|| panic!("no exact match in {s}"))
        };
        own += em("own") * n;
        shuffled += em("shuffled") * n;
        mean += em("mean") * n;
        tasks += n;
    }
    let (own, shuffled, mean) = (own / tasks, shuffled / tasks, mean / tasks);
    eprintln!("{arch}, {tasks} test tasks: own {own:.3}, shuffled {shuffled:.3}, mean {mean:.3}");
    (checkpoint, own, shuffled, mean)
}

/// Six repositories, trained on until their validation tasks are answered; then `evolora
/// eval` on each repository's test tasks (greedy decoding, the benchmark's exact match):
/// the own adapter answers, another repository's and the mean adapter do not. Static here;
/// Evo below.
#[test]
fn a_trained_checkpoint_answers_each_repository_s_own_tests_in_evaluation() {
    let tmp = tempfile::tempdir().unwrap();
    let repos: Vec<Repo> = (0..NAMES.len()).map(|k| scripted(tmp.path(), k, 20)).collect();
    let (checkpoint, own, shuffled, mean) = train_and_evaluate(tmp.path(), &repos, "static", 500);
    assert!(own >= 0.6, "own adapter: {own}");
    assert!(shuffled <= 0.2 && mean <= 0.2, "shuffled {shuffled}, mean {mean}");

    // The real daemon serving the checkpoint: each repository's adapter, as a client gets it
    // from the socket, completes that repository's newest test the repository's way.
    let daemon = Daemon::start_configured(&tmp.path().join("daemon"), &serving(&checkpoint));
    let mut answered = 0;
    for (k, repo) in repos.iter().enumerate() {
        daemon.register_and_wait(repo);
        let out = daemon.cli(&["adapter", repo.path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        let adapter = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let tasks = tmp.path().join(format!("tasks-{k}.jsonl"));
        evolora(["tasks", repo.path.to_str().unwrap(), "--track", "evolution", "--out", tasks.to_str().unwrap()]);
        let newest = lines(&tasks).into_iter().last().unwrap();
        let prompt = tmp.path().join(format!("prompt-{k}.txt"));
        std::fs::write(&prompt, newest["prefix"].as_str().unwrap()).unwrap();
        let base = base_dir();
        let args = ["lm", "generate", "--base-dir", base.to_str().unwrap(), "--adapter", &adapter, "--prompt-file", prompt.to_str().unwrap(), "--bos", "--max-new-tokens", "8"];
        let out = evolora(args);
        let completion = String::from_utf8_lossy(&out.stdout).to_string();
        if completion.trim_start().starts_with(newest["target"].as_str().unwrap()) {
            answered += 1;
        }
        eprintln!("{}: served adapter completes {completion:?} (target {})", NAMES[k], newest["target"]);
    }
    assert!(answered * 10 >= repos.len() * 6, "{answered} of {} repositories answered through the daemon's adapters", repos.len());
}

/// The same with the Evo model: the GRU walks each history, and each test task is answered
/// with the adapter of its parent commit's state.
#[test]
fn a_trained_evo_checkpoint_answers_each_repository_s_own_tests_in_evaluation() {
    let tmp = tempfile::tempdir().unwrap();
    let repos: Vec<Repo> = (0..NAMES.len()).map(|k| scripted(tmp.path(), k, 20)).collect();
    let (_, own, shuffled, mean) = train_and_evaluate(tmp.path(), &repos, "evo", 600);
    assert!(own >= 0.6, "own adapter: {own}");
    assert!(shuffled <= 0.2 && mean <= 0.2, "shuffled {shuffled}, mean {mean}");
}
