//! The Code2LoRA recipe on Qwen3-Embedding-0.6B: how a diff and a repository snapshot become
//! the 2048-value vectors the released checkpoints were trained on.
//!
//! Text is tokenised without special tokens and cut into overlapping windows; each window
//! is decoded and encoded again as the authors do (special tokens added, truncated to the
//! window length), run through the model, and its `last_hidden_state` mean-pooled over the
//! real tokens. A diff is [max over windows ; mean over windows]; a file is the mean of its
//! windows, and a snapshot L2-normalised [mean over files ; max over files].

use burn::tensor::Device;

use crate::ModelError;
use crate::nn::tensor::host;
use crate::transformer::{Head, Qwen};

/// What the recipe needs of a tokenizer.
pub trait Tokenize {
    /// Token ids of `text`, with the tokenizer's special tokens or without.
    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, ModelError>;
    /// Ids with special tokens, truncated so that all of them fit in `max_length`.
    fn encode_truncated(&self, text: &str, max_length: usize) -> Result<Vec<u32>, ModelError>;
    /// Text of `ids`, special tokens left out.
    fn decode(&self, ids: &[u32]) -> Result<String, ModelError>;
}

/// Windows run through the model together (the authors used 8). Only windows of one text
/// share a batch, so a text's vector never depends on what else was being encoded.
pub const BATCH: usize = 8;

/// Qwen3-Embedding and its tokenizer, applying the recipe.
pub struct Qwen3Encoder<T> {
    model: Qwen,
    tokenizer: T,
}

impl<T: Tokenize> Qwen3Encoder<T> {
    pub fn new(model: Qwen, tokenizer: T) -> Self {
        Qwen3Encoder { model, tokenizer }
    }

    /// Loads the model of a Hugging Face directory (`config.json` and its weights).
    pub fn load(dir: &std::path::Path, tokenizer: T, device: &Device) -> Result<Self, ModelError> {
        Ok(Self::new(Qwen::load(dir, Head::None, device)?, tokenizer))
    }

    pub fn hidden(&self) -> usize {
        self.model.config().hidden_size
    }

    /// Size of the vectors this encoder makes: [pooled ; pooled].
    pub fn dim(&self) -> usize {
        2 * self.hidden()
    }

    /// The masked mean of `last_hidden_state` of each window, re-encoded the authors' way.
    fn embed_windows(&self, ids: &[u32], recipe: &Recipe) -> Result<Vec<Vec<f32>>, ModelError> {
        let mut rows = Vec::new();
        for window in windows(ids, recipe) {
            let text = self.tokenizer.decode(window)?;
            rows.push(self.tokenizer.encode_truncated(&text, recipe.max_length)?);
        }
        let hidden = self.hidden();
        let mut out = Vec::with_capacity(rows.len());
        for batch in rows.chunks(BATCH) {
            let len = batch.iter().map(Vec::len).max().unwrap_or(0);
            if len == 0 {
                out.extend(batch.iter().map(|_| vec![0.0; hidden]));
                continue;
            }
            // Right padding with id 0; the mask keeps padding out of attention and of the mean.
            let mut ids = Vec::with_capacity(batch.len() * len);
            let mut real = Vec::with_capacity(batch.len() * len);
            for row in batch {
                ids.extend(row.iter().copied().chain(std::iter::repeat_n(0, len - row.len())));
                real.extend((0..len).map(|i| i < row.len()));
            }
            let states = host(self.model.forward(&ids, batch.len(), Some(&real), None));
            for (b, row) in batch.iter().enumerate() {
                let mut mean = vec![0.0f32; hidden];
                for t in 0..row.len() {
                    let at = (b * len + t) * hidden;
                    for (m, v) in mean.iter_mut().zip(&states[at..at + hidden]) {
                        *m += v;
                    }
                }
                let n = row.len().max(1) as f32;
                mean.iter_mut().for_each(|m| *m /= n);
                out.push(mean);
            }
        }
        Ok(out)
    }

