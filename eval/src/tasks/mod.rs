//! RepoPeftBench assertion-completion tasks mined from a repository's first-parent history
//! (paper §4.2–4.5; the authors' `create_qnas_v2.py` and `build_commit_parquet_db.py`).
//!
//! The walk, oldest first:
//! - a test file is a `.py` path (any case) with "test" in some component (any case) and no
//!   component among [`SKIP_DIRS`], as git prints it (a quoted path is none);
//! - each test path holds the keys of its tasks: (kind, whitespace-normalized file text up
//!   to the cut, whitespace-normalized target). A rename moves the old path's keys to the
//!   new path, a deletion drops them;
//! - for every test file a commit adds or changes, the file's tasks ([`assertions`] finds
//!   them, [`filters`] keeps them) whose key the path did not hold are the commit's added or
//!   modified assertions. A file that is binary or does not parse has no tasks, with a
//!   warning;
//! - a commit with such tasks is kept; its first [`MineOptions::per_commit`] tasks (files in
//!   git's order, assertions in source order) are its tasks;
//! - kept commits are split chronologically 80/10/10 ([`split`]).
//!
//! Deviations from the authors' code: their commit-level mining extracts with the older
//! `create_qnas.py` rules (every `assert`, not only comparisons; no quality filters beyond
//! empty and comma targets), while their static tasks use `create_qnas_v2.py`; here both
//! tracks use the v2 rules and filters, so a task differs between tracks only in its prefix,
//! and a commit is kept when it has a task. Assertions are ordered by position in the file
//! where the authors use `ast.walk`'s breadth-first order, so "the first 8" are the first 8
//! in the file. The enclosing function and class are the innermost definitions around the
//! assertion in the tree, where the authors search by line range.

pub mod assertions;
pub mod filters;
pub mod history;
pub mod prefix;
pub mod split;

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::python::is_python_space;

pub use split::Split;

/// Directories whose files are never test files (the authors' list).
pub const SKIP_DIRS: [&str; 11] = [".git", "__pycache__", ".venv", "venv", "env", "node_modules", "dist", "build", ".tox", ".mypy_cache", "TEST_HYPERNET"];

/// Which prefix a task shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Track {
    /// Imports, class, helpers and the test function up to the cut.
    #[default]
    Static,
    /// The whole test file up to the cut.
    Evolution,
}

/// The five assertion families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Family {
    #[serde(rename = "assert")]
    Assert,
    #[serde(rename = "self.assert")]
    Unittest,
    #[serde(rename = "pytest.raises")]
    PytestRaises,
    #[serde(rename = "pytest.approx")]
    PytestApprox,
    #[serde(rename = "assert_*")]
    AssertCall,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Assert => "assert",
            Family::Unittest => "self.assert",
            Family::PytestRaises => "pytest.raises",
            Family::PytestApprox => "pytest.approx",
            Family::AssertCall => "assert_*",
        }
    }
}

/// One assertion-completion task: complete `prefix` with `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// The kept commit that adds or modifies the assertion.
    pub commit: String,
    /// Its first parent: the state a model is evaluated at (`None` for a root commit).
    pub parent: Option<String>,
    /// The commit's committer time, seconds since the epoch.
    pub time: i64,
    /// The commit's position among the kept commits, from 0.
    pub kept_index: usize,
    pub split: Split,
    pub track: Track,
    pub file: String,
    /// The assertion's first line, from 1.
    pub line: usize,
    pub function: String,
    pub class: Option<String>,
    pub family: Family,
    /// The authors' assertion type: `assert`, `self.assertEqual`, `pytest.raises`...
    pub kind: String,
    pub prefix: String,
    pub target: String,
}

#[derive(Debug, Clone)]
pub struct MineOptions {
    pub track: Track,
    /// The revision whose first-parent history is walked.
    pub rev: String,
    /// Tasks kept per commit (the paper scores the first 8).
    pub per_commit: usize,
}

