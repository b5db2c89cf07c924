//! After a walk: ask the triggers, and publish an adapter through [`crate::adapters`].

use std::path::{Path, PathBuf};

use evolora_model::AdapterWeights;
use evolora_state::RefState;
use tracing::warn;

use super::triggers::{self, Since};
use super::{Engine, JobError, now_secs, vector_digest};
use crate::adapters::{AdapterInfo, Contents, ModelStamp, SCHEMA};
use crate::config::Config;
use crate::context::UNTRAINED_WARNING;
use crate::metrics::secs;
use crate::push::Published;
use crate::scheduler::JobFlags;

/// The trigger that publishes an adapter of `state` now, if any. `cold`: the state was
/// started from a snapshot in this job.
pub fn due(cfg: &Config, state: &RefState, flags: JobFlags, cold: bool, now: u64) -> Option<&'static str> {
    let trigger = triggers::decide(
        &cfg.triggers,
        Since {
            commits: state.steps_since_adapter,
            manifest_changed: state.manifest_changed,
            secs_since_adapter: state.adapter_at.map(|t| now.saturating_sub(t)),
            explicit: flags.regenerate,
            cold_start: cold,
        },
    )?;
    // Nothing new to publish unless asked or restarted: the adapter already covers this commit.
    let covered = state.adapter_commit.as_deref() == Some(state.last_commit.as_str());
    (!covered || flags.regenerate || cold).then_some(trigger)
}

impl Engine {
    /// Publishes the adapter of `state`; returns its directory and the weights written there.
    pub(super) fn publish(&mut self, cfg: &Config, git_dir: &Path, key: &str, state: &mut RefState, trigger: &str, walked: u64) -> Result<(PathBuf, AdapterWeights), JobError> {
        // Servers compare the base name with the one they were started with.
        let base = cfg.serve.served_base(&self.model.base);
        // The weights file fills while the head runs: each projection type goes to disk
        // while the next is computed.
        let layout = self.model.adapter_layout().to_vec();
        let mut version = self.ctx.adapters.start_version(key, &state.last_commit, &layout, self.model.config.rank, &base, cfg.model.dtype)?;
        let generating = std::time::Instant::now();
        let weights = self.model.adapter_each(&state.vector, |pair| version.put(pair))?;
        self.ctx.metrics.generation.observe(secs(generating.elapsed()));
        let meta = &self.model.meta;
        let info = AdapterInfo {
            schema: SCHEMA,
            repo: Some(git_dir.display().to_string()),
            repo_key: Some(key.to_owned()),
            refname: Some(state.refname.clone()),
            commit: Some(state.last_commit.clone()),
            origin_commit: Some(state.origin_commit.clone()),
            steps: Some(state.steps),
            walked: Some(state.walked),
            commits_walked: Some(walked),
            trigger: Some(trigger.to_owned()),
            created_at: Some(now_secs()),
            model: ModelStamp {
                encoder_dir: self.encoder.dir().map(|d| d.display().to_string()),
                checkpoint: cfg.model.checkpoint.as_ref().map(|c| c.display().to_string()),
                ..ModelStamp::of(&self.model)
            },
            state_sha256: Some(vector_digest(&state.vector)),
            warning: (!meta.trained).then(|| UNTRAINED_WARNING.to_owned()),
            ..AdapterInfo::default()
        };
        // llama.cpp needs the base's family; without it the PEFT files still go out.
        let gguf = cfg.serve.gguf_for(&base);
        if cfg.serve.gguf() && !gguf {
            warn!(repo = %key, base = %base.name, "no GGUF file: the base's config.json names neither Qwen2 nor Qwen3, and llama.cpp needs the architecture");
        }
        let contents = Contents { weights: &weights, base: &base, info: &info, gguf };
        let writing = std::time::Instant::now();
        let dir = self.ctx.adapters.finish_version(version, state, contents)?;
        let metrics = &self.ctx.metrics;
        metrics.write.observe(secs(writing.elapsed()));
        metrics.published.inc();
        if let Some(woken) = self.ctx.jobs.running_woken_at() {
            metrics.commit_to_adapter.observe(secs(woken.elapsed()));
        }
        if cfg.pushes(git_dir)
            && let Some(name) = dir.file_name()
        {
            let version = Published { repo_key: key.to_owned(), refname: state.refname.clone(), dir: name.to_string_lossy().into_owned(), path: dir.clone() };
            self.ctx.push.published(version);
        }
        Ok((dir, weights))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(steps_since: u64, adapter_at: Option<u64>, covers_tip: bool) -> RefState {
        let mut s = RefState::from_snapshot("refs/heads/main", vec![0.0], "a", "fp", 0);
        s.last_commit = "b".into();
        s.steps_since_adapter = steps_since;
        s.adapter_at = adapter_at;
        s.adapter_commit = Some(if covers_tip { "b" } else { "a" }.into());
        s
    }

    #[test]
    fn publishing_needs_a_trigger_and_something_new() {
        let cfg = Config::default();
        let plain = JobFlags::default();
        assert_eq!(due(&cfg, &state(1, Some(5), false), plain, false, 10), Some("every-commit"));
        assert_eq!(due(&cfg, &state(0, Some(5), false), plain, false, 10), None, "no new commits, no trigger");
        assert_eq!(due(&cfg, &state(1, Some(5), true), plain, false, 10), None, "the adapter already covers the tip");
        assert_eq!(due(&cfg, &state(0, Some(5), true), JobFlags { regenerate: true, reset: false }, false, 10), Some("request"));
        assert_eq!(due(&cfg, &state(0, Some(5), true), plain, true, 10), Some("cold-start"), "a rebuilt state republishes");
        assert_eq!(due(&cfg, &state(0, None, false), plain, false, 10), Some("cold-start"), "a ref without an adapter gets one");
    }
}
