//! Where a ref's walk starts: its stored state, another branch's state it forked from, or a
//! fresh snapshot. Pure decisions over what git says, so they are tested without a daemon.

use evolora_state::RefState;
use git2::Oid;

use crate::git::GitError;

/// What a decision needs to know about the repository's history.
pub trait History {
    fn has_commit(&self, commit: Oid) -> bool;
    fn is_ancestor(&self, ancestor: Oid, of: Oid) -> Result<bool, GitError>;
    fn merge_base(&self, a: Oid, b: Oid) -> Option<Oid>;
    /// First-parent-agnostic count of commits in `tip` not in `ancestor`.
    fn commits_since(&self, ancestor: Oid, tip: Oid) -> Result<usize, GitError>;
}

impl History for git2::Repository {
    fn has_commit(&self, commit: Oid) -> bool {
        self.find_commit(commit).is_ok()
    }

    fn is_ancestor(&self, ancestor: Oid, of: Oid) -> Result<bool, GitError> {
        crate::git::is_ancestor(self, ancestor, of)
    }

    fn merge_base(&self, a: Oid, b: Oid) -> Option<Oid> {
        git2::Repository::merge_base(self, a, b).ok()
    }

    fn commits_since(&self, ancestor: Oid, tip: Oid) -> Result<usize, GitError> {
        Ok(self.graph_ahead_behind(tip, ancestor)?.0)
    }
}

/// Why a ref starts from a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cold {
    /// No state, and no other branch's state to continue.
    New,
    /// Its last commit is no longer an ancestor of the tip (rebase, reset, force push).
    Rewritten,
    /// Its last commit is gone from the repository.
    LostCommit,
    /// Made by another model, or a `reset` was asked for.
    Replaced,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// The stored state continues from its last commit.
    Resume(RefState),
    /// A new branch continues another ref's state (its last commit is in the branch's
    /// history): no snapshot, no re-walk of shared commits.
    Fork(RefState),
    /// A snapshot at `at` gives h₀. `previous` is the state it replaces, whose published
    /// adapter stays current until a new one is.
    Snapshot { at: Oid, why: Cold, previous: Option<RefState> },
}

/// Decides how `refname` (stored state `previous`, tip `tip`) starts this job. `others` are
/// the repository's other ref states; `fingerprint` is the loaded model's.
pub fn choose(
    refname: &str,
    previous: Option<RefState>,
    others: Vec<RefState>,
    fingerprint: &str,
    reset: bool,
    tip: Oid,
    history: &impl History,
) -> Result<Start, GitError> {
    let Some(prev) = previous else {
        return Ok(match closest_ancestor_state(others, fingerprint, tip, history)? {
            Some(s) => Start::Fork(s.forked_for(refname)),
            None => Start::Snapshot { at: tip, why: Cold::New, previous: None },
        });
    };
    if prev.model_fingerprint != fingerprint || reset {
        return Ok(Start::Snapshot { at: tip, why: Cold::Replaced, previous: Some(prev) });
    }
    let last = Oid::from_str(&prev.last_commit).ok().filter(|&o| history.has_commit(o));
    Ok(match last {
        Some(last) if history.is_ancestor(last, tip)? => Start::Resume(prev),
        // History was rewritten: restart from the merge base when there is one.
        Some(last) => Start::Snapshot { at: history.merge_base(last, tip).unwrap_or(tip), why: Cold::Rewritten, previous: Some(prev) },
        None => Start::Snapshot { at: tip, why: Cold::LostCommit, previous: Some(prev) },
    })
}

