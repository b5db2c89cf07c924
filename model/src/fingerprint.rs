//! Fingerprints: the identity of a model's weights and arithmetic. A stored state built
//! under another fingerprint is stale and is rebuilt from its snapshot.

use sha2::{Digest, Sha256};

use crate::{BaseModelShapes, HyperConfig};

/// How a state is computed from the weights, beyond the weights themselves. It is part of
/// every fingerprint, so that changing it makes stored states rebuild from snapshots
/// instead of continuing with different arithmetic. 2: the GRU's input side in fixed
/// blocks of 16 steps (`hypernet::gru::INPUT_BLOCK`).
const NUMERICS: &[u8] = b"evolora-numerics-2\0";

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
        assert_eq!(found, "3cc39e03a2a4ab889fb8db344e4e124bcc725575bb590190eb3ebe3026b4f421");
    }
}
