//! Reading a repository's first-parent history with the `git` command, as the authors'
//! pipeline does (`git log --first-parent --reverse --raw -M`): the same rename detection,
//! the same path spelling (quoted when unusual), merges compared with their first parent.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use super::TasksError;

/// One first-parent commit and the files it changes against its first parent.
#[derive(Debug, Clone)]
pub struct Commit {
    pub id: String,
    pub parent: Option<String>,
    /// Committer time, seconds since the epoch.
    pub time: i64,
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone)]
pub struct Change {
    /// The status letter: `A`, `M`, `D`, `T`, `R` (renames carry `from`).
    pub status: char,
    pub path: String,
    pub from: Option<String>,
    /// The new blob; `None` for a deletion or a submodule.
    pub blob: Option<String>,
}

fn git(repo: &Path) -> Command {
    let mut command = Command::new("git");
    // The user's configuration must not change what is parsed (colours, quoting, renames).
    command.arg("-C").arg(repo).args(["-c", "core.quotePath=true", "-c", "log.showSignature=false", "-c", "diff.renames=true"]);
    command.env("GIT_CONFIG_NOSYSTEM", "1").env_remove("GIT_DIR").env_remove("GIT_WORK_TREE");
    command
}

/// The first-parent history reachable from `rev`, oldest first.
pub fn first_parent(repo: &Path, rev: &str) -> Result<Vec<Commit>, TasksError> {
    let args = ["log", "--first-parent", "--diff-merges=first-parent", "--reverse", "--raw", "--no-abbrev", "-M", "--no-color", "--format=commit %H %ct %P", rev, "--"];
    let out = git(repo).args(args).output().map_err(|e| TasksError::Io { what: "running git".into(), source: e })?;
    if !out.status.success() {
        return Err(TasksError::Git { command: format!("git {}", args.join(" ")), stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned() });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut commits: Vec<Commit> = Vec::new();
    for line in text.lines() {
        if let Some(header) = line.strip_prefix("commit ") {
            let mut fields = header.split(' ');
            let id = fields.next().unwrap_or_default().to_owned();
            let time = fields.next().and_then(|t| t.parse().ok()).unwrap_or(0);
            let parent = fields.next().filter(|p| !p.is_empty()).map(str::to_owned);
            commits.push(Commit { id, parent, time, changes: Vec::new() });
        } else if let Some(raw) = line.strip_prefix(':') {
            let Some(commit) = commits.last_mut() else { continue };
            let Some((meta, paths)) = raw.split_once('\t') else { continue };
            let meta: Vec<&str> = meta.split(' ').collect();
            let [_, new_mode, _, new_blob, status] = meta.as_slice() else { continue };
            let status = status.chars().next().unwrap_or('M');
            let mut paths = paths.split('\t');
            let first = paths.next().unwrap_or_default().to_owned();
            let (path, from) = match paths.next() {
                Some(to) => (to.to_owned(), Some(first)),
                None => (first, None),
            };
            let absent = status == 'D' || *new_mode == "160000" || new_blob.bytes().all(|b| b == b'0');
            commit.changes.push(Change { status, path, from, blob: (!absent).then(|| (*new_blob).to_owned()) });
        }
    }
    Ok(commits)
}

/// Blobs read through one `git cat-file --batch` process.
pub struct Blobs {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Blobs {
    pub fn open(repo: &Path) -> Result<Self, TasksError> {
        let io = |e| TasksError::Io { what: "starting git cat-file".into(), source: e };
        let mut child = git(repo).args(["cat-file", "--batch"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().map_err(io)?;
        let input = child.stdin.take().expect("stdin is piped");
        let output = BufReader::new(child.stdout.take().expect("stdout is piped"));
        Ok(Blobs { child, input, output })
    }

    /// The bytes of a blob; `None` when the object is missing or not a blob.
    pub fn read(&mut self, id: &str) -> Result<Option<Vec<u8>>, TasksError> {
        let io = |e| TasksError::Io { what: format!("reading blob {id}"), source: e };
        writeln!(self.input, "{id}").and_then(|_| self.input.flush()).map_err(io)?;
        let mut header = String::new();
        self.output.read_line(&mut header).map_err(io)?;
        let fields: Vec<&str> = header.split_whitespace().collect();
        let [_, kind, size] = fields.as_slice() else { return Ok(None) };
        let size: usize = size.parse().map_err(|_| TasksError::Git { command: "git cat-file --batch".into(), stderr: format!("bad header {header:?}") })?;
        let mut content = vec![0; size + 1];
        self.output.read_exact(&mut content).map_err(io)?;
        content.pop();
        Ok((*kind == "blob").then_some(content))
    }
}

impl Drop for Blobs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