impl Default for MineOptions {
    fn default() -> Self {
        MineOptions { track: Track::Static, rev: "HEAD".into(), per_commit: 8 }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Mined {
    pub tasks: Vec<Task>,
    /// Files skipped on the way (binary, not Python 3), one sentence each.
    pub warnings: Vec<String>,
    pub kept_commits: usize,
    /// First-parent commits walked.
    pub commits: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TasksError {
    #[error("{command} failed: {stderr}")]
    Git { command: String, stderr: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// The authors' test-file rule, on a path as git prints it.
pub fn is_test_file(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let name = parts.last().copied().unwrap_or_default();
    // Python's `PurePath.suffix`: from the last dot, unless the name starts or ends there.
    let suffix = name.rfind('.').filter(|&dot| dot > 0 && dot + 1 < name.len()).map(|dot| &name[dot..]);
    suffix.is_some_and(|s| s.eq_ignore_ascii_case(".py")) && !parts.iter().any(|p| SKIP_DIRS.contains(p)) && parts.iter().any(|p| p.to_lowercase().contains("test"))
}

/// The tasks of one file's text, in source order, each with its key; `None` when Python
/// would not parse it.
pub fn file_tasks(source: &str, track: Track) -> Option<Vec<(u64, FileTask)>> {
    let tree = assertions::parse(source)?;
    let found = assertions::find(&tree, source);
    let lines = prefix::Lines::new(source);
    let verdicts = filters::verdicts(&found, &lines);
    let tasks = found
        .iter()
        .zip(verdicts)
        .filter(|(_, verdict)| verdict.is_ok())
        .map(|(f, _)| {
            let evolution = prefix::evolution(source, f);
            let key = key(&f.kind, &evolution, &f.target);
            let prefix = match track {
                Track::Evolution => evolution,
                Track::Static => prefix::structured(&tree, source, &lines, f),
            };
            let task = FileTask {
                line: f.node.start_position().row + 1,
                function: f.function.map_or("", |n| assertions::name_of(n, source)).to_owned(),
                class: f.class.map(|n| assertions::name_of(n, source).to_owned()),
                family: f.family,
                kind: f.kind.clone(),
                prefix,
                target: f.target.clone(),
            };
            (key, task)
        })
        .collect();
    Some(tasks)
}

/// A task of one file, before it is placed in history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTask {
    pub line: usize,
    pub function: String,
    pub class: Option<String>,
    pub family: Family,
    pub kind: String,
    pub prefix: String,
    pub target: String,
}

/// An assertion's identity across commits, as the authors key it: what it looks like from
/// the top of its file, whitespace aside.
fn key(kind: &str, file_prefix: &str, target: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    kind.hash(&mut hasher);
    for word in file_prefix.split(is_python_space).filter(|w| !w.is_empty()) {
        word.hash(&mut hasher);
    }
    0xffu8.hash(&mut hasher);
    for word in target.split(is_python_space).filter(|w| !w.is_empty()) {
        word.hash(&mut hasher);
    }
    hasher.finish()
}

/// Mines the tasks of the first-parent history of `options.rev` in `repo`.
pub fn mine(repo: &Path, options: &MineOptions) -> Result<Mined, TasksError> {
    let commits = history::first_parent(repo, &options.rev)?;
    let mut blobs = history::Blobs::open(repo)?;
    let mut keys_by_path: HashMap<String, HashSet<u64>> = HashMap::new();
    let mut mined = Mined { commits: commits.len(), ..Mined::default() };
    let mut kept: Vec<(&history::Commit, Vec<(String, FileTask)>)> = Vec::new();

    for commit in &commits {
        let mut new_tasks = Vec::new();
        for change in &commit.changes {
            if let Some(from) = change.from.as_ref().filter(|from| **from != change.path)
                && let Some(keys) = keys_by_path.remove(from)
            {
                keys_by_path.insert(change.path.clone(), keys);
            }
            if change.status == 'D' {
                keys_by_path.remove(&change.path);
                continue;
            }
            let Some(blob) = change.blob.as_deref().filter(|_| is_test_file(&change.path)) else { continue };
            let short = &commit.id[..commit.id.len().min(12)];
            let Some(bytes) = blobs.read(blob)? else {
                keys_by_path.remove(&change.path);
                continue;
            };
            if bytes.contains(&0) {
                mined.warnings.push(format!("{short} {}: binary content, no tasks", change.path));
                keys_by_path.remove(&change.path);
                continue;
            }
            let source = String::from_utf8_lossy(&bytes);
            let Some(tasks) = file_tasks(&source, options.track) else {
                mined.warnings.push(format!("{short} {}: not valid Python 3, no tasks", change.path));
                keys_by_path.remove(&change.path);
                continue;
            };
            let previous = keys_by_path.remove(&change.path).unwrap_or_default();
            let mut current = HashSet::with_capacity(tasks.len());
            for (key, task) in tasks {
                current.insert(key);
                if !previous.contains(&key) {
                    new_tasks.push((change.path.clone(), task));
                }
            }
            keys_by_path.insert(change.path.clone(), current);
        }
        if !new_tasks.is_empty() {
            new_tasks.truncate(options.per_commit);
            kept.push((commit, new_tasks));
        }
    }

    let splits = split::chronological(kept.len());
    mined.kept_commits = kept.len();
    for (kept_index, ((commit, tasks), split)) in kept.into_iter().zip(splits).enumerate() {
        for (file, t) in tasks {
            mined.tasks.push(Task {
                commit: commit.id.clone(),
                parent: commit.parent.clone(),
                time: commit.time,
                kept_index,
                split,
                track: options.track,
                file,
                line: t.line,
                function: t.function,
                class: t.class,
                family: t.family,
                kind: t.kind,
                prefix: t.prefix,
                target: t.target,
            });
        }
    }
    Ok(mined)
}
