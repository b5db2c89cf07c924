//! Keys and values of the positions already seen, per layer, so that decoding one more
//! token costs one position's work.

use burn::tensor::Tensor;

#[derive(Debug, Default)]
pub struct KvCache {
    /// Per layer: keys and values `[batch, kv_heads, len, head_dim]`.
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    len: usize,
}

impl KvCache {
    pub fn new(layers: usize) -> Self {
        KvCache { layers: (0..layers).map(|_| None).collect(), len: 0 }
    }

    /// Positions cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends this step's keys and values for `layer` and returns all of them.
    pub(crate) fn extend(&mut self, layer: usize, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let merged = match self.layers[layer].take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        self.layers[layer] = Some(merged.clone());
        merged
    }

    /// Called once per forward, after every layer extended: the positions now cached.
    pub(crate) fn advance(&mut self, by: usize) {
        self.len += by;
    }
}
