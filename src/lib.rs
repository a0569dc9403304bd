//! lstm-gpu: the Penn Treebank LSTM language model trained entirely on the GPU
//! through WGSL compute shaders on wgpu.
//!
//! Layout (see `README.md`):
//! - [`config`]: hyperparameters, presets and their validation;
//! - [`data`]: corpus reading, vocabulary, batching, download;
//! - [`reference`](mod@reference): the CPU twin of every shader entry point, plus a whole training step;
//! - [`gpu`]: adapter choice, device, pipelines, kernel launchers;
//! - [`model`]: parameter layout, initialisation, checkpoints;
//! - [`train`]: the training loop.

pub mod analysis;
pub mod config;
pub mod data;
pub mod error;
pub mod gpu;
pub mod model;
pub mod profile;
pub mod reference;
pub mod rng;
pub mod signals;
pub mod train;

pub use error::{usage, UsageError};
