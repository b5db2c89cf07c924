//! Running completions for many problems, a bounded number of sandboxes at a time, and
//! comparing two runs over the same problems (without and with the adapter).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};

use super::bootstrap::{BootstrapOptions, Interval, paired_difference_interval};
use super::completion::{test_program, truncate_completion};
use super::problems::Problem;
use super::sandbox::{Isolation, Outcome, Sandbox, SandboxError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Programs running at once; 0 means one per core.
    pub parallelism: usize,
    /// Cut completions at the stop sequences first (see [`super::completion`]).
    pub truncate: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { parallelism: 0, truncate: true }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProblemResult {
    pub task_id: String,
    pub passed: bool,
    pub outcome: Outcome,
    pub seconds: f64,
    /// The completion as tested, after truncation.
    pub completion: String,
}

/// One greedy completion per problem, so pass@1 is the share of problems passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapabilityRun {
    pub problems: usize,
    pub passed: usize,
    pub pass_at_1: f64,
    pub isolation: Isolation,
    /// In the order of the problems given.
    pub results: Vec<ProblemResult>,
}

/// Handed to the progress callback as each problem finishes (in finishing order).
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    pub done: usize,
    pub total: usize,
    pub result: &'a ProblemResult,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{problems} problems but {completions} completions")]
    CountMismatch { problems: usize, completions: usize },
    #[error("{task_id}: {source}")]
    Sandbox { task_id: String, source: SandboxError },
}

/// The completions that solve every problem by construction: a check of the problem file and
/// of the sandbox.
pub fn canonical_completions(problems: &[Problem]) -> Vec<String> {
    problems.iter().map(|problem| problem.canonical_solution.clone()).collect()
}

/// Tests `completions[i]` against `problems[i]` for every `i`. A sandbox that cannot run a
/// program (as opposed to a program that fails) stops the run with an error: counting it as a
/// failure would blame the model for the host.
pub fn run_problems(
    sandbox: &Sandbox,
    problems: &[Problem],
    completions: &[String],
    options: &RunOptions,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<CapabilityRun, RunError> {
    if problems.len() != completions.len() {
        return Err(RunError::CountMismatch { problems: problems.len(), completions: completions.len() });
    }
    let total = problems.len();
    let workers = match options.parallelism {
        0 => std::thread::available_parallelism().map_or(1, |cores| cores.get()),
        parallelism => parallelism,
    }
    .min(total)
    .max(1);
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let mut results: Vec<Option<ProblemResult>> = vec![None; total];
    let mut first_error = None;
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::channel();
        for _ in 0..workers {
            let sender = sender.clone();
            let (next, stop) = (&next, &stop);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(problem) = problems.get(index) else { break };
                    let result = run_one(sandbox, problem, &completions[index], options.truncate);
                    if sender.send((index, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        // Progress is reported here, on the caller's thread, so the callback needs no locking.
        let mut done = 0;
        for (index, result) in receiver {
            match result {
                Ok(result) => {
                    done += 1;
                    progress(Progress { done, total, result: &result });
                    results[index] = Some(result);
                }
                Err(source) => {
                    stop.store(true, Ordering::Relaxed);
                    first_error.get_or_insert(RunError::Sandbox {
                        task_id: problems[index].task_id.clone(),
                        source,
                    });
                }
            }
        }
    });
    if let Some(error) = first_error {
        return Err(error);
    }
    let results: Vec<ProblemResult> =
        results.into_iter().map(|result| result.expect("every problem ran")).collect();
    let passed = results.iter().filter(|result| result.passed).count();
    Ok(CapabilityRun {
        problems: total,
        passed,
        pass_at_1: pass_at_1(passed, total),
        isolation: sandbox.isolation(),
        results,
    })
}

fn run_one(
    sandbox: &Sandbox,
    problem: &Problem,
    completion: &str,
    truncate: bool,
) -> Result<ProblemResult, SandboxError> {
    let completion = if truncate { truncate_completion(completion) } else { completion };
    let execution = sandbox.run(&test_program(problem, completion))?;
    Ok(ProblemResult {
        task_id: problem.task_id.clone(),
        passed: execution.outcome.passed(),
        outcome: execution.outcome,
        seconds: execution.seconds,
        completion: completion.to_string(),
    })
}

/// Share of problems passed; 0 for no problems.
pub fn pass_at_1(passed: usize, problems: usize) -> f64 {
    if problems == 0 { 0.0 } else { passed as f64 / problems as f64 }
}

/// The capability check's answer: does the adapter cost (or gain) general coding ability?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub problems: usize,
    pub base_pass_at_1: f64,
    pub adapted_pass_at_1: f64,
    /// adapted − base.
    pub difference: f64,
    /// Paired bootstrap interval of the difference; `None` for no problems.
    pub interval: Option<Interval>,
    pub bootstrap: BootstrapOptions,
    /// Problems passed only with the adapter.
    pub fixed: Vec<String>,
    /// Problems passed only without it.
    pub broken: Vec<String>,
}

/// Both runs and their comparison: what `evolora eval --capability` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapabilityReport {
    pub base: CapabilityRun,
    pub adapted: CapabilityRun,
    pub comparison: Comparison,
}

