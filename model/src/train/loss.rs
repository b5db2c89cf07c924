//! The training objective (paper §3.4): cross-entropy of the target tokens through the
//! frozen LM with the generated adapter attached, nothing else counted.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

use crate::ModelError;
use crate::transformer::{Input, Lora, Qwen};

/// One task as token ids: the prompt, then what the model must continue it with (the stop id
/// included, so that stopping is learned too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub prefix: Vec<u32>,
    pub target: Vec<u32>,
}

impl Example {
    /// The example cut to `max_len` tokens: the prefix loses its oldest tokens but keeps its
    /// first (the stop id every prompt starts with, as `evolora eval` keeps it), the target
    /// is never cut (the authors' recipe); None when the target leaves no room for a prefix.
    pub fn truncated(&self, max_len: usize) -> Option<Example> {
        let room = max_len.checked_sub(self.target.len())?;
        if room == 0 || self.prefix.is_empty() {
            return None;
        }
        if self.prefix.len() <= room {
            return Some(self.clone());
        }
        let mut prefix = Vec::with_capacity(room);
        prefix.push(self.prefix[0]);
        prefix.extend_from_slice(&self.prefix[self.prefix.len() - (room - 1)..]);
        Some(Example { prefix, target: self.target.clone() })
    }

    /// Whether [`Example::truncated`] can fit it into `max_len` tokens.
    pub fn fits(&self, max_len: usize) -> bool {
        !self.prefix.is_empty() && self.target.len() < max_len
    }
}

/// What a batch's loss is made of.
#[derive(Debug)]
pub struct TargetLoss {
    /// Mean negative log-likelihood per target token, `[1]`, differentiable.
    pub mean: Tensor<1>,
    /// Target tokens counted.
    pub tokens: usize,
    /// Per example, whether every target token was the argmax (teacher-forced exact match).
    pub exact: Vec<bool>,
}

/// The mean cross-entropy over the target tokens of `examples`, one padded batch through
/// `lm` with `lora` attached. Rows are left-padded so that every target ends the row; the
/// padding is masked and each row's positions count from its own first token, so a row's
/// loss does not depend on what it is batched with. Only the last positions, where targets
/// sit, go through the LM head.
pub fn target_loss(lm: &Qwen, lora: Option<&Lora>, examples: &[Example], pad: u32) -> Result<TargetLoss, ModelError> {
    if examples.is_empty() {
        return Err(ModelError::Training("no examples in the batch".into()));
    }
    if let Some(e) = examples.iter().find(|e| e.prefix.is_empty() || e.target.is_empty()) {
        return Err(ModelError::Training(format!("an example needs a prefix and a target (prefix {} tokens, target {})", e.prefix.len(), e.target.len())));
    }
    let vocab = lm.config().vocab_size;
    if let Some(id) = examples.iter().flat_map(|e| e.prefix.iter().chain(&e.target)).find(|&&id| id as usize >= vocab) {
        return Err(ModelError::Training(format!("token id {id} is outside the model's vocabulary of {vocab}")));
    }
    // The model reads prefix + target without its last token and predicts the next token at
    // each position; the last `target.len()` predictions are the target.
    let len = examples.iter().map(|e| e.prefix.len() + e.target.len() - 1).max().expect("non-empty");
    let span = examples.iter().map(|e| e.target.len()).max().expect("non-empty");
    let rows = examples.len();
    let (mut ids, mut real, mut positions) = (Vec::with_capacity(rows * len), Vec::with_capacity(rows * len), Vec::with_capacity(rows * len));
    // Per row, the labels of the last `span` positions (None: not a target token).
    let mut labels: Vec<Option<u32>> = Vec::with_capacity(rows * span);
    for e in examples {
        let seq: Vec<u32> = e.prefix.iter().chain(&e.target).copied().collect();
        let n = seq.len() - 1;
        let padding = len - n;
        ids.extend(std::iter::repeat_n(pad, padding).chain(seq[..n].iter().copied()));
        real.extend(std::iter::repeat_n(false, padding).chain(std::iter::repeat_n(true, n)));
        positions.extend(std::iter::repeat_n(0, padding).chain(0..n));
        labels.extend(std::iter::repeat_n(None, span - e.target.len()).chain(e.target.iter().map(|&t| Some(t))));
    }
    let hidden = lm.forward_with(&Input { ids: &ids, rows, mask: Some(&real), positions: Some(&positions) }, None, lora);
    let [_, _, width] = hidden.dims();
    let logits = lm.logits(hidden.slice([0..rows, len - span..len, 0..width]))?;
    let logp = log_softmax(logits, 2);
    let device = logp.device();
    let index: Vec<i64> = labels.iter().map(|l| l.unwrap_or(0) as i64).collect();
    let index = Tensor::<3, Int>::from_data(TensorData::new(index, [rows, span, 1]), &device);
    let picked = logp.clone().gather(2, index).reshape([rows * span]);
    let weight: Vec<f32> = labels.iter().map(|l| if l.is_some() { 1.0 } else { 0.0 }).collect();
    let tokens = labels.iter().filter(|l| l.is_some()).count();
    let weight = Tensor::<1>::from_data(TensorData::new(weight, [rows * span]), &device);
    let mean = picked.mul(weight).sum().neg().div_scalar(tokens as f64);
    // Teacher-forced exact match: the argmax at every target position is the target.
    let best: Vec<i64> = logp.detach().argmax(2).reshape([rows * span]).into_data().convert::<i64>().try_into_vec::<i64>().unwrap_or_default();
    let exact = (0..rows).map(|r| (0..span).all(|j| labels[r * span + j].is_none_or(|t| best[r * span + j] == t as i64))).collect();
    Ok(TargetLoss { mean, tokens, exact })
}

