//! Building blocks any model family here is made of: named host tensors in PyTorch layout
//! ([`Weights`]), where a module's parameters come from ([`ParamSource`]: a checkpoint's
//! map or a seed), deterministic initialisation ([`init`]), PyTorch layers declared against
//! a source ([`layers`]), moving values in and out of burn tensors (`tensor`), the few-row
//! products decoding, the head and the GRU are made of ([`few_rows`]), host layers on them
//! whose bits never depend on the machine ([`host`]), and the head's vectorised tanh
//! ([`tanh`]).

pub mod few_rows;
pub mod host;
pub mod init;
pub mod layers;
pub mod params;
pub mod tanh;
pub(crate) mod tensor;
pub mod weights;

pub use params::{Init, ParamSource, Seeded};
pub use weights::{HostTensor, Weights};
