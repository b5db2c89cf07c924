//! Read-only git access: object database and refs only, through libgit2, except the Qwen3
//! recipe's diff text, which must be git's own bytes, and the paper policy's renames, which
//! must be git's own detection: both come from the git CLI ([`cli_diff`],
//! [`first_parent_changes`]). The daemon never touches a work tree, an index or HEAD, and never depends
//! on the user's git config for diffs (no external diff drivers, no textconv, fixed context;
//! the CLI runs with git's defaults pinned).

use std::path::{Path, PathBuf};

use evolora_model::encoder::{DiffInput, FileDiff};
use git2::{DiffOptions, Oid, Repository, Sort};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{0} is not a git repository (or any parent up to the filesystem root)")]
    NotARepository(String),
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("{0}")]
    Cli(String),
}

/// Where a repository lives.
#[derive(Debug, Clone)]
pub struct Location {
    /// Canonical common git dir (shared by all worktrees).
    pub git_dir: PathBuf,
    pub work_dir: Option<PathBuf>,
    pub bare: bool,
}

/// Process-wide libgit2 settings for a reader of many objects: objects are not re-hashed on
/// every read (git itself checks them at fsck and transfer, not at each read; the check was
/// a tenth of a catch-up's time).
pub fn tune_for_reading() {
    git2::opts::strict_hash_verification(false);
}

/// Finds the repository containing `path` (a work tree, a subdirectory, a `.git` dir, a
/// linked worktree or a bare repository).
pub fn locate(path: &Path) -> Result<Location, GitError> {
    let repo = Repository::discover(path).map_err(|_| GitError::NotARepository(path.display().to_string()))?;
    Ok(location_of(&repo))
}

/// Where an open repository lives (its common git dir, canonical).
pub fn location_of(repo: &Repository) -> Location {
    let common = repo.commondir().to_path_buf();
    let git_dir = std::fs::canonicalize(&common).unwrap_or(common);
    let bare = repo.is_bare();
    let work_dir = if bare {
        None
    } else {
        // For a linked worktree, the main work tree is the common dir's parent.
        git_dir.parent().map(Path::to_path_buf)
    };
    Location { git_dir, work_dir, bare }
}

/// `<dir name>-<first 12 hex of sha256(canonical git dir)>`: stable, unique, path-safe.
pub fn repo_key(git_dir: &Path) -> String {
    let digest = Sha256::digest(git_dir.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let named = if git_dir.file_name().is_some_and(|n| n == ".git") { git_dir.parent() } else { Some(git_dir) };
    let name: String = named
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().trim_end_matches(".git").to_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
        .take(40)
        .collect();
    let name = name.trim_start_matches('.');
    if name.is_empty() { hex } else { format!("{name}-{hex}") }
}

pub fn open(git_dir: &Path) -> Result<Repository, GitError> {
    Repository::open_bare(git_dir)
        .or_else(|_| Repository::open(git_dir))
        .map_err(|_| GitError::NotARepository(git_dir.display().to_string()))
}

/// The ref a repository follows by default: the branch HEAD names (also for a bare
/// repository, where HEAD names the default branch), and its tip if it has one.
pub fn tracked_ref(repo: &Repository) -> Result<Option<(String, Option<Oid>)>, GitError> {
    let head = match repo.find_reference("HEAD") {
        Ok(h) => h,
        Err(_) => return Ok(None),
    };
    let Some(target) = head.symbolic_target_bytes().map(|t| String::from_utf8_lossy(t).into_owned()) else {
        // Detached HEAD: nothing branch-like to follow.
        return Ok(None);
    };
    let tip = repo.refname_to_id(&target).ok();
    Ok(Some((target, tip)))
}

/// The refs a repository follows: the configured ones, or else the branch HEAD names plus the
/// branch checked out in each linked worktree. Deduplicated, in that order.
pub fn followed_refs(repo: &Repository, configured: &[String]) -> Result<Vec<(String, Option<Oid>)>, GitError> {
    let mut out: Vec<(String, Option<Oid>)> = Vec::new();
    if !configured.is_empty() {
        for r in configured {
            out.push((r.clone(), repo.refname_to_id(r).ok()));
        }
        return Ok(out);
    }
    if let Some(head) = tracked_ref(repo)? {
        out.push(head);
    }
    if let Ok(names) = repo.worktrees() {
        for name in names.iter().flatten().flatten() {
            let Ok(wt) = repo.find_worktree(name) else { continue };
            let Ok(wt_repo) = Repository::open_from_worktree(&wt) else { continue };
            if let Some((r, tip)) = tracked_ref(&wt_repo)?
                && !out.iter().any(|(o, _)| *o == r)
            {
                out.push((r, tip));
            }
        }
    }
    Ok(out)
}

pub fn is_ancestor(repo: &Repository, ancestor: Oid, of: Oid) -> Result<bool, GitError> {
    Ok(ancestor == of || repo.graph_descendant_of(of, ancestor)?)
}

/// First-parent commits reachable from `tip` and not from `since`, oldest first.
pub fn first_parent_walk(repo: &Repository, since: Oid, tip: Oid) -> Result<Vec<Oid>, GitError> {
    let mut walk = repo.revwalk()?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)?;
    walk.simplify_first_parent()?;
    walk.push(tip)?;
    walk.hide(since)?;
    Ok(walk.collect::<Result<Vec<_>, _>>()?)
}