/// How far the adapted model's next-token distributions move from the base model's on
/// general text: KL(base ‖ adapted) per position, averaged over `windows` (rows of equal
/// length). The base side carries no graph; gradients reach the adapter only. Adding it,
/// weighted, to the task loss keeps adapters from trading general ability for repository
/// quirks.
pub fn kl_to_base(lm: &Qwen, lora: &Lora, windows: &[Vec<u32>]) -> Result<Tensor<1>, ModelError> {
    let len = windows.first().map(Vec::len).unwrap_or(0);
    if len == 0 || windows.iter().any(|w| w.len() != len) {
        return Err(ModelError::Training("general-text windows must be non-empty and of equal length".into()));
    }
    let vocab = lm.config().vocab_size;
    if let Some(id) = windows.iter().flatten().find(|&&id| id as usize >= vocab) {
        return Err(ModelError::Training(format!("token id {id} is outside the model's vocabulary of {vocab}")));
    }
    let ids: Vec<u32> = windows.concat();
    let input = Input { ids: &ids, rows: windows.len(), mask: None, positions: None };
    let base = log_softmax(lm.logits(lm.forward_with(&input, None, None))?, 2).detach();
    let adapted = log_softmax(lm.logits(lm.forward_with(&input, None, Some(lora)))?, 2);
    let per_position = base.clone().exp().mul(base - adapted).sum_dim(2);
    Ok(per_position.mean().reshape([1]))
}

#[cfg(test)]
mod tests {
    use super::Example;

    #[test]
    fn truncation_cuts_the_oldest_prefix_tokens_but_keeps_the_first_and_the_target() {
        let e = Example { prefix: vec![0, 1, 2, 3, 4, 5], target: vec![8, 9] };
        assert_eq!(e.truncated(8).unwrap(), e);
        assert_eq!(e.truncated(5).unwrap(), Example { prefix: vec![0, 4, 5], target: vec![8, 9] });
        assert_eq!(e.truncated(3).unwrap(), Example { prefix: vec![0], target: vec![8, 9] });
        assert!(e.truncated(2).is_none() && !e.fits(2) && e.fits(3));
    }
}
