//! The task miner on a scripted repository (every family, every filter that mined text can
//! trip, awkward history) with exact expectations, and against the independent Python
//! reference miner (tests/reference/mine_tasks.py, Python's own `ast`) on that repository
//! and on the real history of psf/cachecontrol.

use std::path::{Path, PathBuf};
use std::process::Command;

use evolora_eval::tasks::{self, Family, MineOptions, Split, Track};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn git(repo: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn write(repo: &Path, path: &str, content: &[u8]) {
    let file = repo.join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, content).unwrap();
}

fn commit(repo: &Path, message: &str) {
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "--allow-empty", "-m", message]);
}

const BASIC: &str = r#""""Module docstring."""
import os
from pkg import thing

CONSTANT = 3
assert CONSTANT == 3


def helper():
    return 1


@pytest.fixture
def value():
    return 2


def test_families():
    x = helper()
    assert x == 1
    assert x
    with pytest.raises(ValueError, match="bad"):
        thing()
    assert 0.1 == pytest.approx(0.1, rel=1e-3)
    np.testing.assert_allclose(x, 1.0)
    m.mock.assert_called_with(1)
    assert x == [
        1,
        2]
    assert x == 1
    assert f("(,") == 2
"#;

const UNIT: &str = r#"import unittest


class TestThing(unittest.TestCase):
    limit = 5

    def setUp(self):
        self.v = 1

    def check(self):
        return self.v

    def test_zero(self):
        pass

    @unittest.skip("why")
    def test_one(self):
        self.assertEqual(self.v, 1)
        self.assertTrue(self.v)
        self.assertRaises(KeyError, f)
        self.assertRaisesRegex(KeyError, "k", f)
        self.assertIsNone(None, "msg")
        self.assertEqual(self.v)

    class TestNested:
        def test_inner(self):
            assert 1 < 2
"#;

/// The scripted history; returns the repository.
fn scripted(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    // 1: the families and filters.
    write(&repo, "src/lib.py", b"def f():\n    return 1\n");
    write(&repo, "tests/test_basic.py", BASIC.as_bytes());
    commit(&repo, "basic");
    // 2: one assertion modified; those below it change prefix, so they are modified too.
    write(&repo, "tests/test_basic.py", BASIC.replace("    np.testing.assert_allclose(x, 1.0)", "    np.testing.assert_allclose(x, 2.0)").as_bytes());
    commit(&repo, "modify");
    // 3: a unittest file, a broken one and a binary one.
    write(&repo, "tests/test_unit.py", UNIT.as_bytes());
    write(&repo, "tests/test_broken.py", b"def test_b(:\n    assert b == 1\n");
    write(&repo, "tests/test_binary.py", b"assert x == 1\n\0\x01\x02");
    commit(&repo, "unit");
    // 4: the broken file fixed.
    write(&repo, "tests/test_broken.py", b"def test_b():\n    assert b == 1\n");
    commit(&repo, "fix");
    // 5: a deletion and a pure rename: no task.
    git(&repo, &["rm", "-q", "tests/test_unit.py"]);
    git(&repo, &["mv", "tests/test_basic.py", "tests/test_renamed.py"]);
    commit(&repo, "delete and rename");
    // 6: a side branch merged: its test file arrives with the merge.
    git(&repo, &["checkout", "-q", "-b", "side"]);
    write(&repo, "tests/test_side.py", b"def test_side():\n    assert side() == 'side'\n");
    commit(&repo, "side");
    git(&repo, &["checkout", "-q", "main"]);
    write(&repo, "src/lib.py", b"def f():\n    return 2\n");
    commit(&repo, "production only");
    git(&repo, &["merge", "-q", "--no-ff", "-m", "merge side", "side"]);
    // 7: ten assertions in one commit: the first eight are tasks, and one over-long target.
    let mut many = String::from("def test_many():\n");
    for i in 0..10 {
        many.push_str(&format!("    assert g({i}) == {}\n", i * i));
    }
    many.push_str(&format!("\n\ndef test_long():\n    assert h() == '{}'\n", "x".repeat(600)));
    write(&repo, "tests/test_many.py", many.as_bytes());
    commit(&repo, "many");
    repo
}

/// A task as the scripted test checks it: kept index, file, function, line, family, kind,
/// target, split.
type Row<'t> = (usize, &'t str, &'t str, usize, Family, &'t str, &'t str, Split);