    /// A diff's vector ([`DIFF`] windows, [max ; mean]); zeros for an empty or blank diff.
    pub fn diff_vector(&self, diff_text: &str) -> Result<Vec<f32>, ModelError> {
        if diff_text.trim().is_empty() {
            return Ok(vec![0.0; self.dim()]);
        }
        let ids = self.tokenizer.encode(diff_text, false)?;
        Ok(pool_diff(&self.embed_windows(&ids, &DIFF)?, self.hidden()))
    }

    /// A snapshot file's vector (the mean of its [`SNAPSHOT`] windows); `None` when the file
    /// gives no window (it is then left out of the snapshot).
    pub fn file_vector(&self, text: &str) -> Result<Option<Vec<f32>>, ModelError> {
        if text.is_empty() {
            return Ok(None);
        }
        let ids = self.tokenizer.encode(text, false)?;
        let windows = self.embed_windows(&ids, &SNAPSHOT)?;
        Ok((!windows.is_empty()).then(|| mean(&windows)))
    }

    /// A snapshot's vector from its files' vectors (see [`pool_snapshot`]).
    pub fn snapshot_vector(&self, files: &[Vec<f32>]) -> Vec<f32> {
        pool_snapshot(files, self.hidden())
    }
}

/// Directories whose files the authors' pipeline never reads.
pub const SKIP_DIRS: [&str; 11] = [".git", "__pycache__", ".venv", "venv", "env", "node_modules", "dist", "build", ".tox", ".mypy_cache", "TEST_HYPERNET"];

/// Largest snapshot file, in bytes (2 MB, decimal).
pub const MAX_SNAPSHOT_FILE: u64 = 2_000_000;

/// Most files in a snapshot: beyond it, the largest are kept.
pub const MAX_SNAPSHOT_FILES: usize = 400;

fn in_skipped_dir(path: &str) -> bool {
    path.split('/').any(|part| SKIP_DIRS.contains(&part))
}

/// A test path in the authors' sense: any component contains "test", in any case.
pub fn is_test_path(path: &str) -> bool {
    path.split('/').any(|part| part.to_lowercase().contains("test"))
}

/// Whether a diff's file (by its new path) is kept: non-test `.py`, `.md` or `.rst` outside
/// the skipped directories.
pub fn keeps_diff_path(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    // The suffix is what follows the last dot of the name, if the name is more than a dot.
    let suffix = name.rfind('.').filter(|&i| i > 0).map(|i| name[i..].to_lowercase());
    matches!(suffix.as_deref(), Some(".py" | ".md" | ".rst")) && !in_skipped_dir(path) && !is_test_path(path)
}

/// Whether a tracked blob is part of the snapshot: a `.py` file of 1 byte to 2 MB outside the
/// skipped directories (test files included).
pub fn keeps_snapshot_file(path: &str, size: u64) -> bool {
    path.ends_with(".py") && size > 0 && size <= MAX_SNAPSHOT_FILE && !in_skipped_dir(path)
}

/// The snapshot's files from `(path, size)` candidates in tree order: all of them, or the
/// 400 largest (the stable order of a sort by size, largest first). Returns indices.
pub fn snapshot_selection(candidates: &[(&str, u64)]) -> Vec<usize> {
    let mut kept: Vec<usize> = (0..candidates.len()).filter(|&i| keeps_snapshot_file(candidates[i].0, candidates[i].1)).collect();
    if kept.len() > MAX_SNAPSHOT_FILES {
        kept.sort_by_key(|&i| std::cmp::Reverse(candidates[i].1));
        kept.truncate(MAX_SNAPSHOT_FILES);
    }
    kept
}

/// The part of `git diff` output the recipe embeds: the per-file sections (each starting at a
/// line `diff --git a/OLD b/NEW`) whose new path is kept, joined as they were.
pub fn filter_diff(diff: &str) -> String {
    diff_sections(diff).filter(|(new, _)| new.is_some_and(keeps_diff_path)).map(|(_, section)| section).collect()
}

/// The per-file sections of `git diff` output, each with its new path as the authors' pattern
/// reads it (None where it does not match, e.g. a quoted path). Text before the first
/// section is not part of any.
pub fn diff_sections(diff: &str) -> impl Iterator<Item = (Option<&str>, &str)> {
    let mut starts: Vec<usize> = diff.match_indices("diff --git ").map(|(i, _)| i).filter(|&i| i == 0 || diff.as_bytes()[i - 1] == b'\n').collect();
    starts.push(diff.len());
    (0..starts.len() - 1).map(move |k| {
        let section = &diff[starts[k]..starts[k + 1]];
        (section_new_path(section), section)
    })
}