/// The state, among `others` made by this model, whose last commit is the closest ancestor
/// of `tip`.
fn closest_ancestor_state(others: Vec<RefState>, fingerprint: &str, tip: Oid, history: &impl History) -> Result<Option<RefState>, GitError> {
    let mut best: Option<(usize, RefState)> = None;
    for s in others {
        if s.model_fingerprint != fingerprint {
            continue;
        }
        let Ok(last) = Oid::from_str(&s.last_commit) else { continue };
        if !history.has_commit(last) || !history.is_ancestor(last, tip)? {
            continue;
        }
        let ahead = history.commits_since(last, tip)?;
        if best.as_ref().is_none_or(|(a, _)| ahead < *a) {
            best = Some((ahead, s));
        }
    }
    Ok(best.map(|(_, s)| s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A history given as child → parents, commits named by one byte.
    struct Dag(HashMap<Oid, Vec<Oid>>);

    fn oid(n: u8) -> Oid {
        Oid::from_bytes(&[n; 20]).unwrap()
    }

    impl Dag {
        fn new(edges: &[(u8, &[u8])]) -> Self {
            Dag(edges.iter().map(|(c, ps)| (oid(*c), ps.iter().map(|p| oid(*p)).collect())).collect())
        }

        fn ancestors(&self, of: Oid) -> Vec<Oid> {
            let mut seen = vec![of];
            let mut i = 0;
            while i < seen.len() {
                for p in self.0.get(&seen[i]).into_iter().flatten() {
                    if !seen.contains(p) {
                        seen.push(*p);
                    }
                }
                i += 1;
            }
            seen
        }
    }

    impl History for Dag {
        fn has_commit(&self, c: Oid) -> bool {
            self.0.contains_key(&c)
        }
        fn is_ancestor(&self, a: Oid, of: Oid) -> Result<bool, GitError> {
            Ok(self.ancestors(of).contains(&a))
        }
        fn merge_base(&self, a: Oid, b: Oid) -> Option<Oid> {
            let of_b = self.ancestors(b);
            self.ancestors(a).into_iter().find(|c| of_b.contains(c))
        }
        fn commits_since(&self, ancestor: Oid, tip: Oid) -> Result<usize, GitError> {
            let old = self.ancestors(ancestor);
            Ok(self.ancestors(tip).iter().filter(|c| !old.contains(c)).count())
        }
    }

    fn state(refname: &str, last: u8, fingerprint: &str) -> RefState {
        let mut s = RefState::from_snapshot(refname, vec![last as f32], &oid(1).to_string(), fingerprint, 0);
        s.last_commit = oid(last).to_string();
        s.published("published", 5);
        s
    }

    /// 1 ← 2 ← 3 ← 4 (main), 2 ← 5 (rewritten side), 3 ← 6 (topic)
    fn dag() -> Dag {
        Dag::new(&[(1, &[]), (2, &[1]), (3, &[2]), (4, &[3]), (5, &[2]), (6, &[3])])
    }

    const MAIN: &str = "refs/heads/main";

    #[test]
    fn a_state_whose_last_commit_is_an_ancestor_resumes() {
        let s = state(MAIN, 3, "fp");
        assert_eq!(choose(MAIN, Some(s.clone()), vec![], "fp", false, oid(4), &dag()).unwrap(), Start::Resume(s));
    }

    #[test]
    fn a_rewritten_history_restarts_from_the_merge_base_keeping_the_adapter() {
        let s = state(MAIN, 4, "fp");
        match choose(MAIN, Some(s.clone()), vec![], "fp", false, oid(5), &dag()).unwrap() {
            Start::Snapshot { at, why, previous } => assert_eq!((at, why, previous), (oid(2), Cold::Rewritten, Some(s))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn another_model_a_reset_or_a_lost_commit_snapshot_the_tip() {
        let s = state(MAIN, 3, "old");
        let why = |prev: RefState, reset| match choose(MAIN, Some(prev), vec![], "fp", reset, oid(4), &dag()).unwrap() {
            Start::Snapshot { at, why, .. } => (at, why),
            other => panic!("{other:?}"),
        };
        assert_eq!(why(s, false), (oid(4), Cold::Replaced));
        assert_eq!(why(state(MAIN, 3, "fp"), true), (oid(4), Cold::Replaced));
        assert_eq!(why(state(MAIN, 99, "fp"), false), (oid(4), Cold::LostCommit));
    }

    #[test]
    fn a_new_branch_forks_from_the_closest_state_of_this_model() {
        let others = vec![state(MAIN, 2, "fp"), state("refs/heads/b", 3, "fp"), state("refs/heads/c", 3, "other"), state("refs/heads/d", 4, "fp")];
        match choose("refs/heads/topic", None, others, "fp", false, oid(6), &dag()).unwrap() {
            Start::Fork(s) => {
                assert_eq!(s.last_commit, oid(3).to_string(), "the closest ancestor wins; 4 is not an ancestor of 6");
                assert_eq!((s.refname.as_str(), s.adapter()), ("refs/heads/topic", None), "a fork has no adapter of its own");
            }
            other => panic!("{other:?}"),
        }
        let none = choose("refs/heads/topic", None, vec![state(MAIN, 4, "fp")], "fp", false, oid(6), &dag()).unwrap();
        assert_eq!(none, Start::Snapshot { at: oid(6), why: Cold::New, previous: None });
    }
}
