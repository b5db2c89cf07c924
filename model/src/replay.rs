//! Running the model on embedding vectors supplied by the user: a snapshot vector and one
//! diff vector per commit, in a safetensors file with tensors `snapshot` [D] and
//! `diffs` [T, D] (f32, f16, bf16 or f64; `diffs` may be absent or have T = 0).

use std::path::Path;

use safetensors::SafeTensors;

use crate::floats::to_f32;
use crate::{AdapterWeights, Hypernetwork, ModelError};

pub struct Embeddings {
    pub snapshot: Vec<f32>,
    /// One vector per commit, oldest first.
    pub diffs: Vec<Vec<f32>>,
    /// The encoder the file says made them (`evolora encode` writes it), if any.
    pub encoder: Option<String>,
}

pub fn read_embeddings(path: &Path) -> Result<Embeddings, ModelError> {
    let fail = |reason: String| ModelError::Checkpoint { path: path.to_path_buf(), reason };
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| fail(e.to_string()))?;
    let snap = st.tensor("snapshot").map_err(|_| fail("no `snapshot` tensor".into()))?;
    if snap.shape().len() != 1 {
        return Err(fail(format!("`snapshot` must be 1-d, got shape {:?}", snap.shape())));
    }
    let snapshot = to_f32(snap.dtype(), snap.data()).ok_or_else(|| fail(format!("`snapshot` has unsupported dtype {:?}", snap.dtype())))?;
    let diffs = match st.tensor("diffs") {
        Err(_) => Vec::new(),
        Ok(d) => {
            let shape = d.shape().to_vec();
            if shape.len() != 2 || (shape[0] > 0 && shape[1] != snapshot.len()) {
                return Err(fail(format!("`diffs` must be [T, {}], got {:?}", snapshot.len(), shape)));
            }
            let flat = to_f32(d.dtype(), d.data()).ok_or_else(|| fail(format!("`diffs` has unsupported dtype {:?}", d.dtype())))?;
            flat.chunks(shape[1].max(1)).map(<[f32]>::to_vec).collect()
        }
    };
    let encoder = SafeTensors::read_metadata(&bytes).ok().and_then(|(_, m)| m.metadata().as_ref().and_then(|m| m.get("encoder").cloned()));
    Ok(Embeddings { snapshot, diffs, encoder })
}

/// h₀ from the snapshot, advanced over the diffs (Evo), then the adapter. A Static model
/// uses the snapshot alone.
pub fn run(model: &Hypernetwork, emb: &Embeddings) -> Result<(Vec<f32>, AdapterWeights), ModelError> {
    let h0 = model.initial_state(&emb.snapshot)?;
    let state = model.advance(&h0, &emb.diffs)?;
    let adapter = model.adapter(&state)?;
    Ok((state, adapter))
}
