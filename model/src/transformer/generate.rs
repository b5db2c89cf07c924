//! Greedy decoding with a key/value cache, several prompts at once.
//!
//! Prompts are left-padded to one width; each row's rotary positions count its own tokens
//! only (as Hugging Face's `generate` derives them from the attention mask), so a prompt
//! decodes to the same tokens alone or in any batch. A row that has stopped keeps feeding
//! the pad id, masked out, until every row has stopped or the budget is spent.

use burn::tensor::Tensor;

use super::lora::Lora;
use super::qwen::{Input, Qwen};
use crate::ModelError;
use crate::nn::tensor::host;

#[derive(Debug, Clone)]
pub struct Greedy {
    pub max_new_tokens: usize,
    /// Ids that end a row's generation (kept as its last token).
    pub stop: Vec<u32>,
    /// Fed for padding and for rows that have stopped; never seen by real tokens.
    pub pad: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub tokens: Vec<u32>,
    /// Ended on a stop id (the last token) rather than the budget.
    pub stopped: bool,
    /// Ended because the caller said its tokens so far were enough.
    pub settled: bool,
}

/// The greedy continuations of `prompts` (each at least one token) with `lora` attached.
pub fn greedy(model: &Qwen, prompts: &[Vec<u32>], opts: &Greedy, lora: Option<&Lora>) -> Result<Vec<Generated>, ModelError> {
    greedy_until(model, prompts, opts, lora, |_, _| false)
}

/// [`greedy`], also ending row `i` as soon as `settled(i, tokens so far)` says more tokens
/// would change nothing for the caller. A row's tokens do not depend on when the others end.
pub fn greedy_until(model: &Qwen, prompts: &[Vec<u32>], opts: &Greedy, lora: Option<&Lora>, mut settled: impl FnMut(usize, &[u32]) -> bool) -> Result<Vec<Generated>, ModelError> {
    if let Some(i) = prompts.iter().position(Vec::is_empty) {
        return Err(ModelError::Generation(format!("prompt {i} is empty: there is nothing to continue")));
    }
    let vocab = model.config().vocab_size;
    if let Some(&id) = prompts.iter().flatten().find(|&&id| id as usize >= vocab) {
        return Err(ModelError::Generation(format!("token id {id} is outside the model's vocabulary of {vocab}")));
    }
    let rows = prompts.len();
    let mut out: Vec<Generated> = prompts.iter().map(|_| Generated { tokens: Vec::new(), stopped: false, settled: false }).collect();
    if rows == 0 || opts.max_new_tokens == 0 {
        return Ok(out);
    }
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows * width);
    let mut real = Vec::with_capacity(rows * width);
    let mut positions = Vec::with_capacity(rows * width);
    for p in prompts {
        let pad = width - p.len();
        ids.extend(std::iter::repeat_n(opts.pad, pad).chain(p.iter().copied()));
        real.extend(std::iter::repeat_n(false, pad).chain(std::iter::repeat_n(true, p.len())));
        // A pad position's own value never matters; 0 keeps the tables small.
        positions.extend(std::iter::repeat_n(0, pad).chain(0..p.len()));
    }
    let padded = real.iter().any(|r| !r);
    let mut cache = model.cache();
    let mut next_position: Vec<usize> = prompts.iter().map(Vec::len).collect();
    let mut hidden = model.forward_with(&Input { ids: &ids, rows, mask: padded.then_some(&real[..]), positions: Some(&positions) }, Some(&mut cache), lora);
    let mut keys = width;
    for done in 0..opts.max_new_tokens {
        let [_, t, h] = hidden.dims();
        let last: Tensor<3> = hidden.slice([0..rows, t - 1..t, 0..h]);
        let logits = host(model.logits(last)?);
        let mut step = Vec::with_capacity(rows);
        for (row, row_out) in out.iter_mut().enumerate() {
            if row_out.stopped || row_out.settled {
                step.push(opts.pad);
                continue;
            }
            let id = argmax(&logits[row * vocab..(row + 1) * vocab]);
            row_out.tokens.push(id);
            row_out.stopped = opts.stop.contains(&id);
            row_out.settled = !row_out.stopped && settled(row, &row_out.tokens);
            step.push(id);
        }
        if out.iter().all(|g| g.stopped || g.settled) || done + 1 == opts.max_new_tokens {
            break;
        }
        // Every row's new key is visible, as in Hugging Face's generate: a stopped row's
        // output is discarded, so what it sees does not matter.
        keys += 1;
        if padded {
            let mut grown = Vec::with_capacity(rows * keys);
            for row in 0..rows {
                grown.extend_from_slice(&real[row * (keys - 1)..(row + 1) * (keys - 1)]);
                grown.push(true);
            }
            real = grown;
        }
        let step_positions: Vec<usize> = next_position.clone();
        next_position.iter_mut().for_each(|p| *p += 1);
        hidden = model.forward_with(&Input { ids: &step, rows, mask: padded.then_some(&real[..]), positions: Some(&step_positions) }, Some(&mut cache), lora);
    }
    Ok(out)
}

/// The index of the largest value; the first one on a tie, as `torch.argmax` picks.
fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}