fn mine(repo: &Path, track: Track) -> tasks::Mined {
    tasks::mine(repo, &MineOptions { track, ..MineOptions::default() }).unwrap()
}

#[test]
fn the_scripted_history_gives_exactly_these_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let repo = scripted(dir.path());
    let mined = mine(&repo, Track::Static);
    assert_eq!(mined.commits, 8, "the side branch's own commit is not on the first-parent path");
    assert_eq!(mined.kept_commits, 6);
    let got: Vec<Row> =
        mined.tasks.iter().map(|t| (t.kept_index, t.file.as_str(), t.function.as_str(), t.line, t.family, t.kind.as_str(), t.target.as_str(), t.split)).collect();
    use Family::*;
    use Split::*;
    let b = "tests/test_basic.py";
    let u = "tests/test_unit.py";
    let m = "tests/test_many.py";
    let expected = vec![
        // Kept 0: module-level assert (outside a function), `assert x` (no comparison), the
        // mock check, the duplicate `x == 1` and the `(,` line are not tasks.
        (0, b, "test_families", 20, Assert, "assert", "1", Train),
        (0, b, "test_families", 22, PytestRaises, "pytest.raises", "ValueError, match=\"bad\")", Train),
        (0, b, "test_families", 24, Assert, "assert", "pytest.approx(0.1, rel=1e-3)", Train),
        (0, b, "test_families", 24, PytestApprox, "pytest.approx", "0.1, rel=1e-3)", Train),
        (0, b, "test_families", 25, AssertCall, "assert_*", "1.0)", Train),
        (0, b, "test_families", 27, Assert, "assert", "[ 1, 2]", Train),
        // Kept 1: the changed call, and the assertion below it (its prefix changed).
        (1, b, "test_families", 25, AssertCall, "assert_*", "2.0)", Train),
        (1, b, "test_families", 27, Assert, "assert", "[ 1, 2]", Train),
        // Kept 2: the unittest file; the broken and binary files give warnings.
        (2, u, "test_one", 18, Family::Unittest, "self.assertEqual", "1)", Train),
        (2, u, "test_one", 19, Family::Unittest, "self.assertTrue", "self.v)", Train),
        (2, u, "test_one", 20, Family::Unittest, "self.assertRaises", "KeyError)", Train),
        (2, u, "test_one", 21, Family::Unittest, "self.assertRaisesRegex", "KeyError, \"k\")", Train),
        (2, u, "test_one", 22, Family::Unittest, "self.assertIsNone", "None)", Train),
        (2, u, "test_inner", 27, Assert, "assert", "2", Train),
        // Kept 3: the fixed file. The delete-and-rename commit and the production-only commit keep nothing.
        (3, "tests/test_broken.py", "test_b", 2, Assert, "assert", "1", Train),
        // Kept 4: the merge, compared with its first parent.
        (4, "tests/test_side.py", "test_side", 2, Assert, "assert", "'side'", Val),
        // Kept 5: the first eight of ten.
        (5, m, "test_many", 2, Assert, "assert", "0", Test),
        (5, m, "test_many", 3, Assert, "assert", "1", Test),
        (5, m, "test_many", 4, Assert, "assert", "4", Test),
        (5, m, "test_many", 5, Assert, "assert", "9", Test),
        (5, m, "test_many", 6, Assert, "assert", "16", Test),
        (5, m, "test_many", 7, Assert, "assert", "25", Test),
        (5, m, "test_many", 8, Assert, "assert", "36", Test),
        (5, m, "test_many", 9, Assert, "assert", "49", Test),
    ];
    assert_eq!(got, expected);
    assert_eq!(mined.warnings.len(), 2, "{:?}", mined.warnings);
    assert!(mined.warnings.iter().any(|w| w.contains("tests/test_broken.py") && w.contains("not valid Python")), "{:?}", mined.warnings);
    assert!(mined.warnings.iter().any(|w| w.contains("tests/test_binary.py") && w.contains("binary")), "{:?}", mined.warnings);

    let classes: Vec<Option<&str>> = mined.tasks.iter().filter(|t| t.file == u).map(|t| t.class.as_deref()).collect();
    assert_eq!(classes, [Some("TestThing"); 5].into_iter().chain([Some("TestNested")]).collect::<Vec<_>>());
    let merge = mined.tasks.iter().find(|t| t.file == "tests/test_side.py").unwrap();
    assert!(merge.parent.is_some() && merge.commit != merge.parent.clone().unwrap());
}

