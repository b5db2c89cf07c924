//! The quality filters: which found assertions become tasks.
//!
//! From the paper (§4.2) and the authors' `is_valid_pair`: a target must not be empty or
//! blank, start with a comma, be closing brackets only (`)`, `))`, `)))`, `]`, `]]`, `}`),
//! exceed 500 characters, or sit outside a function; the cut's line must not hold `(,`;
//! and within one function a target already seen there is dropped (the paper's
//! "duplicates within the function").
//!
//! Deviations, both where the paper and the code disagree, following the code: the paper
//! also drops targets that are "only punctuation or a single character", but the authors'
//! code drops only the closing-bracket targets above, so `[]`, `{}` and single-character
//! targets such as `0` stay tasks. The code removes duplicates per file (and caps
//! functions, files and repositories) only when it selects a static snapshot's tasks, and
//! not at all for commits; duplicates here are removed per function, as the paper says.

use std::collections::HashSet;

use crate::python::is_python_space;

use super::assertions::Found;
use super::prefix::Lines;

const BRACKETS_ONLY: [&str; 6] = [")", "))", ")))", "]", "]]", "}"];
const MAX_TARGET_CHARS: usize = 500;

/// Why an assertion is not a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Empty,
    LeadingComma,
    BracketsOnly,
    TooLong,
    OutsideFunction,
    MalformedPrefix,
    DuplicateInFunction,
}

/// The found assertions that pass, in order; `keep[i]` says whether `found[i]` does.
pub fn verdicts(found: &[Found], lines: &Lines) -> Vec<Result<(), Rejection>> {
    let mut seen: HashSet<(usize, &str)> = HashSet::new();
    found
        .iter()
        .map(|f| {
            let target = f.target.trim_matches(is_python_space);
            if target.is_empty() {
                return Err(Rejection::Empty);
            }
            if target.starts_with(',') {
                return Err(Rejection::LeadingComma);
            }
            if BRACKETS_ONLY.contains(&target) {
                return Err(Rejection::BracketsOnly);
            }
            if target.chars().count() > MAX_TARGET_CHARS {
                return Err(Rejection::TooLong);
            }
            let Some(function) = f.function else { return Err(Rejection::OutsideFunction) };
            if lines.up_to(f.cut).trim_matches(is_python_space).contains("(,") {
                return Err(Rejection::MalformedPrefix);
            }
            if !seen.insert((function.id(), f.target.as_str())) {
                return Err(Rejection::DuplicateInFunction);
            }
            Ok(())
        })
        .collect()
}
