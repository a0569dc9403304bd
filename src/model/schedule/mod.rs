//! The forward/backward schedule on the GPU: every buffer, pipeline and bind group of a
//! training (or evaluation) step made once, then one command encoder and one submit per step.
//!
//! Activations are time-major (row `t * batch + b`). Per layer the hidden and cell states live
//! in `[steps + 1, batch, hidden]` buffers whose slot 0 is the state carried in from the
//! previous batch, so that "h_{t-1} for every t" is one contiguous `[steps * batch, hidden]`
//! window: the input projection of all time steps and both weight gradients are single
//! large matmuls; only `h_{t-1} @ W_h` and its backward run per time step.
//!
//! The order of operations is exactly `crate::reference::step`'s, which the whole-step parity
//! test holds this schedule to.

use anyhow::Result;

use crate::config::{Config, Precision};
use crate::gpu::dropout::Dropout;
use crate::gpu::embedding::Embedding;
use crate::gpu::loss_scale::LossScaleKernels;
use crate::gpu::lstm_cell::LstmCell;
use crate::gpu::lstm_step::{LstmStep, Recurrence};
use crate::gpu::matmul::{Matmul, MatmulVariant, GROUPS};
use crate::gpu::matmul_f16::HalfKernels;
use crate::gpu::reduce::Reduce;
use crate::gpu::sgd::Sgd;
use crate::gpu::softmax_xent::SoftmaxXent;
use crate::gpu::{Dispatch, Gpu};
use crate::reference::MatmulShape;

mod buffers;
mod params;
mod step;
mod workspace;

pub use params::ParamBuffers;
pub use workspace::{Mode, Workspace};

// A grouped time step is one matmul launch and one cell launch: both take as many members.
const _: () = assert!(GROUPS == crate::gpu::lstm_cell::GROUPS);

/// The pipelines of every kernel family, compiled once per device.
pub struct Kernels {
    pub matmul: Matmul,
    pub lstm_cell: LstmCell,
    /// The fused recurrence's kernels; `None` where the driver refused them.
    pub lstm_step: Option<LstmStep>,
    /// How the steps prepared with these kernels run each layer's time steps, when asked
    /// for (`--recurrence`, tests); `None`: the tuned choice for the model, else
    /// [`default_recurrence`].
    pub recurrence: Option<Recurrence>,
    pub embedding: Embedding,
    pub softmax_xent: SoftmaxXent,
    pub reduce: Reduce,
    pub sgd: Sgd,
    pub dropout: Dropout,
    /// The f16 casts and matmul of `--precision mixed`; `None` without `SHADER_F16`.
    pub half: Option<HalfKernels>,
    pub loss_scale: LossScaleKernels,
    /// Whether the cell adds the partial sums of a split recurrent product itself (one
    /// launch fewer per layer and time step each way; the same sums in the same order).
    /// On unless [`SPLIT_SUMS_ENV`] says `separate`; tests turn it off to compare.
    pub fuse_split_sums: bool,
    /// Whether a wavefront's paired time steps run as one launch each where they can (the
    /// wavefront steps of training, f32 or mixed). On unless [`WAVEFRONT_GROUPS_ENV`] says
    /// `off`; tests turn it off to compare.
    pub group_wavefront: bool,
}

impl Kernels {
    pub fn new(gpu: &Gpu) -> Result<Kernels> {
        let matmul = Matmul::new(gpu)?;
        let subgroup_blocking = matmul.variant() == MatmulVariant::SubgroupBroadcast;
        let lstm_step = LstmStep::new(gpu, subgroup_blocking);
        if lstm_step.is_none() && gpu.recurrence == Some(Recurrence::Fused) {
            return Err(crate::error::usage(format!(
                "--recurrence fused: {} cannot build the fused kernels (the warning above says why); use --recurrence unfused or wavefront",
                gpu.info.name
            )));
        }
        Ok(Kernels {
            lstm_step,
            matmul,
            lstm_cell: LstmCell::new(gpu)?,
            recurrence: gpu.recurrence,
            embedding: Embedding::new(gpu)?,
            softmax_xent: SoftmaxXent::new(gpu)?,
            reduce: Reduce::new(gpu)?,
            sgd: Sgd::new(gpu)?,
            dropout: Dropout::new(gpu)?,
            half: HalfKernels::new(gpu)?,
            loss_scale: LossScaleKernels::new(gpu)?,
            fuse_split_sums: fuse_split_sums()?,
            group_wavefront: group_wavefront()?,
        })
    }
}

/// The environment variable that chooses where a split recurrent product's slices are
/// added: `cell` (the default: by the LSTM cell that reads them) or `separate` (by a pass
/// of their own, as before the fusion), for comparing the two in a benchmark.
pub const SPLIT_SUMS_ENV: &str = "LSTM_GPU_SPLIT_SUMS";

fn fuse_split_sums() -> Result<bool> {
    env_switch(SPLIT_SUMS_ENV, "cell", "separate")
}

/// A switch from the environment variable `name`: `on` (the default, also when unset or
/// empty) or `off`; anything else is a usage error naming both.
fn env_switch(name: &str, on: &str, off: &str) -> Result<bool> {
    match std::env::var(name).as_deref() {
        Err(_) | Ok("") => Ok(true),
        Ok(v) if v == on => Ok(true),
        Ok(v) if v == off => Ok(false),
        Ok(other) => Err(crate::error::usage(format!(
            "{name}={other}: choose {on} (the default) or {off}"
        ))),
    }
}