/// Every first-parent commit from the root to `tip`, oldest first.
pub fn first_parent_history(repo: &Repository, tip: Oid) -> Result<Vec<Oid>, GitError> {
    let mut walk = repo.revwalk()?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)?;
    walk.simplify_first_parent()?;
    walk.push(tip)?;
    Ok(walk.collect::<Result<Vec<_>, _>>()?)
}

/// The commit a revision names (`HEAD`, a branch, a hash prefix, `main~3`...).
pub fn resolve_commit(repo: &Repository, rev: &str) -> Result<Oid, GitError> {
    Ok(repo.revparse_single(rev)?.peel_to_commit()?.id())
}

/// Bounds on what one commit contributes to the encoder.
#[derive(Debug, Clone, Copy)]
pub struct DiffLimits {
    /// Total bytes of added + removed text kept per commit.
    pub max_bytes: usize,
    /// Blobs larger than this are treated as binary and skipped.
    pub max_blob: u64,
}

impl Default for DiffLimits {
    fn default() -> Self {
        DiffLimits { max_bytes: 8 << 20, max_blob: 4 << 20 }
    }
}

/// A commit's changes, ready for the encoder.
pub struct CommitDiff {
    pub input: DiffInput,
    /// Paths (new side) of every changed file, binary ones included.
    pub paths: Vec<String>,
    pub binary_skipped: usize,
}

/// The diff of `oid` against its first parent (the empty tree for a root commit).
pub fn commit_diff(repo: &Repository, oid: Oid, limits: DiffLimits) -> Result<CommitDiff, GitError> {
    let commit = repo.find_commit(oid)?;
    let new_tree = commit.tree()?;
    let old_tree = if commit.parent_count() > 0 { Some(commit.parent(0)?.tree()?) } else { None };
    tree_diff(repo, old_tree.as_ref(), &new_tree, limits)
}

pub fn tree_diff(repo: &Repository, old: Option<&git2::Tree>, new: &git2::Tree, limits: DiffLimits) -> Result<CommitDiff, GitError> {
    let mut opts = DiffOptions::new();
    opts.context_lines(0).max_size(limits.max_blob as i64).ignore_submodules(true).ignore_filemode(true);
    let diff = repo.diff_tree_to_tree(old, Some(new), Some(&mut opts))?;
    let mut files = Vec::new();
    let mut paths = Vec::new();
    let mut binary_skipped = 0;
    let mut budget = limits.max_bytes;
    let mut truncated = false;
    for i in 0..diff.deltas().len() {
        let Some(delta) = diff.get_delta(i) else { continue };
        let path = delta.new_file().path().or(delta.old_file().path()).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        paths.push(path.clone());
        if budget == 0 {
            truncated = true;
            continue;
        }
        // Loading the patch loads the blobs; only then is the binary flag reliable.
        let Some(patch) = git2::Patch::from_diff(&diff, i)? else { continue };
        if patch.delta().flags().is_binary() {
            binary_skipped += 1;
            continue;
        }
        let mut file = FileDiff { path, ..Default::default() };
        'hunks: for h in 0..patch.num_hunks() {
            for l in 0..patch.num_lines_in_hunk(h)? {
                let line = patch.line_in_hunk(h, l)?;
                let content = line.content();
                if content.len() > budget {
                    truncated = true;
                    budget = 0;
                    break 'hunks;
                }
                let target = match line.origin() {
                    '+' => &mut file.added,
                    '-' => &mut file.removed,
                    _ => continue,
                };
                target.push_str(&String::from_utf8_lossy(content));
                budget -= content.len();
            }
        }
        if !(file.added.is_empty() && file.removed.is_empty()) {
            files.push(file);
        }
    }
    Ok(CommitDiff { input: DiffInput { files, truncated }, paths, binary_skipped })
}

