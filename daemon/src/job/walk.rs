//! Walking a ref's new commits: planned by the step policy, diffed and encoded on the
//! encode threads ahead of the GRU, folded in groups, one durable state write per group.

use evolora_state::{Folded, RefState};
use git2::{Oid, Repository};
use tracing::warn;

use super::inputs::{Prepared, StepInput, Worker};
use super::{Engine, JobError, Outcome, now_secs, steps};
use crate::config::Config;
use crate::git::DiffLimits;
use crate::metrics::secs;
use crate::parallel::ordered_map;

/// Groups per window of a walk (see [`Engine::walk`]).
const WINDOW_GROUPS: usize = 8;

impl Engine {
    /// Folds `commits` (oldest first, first-parent) into `state`, one durable transaction per
    /// group. Returns false if it stopped early for a shutdown.
    pub(super) fn walk(&mut self, cfg: &Config, key: &str, repo: &Repository, state: &mut RefState, commits: &[Oid], out: &mut Outcome) -> Result<bool, JobError> {
        // Groups (one transaction each) end at multiples of `step_group` commits since the
        // origin, so a walk cut short by a crash resumes on the same boundaries. Windows of
        // whole groups bound the planning done ahead (and how late a shutdown is noticed).
        let group_len = cfg.step_group.max(1);
        let mut start = 0;
        while start < commits.len() {
            let to_boundary = group_len - (state.walked % group_len as u64) as usize;
            // Windows end on a group boundary; groups may end earlier (see `group_ends_at`).
            let end = (start + to_boundary + (WINDOW_GROUPS - 1) * group_len).min(commits.len());
            if !self.walk_window(cfg, key, repo, state, &commits[start..end], out)? || self.ctx.stop.is_set() {
                return Ok(false);
            }
            start = end;
        }
        Ok(true)
    }

    /// One window of [`Engine::walk`]: plans its commits, prepares them on the encode
    /// threads and folds each group as soon as its commits are in.
    fn walk_window(&mut self, cfg: &Config, key: &str, repo: &Repository, state: &mut RefState, commits: &[Oid], out: &mut Outcome) -> Result<bool, JobError> {
        let git_dir = repo.path().to_path_buf();
        let threads = cfg.encode_threads();
        let globs = &cfg.triggers.manifest_globs;
        let mut plan = steps::plan(&git_dir, commits, self.model.meta.step_policy, Oid::from_str(&state.step_base).ok(), globs, threads)?;
        // The origin's own step is against the empty tree (the paper's plan starts there
        // already: its step base is empty).
        if state.origin_pending()
            && let Some(first) = plan.first_mut()
            && matches!(first.step, steps::Step::FirstParent)
        {
            first.step = steps::Step::Whole;
        }
        // Commits in parallel when there are several; one commit's files in parallel when not.
        let file_threads = if plan.len() == 1 { threads } else { 1 };
        let encoding = self.encoder.diff_encoding();
        let mut group: Vec<Prepared> = Vec::new();
        let mut failed: Option<JobError> = None;
        let mut finished = true;
        let metrics = self.ctx.metrics.clone();
        ordered_map(
            &plan,
            threads,
            // Encoders keep working while a group is made durable (an fsync).
            4 * cfg.step_group.max(1),
            || Worker::open(&git_dir, file_threads, encoding),
            |w, p| {
                let started = std::time::Instant::now();
                let prepared = w.prepare(p, globs);
                // Encoded here only when a vector came out; text is encoded on the model thread.
                if let Ok(Prepared { input: Some(StepInput::Vector(_)), .. }) = &prepared {
                    metrics.encode.observe(secs(started.elapsed()));
                }
                prepared
            },
            |i, prepared| {
                let prepared = match prepared {
                    Ok(p) => p,
                    Err(e) => {
                        failed = Some(e.into());
                        return false;
                    }
                };
                if prepared.truncated {
                    warn!(repo = %key, commit = %prepared.oid, "diff larger than {} bytes: encoded its first part only", DiffLimits::default().max_bytes);
                }
                group.push(prepared);
                let at_boundary = group_ends_at(cfg, state.walked + group.len() as u64);
                if !(at_boundary || i + 1 == plan.len()) {
                    return true;
                }
                if let Err(e) = self.fold_group(cfg, key, state, std::mem::take(&mut group), out) {
                    failed = Some(e);
                    return false;
                }
                if self.ctx.stop.is_set() {
                    finished = false;
                    return false;
                }
                true
            },
        );
        match failed {
            Some(e) => Err(e),
            None => Ok(finished),
        }
    }

    /// Advances the state over one group of prepared commits and makes it durable, with a
    /// restore point when the group crosses a multiple of `restore_every` walked commits.
    fn fold_group(&mut self, cfg: &Config, key: &str, state: &mut RefState, group: Vec<Prepared>, out: &mut Outcome) -> Result<(), JobError> {
        let last = group.last().expect("non-empty group").oid;
        let stepped: Vec<(Oid, bool)> = group.iter().map(|p| (p.oid, p.input.is_some())).collect();
        let manifest_changed = group.iter().any(|p| p.manifest_changed);
        let walked = group.len() as u64;
        let mut diffs: Vec<Vec<f32>> = Vec::new();
        for p in group {
            match p.input {
                Some(StepInput::Vector(v)) => diffs.push(v),
                Some(StepInput::Text { base, text }) => {
                    let started = std::time::Instant::now();
                    diffs.push(self.encoder.diff_vector(&text, base, p.oid)?);
                    self.ctx.metrics.encode.observe(secs(started.elapsed()));
                }
                None => {}
            }
        }
        let steps = diffs.len() as u64;
        let advancing = std::time::Instant::now();
        let vector = self.model.advance(&state.vector, &diffs)?;
        if steps > 0 {
            let per_step = secs(advancing.elapsed()) / steps as f64;
            for _ in 0..steps {
                self.ctx.metrics.gru_step.observe(per_step);
            }
        }
        self.ctx.metrics.commits_walked.inc_by(walked);
        let step_base = steps::step_base_after(self.model.meta.step_policy, &stepped).map(|o| o.to_string());
        let before = state.walked;
        state.fold(Folded { vector, last_commit: last.to_string(), step_base, walked, steps, manifest_changed }, now_secs());
        let every = cfg.history.restore_every;
        if every > 0 && before / every != state.walked / every {
            self.ctx.store.put_restore_point(key, state, cfg.history.restore_points)?;
        }
        self.ctx.store.commit_steps(key, state)?;
        out.steps += steps;
        out.commits += walked;
        self.ctx.jobs.walk_advanced(key, &state.refname, out.commits);
        Ok(())
    }
}

/// Whether a group ends after `walked` commits since the origin: at multiples of
/// `step_group` (so a walk cut short resumes on the same boundaries) and of `restore_every`
/// (so restore points sit exactly there).
fn group_ends_at(cfg: &Config, walked: u64) -> bool {
    let every = cfg.history.restore_every;
    walked.is_multiple_of(cfg.step_group.max(1) as u64) || (every > 0 && walked.is_multiple_of(every))
}
