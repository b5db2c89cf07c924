//! The evaluation's report: per condition exact match and edit similarity with bootstrap
//! intervals, the paired differences that answer the question (own adapter against none,
//! against another repository's, against the mean), every task's completions; a table for
//! the terminal, JSON for the file.

use evolora_eval::capability::Comparison as CapabilityComparison;
use evolora_eval::metrics::{self, Interval, PairedDifference};
use evolora_eval::tasks::{Task, Track};
use evolora_model::{Hypernetwork, LanguageModel};
use serde::Serialize;

use super::{Completion, EvalArgs};

const RESAMPLES: usize = 5000;
const CONFIDENCE: f64 = 0.95;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    /// The base model alone.
    None,
    /// The repository's own adapter at the task's parent commit.
    Own,
    /// Another repository's adapter.
    Shuffled,
    /// The mean of the other repositories' adapters.
    Mean,
}

impl Condition {
    pub const ALL: [Condition; 4] = [Condition::None, Condition::Own, Condition::Shuffled, Condition::Mean];

    fn label(self) -> &'static str {
        match self {
            Condition::None => "no adapter",
            Condition::Own => "own adapter",
            Condition::Shuffled => "other repository's",
            Condition::Mean => "mean of others",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub condition: Condition,
    pub exact_match: Interval,
    pub edit_similarity: Interval,
}

#[derive(Debug, Serialize)]
pub struct Difference {
    /// `a − b` over the tasks scored under both.
    pub a: Condition,
    pub b: Condition,
    pub exact_match: PairedDifference,
    pub edit_similarity: PairedDifference,
}

#[derive(Debug, Serialize)]
pub struct TaskResult {
    pub commit: String,
    pub parent: Option<String>,
    pub file: String,
    pub line: usize,
    pub function: String,
    pub family: &'static str,
    pub target: String,
    pub completions: Vec<Completion>,
}

#[derive(Debug, Serialize)]
pub struct ModelSummary {
    pub architecture: String,
    pub fingerprint: String,
    pub trained: bool,
    pub step_policy: String,
    pub checkpoint: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct EvalReport {
    pub repo: String,
    pub base_dir: String,
    pub base_model: String,
    pub hypernetwork: ModelSummary,
    pub track: Track,
    pub tasks: usize,
    /// Test tasks whose parent commit has a state (the others have no own adapter).
    pub tasks_with_own_adapter: usize,
    pub others: Vec<String>,
    pub max_new_tokens: usize,
    pub summaries: Vec<Summary>,
    pub differences: Vec<Difference>,
    pub capability: Option<CapabilityComparison>,
    pub warnings: Vec<String>,
    pub seconds: f64,
    pub results: Vec<TaskResult>,
}

fn scores(results: &[TaskResult], c: Condition, em: bool) -> Vec<Option<f64>> {
    results
        .iter()
        .map(|r| r.completions.iter().find(|x| x.condition == c).map(|x| if em { f64::from(u8::from(x.scores.exact_match)) } else { x.scores.edit_similarity }))
        .collect()
}

#[allow(clippy::too_many_arguments)]
pub fn build(
    args: &EvalArgs,
    lm: &LanguageModel,
    hyper: &Hypernetwork,
    tasks: &[Task],
    completions: Vec<Vec<Completion>>,
    others: &[(String, evolora_model::AdapterWeights)],
    capability: Option<CapabilityComparison>,
    mut warnings: Vec<String>,
    seconds: f64,
) -> EvalReport {
    let results: Vec<TaskResult> = tasks
        .iter()
        .zip(completions)
        .map(|(t, completions)| TaskResult {
            commit: t.commit.clone(),
            parent: t.parent.clone(),
            file: t.file.clone(),
            line: t.line,
            function: t.function.clone(),
            family: t.family.as_str(),
            target: t.target.clone(),
            completions,
        })
        .collect();
    let seed = args.control_seed;
    let mut summaries = Vec::new();
    for c in Condition::ALL {
        let em: Vec<f64> = scores(&results, c, true).into_iter().flatten().collect();
        if em.is_empty() {
            continue;
        }
        let es: Vec<f64> = scores(&results, c, false).into_iter().flatten().collect();
        summaries.push(Summary { condition: c, exact_match: metrics::bootstrap(&em, RESAMPLES, CONFIDENCE, seed), edit_similarity: metrics::bootstrap(&es, RESAMPLES, CONFIDENCE, seed) });
    }
    let mut differences = Vec::new();
    for (a, b) in [(Condition::Own, Condition::None), (Condition::Own, Condition::Shuffled), (Condition::Own, Condition::Mean), (Condition::Shuffled, Condition::None)] {
        let paired = |em: bool| -> (Vec<f64>, Vec<f64>) { scores(&results, a, em).into_iter().zip(scores(&results, b, em)).filter_map(|(x, y)| Some((x?, y?))).unzip() };
        let (em_a, em_b) = paired(true);
        if em_a.is_empty() {
            continue;
        }
        let (es_a, es_b) = paired(false);
        let d = |x: &[f64], y: &[f64]| metrics::paired_bootstrap(x, y, RESAMPLES, CONFIDENCE, seed).expect("paired by construction");
        differences.push(Difference { a, b, exact_match: d(&em_a, &em_b), edit_similarity: d(&es_a, &es_b) });
    }
    if others.is_empty() {
        warnings.push("no --other repositories: without the shuffled and mean controls, a gain of the own adapter may come from any adapter".into());
    }
    if !hyper.meta.trained {
        warnings.push(format!("{} (its scores say nothing about a trained model)", crate::context::UNTRAINED_WARNING));
    }
    EvalReport {
        repo: args.repo.display().to_string(),
        base_dir: args.base_dir.display().to_string(),
        base_model: lm.shapes.name.clone(),
        hypernetwork: ModelSummary {
            architecture: hyper.meta.architecture.to_string(),
            fingerprint: hyper.meta.fingerprint.clone(),
            trained: hyper.meta.trained,
            step_policy: hyper.meta.step_policy.to_string(),
            checkpoint: args.model.checkpoint.as_ref().map(|c| c.display().to_string()),
        },
        track: args.track,
        tasks: results.len(),
        tasks_with_own_adapter: results.iter().filter(|r| r.completions.iter().any(|c| c.condition == Condition::Own)).count(),
        others: others.iter().map(|(name, _)| name.clone()).collect(),
        max_new_tokens: args.max_new_tokens,
        summaries,
        differences,
        capability,
        warnings,
        seconds,
        results,
    }
}

impl EvalReport {
    /// The table a person reads.
    pub fn print(&self) {
        let pct = |i: &Interval| format!("{:5.1} % [{:5.1}, {:5.1}]", 100.0 * i.mean, 100.0 * i.low, 100.0 * i.high);
        println!();
        println!("{} — {} test tasks ({} track), base {}", self.repo, self.tasks, if self.track == Track::Static { "static" } else { "evolution" }, self.base_model);
        println!("{:<22} {:>6}  {:<26} {:<26}", "condition", "tasks", "exact match [95 % CI]", "edit similarity [95 % CI]");
        for s in &self.summaries {
            println!("{:<22} {:>6}  {:<26} {:<26}", s.condition.label(), s.exact_match.n, pct(&s.exact_match), pct(&s.edit_similarity));
        }
        if !self.differences.is_empty() {
            println!();
            println!("{:<40} {:>6}  {:<26} {:<26}", "difference (paired)", "tasks", "exact match [95 % CI]", "edit similarity [95 % CI]");
            for d in &self.differences {
                let what = format!("{} − {}", d.a.label(), d.b.label());
                let signed = |p: &PairedDifference| format!("{:+5.1} pp [{:+5.1}, {:+5.1}]", 100.0 * p.difference.mean, 100.0 * p.difference.low, 100.0 * p.difference.high);
                println!("{:<40} {:>6}  {:<26} {:<26}", what, d.exact_match.difference.n, signed(&d.exact_match), signed(&d.edit_similarity));
            }
        }
        if let Some(c) = &self.capability {
            println!();
            let ci = c.interval.map(|i| format!(" [{:+.1}, {:+.1}]", 100.0 * i.low, 100.0 * i.high)).unwrap_or_default();
            println!(
                "capability ({} problems): pass@1 {:.1} % without, {:.1} % with the adapter, {:+.1} pp{ci}; fixed {}, broken {}",
                c.problems,
                100.0 * c.base_pass_at_1,
                100.0 * c.adapted_pass_at_1,
                100.0 * c.difference,
                c.fixed.len(),
                c.broken.len()
            );
        }
        for w in &self.warnings {
            println!("warning: {w}");
        }
        println!("({:.0} s)", self.seconds);
    }
}
