//! Stored values. Each is written as a bincode-2 (standard config) encoding of a versioned
//! envelope enum: `V1(..)` today; a later release appends `V2(..)` and converts on read, so
//! today's bytes stay readable. Fields are plain owned values with no serde attributes that
//! bincode cannot honour (no flatten, skip, tag or untagged).

use serde::{Deserialize, Serialize};

use crate::StateError;

/// A registered repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoRecord {
    /// Stable short name: `<dir name>-<12 hex of sha256(git dir)>`.
    pub key: String,
    /// Canonical common git directory (`.git` of a work tree, or the bare repository).
    pub git_dir: String,
    /// Work tree, if any.
    pub work_dir: Option<String>,
    pub bare: bool,
    /// Refs to follow; empty means "the branch HEAD points to".
    pub tracked_refs: Vec<String>,
    /// Unix seconds.
    pub registered_at: u64,
}

/// The repository record as schemas 1 and 2 wrote it, with a trigger-override field that was
/// never set (per-repository triggers live in the configuration file).
#[derive(Clone, Serialize, Deserialize)]
struct RepoRecordV1 {
    key: String,
    git_dir: String,
    work_dir: Option<String>,
    bare: bool,
    tracked_refs: Vec<String>,
    registered_at: u64,
    trigger_overrides: Option<String>,
}

impl From<RepoRecordV1> for RepoRecord {
    fn from(v: RepoRecordV1) -> Self {
        RepoRecord { key: v.key, git_dir: v.git_dir, work_dir: v.work_dir, bare: v.bare, tracked_refs: v.tracked_refs, registered_at: v.registered_at }
    }
}

/// The GRU state of one (repository, ref).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefState {
    pub refname: String,
    /// The state vector (GRU hidden state), little-endian f32 on disk via bincode.
    pub vector: Vec<f32>,
    /// Last commit folded into `vector` (hex).
    pub last_commit: String,
    /// Commit whose snapshot gave h₀.
    pub origin_commit: String,
    /// Commit the next GRU step's diff starts from. Equal to `last_commit` under the
    /// every-commit policy; under the paper policy, the last commit that stepped the GRU.
    pub step_base: String,
    /// First-parent commits walked since the origin (catch-up groups are aligned to it).
    pub walked: u64,
    /// GRU steps applied since the origin.
    pub steps: u64,
    /// Steps since the last published adapter.
    pub steps_since_adapter: u64,
    /// A dependency manifest changed since the last adapter.
    pub manifest_changed: bool,
    /// Fingerprint of the model that produced `vector`.
    pub model_fingerprint: String,
    /// Directory name (under the repository's adapter folder) of the current adapter.
    pub current_adapter: Option<String>,
    /// Commit the current adapter was generated at.
    pub adapter_commit: Option<String>,
    /// Unix seconds of the last adapter.
    pub adapter_at: Option<u64>,
    pub updated_at: u64,
}

/// One group of commits folded into a state (see [`RefState::fold`]).
#[derive(Debug, Clone)]
pub struct Folded {
    /// The state vector after the group.
    pub vector: Vec<f32>,
    /// The group's newest commit.
    pub last_commit: String,
    /// Where the next step's diff starts, if the group moved it.
    pub step_base: Option<String>,
    /// Commits walked, and the GRU steps among them.
    pub walked: u64,
    pub steps: u64,
    /// A commit of the group touched a dependency manifest.
    pub manifest_changed: bool,
}

/// Every way a [`RefState`] changes, in one place: started from a snapshot, copied for a new
/// branch, rebuilt while its published adapter stays current, advanced by a group of
/// commits, and pointed at a newly published adapter.
impl RefState {
    /// h₀ from the snapshot at `origin`: nothing walked yet, no adapter.
    pub fn from_snapshot(refname: &str, vector: Vec<f32>, origin: &str, model_fingerprint: &str, now: u64) -> Self {
        RefState {
            refname: refname.to_owned(),
            vector,
            last_commit: origin.to_owned(),
            origin_commit: origin.to_owned(),
            step_base: origin.to_owned(),
            walked: 0,
            steps: 0,
            steps_since_adapter: 0,
            manifest_changed: false,
            model_fingerprint: model_fingerprint.to_owned(),
            current_adapter: None,
            adapter_commit: None,
            adapter_at: None,
            updated_at: now,
        }
    }

    /// h₀ from the snapshot at `origin`, with the origin's own step still to come: the walk
    /// starts at `origin` itself (its diff against the empty tree), as the paper's states do.
    /// Until then `last_commit` and `step_base` are empty.
    pub fn before_origin(refname: &str, vector: Vec<f32>, origin: &str, model_fingerprint: &str, now: u64) -> Self {
        RefState { last_commit: String::new(), step_base: String::new(), ..Self::from_snapshot(refname, vector, origin, model_fingerprint, now) }
    }

    /// Nothing is folded yet, not even the origin (see [`RefState::before_origin`]).
    pub fn origin_pending(&self) -> bool {
        self.last_commit.is_empty()
    }