/// The new path of a section's header line, read as the authors' pattern
/// `^diff --git a/(.+?) b/(.+?)(\n|$)` does: the old path is the shortest that leaves
/// ` b/` and at least one character on the line. Quoted paths do not match.
fn section_new_path(section: &str) -> Option<&str> {
    let line = section.split('\n').next()?;
    let rest = line.strip_prefix("diff --git a/")?;
    (1..rest.len()).find_map(|i| rest[i..].strip_prefix(" b/").filter(|new| !new.is_empty() && rest.is_char_boundary(i)))
}

/// How a text is cut into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipe {
    /// Tokens per window, and shared by consecutive windows.
    pub chunk: usize,
    pub overlap: usize,
    /// A window shorter than this is dropped.
    pub min_window: usize,
    /// Truncation when a window is encoded again with special tokens.
    pub max_length: usize,
}

/// Diffs: 512-token windows overlapping by 64, at least 16 tokens.
pub const DIFF: Recipe = Recipe { chunk: 512, overlap: 64, min_window: 16, max_length: 512 };
/// Snapshot files: 2048-token windows overlapping by 256, at least 8 tokens.
pub const SNAPSHOT: Recipe = Recipe { chunk: 2048, overlap: 256, min_window: 8, max_length: 2048 };

/// The windows of `ids`: starts every `chunk − overlap` tokens; a window that reaches the end
/// is the last; a window under `min_window` tokens is skipped (only the last one can be).
pub fn windows<'a>(ids: &'a [u32], recipe: &Recipe) -> Vec<&'a [u32]> {
    let Recipe { chunk, overlap, min_window, .. } = *recipe;
    if chunk == 0 || overlap >= chunk {
        return Vec::new();
    }
    let mut out = Vec::new();
    for start in (0..ids.len()).step_by(chunk - overlap) {
        let end = (start + chunk).min(ids.len());
        if end - start >= min_window {
            out.push(&ids[start..end]);
        }
        if end >= ids.len() {
            break;
        }
    }
    out
}

/// Element-wise mean of equally long vectors.
pub fn mean(vectors: &[Vec<f32>]) -> Vec<f32> {
    let n = vectors.len() as f32;
    let mut out = vec![0.0f32; vectors.first().map_or(0, Vec::len)];
    for v in vectors {
        for (o, x) in out.iter_mut().zip(v) {
            *o += x;
        }
    }
    out.iter_mut().for_each(|o| *o /= n);
    out
}

fn max(vectors: &[Vec<f32>]) -> Vec<f32> {
    let mut out = vec![f32::NEG_INFINITY; vectors.first().map_or(0, Vec::len)];
    for v in vectors {
        for (o, x) in out.iter_mut().zip(v) {
            *o = o.max(*x);
        }
    }
    out
}

/// A diff's vector from its window vectors: [max ; mean], not normalised; zeros when no
/// window is left.
pub fn pool_diff(windows: &[Vec<f32>], hidden: usize) -> Vec<f32> {
    if windows.is_empty() {
        return vec![0.0; 2 * hidden];
    }
    [max(windows), mean(windows)].concat()
}

