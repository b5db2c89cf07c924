//! Where a module's parameters come from.
//!
//! A module declares each of its tensors once, with its name, PyTorch shape and
//! initialisation, by asking a [`ParamSource`] for it (as candle's `VarBuilder` does). A
//! checkpoint's [`Weights`] hand over the stored tensor, shape checked; [`Seeded`] draws it
//! from the seed. The untrained model and a loaded checkpoint therefore cannot disagree on a
//! tensor's name or shape.

use crate::ModelError;
use crate::nn::Weights;
use crate::nn::init;

/// How an untrained tensor is filled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Uniform in [-bound, bound), from the tensor's own stream (see [`init::uniform`]).
    Uniform { bound: f32 },
    /// Every value the same.
    Constant(f32),
}

impl Init {
    /// PyTorch's default for a Linear's weight and bias: uniform with bound 1/√fan_in.
    pub fn fan_in(fan_in: usize) -> Self {
        Init::Uniform { bound: 1.0 / (fan_in as f32).sqrt() }
    }
}

pub trait ParamSource {
    /// The tensor `name` with PyTorch `shape` (`[]` for a scalar), row-major.
    fn tensor(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Vec<f32>, ModelError>;
}

/// A checkpoint's tensors: each is taken out of the map with its shape checked, so that
/// what remains afterwards is what no module asked for. `init` is not used.
impl ParamSource for Weights {
    fn tensor(&mut self, name: &str, shape: &[usize], _init: Init) -> Result<Vec<f32>, ModelError> {
        self.take(name, shape)
    }
}

/// Deterministic initialisation from a seed: every tensor gets its own stream, seeded by
/// (seed, name), so values do not depend on the order modules are built in.
#[derive(Debug)]
pub struct Seeded {
    seed: u64,
    /// Every tensor handed out, when the map itself is wanted (to save as a checkpoint).
    recorded: Option<Weights>,
}

impl Seeded {
    pub fn new(seed: u64) -> Self {
        Seeded { seed, recorded: None }
    }

    /// A source that also keeps a copy of every tensor it creates.
    pub fn recording(seed: u64) -> Self {
        Seeded { seed, recorded: Some(Weights::default()) }
    }

    /// The tensors created so far, if this source records them.
    pub fn into_recorded(self) -> Option<Weights> {
        self.recorded
    }
}

impl ParamSource for Seeded {
    fn tensor(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Vec<f32>, ModelError> {
        let len = shape.iter().product();
        let data = match init {
            Init::Uniform { bound } => init::uniform(self.seed, name, len, bound),
            Init::Constant(value) => vec![value; len],
        };
        if let Some(recorded) = &mut self.recorded {
            debug_assert!(!recorded.contains(name), "tensor `{name}` declared twice");
            recorded.insert(name, shape.to_vec(), data.clone());
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_values_depend_on_seed_and_name_only() {
        let mut a = Seeded::recording(3);
        let x = a.tensor("x", &[2, 3], Init::fan_in(3)).unwrap();
        let y = a.tensor("y", &[2, 3], Init::fan_in(3)).unwrap();
        let mut b = Seeded::new(3);
        let y_first = b.tensor("y", &[2, 3], Init::fan_in(3)).unwrap();
        assert_eq!(y, y_first, "creation order must not matter");
        assert_ne!(x, y);
        assert_eq!(x, init::uniform(3, "x", 6, 1.0 / 3f32.sqrt()));
        assert_eq!(b.tensor("s", &[], Init::Constant(-3.5)).unwrap(), vec![-3.5]);
        let recorded = a.into_recorded().unwrap();
        assert_eq!(recorded.names().collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(recorded.get("x").unwrap().shape, [2, 3]);
        assert!(b.into_recorded().is_none());
    }

    #[test]
    fn a_checkpoint_hands_over_each_tensor_once_with_its_shape_checked() {
        let mut w = Weights::default();
        w.insert("a", vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        w.insert("b", vec![3], vec![0.0; 3]);
        let err = w.tensor("b", &[4], Init::Constant(0.0)).unwrap_err();
        assert!(matches!(&err, ModelError::ShapeMismatch { name, .. } if name == "b"), "{err}");
        assert_eq!(w.tensor("a", &[2, 2], Init::Constant(0.0)).unwrap(), [1.0, 2.0, 3.0, 4.0]);
        let err = w.tensor("a", &[2, 2], Init::Constant(0.0)).unwrap_err();
        assert!(matches!(&err, ModelError::MissingTensor(name) if name == "a"), "{err}");
    }
}