    /// An earlier state of this ref (a restore point) taking over after a rewrite: its vector
    /// and counters, and the adapter `current` published, which stays current until the
    /// next one is.
    pub fn restored(mut point: RefState, current: &RefState) -> Self {
        point.steps_since_adapter = 0;
        point.manifest_changed = false;
        point.keeping_adapter_of(current)
    }

    /// A rebuilt state still points at the adapter `old` published, until a new one is. That
    /// adapter was not made from this state's vector: it counts as at least one step behind.
    pub fn keeping_adapter_of(mut self, old: &RefState) -> Self {
        self.current_adapter = old.current_adapter.clone();
        self.adapter_commit = old.adapter_commit.clone();
        self.adapter_at = old.adapter_at;
        if self.current_adapter.is_some() {
            self.steps_since_adapter = self.steps_since_adapter.max(1);
        }
        self
    }

    /// The current adapter was made from this very vector: only commits that did not step
    /// (under the paper policy) were walked since.
    pub fn adapter_is_current(&self) -> bool {
        self.current_adapter.is_some() && self.steps_since_adapter == 0
    }

    /// This state continued by another ref (a new branch): it has no adapter of its own yet.
    pub fn forked_for(mut self, refname: &str) -> Self {
        self.refname = refname.to_owned();
        self.current_adapter = None;
        self.adapter_commit = None;
        self.adapter_at = None;
        self
    }

    /// Advances over one group of walked commits.
    pub fn fold(&mut self, group: Folded, now: u64) {
        self.vector = group.vector;
        self.last_commit = group.last_commit;
        if let Some(base) = group.step_base {
            self.step_base = base;
        }
        self.walked += group.walked;
        self.steps += group.steps;
        self.steps_since_adapter += group.steps;
        self.manifest_changed |= group.manifest_changed;
        self.updated_at = now;
    }

    /// An adapter of the current state was published as directory `dir` at `at`.
    pub fn published(&mut self, dir: &str, at: u64) {
        self.current_adapter = Some(dir.to_owned());
        self.adapter_commit = Some(self.last_commit.clone());
        self.adapter_at = Some(at);
        self.steps_since_adapter = 0;
        self.manifest_changed = false;
    }

    /// The current adapter's directory and commit, once one is published.
    pub fn adapter(&self) -> Option<(&str, &str)> {
        Some((self.current_adapter.as_deref()?, self.adapter_commit.as_deref()?))
    }
}

/// One published adapter directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterRecord {
    pub refname: String,
    pub commit: String,
    /// Directory name under the repository's adapter folder.
    pub dir: String,
    pub trigger: String,
    pub created_at: u64,
    /// Kept by every retention rule until unpinned.
    pub pinned: bool,
    pub steps: u64,
    /// Bytes of the directory's files (0: not measured, a record from schema V1).
    pub bytes: u64,
    /// Unix seconds a client was last handed this adapter (0: never). Written at most once
    /// a minute per adapter, so it is approximate by design.
    pub last_queried: u64,
}

impl AdapterRecord {
    /// The record of a directory just published: unpinned, never queried.
    pub fn published(refname: &str, commit: &str, dir: &str, trigger: &str, steps: u64, bytes: u64, now: u64) -> Self {
        AdapterRecord {
            refname: refname.to_owned(),
            commit: commit.to_owned(),
            dir: dir.to_owned(),
            trigger: trigger.to_owned(),
            created_at: now,
            pinned: false,
            steps,
            bytes,
            last_queried: 0,
        }
    }

    /// When this adapter was last of use: handed to a client, or else published.
    pub fn last_used(&self) -> u64 {
        self.created_at.max(self.last_queried)
    }
}

/// The adapter record as schema V1 wrote it (no size, no query time).
#[derive(Clone, Serialize, Deserialize)]
struct AdapterRecordV1 {
    refname: String,
    commit: String,
    dir: String,
    trigger: String,
    created_at: u64,
    pinned: bool,
    steps: u64,
}

impl From<AdapterRecordV1> for AdapterRecord {
    fn from(v: AdapterRecordV1) -> Self {
        AdapterRecord {
            refname: v.refname,
            commit: v.commit,
            dir: v.dir,
            trigger: v.trigger,
            created_at: v.created_at,
            pinned: v.pinned,
            steps: v.steps,
            bytes: 0,
            last_queried: 0,
        }
    }
}

/// `$env` lists every version ever written, oldest first; the last one is `$ty` itself and
/// is what gets written. Older ones convert with `From` on read.
macro_rules! envelope {
    ($env:ident, $ty:ident, $what:literal, $current:ident $(, $old:ident($old_ty:ty))*) => {
        #[derive(Serialize, Deserialize)]
        enum $env {
            $($old($old_ty),)*
            $current($ty),
        }

        impl $ty {
            pub fn to_bytes(&self) -> Vec<u8> {
                bincode::serde::encode_to_vec(&$env::$current(self.clone()), bincode::config::standard())
                    .expect("in-memory encoding cannot fail")
            }

            pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
                let cfg = bincode::config::standard().with_limit::<{ 64 << 20 }>();
                let (env, _): ($env, usize) = bincode::serde::decode_from_slice(bytes, cfg)
                    .map_err(|e| StateError::Decode { what: $what, reason: e.to_string() })?;
                match env {
                    $($env::$old(v) => Ok(v.into()),)*
                    $env::$current(v) => Ok(v),
                }
            }
        }
    };
}

