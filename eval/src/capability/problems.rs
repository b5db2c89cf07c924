//! HumanEval-format problem files: one JSON object per line with `task_id`, `prompt`,
//! `canonical_solution`, `test` and `entry_point`, plain or gzip-compressed.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One programming problem: the model continues `prompt`; `test` defines `check(candidate)`,
/// which is called with the function named `entry_point`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub task_id: String,
    pub prompt: String,
    pub canonical_solution: String,
    pub test: String,
    pub entry_point: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProblemsError {
    #[error("cannot open problem file {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("cannot read problem file {path} at line {line}: {source}")]
    Read { path: PathBuf, line: usize, source: std::io::Error },
    #[error("{path}:{line}: not a HumanEval problem: {source}")]
    Parse { path: PathBuf, line: usize, source: serde_json::Error },
    #[error("{path}:{line}: entry_point {entry_point:?} of {task_id} is not a Python identifier")]
    EntryPoint { path: PathBuf, line: usize, task_id: String, entry_point: String },
    #[error("{path}:{line}: task_id {task_id} appears a second time")]
    DuplicateTask { path: PathBuf, line: usize, task_id: String },
    #[error("problem file {path} holds no problems")]
    Empty { path: PathBuf },
}

#[derive(Debug, thiserror::Error)]
pub enum SelectionError {
    #[error("no problem has task_id {0}")]
    UnknownTask(String),
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads every problem of a HumanEval-format JSONL file. Compression is recognised by the gzip
/// magic bytes rather than the file name, so a renamed file still loads. Blank lines are skipped.
pub fn load_problems(path: &Path) -> Result<Vec<Problem>, ProblemsError> {
    let open_error = |source| ProblemsError::Open { path: path.to_path_buf(), source };
    let mut file = BufReader::new(File::open(path).map_err(open_error)?);
    let compressed = file.fill_buf().map_err(open_error)?.starts_with(&GZIP_MAGIC);
    let reader: Box<dyn BufRead> = if compressed {
        Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(file)))
    } else {
        Box::new(file)
    };
    parse_problems(reader, path)
}

fn parse_problems(reader: impl Read, path: &Path) -> Result<Vec<Problem>, ProblemsError> {
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for (index, line) in BufReader::new(reader).lines().enumerate() {
        let line_number = index + 1;
        let line = line.map_err(|source| ProblemsError::Read {
            path: path.to_path_buf(),
            line: line_number,
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let problem: Problem = serde_json::from_str(&line).map_err(|source| ProblemsError::Parse {
            path: path.to_path_buf(),
            line: line_number,
            source,
        })?;
        // The entry point is pasted into `check(...)`; anything but a name would be code.
        if !is_python_identifier(&problem.entry_point) {
            return Err(ProblemsError::EntryPoint {
                path: path.to_path_buf(),
                line: line_number,
                task_id: problem.task_id,
                entry_point: problem.entry_point,
            });
        }
        if !seen.insert(problem.task_id.clone()) {
            return Err(ProblemsError::DuplicateTask {
                path: path.to_path_buf(),
                line: line_number,
                task_id: problem.task_id,
            });
        }
        problems.push(problem);
    }
    if problems.is_empty() {
        return Err(ProblemsError::Empty { path: path.to_path_buf() });
    }
    Ok(problems)
}

fn is_python_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first == '_' || first.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// Narrows a problem set: the named tasks (in the order given) when `task_ids` is not empty,
/// else all; then at most `limit` of them.
pub fn select_problems(
    problems: Vec<Problem>,
    task_ids: &[String],
    limit: Option<usize>,
) -> Result<Vec<Problem>, SelectionError> {
    let mut selected = if task_ids.is_empty() {
        problems
    } else {
        let mut by_id: std::collections::HashMap<String, Problem> =
            problems.into_iter().map(|problem| (problem.task_id.clone(), problem)).collect();
        task_ids
            .iter()
            .map(|id| by_id.remove(id).ok_or_else(|| SelectionError::UnknownTask(id.clone())))
            .collect::<Result<Vec<_>, _>>()?
    };
    if let Some(limit) = limit {
        selected.truncate(limit);
    }
    Ok(selected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(task_id: &str, entry_point: &str) -> String {
        serde_json::json!({
            "task_id": task_id,
            "prompt": "def f():\n",
            "canonical_solution": "    return 1\n",
            "test": "def check(candidate):\n    assert candidate() == 1\n",
            "entry_point": entry_point,
        })
        .to_string()
    }

    fn parse(text: &str) -> Result<Vec<Problem>, ProblemsError> {
        parse_problems(text.as_bytes(), Path::new("problems.jsonl"))
    }

    #[test]
    fn rows_parse_and_blank_lines_are_skipped() {
        let text = format!("{}\n\n{}\n", row("T/0", "f"), row("T/1", "f"));
        let problems = parse(&text).unwrap();
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[1].task_id, "T/1");
    }

    #[test]
    fn bad_row_names_file_and_line() {
        let text = format!("{}\n{{\"task_id\": \"T/1\"}}\n", row("T/0", "f"));
        let message = parse(&text).unwrap_err().to_string();
        assert!(message.starts_with("problems.jsonl:2:"), "{message}");
        assert!(message.contains("prompt"), "{message}");
    }

    #[test]
    fn entry_point_must_be_a_name() {
        let text = row("T/0", "f); import os; (f");
        assert!(matches!(parse(&text), Err(ProblemsError::EntryPoint { line: 1, .. })));
    }

    #[test]
    fn duplicate_task_ids_are_refused() {
        let text = format!("{}\n{}\n", row("T/0", "f"), row("T/0", "f"));
        assert!(matches!(parse(&text), Err(ProblemsError::DuplicateTask { line: 2, .. })));
    }

    #[test]
    fn empty_file_is_refused() {
        assert!(matches!(parse("\n"), Err(ProblemsError::Empty { .. })));
    }

    #[test]
    fn selection_by_id_and_limit() {
        let problems: Vec<Problem> =
            (0..4).map(|index| serde_json::from_str(&row(&format!("T/{index}"), "f")).unwrap()).collect();
        let ids = |problems: &[Problem]| problems.iter().map(|p| p.task_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&select_problems(problems.clone(), &[], Some(2)).unwrap()), ["T/0", "T/1"]);
        let wanted = ["T/3".to_string(), "T/1".to_string()];
        assert_eq!(ids(&select_problems(problems.clone(), &wanted, None).unwrap()), ["T/3", "T/1"]);
        assert!(select_problems(problems, &["T/9".to_string()], None).is_err());
    }
}
