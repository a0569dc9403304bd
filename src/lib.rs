//! lstm-gpu: the Penn Treebank LSTM language model trained entirely on the GPU
//! through WGSL compute shaders on wgpu.
//!
//! Layout (see `README.md`):
//! - [`config`]: hyperparameters, presets and their validation;
//! - [`data`]: corpus reading, vocabulary, batching, download;
//! - [`reference`](mod@reference): the CPU twin of every shader entry point, plus a whole training step;
//! - [`gpu`]: adapter choice, device, pipelines, kernel launchers;
//! - [`model`]: parameter layout, initialisation, checkpoints;
//! - [`session`]: what a training run shares on every target (the evaluation pass, the
//!   accounting of a log point) and the step-by-step session a browser tab drives;
//! - [`train`]: the command line's training loop (run folder, signals, progress bar);
//! - [`check`]: every kernel of an adapter against its CPU twin (`lstm-gpu check`, and the
//!   core of the parity tests).
//!
//! Built for `wasm32-unknown-unknown` (the page in `web/`), the library keeps the model, the
//! kernels, the step schedule and [`session`]; the modules that need a file system, signals
//! or a terminal are native only. Every wait for the GPU is [`gpu::Gpu::read_async`]: the
//! browser awaits it, native code blocks on it.

#[cfg(not(target_arch = "wasm32"))]
pub mod analysis;
pub mod check;
pub mod config;
pub mod data;
pub mod error;
pub mod gpu;
pub mod model;
#[cfg(not(target_arch = "wasm32"))]
pub mod profile;
pub mod reference;
pub mod rng;
#[cfg(not(target_arch = "wasm32"))]
pub mod serve;
pub mod session;
#[cfg(not(target_arch = "wasm32"))]
pub mod signals;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;

pub use error::{usage, UsageError};
