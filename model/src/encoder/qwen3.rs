//! The Code2LoRA recipe on Qwen3-Embedding-0.6B: how a diff and a repository snapshot become
//! the 2048-value vectors the released checkpoints were trained on.
//!
//! Text is tokenised without special tokens and cut into overlapping windows; each window
//! is decoded and encoded again as the authors do (special tokens added, truncated to the
//! window length), run through the model, and its `last_hidden_state` mean-pooled over the
//! real tokens. A diff is [max over windows ; mean over windows]; a file is the mean of its
//! windows, and a snapshot L2-normalised [mean over files ; max over files].

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