/// The environment variable that says whether a wavefront's paired time steps run as one
/// launch each (`on`, the default) or one launch per layer (`off`: the wavefront's order
/// alone), for comparing the two in a benchmark.
pub const WAVEFRONT_GROUPS_ENV: &str = "LSTM_GPU_WAVEFRONT_GROUPS";

fn group_wavefront() -> Result<bool> {
    env_switch(WAVEFRONT_GROUPS_ENV, "on", "off")
}

/// The recurrence a step takes when neither `--recurrence` nor a tuned choice says:
/// unfused on every adapter. On CPU adapters the subgroup-broadcast matmul outruns the fused
/// kernel's workgroup tiles; on the one real GPU measured (an NVIDIA H200 through Vulkan),
/// a seed training step took 25.0 ms fused and 12.8 ms unfused, the medium preset's 129.1
/// and 36.3 ms: fewer launches did not pay for the fused kernel's slower products.
pub fn default_recurrence(_gpu: &Gpu) -> Recurrence {
    Recurrence::Unfused
}

/// Time steps per chunk of a wavefront step (`Recurrence::Wavefront`): about the square
/// root of the steps, which balances the launches a chunk adds (an input projection and a
/// dropout per layer above the first, each way) against the time steps the layers run side
/// by side. 20 steps: 4 chunks of 5; 35: 6 of 6.
pub fn wavefront_chunk(steps: usize) -> usize {
    let chunks = ((steps as f64).sqrt().round() as usize).clamp(1, steps.max(1));
    steps.div_ceil(chunks).max(1)
}

/// The key of a model's step: its shapes (what the recurrence timing depends on), and
/// (`precision mixed`) the precision where it is not f32's.
pub fn model_key(cfg: &Config, batch: usize, steps: usize) -> String {
    format!(
        "vocab {} embedding {} hidden {:?} batch {batch} steps {steps} dropout {} tied {}{}",
        cfg.vocab_size,
        cfg.embedding_size,
        cfg.hidden,
        cfg.keep_prob < 1.0,
        cfg.tie_weights,
        match cfg.precision {
            Precision::F32 => "",
            Precision::Mixed => " precision mixed",
        }
    )
}

/// The recurrence of a `(batch, steps)` step of `cfg` and why: asked for, tuned for this
/// model on this adapter, or the adapter's default.
pub fn recurrence_for(
    gpu: &Gpu,
    k: &Kernels,
    cfg: &Config,
    (batch, steps): (usize, usize),
) -> (Recurrence, crate::gpu::ChoiceSource) {
    use crate::gpu::ChoiceSource;
    let chosen = match k.recurrence {
        Some(r) => (r, ChoiceSource::Forced),
        None => {
            let tuned = gpu.tuning.as_ref().and_then(|t| {
                t.recurrence
                    .get(&model_key(cfg, batch, steps))
                    .map(|&r| (r, t.source))
            });
            tuned.unwrap_or((default_recurrence(gpu), ChoiceSource::Default))
        }
    };
    // The fused step kernels have no f16 form: mixed precision runs the products unfused
    // (in the wavefront's order where that is the choice).
    if cfg.precision == Precision::Mixed && chosen.0 == Recurrence::Fused {
        return (Recurrence::Unfused, ChoiceSource::Forced);
    }
    // A tuned or cached choice of kernels the driver now refuses: the default.
    if chosen.0 == Recurrence::Fused && k.lstm_step.is_none() {
        return (default_recurrence(gpu), ChoiceSource::Default);
    }
    chosen
}

/// One recorded operation of a step.
pub enum Op {
    Dispatch(Dispatch),
    /// A buffer-to-buffer copy (outside compute passes), in words.
    Copy {
        src: wgpu::Buffer,
        src_offset: usize,
        dst: wgpu::Buffer,
        dst_offset: usize,
        words: usize,
    },
}

/// Shapes of `A @ B`, `A^T @ B` and `A @ B^T` with `C` of `m` rows and `n` columns.
fn nn(m: usize, k: usize, n: usize) -> MatmulShape {
    MatmulShape {
        m,
        k,
        n,
        trans_a: false,
        trans_b: false,
    }
}

fn tn(m: usize, k: usize, n: usize) -> MatmulShape {
    MatmulShape {
        trans_a: true,
        ..nn(m, k, n)
    }
}

fn nt(m: usize, k: usize, n: usize) -> MatmulShape {
    MatmulShape {
        trans_b: true,
        ..nn(m, k, n)
    }
}

/// Record ops into an encoder: consecutive dispatches share one compute pass.
pub fn record(enc: &mut wgpu::CommandEncoder, ops: &[Op]) {
    let mut i = 0;
    while i < ops.len() {
        match &ops[i] {
            Op::Copy {
                src,
                src_offset,
                dst,
                dst_offset,
                words,
            } => {
                enc.copy_buffer_to_buffer(
                    src,
                    (*src_offset * 4) as u64,
                    dst,
                    (*dst_offset * 4) as u64,
                    Some((*words * 4) as u64),
                );
                i += 1;
            }
            Op::Dispatch(_) => {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("step"),
                    timestamp_writes: None,
                });
                while let Some(Op::Dispatch(dsp)) = ops.get(i) {
                    dsp.record(&mut pass);
                    i += 1;
                }
            }
        }
    }
}
