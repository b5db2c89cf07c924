//! `evolora eval` end to end on a tiny random base (tests/fixtures/lm) and the tiny untrained
//! hypernetwork: the scores mean nothing; what is checked is that every control is reported,
//! that each task gets the adapter of its own parent commit (compared with the adapter the
//! offline `encode history` + `model run` path makes for that commit), and that the
//! capability check runs the problems in its sandbox.

mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use safetensors::SafeTensors;
use serde_json::Value;
use util::Repo;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn evolora(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evolora")).args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn tensors(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut all: Vec<(String, Vec<u8>)> = st.tensors().into_iter().map(|(n, v)| (n, v.data().to_vec())).collect();
    all.sort();
    all
}

#[test]
fn every_control_is_reported_and_each_task_gets_its_parents_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("cachecontrol");
    let bundle = root().join("tests/fixtures/kept-commits/cachecontrol.bundle");
    util::git_in(tmp.path(), &["clone", "-q", bundle.to_str().unwrap(), repo.to_str().unwrap()]);
    let other = Repo::with_file(&tmp.path().join("other"), "pkg/core.py", "def area(w, h):\n    return w * h\n");
    other.write("tests/test_core.py", "from pkg.core import area\n\n\ndef test_area():\n    assert area(2, 3) == 6\n");
    other.commit("tests");
    let report_path = tmp.path().join("report.json");
    let saved = tmp.path().join("adapters");
    let base = root().join("tests/fixtures/lm/base");
    let problems = root().join("eval/tests/fixtures/capability-problems.jsonl");
    let out = evolora(&[
        "eval", repo.to_str().unwrap(), "--base-dir", base.to_str().unwrap(), "--preset", "tiny", "--other", other.path.to_str().unwrap(),
        "--track", "static", "--limit", "4", "--max-new-tokens", "4", "--out", report_path.to_str().unwrap(), "--save-adapters", saved.to_str().unwrap(),
        "--capability", "humaneval", "--problems", problems.to_str().unwrap(), "--problem-limit", "2", "--capability-max-new-tokens", "8",
    ]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    for line in ["no adapter", "own adapter − no adapter", "own adapter − other repository's", "own adapter − mean of others", "capability (2 problems)"] {
        assert!(shown.contains(line), "`{line}` missing from:\n{shown}");
    }
    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(report["tasks"], 4);
    assert_eq!(report["tasks_with_own_adapter"], 4);
    let conditions: Vec<&str> = report["summaries"].as_array().unwrap().iter().map(|s| s["condition"].as_str().unwrap()).collect();
    assert_eq!(conditions, ["none", "own", "shuffled", "mean"]);
    assert_eq!(report["differences"].as_array().unwrap().len(), 4);
    assert_eq!(report["capability"]["problems"], 2);
    for r in report["results"].as_array().unwrap() {
        let by = |c: &str| r["completions"].as_array().unwrap().iter().find(|x| x["condition"] == c).unwrap_or_else(|| panic!("no {c} completion in {r}")).clone();
        assert_eq!(by("own")["adapter"], r["parent"], "the own adapter is the parent commit's");
        assert!(by("shuffled")["adapter"].as_str().unwrap().starts_with(other.path.to_str().unwrap()));
        assert!(by("none")["adapter"].is_null());
    }

    // The own adapter of the first task's parent is exactly what the offline path makes for
    // that commit: the history encoded up to it, folded by the same model.
    let parent = report["results"][0]["parent"].as_str().unwrap();
    let emb = tmp.path().join("history.safetensors");
    let out = evolora(&["encode", "history", repo.to_str().unwrap(), "--ref", parent, "--out", emb.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let offline = tmp.path().join("offline");
    let config = base.join("config.json");
    let out = evolora(&["model", "run", "--embeddings", emb.to_str().unwrap(), "--out", offline.to_str().unwrap(), "--preset", "tiny", "--base", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(tensors(&saved.join(format!("own-{}", &parent[..12]))), tensors(&offline));
    // And differs from another commit's.
    let last = report["results"][3]["parent"].as_str().unwrap();
    if last != parent {
        assert_ne!(tensors(&saved.join(format!("own-{}", &last[..12]))), tensors(&offline));
    }
}
