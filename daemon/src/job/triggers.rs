//! Staleness triggers: after a catch-up, should a new adapter be published? Pure logic.

use crate::config::Triggers;

/// What happened since the last adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Since {
    /// Commits folded in since the last adapter (including this job's).
    pub commits: u64,
    pub manifest_changed: bool,
    /// Seconds since the last adapter (None: there is none).
    pub secs_since_adapter: Option<u64>,
    pub explicit: bool,
    pub cold_start: bool,
}

/// The trigger that fires, if any; its name is recorded with the adapter.
pub fn decide(t: &Triggers, s: Since) -> Option<&'static str> {
    if s.explicit {
        return Some("request");
    }
    if s.cold_start || s.secs_since_adapter.is_none() {
        return Some("cold-start");
    }
    if s.commits == 0 {
        return None;
    }
    let elapsed = s.secs_since_adapter.unwrap_or(u64::MAX);
    if t.min_interval_secs > 0 && elapsed < t.min_interval_secs {
        return None;
    }
    // Unadapted commits, not only this job's: a publish that failed (disk full) is retried.
    if t.every_commit && s.commits > 0 {
        return Some("every-commit");
    }
    if t.manifest_changed && s.manifest_changed {
        return Some("manifest-changed");
    }
    if t.every_n_commits > 0 && s.commits >= t.every_n_commits {
        return Some("every-n-commits");
    }
    if t.period_secs > 0 && elapsed >= t.period_secs {
        return Some("period");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet() -> Triggers {
        Triggers { every_commit: false, manifest_changed: false, every_n_commits: 0, period_secs: 0, ..Triggers::default() }
    }

    fn since(commits: u64) -> Since {
        Since { commits, secs_since_adapter: Some(10), ..Since::default() }
    }

    #[test]
    fn each_trigger_fires_only_on_its_condition() {
        assert_eq!(decide(&quiet(), since(5)), None);
        let every = Triggers { every_commit: true, ..quiet() };
        assert_eq!(decide(&every, since(1)), Some("every-commit"));
        assert_eq!(decide(&every, since(0)), None);
        let n = Triggers { every_n_commits: 3, ..quiet() };
        assert_eq!(decide(&n, since(2)), None);
        assert_eq!(decide(&n, since(3)), Some("every-n-commits"));
        let m = Triggers { manifest_changed: true, ..quiet() };
        assert_eq!(decide(&m, since(1)), None);
        assert_eq!(decide(&m, Since { manifest_changed: true, ..since(1) }), Some("manifest-changed"));
        let p = Triggers { period_secs: 60, ..quiet() };
        assert_eq!(decide(&p, since(1)), None);
        assert_eq!(decide(&p, Since { secs_since_adapter: Some(61), ..since(1) }), Some("period"));
        let limited = Triggers { every_commit: true, min_interval_secs: 30, ..quiet() };
        assert_eq!(decide(&limited, since(1)), None);
        assert_eq!(decide(&limited, Since { explicit: true, ..since(1) }), Some("request"));
        assert_eq!(decide(&quiet(), Since { secs_since_adapter: None, ..since(0) }), Some("cold-start"));
    }
}
