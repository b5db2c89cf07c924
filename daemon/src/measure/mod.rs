//! Commands that run the base code LM in the CLI process to measure adapters: `lm logits`
//! and `lm generate` ([`lm`]), `tasks` ([`tasks`]), the fidelity check `verify` ([`verify`]), and `eval`
//! ([`eval`]): the adapter against no adapter and against other repositories' adapters.

pub mod eval;
pub mod lm;
pub mod tasks;
pub mod verify;