/// Text files of a commit's tree: (path, blob id, text). Binary and oversized blobs skipped.
pub fn snapshot_files(repo: &Repository, oid: Oid, max_blob: usize) -> Result<Vec<(String, Oid, String)>, GitError> {
    let tree = repo.find_commit(oid)?.tree()?;
    let mut out = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() != Some(git2::ObjectType::Blob) {
            return git2::TreeWalkResult::Ok;
        }
        let Ok(blob) = repo.find_blob(entry.id()) else { return git2::TreeWalkResult::Ok };
        if blob.is_binary() || blob.size() > max_blob {
            return git2::TreeWalkResult::Ok;
        }
        let path = format!("{dir}{}", entry.name().unwrap_or(""));
        out.push((path, entry.id(), String::from_utf8_lossy(blob.content()).into_owned()));
        git2::TreeWalkResult::Ok
    })?;
    Ok(out)
}

/// The empty tree, which git knows without it being stored.
pub const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/// `git diff --no-color -U3 BASE COMMIT` exactly as the git CLI prints it with git's own
/// defaults (rename detection on, `a/` and `b/` prefixes, Myers), whatever the user's,
/// system or repository configuration says: the Qwen3 recipe embeds this text byte for byte,
/// and libgit2's patch text differs from git's in details. `base` None: the empty tree.
pub fn cli_diff(git_dir: &Path, base: Option<Oid>, commit: Oid) -> Result<String, GitError> {
    let base = base.map_or_else(|| EMPTY_TREE.to_owned(), |b| b.to_string());
    let mut cmd = pinned_git(git_dir);
    cmd.args(["diff", "--no-color", "--no-ext-diff", "--no-textconv", "-U3"]).arg(&base).arg(commit.to_string());
    let out = cmd.output().map_err(|e| GitError::Cli(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        return Err(GitError::Cli(format!("git diff {base} {commit}: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The git CLI on `git_dir` with the settings a configuration could change in a diff pinned
/// to git's defaults, and no user, system or environment configuration.
fn pinned_git(git_dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new("git");
    cmd.arg("--git-dir").arg(git_dir);
    for setting in [
        "diff.renames=true",
        "diff.noprefix=false",
        "diff.mnemonicPrefix=false",
        "diff.relative=false",
        "diff.algorithm=myers",
        "diff.indentHeuristic=true",
        "diff.suppressBlankEmpty=false",
        "diff.interHunkContext=0",
        "diff.renameLimit=1000",
        "diff.submodule=short",
        "diff.ignoreSubmodules=none",
        "core.quotePath=true",
        "color.diff=false",
    ] {
        cmd.arg("-c").arg(setting);
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1").env("GIT_CONFIG_GLOBAL", "/dev/null");
    for var in ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY", "GIT_EXTERNAL_DIFF", "GIT_DIFF_OPTS", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT"] {
        cmd.env_remove(var);
    }
    cmd
}

/// One file changed between a commit's first parent and the commit, as `git diff --raw`
/// reports it with rename detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeChange {
    /// `A`dded, `M`odified, `D`eleted, `R`enamed, `T`ype changed (a copy `C` is not
    /// detected under `-M`).
    pub status: u8,
    pub old_mode: u32,
    pub new_mode: u32,
    /// The zero id where there is no old (new) side.
    pub old_blob: Oid,
    pub new_blob: Oid,
    /// The path before a rename; the path itself otherwise.
    pub old_path: String,
    pub path: String,
}

/// The mode of a submodule's entry: its id is a commit, not a blob.
pub const GITLINK_MODE: u32 = 0o160000;

/// Each commit's changes against its first parent (the empty tree for a root commit), as
/// `git log --first-parent --raw -M` shows them: the git CLI's rename detection with git's
/// defaults (similarity 50 %, limit 1000), which libgit2's does not reproduce. `parents[i]`
/// is `commits[i]`'s first parent. One `git diff-tree --stdin` per thread.
pub fn first_parent_changes(git_dir: &Path, commits: &[Oid], parents: &[Option<Oid>], threads: usize) -> Result<Vec<Vec<TreeChange>>, GitError> {
    let pairs: Vec<(Oid, Option<Oid>)> = commits.iter().copied().zip(parents.iter().copied()).collect();
    let chunk = pairs.len().div_ceil(threads.max(1)).max(1);
    let results: Vec<Result<Vec<Vec<TreeChange>>, GitError>> =
        std::thread::scope(|scope| pairs.chunks(chunk).map(|part| scope.spawn(move || diff_tree_batch(git_dir, part))).collect::<Vec<_>>().into_iter().map(|h| h.join().unwrap_or_else(|_| Err(GitError::Cli("git diff-tree reader panicked".into())))).collect());
    let mut all = Vec::with_capacity(commits.len());
    for r in results {
        all.extend(r?);
    }
    Ok(all)
}

/// `git diff-tree --stdin` over (commit, first parent) pairs: a line `COMMIT PARENT` diffs
/// the commit against that parent alone (a merge's other parents are not read), a root
/// commit's line is the commit alone (`--root`: against the empty tree). Each section of the
/// output starts with the commit.
fn diff_tree_batch(git_dir: &Path, pairs: &[(Oid, Option<Oid>)]) -> Result<Vec<Vec<TreeChange>>, GitError> {
    use std::io::Write;
    use std::process::Stdio;
    let mut cmd = pinned_git(git_dir);
    cmd.args(["diff-tree", "--stdin", "--root", "--always", "-r", "-M", "--raw", "--no-abbrev", "-z"]);
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| GitError::Cli(format!("cannot run git: {e}")))?;
    let mut input = String::with_capacity(pairs.len() * 82);
    for (commit, parent) in pairs {
        match parent {
            Some(p) => input.push_str(&format!("{commit} {p}\n")),
            None => input.push_str(&format!("{commit}\n")),
        }
    }
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Written from another thread: git answers line by line and would block on a full pipe.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().map_err(|e| GitError::Cli(format!("git diff-tree: {e}")))?;
    let written = writer.join().map_err(|_| GitError::Cli("git diff-tree writer panicked".into()))?;
    if !out.status.success() {
        return Err(GitError::Cli(format!("git diff-tree: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    written.map_err(|e| GitError::Cli(format!("git diff-tree: {e}")))?;
    parse_raw_batch(&out.stdout, pairs)
}

/// Splits `diff-tree -z --stdin` output into each pair's changes, checking each section's
/// header against the pair it answers.
fn parse_raw_batch(out: &[u8], pairs: &[(Oid, Option<Oid>)]) -> Result<Vec<Vec<TreeChange>>, GitError> {
    let bad = |what: &str| GitError::Cli(format!("unexpected git diff-tree output: {what}"));
    let mut fields = out.split(|&b| b == 0).map(|f| String::from_utf8_lossy(f).into_owned());
    let mut all: Vec<Vec<TreeChange>> = Vec::with_capacity(pairs.len());
    let mut pending: Option<String> = fields.next();
    for (commit, _) in pairs {
        let header = pending.take().ok_or_else(|| bad("too few sections"))?;
        let expected = commit.to_string();
        if header.trim() != expected {
            return Err(bad(&format!("section {header:?} where {expected} was due")));
        }
        let mut changes = Vec::new();
        loop {
            pending = fields.next();
            let Some(meta) = pending.as_deref().and_then(|f| f.strip_prefix(':')) else { break };
            let parts: Vec<&str> = meta.split(' ').collect();
            let [old_mode, new_mode, old_blob, new_blob, status] = parts[..] else { return Err(bad(meta)) };
            let mode = |m: &str| u32::from_str_radix(m, 8).map_err(|_| bad(meta));
            let id = |b: &str| Oid::from_str(b).map_err(|_| bad(meta));
            let status = *status.as_bytes().first().ok_or_else(|| bad(meta))?;
            let first = fields.next().ok_or_else(|| bad("a change without a path"))?;
            let (old_path, path) = if matches!(status, b'R' | b'C') { (first, fields.next().ok_or_else(|| bad("a rename without its new path"))?) } else { (first.clone(), first) };
            changes.push(TreeChange { status, old_mode: mode(old_mode)?, new_mode: mode(new_mode)?, old_blob: id(old_blob)?, new_blob: id(new_blob)?, old_path, path });
        }
        all.push(changes);
    }
    if pending.as_deref().is_some_and(|rest| !rest.is_empty()) || fields.any(|f| !f.is_empty()) {
        return Err(bad("more sections than commits"));
    }
    Ok(all)
}

/// The Python files of a commit's tree the Qwen3 snapshot takes (see
/// `evolora_model::encoder::qwen3::snapshot_selection`): (path, blob), largest first when
/// there are more than 400. Their text is read by the caller, only where no vector is
/// cached.
pub fn snapshot_py_files(repo: &Repository, commit: Oid) -> Result<Vec<(String, Oid)>, GitError> {
    use evolora_model::encoder::qwen3;
    let tree = repo.find_commit(commit)?.tree()?;
    let mut candidates: Vec<(String, Oid, u64)> = Vec::new();
    let odb = repo.odb()?;
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() == Some(git2::ObjectType::Blob) {
            let path = format!("{dir}{}", entry.name().unwrap_or(""));
            if path.ends_with(".py") {
                let size = odb.read_header(entry.id()).map(|(size, _)| size as u64).unwrap_or(0);
                candidates.push((path, entry.id(), size));
            }
        }
        git2::TreeWalkResult::Ok
    })?;
    let refs: Vec<(&str, u64)> = candidates.iter().map(|(p, _, s)| (p.as_str(), *s)).collect();
    Ok(qwen3::snapshot_selection(&refs).into_iter().map(|i| (candidates[i].0.clone(), candidates[i].1)).collect())
}

/// Whether `path`'s file name matches one of `globs` (`*` and `?` wildcards).
pub fn matches_any(path: &str, globs: &[String]) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    globs.iter().any(|g| glob_match(g.as_bytes(), name.as_bytes()))
}

fn glob_match(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob_match(&p[1..], s) || (!s.is_empty() && glob_match(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob_match(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob_match(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git").arg("-C").arg(dir).args(args).env("GIT_CONFIG_GLOBAL", "/dev/null").env("GIT_CONFIG_NOSYSTEM", "1").output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The recipe's diff text is git's with git's defaults, even where the repository's own
    /// configuration asks for another text: the same history in a clean clone gives the same
    /// bytes.
    #[test]
    fn cli_diffs_ignore_configuration_that_changes_the_text() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("r");
        std::fs::create_dir(&dir).unwrap();
        git(&dir, &["init", "-q", "-b", "main"]);
        git(&dir, &["config", "user.email", "t@example.com"]);
        git(&dir, &["config", "user.name", "t"]);
        let body: String = (0..40).map(|i| format!("def f{i}(x):\n    return x + {i}\n\n")).collect();
        std::fs::write(dir.join("a.py"), &body).unwrap();
        git(&dir, &["add", "."]);
        git(&dir, &["commit", "-qm", "one"]);
        let first = Oid::from_str(&git(&dir, &["rev-parse", "HEAD"])).unwrap();
        git(&dir, &["mv", "a.py", "b.py"]);
        std::fs::write(dir.join("b.py"), body.replace("x + 3\n", "x + 33\n")).unwrap();
        git(&dir, &["commit", "-qam", "two"]);
        let second = Oid::from_str(&git(&dir, &["rev-parse", "HEAD"])).unwrap();
        let clean = tmp.path().join("clean");
        git(tmp.path(), &["clone", "-q", "--bare", dir.to_str().unwrap(), clean.to_str().unwrap()]);
        for setting in [("diff.noprefix", "true"), ("diff.renames", "false"), ("diff.algorithm", "patience"), ("diff.external", "false"), ("diff.context", "9")] {
            git(&dir, &["config", setting.0, setting.1]);
        }
        let odd = cli_diff(&dir.join(".git"), Some(first), second).unwrap();
        let plain = cli_diff(&clean, Some(first), second).unwrap();
        assert_eq!(odd, plain);
        assert!(odd.starts_with("diff --git a/a.py b/b.py\n") && odd.contains("rename from a.py"), "{odd}");
        let root = cli_diff(&dir.join(".git"), None, first).unwrap();
        assert!(root.starts_with("diff --git a/a.py b/a.py\nnew file mode 100644"), "{root}");
        let files = snapshot_py_files(&git2::Repository::open(&dir).unwrap(), second).unwrap();
        assert_eq!(files.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), ["b.py"]);
    }

    #[test]
    fn manifest_globs() {
        let g = vec!["requirements*.txt".to_string(), "pyproject.toml".to_string()];
        assert!(matches_any("requirements-dev.txt", &g));
        assert!(matches_any("sub/dir/pyproject.toml", &g));
        assert!(!matches_any("pyproject.toml.bak", &g));
        assert!(!matches_any("src/requirements.py", &g));
    }

    #[test]
    fn repo_keys_are_path_safe_and_distinct() {
        let a = repo_key(Path::new("/home/u/my proj/.git"));
        let b = repo_key(Path::new("/srv/my proj/.git"));
        assert!(a.starts_with("my_proj-"), "{a}");
        assert_ne!(a, b);
        assert!(repo_key(Path::new("/srv/app.git")).starts_with("app-"));
    }
}
