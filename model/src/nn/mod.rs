//! Building blocks any model family here is made of: named host tensors in PyTorch layout
//! ([`Weights`]), deterministic initialisation ([`init`]), and moving values in and out of
//! burn tensors ([`tensor`]).

pub mod init;
pub(crate) mod tensor;
pub mod weights;

pub use weights::{HostTensor, Weights};
