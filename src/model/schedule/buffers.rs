//! The per-layer activations and the gradients of a step, made once per workspace.

use crate::config::Config;
use crate::gpu::{Gpu, View};

/// One layer's tensor of one kind: a buffer of its own, or, where the layers' time steps
/// run grouped (see `StepBuilder::grouped` in `step`), its window of one buffer holding every
/// layer's tensor of that kind, so that one launch can serve several layers.
#[derive(Clone)]
pub(super) struct Region {
    pub(super) buffer: wgpu::Buffer,
    /// The layer's first word in `buffer`.
    pub(super) base: usize,
    pub(super) words: usize,
}

impl Region {
    /// Each layer's region of `words[l]` words: in buffers of their own, or (`shared`) side
    /// by side in one buffer.
    pub(super) fn per_layer(gpu: &Gpu, label: &str, words: &[usize], shared: bool) -> Vec<Region> {
        if !shared {
            return (0..words.len())
                .map(|l| Region {
                    buffer: gpu.storage(&format!("lstm.{l} {label}"), words[l]),
                    base: 0,
                    words: words[l],
                })
                .collect();
        }
        let buffer = gpu.storage(&format!("lstm.* {label}"), words.iter().sum());
        let mut base = 0;
        words
            .iter()
            .map(|&w| {
                let r = Region {
                    buffer: buffer.clone(),
                    base,
                    words: w,
                };
                base += w;
                r
            })
            .collect()
    }

    /// All of `buffer`.
    pub(super) fn whole(buffer: &wgpu::Buffer) -> Region {
        Region {
            buffer: buffer.clone(),
            base: 0,
            words: (buffer.size() / 4) as usize,
        }
    }

    /// `len` words from word `offset` of the layer's tensor.
    pub(super) fn at(&self, offset: usize, len: usize) -> View<'_> {
        View::at(&self.buffer, self.base + offset, len)
    }

    /// The layer's whole tensor.
    pub(super) fn all(&self) -> View<'_> {
        View::at(&self.buffer, self.base, self.words)
    }
}

/// Per-layer activations of one workspace.
pub(super) struct LayerBuffers {
    /// Pre-activations `[n, 4h]`; reused for their gradient in the backward pass.
    pub(super) z: Region,
    /// Saved gate activations `[n, 4h]`.
    pub(super) act: Region,
    /// `[steps + 1, batch, h]`, slot 0 = carried in.
    pub(super) c: Region,
    pub(super) h: Region,
    /// The state carried between batches `[batch, h]`.
    pub(super) state_c: wgpu::Buffer,
    pub(super) state_h: wgpu::Buffer,
    /// The layer's output after dropout `[n, h]` (only when dropout is on).
    pub(super) h_drop: Option<wgpu::Buffer>,
    /// Gradients (training only): of the outputs `[n, h]` and the two ping-pong `dc` buffers.
    pub(super) dh: Option<Region>,
    pub(super) dc: Option<[Region; 2]>,
}

/// Gradient buffers of a training workspace.
pub(super) struct GradBuffers {
    pub(super) lstm_weight: Vec<wgpu::Buffer>,
    pub(super) lstm_bias: Vec<wgpu::Buffer>,
    /// `None` when the weights are tied.
    pub(super) softmax_w: Option<wgpu::Buffer>,
    pub(super) softmax_b: wgpu::Buffer,
    /// Tied weights: the embedding's whole `[vocab, e]` gradient (both uses).
    pub(super) embedding_dense: Option<wgpu::Buffer>,
    /// d(embedding output) `[n, e]` and the gradient rows of the batch's unique ids.
    pub(super) dx0: wgpu::Buffer,
    pub(super) embedding_rows: wgpu::Buffer,
    /// Gradients before a dropout mask is applied.
    pub(super) scratch_dh: wgpu::Buffer,
    pub(super) scratch_dx0: wgpu::Buffer,
}

impl GradBuffers {
    pub(super) fn new(gpu: &Gpu, cfg: &Config, n: usize) -> GradBuffers {
        let e = cfg.embedding_size;
        let widest = cfg.hidden.iter().copied().max().unwrap_or(1);
        GradBuffers {
            lstm_weight: cfg
                .hidden
                .iter()
                .enumerate()
                .map(|(l, &h)| {
                    gpu.storage(
                        &format!("d lstm.{l}.weight"),
                        (cfg.layer_input(l) + h) * 4 * h,
                    )
                })
                .collect(),
            lstm_bias: cfg
                .hidden
                .iter()
                .enumerate()
                .map(|(l, &h)| gpu.storage(&format!("d lstm.{l}.bias"), 4 * h))
                .collect(),
            softmax_w: (!cfg.tie_weights)
                .then(|| gpu.storage("d softmax.weight", cfg.top_hidden() * cfg.vocab_size)),
            softmax_b: gpu.storage("d softmax.bias", cfg.vocab_size),
            embedding_dense: cfg
                .tie_weights
                .then(|| gpu.storage("d embedding (tied)", cfg.vocab_size * e)),
            dx0: gpu.storage("d embedding output", n * e),
            embedding_rows: gpu.storage("d embedding rows", n * e),
            scratch_dh: gpu.storage("d h before dropout", n * widest),
            scratch_dx0: gpu.storage("d embedding output before dropout", n * e),
        }
    }
}
