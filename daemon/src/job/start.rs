//! Where a ref's walk starts, and which commits it walks: its stored state, an earlier exact
//! state of it (a restore point, after a rewrite), another branch's state it forked from, or
//! a fresh snapshot at the history's origin. Pure decisions over what git says, so they are
//! tested without a daemon.
//!
//! Every state is exact for its commit: h₀ from the snapshot at the origin, then one step per
//! stepped first-parent commit from the origin itself up to that commit. So continuing any
//! known state that lies on the tip's first-parent chain gives the bits a fresh walk of the
//! whole chain would, and only the commits after it are walked.

use std::collections::HashMap;

use evolora_state::RefState;
use git2::Oid;

use crate::config::{HistoryFrom, HistorySettings};
use crate::git::GitError;

/// What a decision needs to know about the repository's history.
pub trait History {
    fn has_commit(&self, commit: Oid) -> bool;
    /// The first parent; `None` for a root (or the boundary of a shallow clone).
    fn first_parent(&self, commit: Oid) -> Result<Option<Oid>, GitError>;
    /// Committer time, Unix seconds.
    fn commit_time(&self, commit: Oid) -> Result<i64, GitError>;
}

impl History for git2::Repository {
    fn has_commit(&self, commit: Oid) -> bool {
        self.find_commit(commit).is_ok()
    }

    fn first_parent(&self, commit: Oid) -> Result<Option<Oid>, GitError> {
        let c = self.find_commit(commit)?;
        // A shallow clone's boundary names a parent that is not there: history ends here.
        Ok(c.parent_ids().next().filter(|p| self.find_commit(*p).is_ok()))
    }

    fn commit_time(&self, commit: Oid) -> Result<i64, GitError> {
        Ok(self.find_commit(commit)?.time().seconds())
    }
}

/// Why a ref starts from a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cold {
    /// No state, and no state of this or another branch on the tip's history.
    New,
    /// Its last commit left the tip's first-parent history (rebase, reset, force push) and no
    /// restore point is on it either.
    Rewritten,
    /// Its last commit is gone from the repository, and no restore point is on the history.
    LostCommit,
    /// Made by another model, or a `reset` was asked for.
    Replaced,
}

/// How a ref continues a known state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Its own stored state.
    Resumed,
    /// One of its restore points: the history was rewritten after it.
    Restored,
    /// Another ref's state or restore point: a new branch shares that history.
    Forked,
}

impl How {
    pub fn name(self) -> &'static str {
        match self {
            How::Resumed => "resumed",
            How::Restored => "restored",
            How::Forked => "forked",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// `state` continues with `commits` (oldest first).
    Continue { state: RefState, how: How, commits: Vec<Oid> },
    /// h₀ from the snapshot at `at`. With `step_at` the walk steps `at` itself first
    /// (`commits` starts with it); without, `at` is the tip and nothing is walked.
    /// `previous` is the state it replaces, whose published adapter stays current until a
    /// new one is.
    Snapshot { at: Oid, why: Cold, step_at: bool, commits: Vec<Oid>, previous: Option<RefState> },
}

/// The states a ref may continue.
#[derive(Debug, Default)]
pub struct Known {
    /// The ref's stored state.
    pub previous: Option<RefState>,
    /// The ref's restore points.
    pub restore_points: Vec<RefState>,
    /// Other refs' states and restore points (consulted only for a ref without a state).
    pub others: Vec<RefState>,
}

/// Index of the first commit the step policy steps on among `commits` (oldest first);
/// `None` when none does.
pub type FirstStepping<'a> = dyn FnMut(&[Oid]) -> Result<Option<usize>, GitError> + 'a;

/// Where a fresh walk of a history starts.
pub struct Origin<'a> {
    pub settings: &'a HistorySettings,
    pub first_stepping: &'a mut FirstStepping<'a>,
}

