//! Measuring whether an adapter helps, on the user's own repository.
//!
//! ```text
//! git history ─tasks─▶ assertion-completion tasks ─(the daemon's eval runs the LM)─▶ completions ─metrics─▶ report
//! HumanEval-format problems ─(LM)─▶ completions ─capability─▶ pass@1 in a sandbox
//! ```
//!
//! - [`tasks`] mines RepoPeftBench tasks from first-parent history;
//! - [`metrics`] post-processes and scores completions (exact match, edit similarity,
//!   bootstrap intervals);
//! - [`python`] parses Python as Python 3 accepts it (shared with the daemon's kept-commit rule);
//! - [`capability`] runs generated programs against their tests in a sandboxed process.
//!
//! Nothing here runs a model: callers hand in completions.

pub mod capability;
pub mod metrics;
pub mod python;
pub mod tasks;
