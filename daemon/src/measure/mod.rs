//! Commands that run the base code LM in the CLI process to measure adapters: `lm logits`
//! and `lm generate` ([`lm`]), the fidelity check `verify` ([`verify`]).

pub mod lm;
pub mod verify;