/// Decides how `refname` (tip `tip`) starts this job. `fingerprint` is the loaded model's;
/// `reset` asks for a fresh snapshot.
pub fn choose(refname: &str, known: Known, fingerprint: &str, reset: bool, tip: Oid, history: &impl History, origin: Origin) -> Result<Start, GitError> {
    let Known { previous, restore_points, others } = known;
    if let Some(prev) = previous.as_ref().filter(|p| p.model_fingerprint != fingerprint || reset) {
        let chain = chain_back(history, tip, |_| false)?.1;
        return fresh(chain, Cold::Replaced, Some(prev.clone()), history, origin);
    }

    // The known states by the commit they stand at, the ref's own first. A state whose
    // origin step is still to come stands before its origin: the walk includes the origin.
    let mut at: HashMap<Oid, (RefState, How, bool)> = HashMap::new();
    let mut offer = |state: RefState, how: How| {
        let (commit, inclusive) = if state.origin_pending() { (&state.origin_commit, true) } else { (&state.last_commit, false) };
        if state.model_fingerprint != fingerprint {
            return;
        }
        if let Ok(c) = Oid::from_str(commit) {
            at.entry(c).or_insert((state, how, inclusive));
        }
    };
    match &previous {
        // A ref's own restore points stand only beside its state (they go when it goes).
        Some(prev) => {
            offer(prev.clone(), How::Resumed);
            for p in restore_points {
                offer(p, How::Restored);
            }
        }
        None => {
            for o in others {
                offer(o, How::Forked);
            }
        }
    }

    let (hit, mut commits) = chain_back(history, tip, |c| at.contains_key(&c))?;
    let Some(hit) = hit else {
        let why = match &previous {
            None => Cold::New,
            Some(p) if Oid::from_str(&p.last_commit).is_ok_and(|c| history.has_commit(c)) || p.origin_pending() => Cold::Rewritten,
            Some(_) => Cold::LostCommit,
        };
        return fresh(commits, why, previous, history, origin);
    };
    let (state, how, inclusive) = at.remove(&hit).expect("hit is known");
    if inclusive {
        commits.insert(0, hit);
    }
    let state = match how {
        How::Resumed => state,
        How::Restored => RefState::restored(state, previous.as_ref().expect("restore points are offered only beside a state")),
        How::Forked => state.forked_for(refname),
    };
    Ok(Start::Continue { state, how, commits })
}

/// A fresh start on `chain` (the tip's whole first-parent history, oldest first): the
/// snapshot at the origin the settings give.
fn fresh(chain: Vec<Oid>, why: Cold, previous: Option<RefState>, history: &impl History, origin: Origin) -> Result<Start, GitError> {
    let tip = *chain.last().expect("a chain holds at least its tip");
    let at_tip = Start::Snapshot { at: tip, why, step_at: false, commits: Vec::new(), previous: previous.clone() };
    if origin.settings.from == HistoryFrom::Tip {
        return Ok(at_tip);
    }
    let mut lo = 0;
    if let Some(last) = origin.settings.last {
        lo = chain.len().saturating_sub(last as usize);
    }
    // Settings are checked when they are loaded: a bad date never reaches here.
    if let Some(since) = origin.settings.since_secs().ok().flatten() {
        // The first commit on or after the date; the tip at least, the walk always reaches it.
        let mut first = chain.len() - 1;
        for (i, &c) in chain.iter().enumerate().skip(lo) {
            if history.commit_time(c)? >= since {
                first = i;
                break;
            }
        }
        lo = lo.max(first);
    }
    let Some(k) = (origin.first_stepping)(&chain[lo..])? else {
        // Nothing steps (no commit adds test assertions under the paper policy): h₀ at the
        // tip, with the tip walked, so the first commit that steps later is diffed against the
        // empty tree as it would be in the paper's walk.
        return Ok(Start::Snapshot { at: tip, why, step_at: true, commits: vec![tip], previous });
    };
    let commits = chain[lo + k..].to_vec();
    Ok(Start::Snapshot { at: commits[0], why, step_at: true, commits, previous })
}

