//! Fingerprints: the identity of a model's weights and arithmetic. A stored state built
//! under another fingerprint is stale and is rebuilt from its snapshot.

use sha2::{Digest, Sha256};

use crate::{BaseModelShapes, HyperConfig};

/// How a state is computed from the weights, beyond the weights themselves. It is part of
/// every fingerprint, so that changing it makes stored states rebuild from snapshots
/// instead of continuing with different arithmetic. 2: the GRU's input side in fixed
/// blocks of 16 steps. 3: the GRU's recurrence on host kernels that sum every output in
/// input order (`nn::host`), the same bits for any grouping, core count or device.
const NUMERICS: &[u8] = b"evolora-numerics-3\0";

/// The fingerprint of a model loaded from a checkpoint file's bytes.
pub(crate) fn fingerprint_of_bytes(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(NUMERICS);
    h.update(bytes);
    hex(&h.finalize())
}

/// The fingerprint of the seeded, untrained model: its configuration, base shapes, seed
/// and encoder determine every weight.
pub fn fingerprint_of_seed(cfg: &HyperConfig, base: &BaseModelShapes, seed: u64, encoder: &str) -> String {
    let mut h = Sha256::new();
    h.update(NUMERICS);
    h.update(b"evolora-untrained-v1\0");
    h.update(serde_json::to_vec(cfg).unwrap_or_default());
    h.update(serde_json::to_vec(base).unwrap_or_default());
    h.update(seed.to_le_bytes());
    h.update(encoder.as_bytes());
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored states are keyed by this value: changing it silently rebuilds every state.
    #[test]
    fn the_seed_fingerprint_is_pinned() {
        let cfg = HyperConfig::preset("compact").unwrap();
        let base = BaseModelShapes::preset("qwen2.5-coder-1.5b").unwrap();
        let found = fingerprint_of_seed(&cfg, &base, 7, "hashed-v1");
        assert_eq!(found, "1c26e752dbf7316b79ed0e4cd77a40d322d8027de4f9662f5328b774303210a2");
    }
}
