//! Training the hypernetwork end to end through the frozen LM (paper §3.4).
//!
//! ```text
//! snapshot, diffs ─TrainableHypernet─▶ factors (tracked) ─Lora::from_factors─▶ frozen Qwen ─▶ target CE ─▶ AdamW
//! ```
//!
//! [`hypernet::TrainableHypernet`] is the serving model's differentiable twin (same tensors,
//! same names); [`loss::target_loss`] is the objective; [`optim::Optimiser`] is AdamW with the
//! paper's schedule, global-norm clipping and accumulation. Everything runs on an autodiff
//! device (`Device::flex().autodiff()`, or CUDA's), with the LM's weights frozen
//! (`no_grad`): burn then computes no weight gradients for them at all.

pub mod hypernet;
pub mod loss;
pub mod optim;
pub mod run;

pub use hypernet::{Factors, TrainableHypernet};
pub use loss::{Example, TargetLoss, target_loss};
pub use optim::{OptimSettings, Optimiser, Schedule, StepReport};
pub use run::{Conditioning, RepoData, ResumeState, Task, TrainSettings, Trainer};