#[test]
fn static_prefixes_hold_imports_class_helpers_and_the_function_up_to_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let repo = scripted(dir.path());
    let mined = mine(&repo, Track::Static);
    let first = &mined.tasks[0];
    assert_eq!(
        first.prefix,
        "import os\nfrom pkg import thing\n\nCONSTANT = 3\n\ndef helper():\n    return 1\n\ndef value():\n    return 2\n\n\
         def test_families():\n    x = helper()\n\n    assert x == "
    );
    let multiline = mined.tasks.iter().find(|t| t.target == "[ 1, 2]").unwrap();
    assert!(multiline.prefix.ends_with("    m.mock.assert_called_with(1)\n\n    assert x == "), "{:?}", multiline.prefix);
    let regex = mined.tasks.iter().find(|t| t.kind == "self.assertRaisesRegex").unwrap();
    assert_eq!(
        regex.prefix,
        "import unittest\n\nclass TestThing(unittest.TestCase):\n    limit = 5\n\n    def setUp(self):\n        self.v = 1\n\n    def check(self):\n        return self.v\n\n\
         \x20   @unittest.skip(\"why\")\n    def test_one(self):\n        self.assertEqual(self.v, 1)\n        self.assertTrue(self.v)\n        self.assertRaises(KeyError, f)\n\n\
         \x20       self.assertRaisesRegex("
    );
    let nested = mined.tasks.iter().find(|t| t.function == "test_inner").unwrap();
    assert!(nested.prefix.starts_with("import unittest\n\n    class TestNested:\n"), "{:?}", nested.prefix);

    let evolution = mine(&repo, Track::Evolution);
    let same: Vec<_> = evolution.tasks.iter().map(|t| (&t.commit, &t.file, t.line, &t.target)).collect();
    assert_eq!(same, mined.tasks.iter().map(|t| (&t.commit, &t.file, t.line, &t.target)).collect::<Vec<_>>(), "the tracks differ only in prefixes");
    let first = &evolution.tasks[0];
    assert_eq!(first.prefix, BASIC[..BASIC.find("assert x == 1").unwrap() + "assert x == ".len()]);
}

fn reference(repo: &Path, track: &str) -> Option<Vec<Value>> {
    let script = root().join("tests/reference/mine_tasks.py");
    let out = match Command::new("python3").arg(&script).arg(repo).args(["--track", track]).output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("SKIPPED: python3 is not available ({e}); the reference miner cannot run");
            return None;
        }
    };
    assert!(out.status.success(), "{}: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect())
}

fn compare(repo: &Path, track: Track, name: &str) -> usize {
    let ours: Vec<Value> = mine(repo, track).tasks.iter().map(|t| serde_json::to_value(t).unwrap()).collect();
    let Some(theirs) = reference(repo, name) else { return 0 };
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "task {i} differs ({name} track)");
    }
    assert_eq!(ours.len(), theirs.len(), "task counts differ ({name} track)");
    ours.len()
}

#[test]
fn the_reference_miner_agrees_on_the_scripted_history() {
    let dir = tempfile::tempdir().unwrap();
    let repo = scripted(dir.path());
    assert_eq!(compare(&repo, Track::Static, "static"), 24);
    assert_eq!(compare(&repo, Track::Evolution, "evolution"), 24);
}

#[test]
fn the_reference_miner_agrees_on_cachecontrol() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = root().join("tests/fixtures/kept-commits/cachecontrol.bundle");
    let repo = dir.path().join("cachecontrol");
    let out = Command::new("git").arg("clone").arg("-q").arg(&bundle).arg(&repo).env("GIT_CONFIG_GLOBAL", "/dev/null").env("GIT_CONFIG_NOSYSTEM", "1").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mined = mine(&repo, Track::Static);
    assert_eq!((mined.commits, mined.kept_commits, mined.tasks.len()), (456, 91, 411));
    assert_eq!(compare(&repo, Track::Static, "static"), 411);
    assert_eq!(compare(&repo, Track::Evolution, "evolution"), 411);
}