envelope!(RepoEnvelope, RepoRecord, "repository record", V2, V1(RepoRecordV1));
envelope!(RefEnvelope, RefState, "ref state", V1);
envelope!(AdapterEnvelope, AdapterRecord, "adapter record", V2, V1(AdapterRecordV1));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_state_round_trips_bit_exactly() {
        let s = RefState {
            refname: "refs/heads/main".into(),
            vector: vec![1.5, -0.0, f32::MIN_POSITIVE, 3.25e-7],
            last_commit: "ab".repeat(20),
            origin_commit: "cd".repeat(20),
            step_base: "cd".repeat(20),
            walked: 9,
            steps: 7,
            steps_since_adapter: 2,
            manifest_changed: true,
            model_fingerprint: "f".into(),
            current_adapter: Some("x".into()),
            adapter_commit: None,
            adapter_at: Some(9),
            updated_at: 10,
        };
        let back = RefState::from_bytes(&s.to_bytes()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.vector[1].to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn v1_adapter_records_still_read() {
        // Bytes as schema V1 wrote them: variant 0 of the envelope, seven fields.
        #[derive(Serialize)]
        enum OldEnvelope {
            V1(AdapterRecordV1),
        }
        let old = AdapterRecordV1 {
            refname: "refs/heads/main".into(),
            commit: "ab".repeat(20),
            dir: "ab".repeat(20),
            trigger: "every-commit".into(),
            created_at: 77,
            pinned: true,
            steps: 5,
        };
        let bytes = bincode::serde::encode_to_vec(OldEnvelope::V1(old), bincode::config::standard()).unwrap();
        let rec = AdapterRecord::from_bytes(&bytes).unwrap();
        assert_eq!((rec.created_at, rec.pinned, rec.steps, rec.bytes, rec.last_queried), (77, true, 5, 0, 0));
        assert_eq!(AdapterRecord::from_bytes(&rec.to_bytes()).unwrap(), rec);
    }

    #[test]
    fn transitions_keep_counters_and_adapter_fields_consistent() {
        let mut s = RefState::from_snapshot("refs/heads/main", vec![0.5], "o", "fp", 1);
        assert_eq!((s.last_commit.as_str(), s.step_base.as_str(), s.walked, s.steps), ("o", "o", 0, 0));
        let group = |last: &str, base: Option<&str>, walked, steps, manifest| Folded {
            vector: vec![walked as f32],
            last_commit: last.into(),
            step_base: base.map(String::from),
            walked,
            steps,
            manifest_changed: manifest,
        };
        s.fold(group("a", Some("a"), 3, 3, true), 2);
        s.fold(group("b", None, 4, 1, false), 3);
        assert_eq!((s.last_commit.as_str(), s.step_base.as_str()), ("b", "a"), "a group without a step keeps the base");
        assert_eq!((s.walked, s.steps, s.steps_since_adapter, s.manifest_changed, s.updated_at), (7, 4, 4, true, 3));
        s.published("b.1", 9);
        assert_eq!(s.adapter(), Some(("b.1", "b")));
        assert_eq!((s.steps_since_adapter, s.manifest_changed, s.adapter_at), (0, false, Some(9)));
        let rebuilt = RefState::from_snapshot("refs/heads/main", vec![1.0], "t", "fp", 10).keeping_adapter_of(&s);
        assert_eq!((rebuilt.adapter(), rebuilt.walked), (Some(("b.1", "b")), 0), "a rebuild keeps serving the published adapter");
        let fork = s.clone().forked_for("refs/heads/topic");
        assert_eq!((fork.refname.as_str(), fork.adapter(), fork.steps), ("refs/heads/topic", None, 4));
    }

    #[test]
    fn v1_repository_records_still_read() {
        #[derive(Serialize)]
        enum OldEnvelope {
            V1(RepoRecordV1),
        }
        let old = RepoRecordV1 {
            key: "r-1".into(),
            git_dir: "/srv/r.git".into(),
            work_dir: None,
            bare: true,
            tracked_refs: vec!["refs/heads/main".into()],
            registered_at: 42,
            trigger_overrides: None,
        };
        let bytes = bincode::serde::encode_to_vec(OldEnvelope::V1(old), bincode::config::standard()).unwrap();
        let rec = RepoRecord::from_bytes(&bytes).unwrap();
        assert_eq!((rec.key.as_str(), rec.bare, rec.tracked_refs.len(), rec.registered_at), ("r-1", true, 1, 42));
        assert_eq!(RepoRecord::from_bytes(&rec.to_bytes()).unwrap(), rec);
    }

    #[test]
    fn garbage_is_a_named_error() {
        let err = RefState::from_bytes(&[9, 9, 9]).unwrap_err().to_string();
        assert!(err.contains("ref state"), "{err}");
    }
}