/// Walks `tip`'s first-parent chain back until `known` names a commit. Returns that commit
/// (`None` when the root was reached first) and the commits after it up to the tip, oldest
/// first.
pub fn chain_back(history: &impl History, tip: Oid, known: impl Fn(Oid) -> bool) -> Result<(Option<Oid>, Vec<Oid>), GitError> {
    let mut newer = Vec::new();
    let mut at = Some(tip);
    while let Some(c) = at {
        if known(c) {
            newer.reverse();
            return Ok((Some(c), newer));
        }
        newer.push(c);
        at = history.first_parent(c)?;
    }
    newer.reverse();
    Ok((None, newer))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history given as child → first parent, commits named by one byte; commit n was
    /// made at time n.
    struct Dag(HashMap<Oid, Option<Oid>>);

    fn oid(n: u8) -> Oid {
        Oid::from_bytes(&[n; 20]).unwrap()
    }

    impl Dag {
        fn new(edges: &[(u8, Option<u8>)]) -> Self {
            Dag(edges.iter().map(|(c, p)| (oid(*c), p.map(oid))).collect())
        }
    }

    impl History for Dag {
        fn has_commit(&self, c: Oid) -> bool {
            self.0.contains_key(&c)
        }
        fn first_parent(&self, c: Oid) -> Result<Option<Oid>, GitError> {
            Ok(self.0.get(&c).copied().flatten())
        }
        fn commit_time(&self, c: Oid) -> Result<i64, GitError> {
            Ok(c.as_bytes()[0] as i64)
        }
    }

    fn state(refname: &str, last: u8, fingerprint: &str) -> RefState {
        let mut s = RefState::from_snapshot(refname, vec![last as f32], &oid(1).to_string(), fingerprint, 0);
        s.last_commit = oid(last).to_string();
        s.walked = last as u64;
        s.published("published", 5);
        s
    }

    /// 1 ← 2 ← 3 ← 4 (main), 2 ← 5 (rewritten side), 3 ← 6 (topic)
    fn dag() -> Dag {
        Dag::new(&[(1, None), (2, Some(1)), (3, Some(2)), (4, Some(3)), (5, Some(2)), (6, Some(3))])
    }

    const MAIN: &str = "refs/heads/main";

    fn decide(refname: &str, known: Known, fp: &str, reset: bool, tip: u8, settings: &HistorySettings) -> Start {
        let mut every = |_: &[Oid]| Ok(Some(0));
        choose(refname, known, fp, reset, oid(tip), &dag(), Origin { settings, first_stepping: &mut every }).unwrap()
    }

    fn root() -> HistorySettings {
        HistorySettings::default()
    }

    #[test]
    fn a_state_on_the_tips_history_resumes_with_the_commits_after_it() {
        let s = state(MAIN, 2, "fp");
        let known = Known { previous: Some(s.clone()), ..Known::default() };
        assert_eq!(decide(MAIN, known, "fp", false, 4, &root()), Start::Continue { state: s, how: How::Resumed, commits: vec![oid(3), oid(4)] });
    }

    #[test]
    fn a_pending_origin_is_walked_itself() {
        let s = RefState::before_origin(MAIN, vec![0.0], &oid(2).to_string(), "fp", 0);
        let known = Known { previous: Some(s.clone()), ..Known::default() };
        assert_eq!(decide(MAIN, known, "fp", false, 4, &root()), Start::Continue { state: s, how: How::Resumed, commits: vec![oid(2), oid(3), oid(4)] });
    }

    #[test]
    fn a_rewrite_restores_the_newest_restore_point_on_the_new_history() {
        let prev = state(MAIN, 4, "fp");
        let points = vec![state(MAIN, 1, "fp"), state(MAIN, 2, "fp"), state(MAIN, 3, "fp"), state(MAIN, 2, "other")];
        let known = Known { previous: Some(prev.clone()), restore_points: points, ..Known::default() };
        match decide(MAIN, known, "fp", false, 5, &root()) {
            Start::Continue { state, how, commits } => {
                assert_eq!((how, commits), (How::Restored, vec![oid(5)]), "3 is not on 5's history; 2 is the newest that is");
                assert_eq!(state.last_commit, oid(2).to_string());
                assert_eq!(state.adapter(), prev.adapter(), "the published adapter stays current until the next");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_rewrite_without_a_restore_point_walks_the_new_history_from_its_root() {
        let prev = state(MAIN, 4, "fp");
        let known = Known { previous: Some(prev.clone()), ..Known::default() };
        let start = decide(MAIN, known, "fp", false, 5, &root());
        assert_eq!(start, Start::Snapshot { at: oid(1), why: Cold::Rewritten, step_at: true, commits: vec![oid(1), oid(2), oid(5)], previous: Some(prev) });
    }

    #[test]
    fn another_model_a_reset_or_a_lost_commit_start_afresh_from_the_origin() {
        let why = |prev: RefState, reset| match decide(MAIN, Known { previous: Some(prev), ..Known::default() }, "fp", reset, 4, &root()) {
            Start::Snapshot { at, why, commits, .. } => (at, why, commits.len()),
            other => panic!("{other:?}"),
        };
        assert_eq!(why(state(MAIN, 3, "old"), false), (oid(1), Cold::Replaced, 4));
        assert_eq!(why(state(MAIN, 3, "fp"), true), (oid(1), Cold::Replaced, 4));
        assert_eq!(why(state(MAIN, 99, "fp"), false), (oid(1), Cold::LostCommit, 4));
    }

    #[test]
    fn a_new_branch_forks_from_the_closest_state_on_its_history() {
        let others = vec![state(MAIN, 2, "fp"), state("refs/heads/b", 3, "fp"), state("refs/heads/c", 3, "other"), state("refs/heads/d", 4, "fp")];
        match decide("refs/heads/topic", Known { others, ..Known::default() }, "fp", false, 6, &root()) {
            Start::Continue { state, how, commits } => {
                assert_eq!((how, commits), (How::Forked, vec![oid(6)]));
                assert_eq!(state.last_commit, oid(3).to_string(), "the closest state on the history wins; 4 is not on 6's");
                assert_eq!((state.refname.as_str(), state.adapter()), ("refs/heads/topic", None), "a fork has no adapter of its own");
            }
            other => panic!("{other:?}"),
        }
        let none = decide("refs/heads/topic", Known { others: vec![state(MAIN, 4, "fp")], ..Known::default() }, "fp", false, 6, &root());
        assert_eq!(none, Start::Snapshot { at: oid(1), why: Cold::New, step_at: true, commits: vec![oid(1), oid(2), oid(3), oid(6)], previous: None });
    }

    #[test]
    fn the_history_settings_place_the_origin() {
        let at = |settings: HistorySettings| match decide(MAIN, Known::default(), "fp", false, 4, &settings) {
            Start::Snapshot { at, step_at, commits, .. } => (at, step_at, commits.len()),
            other => panic!("{other:?}"),
        };
        assert_eq!(at(root()), (oid(1), true, 4));
        assert_eq!(at(HistorySettings { from: HistoryFrom::Tip, ..root() }), (oid(4), false, 0));
        assert_eq!(at(HistorySettings { last: Some(2), ..root() }), (oid(3), true, 2));
        assert_eq!(at(HistorySettings { last: Some(99), ..root() }), (oid(1), true, 4));
        // Commit n is made at second n.
        assert_eq!(at(HistorySettings { since: Some("1970-01-01T00:00:02Z".into()), ..root() }), (oid(2), true, 3));
        assert_eq!(at(HistorySettings { since: Some("2030-01-01".into()), ..root() }), (oid(4), true, 1), "the tip at least");
    }

    #[test]
    fn the_paper_policy_starts_at_the_first_stepping_commit() {
        let settings = root();
        let mut third = |c: &[Oid]| Ok(c.iter().position(|&o| o == oid(3)));
        let start = choose(MAIN, Known::default(), "fp", false, oid(4), &dag(), Origin { settings: &settings, first_stepping: &mut third }).unwrap();
        assert_eq!(start, Start::Snapshot { at: oid(3), why: Cold::New, step_at: true, commits: vec![oid(3), oid(4)], previous: None });
        let mut none = |_: &[Oid]| Ok(None);
        let start = choose(MAIN, Known::default(), "fp", false, oid(4), &dag(), Origin { settings: &settings, first_stepping: &mut none }).unwrap();
        assert_eq!(start, Start::Snapshot { at: oid(4), why: Cold::New, step_at: true, commits: vec![oid(4)], previous: None });
    }
}
