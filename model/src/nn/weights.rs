//! Named host tensors in PyTorch layout: the common currency between checkpoint formats,
//! seeded initialisation and the burn modules.
//!
//! Names are the released checkpoints' state-dict keys, prefixed `gru.` (from `gru_state`)
//! or `head.` (from `head_state` / `state_dict`). Shapes are PyTorch's: Linear weights are
//! [out, in], the GRU packs its three gates (r, z, n) into [3H, in].

use std::collections::BTreeMap;

use crate::ModelError;

#[derive(Debug, Clone)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

#[derive(Debug, Default, Clone)]
pub struct Weights {
    tensors: BTreeMap<String, HostTensor>,
}

impl Weights {
    pub fn insert(&mut self, name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        self.tensors.insert(name.into(), HostTensor { shape, data });
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn get(&self, name: &str) -> Option<&HostTensor> {
        self.tensors.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &HostTensor)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Removes a tensor, checking its shape. Scalars may be stored as [] or [1].
    pub fn take(&mut self, name: &str, expected: &[usize]) -> Result<Vec<f32>, ModelError> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_owned()))?;
        let numel: usize = expected.iter().product();
        let scalar_ok = numel == 1 && t.data.len() == 1;
        if t.shape != expected && !scalar_ok {
            return Err(ModelError::ShapeMismatch {
                name: name.to_owned(),
                found: t.shape,
                expected: expected.to_vec(),
            });
        }
        Ok(t.data)
    }
}
