//! Building blocks any model family here is made of: named host tensors in PyTorch layout
//! ([`Weights`]), where a module's parameters come from ([`ParamSource`]: a checkpoint's
//! map or a seed), deterministic initialisation ([`init`]), PyTorch layers declared against
//! a source ([`layers`]), moving values in and out of burn tensors (`tensor`), and the
//! few-row products decoding is made of ([`few_rows`]).

pub mod few_rows;
pub mod init;
pub mod layers;
pub mod params;
pub(crate) mod tensor;
pub mod weights;

pub use params::{Init, ParamSource, Seeded};
pub use weights::{HostTensor, Weights};