/// A snapshot's vector from its file vectors: [mean ; max] / (‖·‖ + 1e-12); zeros when no
/// file is left.
pub fn pool_snapshot(files: &[Vec<f32>], hidden: usize) -> Vec<f32> {
    if files.is_empty() {
        return vec![0.0; 2 * hidden];
    }
    let v = [mean(files), max(files)].concat();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt() + 1e-12;
    v.into_iter().map(|x| x / norm).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(n: usize, recipe: &Recipe) -> Vec<(u32, usize)> {
        let ids: Vec<u32> = (0..n as u32).collect();
        windows(&ids, recipe).iter().map(|w| (w[0], w.len())).collect()
    }

    #[test]
    fn windows_follow_the_authors_chunking() {
        let r = Recipe { chunk: 10, overlap: 2, min_window: 3, max_length: 10 };
        assert_eq!(starts(0, &r), vec![]);
        assert_eq!(starts(2, &r), vec![], "a lone window under the minimum is dropped");
        assert_eq!(starts(10, &r), vec![(0, 10)], "a window that reaches the end is the last");
        assert_eq!(starts(18, &r), vec![(0, 10), (8, 10)]);
        assert_eq!(starts(19, &r), vec![(0, 10), (8, 10), (16, 3)]);
        assert_eq!(starts(27, &r), vec![(0, 10), (8, 10), (16, 10), (24, 3)]);
        let strict = Recipe { min_window: 4, ..r };
        assert_eq!(starts(19, &strict), vec![(0, 10), (8, 10)], "a last window under the minimum is dropped");
    }

    #[test]
    fn paths_are_kept_by_the_authors_rules() {
        assert!(keeps_diff_path("pkg/core.py") && keeps_diff_path("README.MD") && keeps_diff_path("docs/x.rst"));
        assert!(!keeps_diff_path("tests/test_a.py") && !keeps_diff_path("pkg/testing.py") && !keeps_diff_path("Contest/x.md"), "any component with `test`");
        assert!(!keeps_diff_path("build/lib/a.py") && !keeps_diff_path("a.txt") && !keeps_diff_path(".py"));
        assert!(keeps_snapshot_file("tests/test_a.py", 10), "snapshots include test files");
        assert!(!keeps_snapshot_file("a.py", 0) && !keeps_snapshot_file("a.py", 2_000_001) && keeps_snapshot_file("a.py", 2_000_000));
        assert!(!keeps_snapshot_file("venv/a.py", 5) && !keeps_snapshot_file("a.PY", 5));
        let many: Vec<(String, u64)> = (0..410).map(|i| (format!("m{i}.py"), 100 + (i % 7) as u64)).collect();
        let refs: Vec<(&str, u64)> = many.iter().map(|(p, s)| (p.as_str(), *s)).collect();
        let chosen = snapshot_selection(&refs);
        assert_eq!(chosen.len(), 400);
        assert_eq!(chosen[0], 6, "largest first, ties in tree order");
        // Size 100 (i % 7 == 0) is the smallest; of those, the last ten in tree order go.
        assert!(chosen.contains(&0) && chosen.contains(&336) && !chosen.contains(&343) && !chosen.contains(&406));
    }

    #[test]
    fn a_diff_keeps_its_production_sections_byte_for_byte() {
        let a = "diff --git a/pkg/a.py b/pkg/a.py\nindex 1..2 100644\n--- a/pkg/a.py\n+++ b/pkg/a.py\n@@ -1 +1 @@\n-x\n+y\n";
        let t = "diff --git a/tests/test_a.py b/tests/test_a.py\nnew file mode 100644\n--- /dev/null\n+++ b/tests/test_a.py\n@@ -0,0 +1 @@\n+assert 1\n";
        let r = "diff --git a/old name.md b/docs/new b/x.md\nsimilarity index 100%\nrename from old name.md\nrename to docs/new b/x.md\n";
        let q = "diff --git \"a/\\303\\251.py\" \"b/\\303\\251.py\"\n";
        let diff = format!("{a}{t}{r}{q}");
        assert_eq!(filter_diff(&diff), format!("{a}{r}"));
        assert_eq!(filter_diff("not a diff\n"), "");
        assert_eq!(section_new_path(r), Some("docs/new b/x.md"), "the shortest old path that leaves ` b/`");
    }

    #[test]
    fn pooling_orders_and_normalises_as_the_recipe_says() {
        let w = vec![vec![1.0, -2.0], vec![3.0, 0.0]];
        assert_eq!(pool_diff(&w, 2), vec![3.0, 0.0, 2.0, -1.0]);
        assert_eq!(pool_diff(&[], 2), vec![0.0; 4]);
        let s = pool_snapshot(&w, 2);
        let raw = [2.0f32, -1.0, 3.0, 0.0];
        let norm = (raw.iter().map(|x| x * x).sum::<f32>()).sqrt();
        for (a, b) in s.iter().zip(raw) {
            assert!((a - b / norm).abs() < 1e-7);
        }
    }
}