impl CapabilityReport {
    pub fn new(
        base: CapabilityRun,
        adapted: CapabilityRun,
        bootstrap: &BootstrapOptions,
    ) -> Result<Self, CompareError> {
        let comparison = compare(&base, &adapted, bootstrap)?;
        Ok(Self { base, adapted, comparison })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error(
        "the runs cover different problems ({base} and {adapted}); compare runs over the same problem list"
    )]
    DifferentProblems { base: usize, adapted: usize },
    #[error("the runs differ at position {position}: {base} and {adapted}")]
    DifferentOrder { position: usize, base: String, adapted: String },
}

pub fn compare(
    base: &CapabilityRun,
    adapted: &CapabilityRun,
    bootstrap: &BootstrapOptions,
) -> Result<Comparison, CompareError> {
    if base.results.len() != adapted.results.len() {
        return Err(CompareError::DifferentProblems {
            base: base.results.len(),
            adapted: adapted.results.len(),
        });
    }
    let mut fixed = Vec::new();
    let mut broken = Vec::new();
    for (position, (before, after)) in base.results.iter().zip(&adapted.results).enumerate() {
        if before.task_id != after.task_id {
            return Err(CompareError::DifferentOrder {
                position,
                base: before.task_id.clone(),
                adapted: after.task_id.clone(),
            });
        }
        match (before.passed, after.passed) {
            (false, true) => fixed.push(after.task_id.clone()),
            (true, false) => broken.push(after.task_id.clone()),
            _ => {}
        }
    }
    let passes = |run: &CapabilityRun| run.results.iter().map(|result| result.passed).collect::<Vec<_>>();
    let problems = base.results.len();
    let base_pass_at_1 = pass_at_1(base.results.iter().filter(|r| r.passed).count(), problems);
    let adapted_pass_at_1 = pass_at_1(adapted.results.iter().filter(|r| r.passed).count(), problems);
    Ok(Comparison {
        problems,
        base_pass_at_1,
        adapted_pass_at_1,
        difference: adapted_pass_at_1 - base_pass_at_1,
        interval: paired_difference_interval(&passes(base), &passes(adapted), bootstrap),
        bootstrap: *bootstrap,
        fixed,
        broken,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(passes: &[(&str, bool)]) -> CapabilityRun {
        let results: Vec<ProblemResult> = passes
            .iter()
            .map(|&(task_id, passed)| ProblemResult {
                task_id: task_id.into(),
                passed,
                outcome: if passed { Outcome::Passed } else { Outcome::TimedOut },
                seconds: 0.1,
                completion: String::new(),
            })
            .collect();
        let passed = results.iter().filter(|r| r.passed).count();
        CapabilityRun {
            problems: results.len(),
            passed,
            pass_at_1: pass_at_1(passed, results.len()),
            isolation: Isolation {
                network_isolated: true,
                dropped_to_uid: None,
                private_process_count: true,
            },
            results,
        }
    }

    #[test]
    fn comparison_counts_fixed_and_broken() {
        let base = run(&[("a", true), ("b", false), ("c", false), ("d", true)]);
        let adapted = run(&[("a", true), ("b", true), ("c", true), ("d", false)]);
        let comparison = compare(&base, &adapted, &BootstrapOptions::default()).unwrap();
        assert_eq!((comparison.base_pass_at_1, comparison.adapted_pass_at_1), (0.5, 0.75));
        assert_eq!(comparison.difference, 0.25);
        assert_eq!(comparison.fixed, ["b", "c"]);
        assert_eq!(comparison.broken, ["d"]);
        let interval = comparison.interval.unwrap();
        assert!(interval.low <= 0.25 && 0.25 <= interval.high);
        let report = CapabilityReport::new(base, adapted, &BootstrapOptions::default()).unwrap();
        assert_eq!(report.comparison, comparison);
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<CapabilityReport>(&json).unwrap(), report);
    }

    #[test]
    fn comparison_needs_the_same_problems_in_the_same_order() {
        let base = run(&[("a", true), ("b", false)]);
        assert!(matches!(
            compare(&base, &run(&[("b", true), ("a", true)]), &BootstrapOptions::default()),
            Err(CompareError::DifferentOrder { position: 0, .. })
        ));
        assert!(matches!(
            compare(&base, &run(&[("a", true)]), &BootstrapOptions::default()),
            Err(CompareError::DifferentProblems { .. })
        ));
    }

    #[test]
    fn pass_at_1_of_nothing_is_zero() {
        assert_eq!(pass_at_1(0, 0), 0.0);
        assert_eq!(pass_at_1(3, 4), 0.75);
    }
}
