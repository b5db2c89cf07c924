//! `evolora tasks` on a scripted repository: JSON lines on stdout or in --out, the summary
//! and warnings on stderr, --track and --limit.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_evolora");

fn git(repo: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn scripted(dir: &Path) -> std::path::PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(repo.join("tests")).unwrap();
    git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("tests/test_a.py"), "import pytest\n\n\ndef test_a():\n    assert f() == 1\n    with pytest.raises(KeyError):\n        g()\n").unwrap();
    std::fs::write(repo.join("tests/test_broken.py"), "def test_b(:\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "tests"]);
    std::fs::write(repo.join("tests/test_a.py"), "import pytest\n\n\ndef test_a():\n    assert f() == 2\n").unwrap();
    git(&repo, &["commit", "-qam", "change"]);
    repo
}

fn lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn tasks_are_json_lines_with_a_summary_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let repo = scripted(dir.path());
    let out = Command::new(BIN).arg("tasks").arg(&repo).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tasks = lines(&String::from_utf8(out.stdout).unwrap());
    let targets: Vec<&str> = tasks.iter().map(|t| t["target"].as_str().unwrap()).collect();
    assert_eq!(targets, ["1", "KeyError)", "2"]);
    for field in ["commit", "parent", "file", "function", "line", "family", "prefix", "split", "track"] {
        assert!(tasks.iter().all(|t| t.get(field).is_some()), "every task has {field}");
    }
    assert_eq!(tasks[0]["prefix"], "import pytest\n\ndef test_a():\n\n    assert f() == ");
    assert_eq!(tasks[1]["family"], "pytest.raises");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("warning: ") && stderr.contains("tests/test_broken.py"), "{stderr}");
    assert!(stderr.contains("2 first-parent commits, 2 kept, 3 tasks (3 written)"), "{stderr}");
    assert!(stderr.contains("train: 3 tasks (assert 2, pytest.raises 1)"), "{stderr}");

    let file = dir.path().join("tasks.jsonl");
    let out = Command::new(BIN).arg("tasks").arg(&repo).args(["--track", "evolution", "--limit", "1", "--out"]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());
    let written = lines(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(written.len(), 1);
    assert_eq!(written[0]["track"], "evolution");
    assert_eq!(written[0]["prefix"], "import pytest\n\n\ndef test_a():\n    assert f() == ");

    let out = Command::new(BIN).arg("tasks").arg(dir.path().join("missing")).output().unwrap();
    assert!(!out.status.success(), "a missing repository is an error");
}
