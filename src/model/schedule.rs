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

use anyhow::{bail, Result};

use std::cell::RefCell;
use std::collections::HashMap;

use crate::config::{Config, Precision};
use crate::gpu::dropout::Dropout;
use crate::gpu::embedding::{pack_segments, segments_words, Embedding};
use crate::gpu::loss_scale::{LossScale, LossScaleKernels};
use crate::gpu::lstm_cell::{CellBackwardViews, CellForwardViews, CellShape, LstmCell};
use crate::gpu::lstm_step::{LstmStep, Recurrence, StepBackwardViews, StepForwardViews};
use crate::gpu::matmul::{Matmul, MatmulVariant, SplitPartials, GROUPS};

// A grouped time step is one matmul launch and one cell launch: both take as many members.
const _: () = assert!(GROUPS == crate::gpu::lstm_cell::GROUPS);
use crate::gpu::matmul_f16::{HalfKernels, HalfView};
use crate::gpu::reduce::{ClipStats, Reduce, TrainAccumulator};
use crate::gpu::sgd::{Hyper, Sgd};
use crate::gpu::softmax_xent::{LossAccumulator, SoftmaxXent};
use crate::gpu::{Dispatch, Gpu, View};
use crate::model::{tensor_specs, Params, State};
use crate::reference::{IdSegments, MatmulShape};

/// The pipelines of every kernel family, compiled once per device.
pub struct Kernels {
    pub matmul: Matmul,
    pub lstm_cell: LstmCell,
    pub lstm_step: LstmStep,
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
        Ok(Kernels {
            lstm_step: LstmStep::new(gpu, subgroup_blocking)?,
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
    chosen
}

/// The parameters on the device, one buffer per tensor in the order of [`tensor_specs`].
/// Buffers are reference-counted handles: training and evaluation workspaces share them.
#[derive(Clone)]
pub struct ParamBuffers {
    pub embedding: wgpu::Buffer,
    pub lstm_weight: Vec<wgpu::Buffer>,
    pub lstm_bias: Vec<wgpu::Buffer>,
    /// `None` when the weights are tied: the softmax reads `embedding` transposed.
    pub softmax_w: Option<wgpu::Buffer>,
    pub softmax_b: wgpu::Buffer,
}

impl ParamBuffers {
    /// Check every tensor fits the adapter, then upload.
    pub fn upload(gpu: &Gpu, cfg: &Config, p: &Params<f32>) -> Result<ParamBuffers> {
        for (name, shape) in tensor_specs(cfg) {
            gpu.check_buffer_fits(
                &format!("parameter {name}"),
                shape.iter().product::<usize>() as u64 * 4,
            )?;
        }
        Ok(ParamBuffers {
            embedding: gpu.storage_from("embedding", &p.embedding),
            lstm_weight: p
                .lstm
                .iter()
                .enumerate()
                .map(|(l, x)| gpu.storage_from(&format!("lstm.{l}.weight"), &x.weight))
                .collect(),
            lstm_bias: p
                .lstm
                .iter()
                .enumerate()
                .map(|(l, x)| gpu.storage_from(&format!("lstm.{l}.bias"), &x.bias))
                .collect(),
            softmax_w: (!cfg.tie_weights).then(|| gpu.storage_from("softmax.weight", &p.softmax_w)),
            softmax_b: gpu.storage_from("softmax.bias", &p.softmax_b),
        })
    }

    /// Overwrite with host values (same shapes).
    pub fn write(&self, gpu: &Gpu, p: &Params<f32>) {
        gpu.write(&self.embedding, 0, &p.embedding);
        for (l, x) in p.lstm.iter().enumerate() {
            gpu.write(&self.lstm_weight[l], 0, &x.weight);
            gpu.write(&self.lstm_bias[l], 0, &x.bias);
        }
        if let Some(w) = &self.softmax_w {
            gpu.write(w, 0, &p.softmax_w);
        }
        gpu.write(&self.softmax_b, 0, &p.softmax_b);
    }

    /// Read back to the host.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(&self, gpu: &Gpu, cfg: &Config) -> Result<Params<f32>> {
        crate::gpu::block_on(self.read_async(gpu, cfg))
    }

    /// [`ParamBuffers::read`] awaited.
    pub async fn read_async(&self, gpu: &Gpu, cfg: &Config) -> Result<Params<f32>> {
        let mut p = Params::<f32>::zeros(cfg);
        p.embedding = gpu
            .read_async(&self.embedding, 0, p.embedding.len())
            .await?;
        for (l, x) in p.lstm.iter_mut().enumerate() {
            x.weight = gpu
                .read_async(&self.lstm_weight[l], 0, x.weight.len())
                .await?;
            x.bias = gpu.read_async(&self.lstm_bias[l], 0, x.bias.len()).await?;
        }
        if let Some(w) = &self.softmax_w {
            p.softmax_w = gpu.read_async(w, 0, p.softmax_w.len()).await?;
        }
        p.softmax_b = gpu
            .read_async(&self.softmax_b, 0, p.softmax_b.len())
            .await?;
        Ok(p)
    }
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

/// One layer's tensor of one kind: a buffer of its own, or, where the layers' time steps
/// run grouped (see [`StepBuilder::grouped`]), its window of one buffer holding every
/// layer's tensor of that kind, so that one launch can serve several layers.
#[derive(Clone)]
struct Region {
    buffer: wgpu::Buffer,
    /// The layer's first word in `buffer`.
    base: usize,
    words: usize,
}

impl Region {
    /// Each layer's region of `words[l]` words: in buffers of their own, or (`shared`) side
    /// by side in one buffer.
    fn per_layer(gpu: &Gpu, label: &str, words: &[usize], shared: bool) -> Vec<Region> {
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
    fn whole(buffer: &wgpu::Buffer) -> Region {
        Region {
            buffer: buffer.clone(),
            base: 0,
            words: (buffer.size() / 4) as usize,
        }
    }

    /// `len` words from word `offset` of the layer's tensor.
    fn at(&self, offset: usize, len: usize) -> View<'_> {
        View::at(&self.buffer, self.base + offset, len)
    }

    /// The layer's whole tensor.
    fn all(&self) -> View<'_> {
        View::at(&self.buffer, self.base, self.words)
    }
}

/// Per-layer activations of one workspace.
struct LayerBuffers {
    /// Pre-activations `[n, 4h]`; reused for their gradient in the backward pass.
    z: Region,
    /// Saved gate activations `[n, 4h]`.
    act: Region,
    /// `[steps + 1, batch, h]`, slot 0 = carried in.
    c: Region,
    h: Region,
    /// The state carried between batches `[batch, h]`.
    state_c: wgpu::Buffer,
    state_h: wgpu::Buffer,
    /// The layer's output after dropout `[n, h]` (only when dropout is on).
    h_drop: Option<wgpu::Buffer>,
    /// Gradients (training only): of the outputs `[n, h]` and the two ping-pong `dc` buffers.
    dh: Option<Region>,
    dc: Option<[Region; 2]>,
}

/// Which kind of step a workspace runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward, loss, backward, clip, SGD.
    Train,
    /// Forward and loss only.
    Eval,
}

/// Everything one step of a given shape needs, made once.
pub struct Workspace {
    pub cfg: Config,
    pub batch: usize,
    pub steps: usize,
    pub mode: Mode,
    pub ops: Vec<Op>,
    ids: wgpu::Buffer,
    /// `[n, vocab]` logits of the last step (their gradient after a training step).
    pub logits: wgpu::Buffer,
    /// `[n]` log-sum-exp of each logits row.
    pub lse: wgpu::Buffer,
    targets: wgpu::Buffer,
    segments: Option<wgpu::Buffer>,
    hyper: wgpu::Buffer,
    loss_acc: wgpu::Buffer,
    clip: Option<wgpu::Buffer>,
    /// The loss-scale block of a mixed training step ([`LossScale`]).
    loss_scale: Option<wgpu::Buffer>,
    layers: Vec<LayerBuffers>,
    /// Steps submitted so far.
    pub steps_run: u64,
}

impl Workspace {
    /// Allocate and prepare a step of `batch` rows and `steps` time steps: the operations of
    /// [`crate::reference::step`], in its order, recorded stage by stage (a private `StepBuilder`).
    pub fn new(
        gpu: &Gpu,
        k: &Kernels,
        cfg: &Config,
        params: &ParamBuffers,
        batch: usize,
        steps: usize,
        mode: Mode,
    ) -> Result<Workspace> {
        Workspace::build(gpu, k, cfg, params, (batch, steps), mode, None)
    }

    /// Like [`Workspace::new`], with its logits in `logits` instead of a buffer of its own
    /// (at least `batch * steps * vocab` words): the `[n, vocab]` logits are most of a
    /// step's memory, and workspaces whose steps never overlap, such as training and
    /// evaluation (queue submissions run in order), can share them.
    pub fn new_with_logits(
        gpu: &Gpu,
        k: &Kernels,
        cfg: &Config,
        params: &ParamBuffers,
        (batch, steps): (usize, usize),
        mode: Mode,
        logits: &wgpu::Buffer,
    ) -> Result<Workspace> {
        let words = batch * steps * cfg.vocab_size;
        if logits.size() < (words * 4) as u64 {
            bail!(
                "a shared logits buffer of {} bytes is too small for {batch}x{steps} rows of {} classes",
                logits.size(),
                cfg.vocab_size
            );
        }
        Workspace::build(gpu, k, cfg, params, (batch, steps), mode, Some(logits))
    }

    fn build(
        gpu: &Gpu,
        k: &Kernels,
        cfg: &Config,
        params: &ParamBuffers,
        (batch, steps): (usize, usize),
        mode: Mode,
        logits: Option<&wgpu::Buffer>,
    ) -> Result<Workspace> {
        if batch == 0 || steps == 0 {
            bail!("a step needs at least one row and one time step");
        }
        let mut b = StepBuilder::new(gpu, k, cfg, params, (batch, steps), mode, logits)?;
        b.carry_state_in();
        b.forward()?;
        b.head_and_loss()?;
        b.carry_state_out();
        let (segments, clip) = if mode == Mode::Train {
            b.guard_carried_state()?;
            let grads = GradBuffers::new(gpu, cfg, b.n);
            let segments = gpu.storage("id segments", segments_words(b.n));
            b.head_backward(&grads)?;
            b.layers_backward(&grads)?;
            b.embedding_backward(&grads, &segments)?;
            let clip = b.clip_and_update(&grads, &segments)?;
            (Some(segments), Some(clip))
        } else {
            (None, None)
        };
        Ok(Workspace {
            cfg: cfg.clone(),
            batch,
            steps,
            mode,
            ops: b.ops,
            ids: b.ids,
            logits: b.logits,
            lse: b.lse,
            targets: b.targets,
            segments,
            hyper: b.hyper,
            loss_acc: b.loss_acc,
            clip,
            loss_scale: b.loss_scale,
            layers: b.layers,
            steps_run: 0,
        })
    }

    /// Launches per step whose kernel label `which` accepts (second passes included).
    pub fn launches_labeled(&self, which: impl Fn(&str) -> bool) -> usize {
        fn count(d: &Dispatch, which: &dyn Fn(&str) -> bool) -> usize {
            usize::from(which(&d.label)) + d.then.as_ref().map_or(0, |t| count(t, which))
        }
        self.ops
            .iter()
            .map(|o| match o {
                Op::Dispatch(d) => count(d, &which),
                _ => 0,
            })
            .sum()
    }

    /// Number of compute dispatches per step.
    pub fn dispatches(&self) -> usize {
        self.ops
            .iter()
            .map(|o| match o {
                Op::Dispatch(d) => d.launches(),
                _ => 0,
            })
            .sum()
    }

    /// Upload one batch (`x`, `y` row-major `[batch, steps]` as the reader makes them) and
    /// the per-step values, record every op into one encoder and submit it once.
    pub fn step(&mut self, gpu: &Gpu, x: &[u32], y: &[u32], hyper: Hyper) -> Result<()> {
        self.upload(gpu, x, y, hyper)?;
        let enc = self.encode(gpu);
        gpu.submit(enc);
        Ok(())
    }

    /// Record every op of one step into a new encoder, ready to submit (after
    /// [`Workspace::upload`]); [`Workspace::step`] does both and submits.
    pub fn encode(&mut self, gpu: &Gpu) -> wgpu::CommandEncoder {
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("step"),
            });
        record(&mut enc, &self.ops);
        self.steps_run += 1;
        enc
    }

    /// Write a batch and the per-step values into the workspace's input buffers (queued
    /// writes, executed before the next submit).
    pub fn upload(&self, gpu: &Gpu, x: &[u32], y: &[u32], hyper: Hyper) -> Result<()> {
        let (b, t) = (self.batch, self.steps);
        if x.len() != b * t || y.len() != b * t {
            bail!(
                "batch has {} ids, the workspace expects {}x{}",
                x.len(),
                b,
                t
            );
        }
        // Time-major: row t * batch + b.
        let mut xs = vec![0u32; b * t];
        let mut ys = vec![0u32; b * t];
        for r in 0..b {
            for s in 0..t {
                xs[s * b + r] = x[r * t + s];
                ys[s * b + r] = y[r * t + s];
            }
        }
        if let Some(&bad) = xs
            .iter()
            .chain(&ys)
            .find(|&&id| id as usize >= self.cfg.vocab_size)
        {
            bail!(
                "word id {bad} is outside the vocabulary of {}",
                self.cfg.vocab_size
            );
        }
        gpu.write(&self.ids, 0, &xs);
        gpu.write(&self.targets, 0, &ys);
        if let Some(seg) = &self.segments {
            gpu.write(seg, 0, &pack_segments(&IdSegments::new(&xs), b * t));
        }
        gpu.write(&self.hyper, 0, &[hyper]);
        Ok(())
    }

    /// Sum of the batch losses accumulated since the last call, and the number of batches
    /// (in training, of the steps that were not skipped); resets the accumulator.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn take_loss(&self, gpu: &Gpu) -> Result<(f64, u64)> {
        crate::gpu::block_on(self.take_loss_async(gpu))
    }

    /// [`Workspace::take_loss`] awaited.
    pub async fn take_loss_async(&self, gpu: &Gpu) -> Result<(f64, u64)> {
        let acc = self.take_stats_async(gpu).await?;
        Ok((acc.loss_sum() as f64, acc.batches() as u64))
    }

    /// The whole accumulator since the last call, skipped steps included (always zero in
    /// evaluation), and reset it. This is the only readback of a training loop.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn take_stats(&self, gpu: &Gpu) -> Result<TrainAccumulator> {
        crate::gpu::block_on(self.take_stats_async(gpu))
    }

    /// [`Workspace::take_stats`] awaited.
    pub async fn take_stats_async(&self, gpu: &Gpu) -> Result<TrainAccumulator> {
        let acc = self.peek_stats_async(gpu).await?;
        if self.mode == Mode::Eval {
            gpu.write(&self.loss_acc, 0, &[LossAccumulator::default()]);
        } else {
            gpu.write(&self.loss_acc, 0, &[0u32; TrainAccumulator::RESET_WORDS]);
        }
        Ok(acc)
    }

    /// The accumulator as it stands, left as it is: what a progress display reads between
    /// log points (the log points' sums stay exactly what they would be without it).
    pub async fn peek_stats_async(&self, gpu: &Gpu) -> Result<TrainAccumulator> {
        if self.mode == Mode::Eval {
            let acc = LossAccumulator::read_async(gpu, View::all(&self.loss_acc)).await?;
            return Ok(TrainAccumulator {
                loss_sum_bits: acc.loss_sum.to_bits(),
                batches_bits: acc.batches.to_bits(),
                ..Default::default()
            });
        }
        let words: Vec<u32> = gpu
            .read_async(&self.loss_acc, 0, TrainAccumulator::WORDS)
            .await?;
        Ok(*bytemuck::from_bytes::<TrainAccumulator>(
            bytemuck::cast_slice(&words),
        ))
    }

    /// [`Workspace::peek_stats_async`], waited for.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn peek_stats(&self, gpu: &Gpu) -> Result<TrainAccumulator> {
        crate::gpu::block_on(self.peek_stats_async(gpu))
    }

    /// Poison the carried state of row 0 of layer 0 with NaN (the fault-injection hook of
    /// the tests): the next step's loss and gradient are NaN.
    pub fn poison_state(&self, gpu: &Gpu) {
        let lb = &self.layers[0];
        gpu.write(&lb.state_c, 0, &[f32::NAN]);
        gpu.write(&lb.state_h, 0, &[f32::NAN]);
    }

    /// Zero the carried state (epoch start).
    pub fn zero_state(&self, gpu: &Gpu) {
        for (l, lb) in self.layers.iter().enumerate() {
            let z = vec![0f32; self.batch * self.cfg.hidden[l]];
            gpu.write(&lb.state_c, 0, &z);
            gpu.write(&lb.state_h, 0, &z);
        }
    }

    /// The carried state, read back.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_state(&self, gpu: &Gpu) -> Result<State<f32>> {
        crate::gpu::block_on(self.read_state_async(gpu))
    }

    /// [`Workspace::read_state`] awaited.
    pub async fn read_state_async(&self, gpu: &Gpu) -> Result<State<f32>> {
        let mut s = State::zeros(&self.cfg, self.batch);
        for (l, lb) in self.layers.iter().enumerate() {
            s.c[l] = gpu.read_async(&lb.state_c, 0, s.c[l].len()).await?;
            s.h[l] = gpu.read_async(&lb.state_h, 0, s.h[l].len()).await?;
        }
        Ok(s)
    }

    pub fn write_state(&self, gpu: &Gpu, s: &State<f32>) -> Result<()> {
        for (l, lb) in self.layers.iter().enumerate() {
            if s.c[l].len() != self.batch * self.cfg.hidden[l] {
                bail!(
                    "carried state of layer {l} has {} values, expected {}",
                    s.c[l].len(),
                    self.batch * self.cfg.hidden[l]
                );
            }
            gpu.write(&lb.state_c, 0, &s.c[l]);
            gpu.write(&lb.state_h, 0, &s.h[l]);
        }
        Ok(())
    }

    /// The global norm and clip scale of the last training step.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_clip(&self, gpu: &Gpu) -> Result<Option<ClipStats>> {
        crate::gpu::block_on(self.read_clip_async(gpu))
    }

    /// [`Workspace::read_clip`] awaited.
    pub async fn read_clip_async(&self, gpu: &Gpu) -> Result<Option<ClipStats>> {
        match &self.clip {
            Some(c) => Ok(Some(ClipStats::read_async(gpu, View::all(c)).await?)),
            None => Ok(None),
        }
    }

    /// The loss-scale block of a mixed training step after the steps submitted so far
    /// (waits for the queue); `None` in f32 and for evaluation.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_loss_scale(&self, gpu: &Gpu) -> Result<Option<LossScale>> {
        crate::gpu::block_on(self.read_loss_scale_async(gpu))
    }

    /// [`Workspace::read_loss_scale`] awaited.
    pub async fn read_loss_scale_async(&self, gpu: &Gpu) -> Result<Option<LossScale>> {
        match &self.loss_scale {
            Some(b) => {
                let w: Vec<u32> = gpu.read_async(b, 0, LossScale::WORDS).await?;
                Ok(Some(bytemuck::pod_read_unaligned(bytemuck::cast_slice(&w))))
            }
            None => Ok(None),
        }
    }

    /// Set the loss-scale block (a resumed run's, or a test's); nothing in f32.
    pub fn write_loss_scale(&self, gpu: &Gpu, ls: LossScale) -> Result<()> {
        if !ls.scale.is_finite() || ls.scale <= 0.0 || ls.growth_interval == 0 {
            bail!(
                "a loss scale must be finite and positive with a growth interval of at least \
                 1 step, got {} every {}",
                ls.scale,
                ls.growth_interval
            );
        }
        if let Some(b) = &self.loss_scale {
            gpu.write(b, 0, &[ls]);
        }
        Ok(())
    }
}

/// [`Workspace::new`] in stages: the buffers of one step and the operations recorded so
/// far. Each stage appends the dispatches (and copies) of one part of the step.
struct StepBuilder<'a> {
    gpu: &'a Gpu,
    k: &'a Kernels,
    cfg: &'a Config,
    params: &'a ParamBuffers,
    batch: usize,
    steps: usize,
    /// Rows of the whole step: `batch * steps`.
    n: usize,
    /// Dropout sites (the embedding output and each layer's output): the masks' streams.
    sites: u32,
    /// How each layer's time steps run.
    recurrence: Recurrence,
    /// Whether the layers' time steps that a wavefront pairs run as one launch each (the
    /// recurrent products of both, then the cells of both): in wavefront steps of two
    /// layers or more (with the cells adding split sums), f32 or mixed, whose recurrent
    /// products run on kernels with a grouped form and whose largest tensors side by side
    /// fit one storage buffer, unless [`Kernels::group_wavefront`] is off. The layers'
    /// tensors of each kind then share one buffer ([`Region`]), and `w_rec` holds their
    /// recurrent weights side by side.
    grouped: bool,
    /// Grouped: every layer's `W_h` `[h, 4h]`, copied from the parameters at the start of
    /// each step (the grouped products read one B buffer).
    w_rec: Option<wgpu::Buffer>,
    ops: Vec<Op>,
    ids: wgpu::Buffer,
    targets: wgpu::Buffer,
    hyper: wgpu::Buffer,
    /// Evaluation: the running loss. Training: the running loss, steps and skips.
    loss_acc: wgpu::Buffer,
    /// Training adds each step's loss here first; `step_guard` moves it into `loss_acc`
    /// unless the step is skipped (see gpu::reduce).
    step_loss: Option<wgpu::Buffer>,
    /// `[batch, widest hidden]` zeros: the d(c) coming into the last time step.
    zeros: wgpu::Buffer,
    /// The embedding output `[n, e]`, and after dropout when on.
    x0: wgpu::Buffer,
    x0_drop: Option<wgpu::Buffer>,
    logits: wgpu::Buffer,
    lse: wgpu::Buffer,
    loss_rows: wgpu::Buffer,
    layers: Vec<LayerBuffers>,
    /// `--precision mixed`: the f16 kernels, the copies made so far, and (training) the
    /// loss-scale block.
    half: Option<HalfCopies<'a>>,
    loss_scale: Option<wgpu::Buffer>,
}

/// The f16 copies of the operands of a mixed step's products. Every f32 buffer a product
/// reads gets one f16 shadow of its size. The cell kernels write the f16 copies of h and of
/// d(pre) as they write the f32 values (`lstm_cell_f16.wgsl`); every other range is cast
/// right before the first product that reads it, and later products reading a range already
/// copied reuse the copy. That is sound because within one step no range is read as f16,
/// then rewritten, then read again: weights change only in the SGD update at the end,
/// activations and gradients are written once before their products read them (the logits'
/// gradient is cast explicitly, with the loss scale, after the softmax's backward pass
/// rewrote them in place).
struct HalfCopies<'a> {
    kernels: &'a HalfKernels,
    /// Whether the cell writes its f16 copies itself (else each range is cast like any).
    cell_writes_half: bool,
    shadows: RefCell<HashMap<wgpu::Buffer, wgpu::Buffer>>,
    /// Per buffer, the element ranges `[start, end)` copied so far in this step (sorted,
    /// disjoint, not touching).
    copied: RefCell<HashMap<wgpu::Buffer, Vec<(usize, usize)>>>,
}

impl HalfCopies<'_> {
    /// Record `[start, start + len)` of `buffer` as copied; whether it was not wholly
    /// copied before.
    fn mark(&self, buffer: &wgpu::Buffer, start: usize, len: usize) -> bool {
        let mut copied = self.copied.borrow_mut();
        let ranges = copied.entry(buffer.clone()).or_default();
        let end = start + len;
        if ranges.iter().any(|&(s, e)| s <= start && end <= e) {
            return false;
        }
        let (mut lo, mut hi) = (start, end);
        ranges.retain(|&(s, e)| {
            let joins = s <= hi && lo <= e;
            if joins {
                lo = lo.min(s);
                hi = hi.max(e);
            }
            !joins
        });
        let at = ranges.partition_point(|&(s, _)| s < lo);
        ranges.insert(at, (lo, hi));
        true
    }
}

impl<'a> StepBuilder<'a> {
    fn new(
        gpu: &'a Gpu,
        k: &'a Kernels,
        cfg: &'a Config,
        params: &'a ParamBuffers,
        (batch, steps): (usize, usize),
        mode: Mode,
        shared_logits: Option<&wgpu::Buffer>,
    ) -> Result<StepBuilder<'a>> {
        let n = batch * steps;
        let (v, e) = (cfg.vocab_size, cfg.embedding_size);
        let train = mode == Mode::Train;
        let mixed = cfg.precision == Precision::Mixed;
        let half = match (&k.half, mixed) {
            (_, false) => None,
            (Some(kernels), true) => Some(HalfCopies {
                kernels,
                cell_writes_half: k.lstm_cell.has_half(),
                shadows: RefCell::new(HashMap::new()),
                copied: RefCell::new(HashMap::new()),
            }),
            (None, true) => bail!(
                "--precision mixed needs 16-bit floats in shaders (shader-f16), which {} does \
                 not offer here; use --precision f32",
                gpu.info.name
            ),
        };
        let dropout = train && cfg.keep_prob < 1.0;
        let logits = match shared_logits {
            Some(b) => b.clone(),
            None => {
                gpu.check_buffer_fits("the logits of one batch", (n * v) as u64 * 4)?;
                gpu.storage("logits", n * v)
            }
        };
        let recurrence = recurrence_for(gpu, k, cfg, (batch, steps)).0;
        let hidden = &cfg.hidden;
        // Grouped where the layers' largest tensors side by side (the pre-activations and
        // gates, and the recurrent weights' copy) still fit one buffer; else the pairs run
        // one launch per layer.
        let total = |per: &dyn Fn(usize) -> usize| -> u64 {
            hidden.iter().map(|&h| per(h) as u64 * 4).sum()
        };
        // And where the kernels chosen for the recurrent products (forward or backward,
        // every layer's) have a grouped form: else the pairs could never share a launch.
        let groupable = |shape: MatmulShape| match &half {
            Some(h) => h.kernels.choice(shape).has_group_form(),
            None => k.matmul.choice(shape).0.has_group_form(),
        };
        let recurrent_groupable = [false, true].into_iter().any(|backward| {
            hidden.iter().all(|&h| {
                groupable(if backward {
                    nt(batch, 4 * h, h)
                } else {
                    nn(batch, h, 4 * h)
                })
            })
        });
        let grouped = recurrence == Recurrence::Wavefront
            && k.group_wavefront
            && recurrent_groupable
            && k.fuse_split_sums
            && hidden.len() >= 2
            && [total(&|h| n * 4 * h), total(&|h| h * 4 * h)]
                .iter()
                .all(|&bytes| gpu.check_buffer_fits("", bytes).is_ok());
        let regions = |label: &str, per: usize| {
            let words: Vec<usize> = hidden.iter().map(|&h| per * h).collect();
            Region::per_layer(gpu, label, &words, grouped)
        };
        let z = regions("pre-activations", n * 4);
        let act = regions("gates", n * 4);
        let c = regions("c", (steps + 1) * batch);
        let h = regions("h", (steps + 1) * batch);
        let (mut dh, mut dc) = (Vec::new(), Vec::new());
        if train {
            dh = regions("d(h)", n);
            dc = regions("d(c) a", batch)
                .into_iter()
                .zip(regions("d(c) b", batch))
                .map(|(a, b)| [a, b])
                .collect();
        }
        let mut dh = dh.into_iter();
        let mut dc = dc.into_iter();
        let layers = z
            .into_iter()
            .zip(act)
            .zip(c.into_iter().zip(h))
            .enumerate()
            .map(|(l, ((z, act), (c, h_all)))| LayerBuffers {
                z,
                act,
                c,
                h: h_all,
                state_c: gpu.storage(&format!("lstm.{l} carried c"), batch * hidden[l]),
                state_h: gpu.storage(&format!("lstm.{l} carried h"), batch * hidden[l]),
                h_drop: dropout
                    .then(|| gpu.storage(&format!("lstm.{l} output after dropout"), n * hidden[l])),
                dh: dh.next(),
                dc: dc.next(),
            })
            .collect();
        let w_rec = grouped
            .then(|| gpu.storage("every layer's W_h", hidden.iter().map(|&h| h * 4 * h).sum()));
        Ok(StepBuilder {
            gpu,
            k,
            cfg,
            params,
            batch,
            steps,
            n,
            sites: (cfg.hidden.len() + 1) as u32,
            recurrence,
            grouped,
            w_rec,
            ops: Vec::new(),
            ids: gpu.storage("ids", n),
            targets: gpu.storage("targets", n),
            hyper: gpu.storage_from("hyper", &[Hyper::default()]),
            loss_acc: if train {
                gpu.storage("loss accumulator", TrainAccumulator::WORDS)
            } else {
                gpu.storage("loss accumulator", LossAccumulator::WORDS)
            },
            step_loss: train.then(|| gpu.storage("step loss", LossAccumulator::WORDS)),
            zeros: gpu.storage(
                "zeros",
                batch * cfg.hidden.iter().copied().max().unwrap_or(1),
            ),
            x0: gpu.storage("embedding output", n * e),
            x0_drop: dropout.then(|| gpu.storage("embedding output after dropout", n * e)),
            logits,
            lse: gpu.storage("log-sum-exp", n),
            loss_rows: gpu.storage("loss rows", n),
            layers,
            half,
            loss_scale: (train && mixed)
                .then(|| gpu.storage_from("loss scale", &[LossScale::initial()])),
        })
    }

    fn push(&mut self, dispatch: Result<Dispatch>) -> Result<()> {
        self.ops.push(Op::Dispatch(dispatch?));
        Ok(())
    }

    /// The dispatches of one product `c = op(a) @ op(b) (+ bias) (+ c)`: the tuned f32
    /// matmul, or in mixed precision the f16 casts its operands still need and the f16
    /// matmul.
    #[allow(clippy::too_many_arguments)]
    fn product(
        &self,
        shape: MatmulShape,
        a: View,
        b: View,
        bias: Option<View>,
        c: View,
        accumulate: bool,
    ) -> Vec<Result<Dispatch>> {
        let Some(half) = &self.half else {
            return vec![self
                .k
                .matmul
                .prepare(self.gpu, shape, a, b, bias, c, accumulate)];
        };
        let ([ha, hb], mut ops) = self.half_operands(half, shape, a, b);
        let (ha, hb) = (
            HalfView::at(&ha, a.offset, a.len),
            HalfView::at(&hb, b.offset, b.len),
        );
        let split = Some(&self.k.matmul);
        ops.push(
            half.kernels
                .product(self.gpu, shape, ha, hb, bias, c, accumulate, split),
        );
        ops
    }

    /// The f16 shadows holding a product's operands, and the casts they still need.
    fn half_operands(
        &self,
        half: &HalfCopies,
        shape: MatmulShape,
        a: View,
        b: View,
    ) -> ([wgpu::Buffer; 2], Vec<Result<Dispatch>>) {
        let (ha, cast_a) = self.half_copy(half, a, shape.m * shape.k, None);
        let (hb, cast_b) = self.half_copy(half, b, shape.k * shape.n, None);
        ([ha, hb], cast_a.into_iter().chain(cast_b).collect())
    }

    /// A time step's recurrent product `c += a @ b` (or `a @ b^T`): where it splits k, its
    /// partial sums are returned for the cell to add (`lstm_cell_*_split`, and
    /// `_split_f16` in mixed precision) rather than summed by a pass of their own. With the
    /// fusion off: the product.
    fn recurrent_product(
        &self,
        shape: MatmulShape,
        a: View,
        b: View,
        c: View,
        slot: usize,
    ) -> (Vec<Result<Dispatch>>, Option<SplitPartials>) {
        if !self.k.fuse_split_sums {
            return (self.product(shape, a, b, None, c, true), None);
        }
        let Some(half) = &self.half else {
            return match self
                .k
                .matmul
                .prepare_deferring_sum_in(self.gpu, shape, a, b, c, slot)
            {
                Ok((d, partials)) => (vec![Ok(d)], partials),
                Err(e) => (vec![Err(e)], None),
            };
        };
        let ([ha, hb], mut ops) = self.half_operands(half, shape, a, b);
        let (ha, hb) = (
            HalfView::at(&ha, a.offset, a.len),
            HalfView::at(&hb, b.offset, b.len),
        );
        let family = &self.k.matmul;
        let product =
            half.kernels
                .product_deferring_sum(self.gpu, shape, ha, hb, c, (family, slot));
        match product {
            Ok((d, partials)) => {
                ops.push(Ok(d));
                (ops, partials)
            }
            Err(e) => {
                ops.push(Err(e));
                (ops, None)
            }
        }
    }

    /// The f16 shadow of `v`'s buffer, and the cast of `v`'s first `len` elements into it
    /// unless this step already copied them (multiplied by the loss scale in `scaled`).
    fn half_copy(
        &self,
        half: &HalfCopies,
        v: View,
        len: usize,
        scaled: Option<&wgpu::Buffer>,
    ) -> (wgpu::Buffer, Option<Result<Dispatch>>) {
        let shadow = self.shadow(half, v.buffer);
        let cast = half.mark(v.buffer, v.offset, len).then(|| {
            let dst = HalfView::at(&shadow, v.offset, len);
            match scaled {
                Some(block) => half.kernels.cast_scaled(self.gpu, v, dst, len, block),
                None => half.kernels.cast(self.gpu, v, dst, len),
            }
        });
        (shadow, cast)
    }

    /// The f16 shadow of `buffer` (made at its first use).
    fn shadow(&self, half: &HalfCopies, buffer: &wgpu::Buffer) -> wgpu::Buffer {
        half.shadows
            .borrow_mut()
            .entry(buffer.clone())
            .or_insert_with(|| {
                let words = (buffer.size() as usize / 4).div_ceil(2);
                self.gpu.storage("f16 copy", words)
            })
            .clone()
    }

    /// Where a cell kernel writes the f16 copy of `v` (recorded as copied), in a mixed step
    /// whose cell writes its own copies; `None` otherwise.
    fn cell_half_output(&self, v: View) -> Option<wgpu::Buffer> {
        let half = self.half.as_ref().filter(|h| h.cell_writes_half)?;
        half.mark(v.buffer, v.offset, v.len);
        Some(self.shadow(half, v.buffer))
    }

    /// Dropout at `site` from `from` into `to` (the same mask forward and backward).
    fn dropout(&mut self, words: usize, from: View, to: View, site: u32) -> Result<()> {
        self.dropout_part(words, from, to, site, 0)
    }

    /// [`StepBuilder::dropout`] of a part of a tensor, `from` and `to` its `words` from
    /// element `first` on (with the whole tensor's mask).
    fn dropout_part(
        &mut self,
        words: usize,
        from: View,
        to: View,
        site: u32,
        first: usize,
    ) -> Result<()> {
        let d = self.k.dropout.prepare_part(
            self.gpu,
            words,
            from,
            to,
            self.cfg.keep_prob,
            (site, self.sites),
            View::all(&self.hyper),
            first,
        );
        self.push(d)
    }

    /// Layer `l`'s output `[n, h]` as the next layer (or the softmax) reads it: after
    /// dropout when on, else slots 1..=steps of its `h`.
    fn layer_output(&self, l: usize) -> View<'_> {
        let lb = &self.layers[l];
        let h = self.cfg.hidden[l];
        match &lb.h_drop {
            Some(b) => View::all(b),
            None => lb.h.at(self.batch * h, self.n * h),
        }
    }

    /// What layer `l` reads: the embedding output (after dropout when on) or the output of
    /// the layer below.
    fn layer_input(&self, l: usize) -> View<'_> {
        if l == 0 {
            View::all(self.x0_drop.as_ref().unwrap_or(&self.x0))
        } else {
            self.layer_output(l - 1)
        }
    }

    /// Copy `words` from `src` to `dst`.
    fn copy(&mut self, src: View, dst: View, words: usize) {
        self.ops.push(Op::Copy {
            src: src.buffer.clone(),
            src_offset: src.offset,
            dst: dst.buffer.clone(),
            dst_offset: dst.offset,
            words,
        });
    }

    /// The state carried from the previous batch into slot 0 of each layer's `c` and `h`;
    /// where the layers' steps run grouped, also their recurrent weights into `w_rec` (the
    /// parameters change only in the update at the end of a step).
    fn carry_state_in(&mut self) {
        for l in 0..self.layers.len() {
            let words = self.batch * self.cfg.hidden[l];
            let lb = &self.layers[l];
            let (c, h) = (lb.c.clone(), lb.h.clone());
            let (state_c, state_h) = (lb.state_c.clone(), lb.state_h.clone());
            self.copy(View::all(&state_c), c.all(), words);
            self.copy(View::all(&state_h), h.all(), words);
        }
        if let Some(w_rec) = self.w_rec.clone() {
            for l in 0..self.layers.len() {
                let (h, inp) = (self.cfg.hidden[l], self.cfg.layer_input(l));
                let w = self.params.lstm_weight[l].clone();
                let words = h * 4 * h;
                let at = self.w_rec_at(l);
                self.copy(
                    View::at(&w, inp * 4 * h, words),
                    View::at(&w_rec, at, words),
                    words,
                );
            }
        }
    }

    /// Which of layer `l`'s two ping-pong d(c) buffers the cell backward of step `t` writes
    /// (d(c_{t-1}); step `t - 1` reads it there). By the parity of `t`; grouped, of
    /// `t + l * chunk`, which is the same for the layers' steps that a backward wavefront
    /// launches together (each layer one chunk behind the one above it, the chunks counted
    /// from the last step: see [`StepBuilder::wavefront_backward`]), so that their cells read
    /// and write the same two buffers.
    fn dc_slot(&self, l: usize, t: usize) -> usize {
        if self.grouped {
            (t + l * wavefront_chunk(self.steps)) % 2
        } else {
            t % 2
        }
    }

    /// Where layer `l`'s recurrent weights lie in `w_rec`.
    fn w_rec_at(&self, l: usize) -> usize {
        self.cfg.hidden[..l].iter().map(|&h| h * 4 * h).sum()
    }

    /// Layer `l`'s recurrent weights `W_h` `[h, 4h]`: the rows after `W_x` in its weight,
    /// or (grouped) its copy in `w_rec`.
    fn w_h(&self, l: usize) -> View<'_> {
        let (h, inp) = (self.cfg.hidden[l], self.cfg.layer_input(l));
        match &self.w_rec {
            Some(w_rec) => View::at(w_rec, self.w_rec_at(l), h * 4 * h),
            None => View::at(&self.params.lstm_weight[l], inp * 4 * h, h * 4 * h),
        }
    }

    /// Slot `steps` of each layer's `c` and `h` into the carried state (forward results:
    /// the backward pass does not change them).
    fn carry_state_out(&mut self) {
        for l in 0..self.layers.len() {
            let words = self.batch * self.cfg.hidden[l];
            let lb = &self.layers[l];
            let (c, h) = (lb.c.clone(), lb.h.clone());
            let (state_c, state_h) = (lb.state_c.clone(), lb.state_h.clone());
            self.copy(c.at(self.steps * words, words), View::all(&state_c), words);
            self.copy(h.at(self.steps * words, words), View::all(&state_h), words);
        }
    }

    /// Embedding lookup (and its dropout), then every layer.
    fn forward(&mut self) -> Result<()> {
        let (n, e) = (self.n, self.cfg.embedding_size);
        let gather = self.k.embedding.prepare_gather(
            self.gpu,
            n,
            e,
            View::all(&self.ids),
            View::all(&self.params.embedding),
            View::all(&self.x0),
        );
        self.push(gather)?;
        if let Some(xd) = self.x0_drop.clone() {
            let x0 = self.x0.clone();
            self.dropout(n * e, View::all(&x0), View::all(&xd), 0)?;
        }
        if self.recurrence == Recurrence::Wavefront {
            return self.wavefront_forward();
        }
        for l in 0..self.layers.len() {
            self.layer_forward(l)?;
        }
        Ok(())
    }

    /// One LSTM layer: the input projection of all time steps as one matmul (bias
    /// included), then per time step `h_{t-1} @ W_h` added to it and the fused cell; then
    /// dropout on the output when on.
    fn layer_forward(&mut self, l: usize) -> Result<()> {
        let steps = self.steps;
        let mut ops = self.input_projection(l, (0, steps));
        for t in 0..steps {
            let (product, cell) = self.step_forward(l, t, 0);
            ops.extend(product);
            ops.push(cell);
        }
        for d in ops {
            self.push(d)?;
        }
        self.output_dropout(l, (0, steps))
    }

    /// The layers' forward passes in a wavefront's order (`Recurrence::Wavefront`): the
    /// time steps in chunks, layer `l` running chunk `j` in round `j + l`, so that from the
    /// second round on the layers' time steps come in pairs that depend on nothing of each
    /// other ([`StepBuilder::steps_together`]): grouped, one launch for both products and
    /// one for both cells; otherwise [products] [cells], launches that write no buffer in
    /// common but still run one after the other (wgpu records each launch's barriers right
    /// before it, and the second product of a pair always needs one), each layer's split
    /// products leaving their sums in a scratch slot of its own. Each round first gives
    /// every layer above the first the input projection of its chunk (the layer below's
    /// output of that chunk, after its dropout, made the round before), and ends with the
    /// dropout of the chunks just made. The same operations as
    /// [`StepBuilder::layer_forward`], in another order.
    fn wavefront_forward(&mut self) -> Result<()> {
        let (steps, layers) = (self.steps, self.layers.len());
        let chunk = wavefront_chunk(steps);
        let chunks = steps.div_ceil(chunk);
        let span = |j: usize| (j * chunk, ((j + 1) * chunk).min(steps));
        for round in 0..chunks + layers - 1 {
            // (layer, chunk) pairs of this round.
            let active: Vec<(usize, usize)> = (0..layers)
                .filter_map(|l| round.checked_sub(l).filter(|&j| j < chunks).map(|j| (l, j)))
                .collect();
            let mut ops = Vec::new();
            for &(l, j) in &active {
                match (l, j) {
                    // The first layer's input, the embedding output, is whole already.
                    (0, 0) => ops.extend(self.input_projection(0, (0, steps))),
                    (0, _) => {}
                    _ => ops.extend(self.input_projection(l, span(j))),
                }
            }
            let spans: Vec<_> = active.iter().map(|&(l, j)| (l, span(j))).collect();
            ops.extend(self.interleaved(chunk, &spans, false));
            for d in ops {
                self.push(d)?;
            }
            for &(l, j) in &active {
                if l + 1 < layers {
                    self.output_dropout(l, span(j))?;
                }
            }
        }
        self.output_dropout(layers - 1, (0, steps))
    }

    /// The time steps of a wavefront round, for layers `(l, (t0, t1))` each running the
    /// steps of one chunk: the `i`-th step of every chunk (from the first forward, from the
    /// last `backward`; none past a short chunk's end) together
    /// ([`StepBuilder::steps_together`]), for each `i`.
    fn interleaved(
        &self,
        chunk: usize,
        spans: &[(usize, (usize, usize))],
        backward: bool,
    ) -> Vec<Result<Dispatch>> {
        let mut ops = Vec::new();
        for i in 0..chunk {
            let members: Vec<(usize, usize)> = spans
                .iter()
                .filter(|&&(_, (t0, t1))| i < t1 - t0)
                .map(|&(l, (t0, t1))| (l, if backward { t1 - 1 - i } else { t0 + i }))
                .collect();
            ops.extend(self.steps_together(&members, backward));
        }
        ops
    }

    /// Layer `l`'s input projection for time steps `[t0, t1)`: `z = x @ W_x + b` on their
    /// rows, one matmul.
    fn input_projection(&self, l: usize, (t0, t1): (usize, usize)) -> Vec<Result<Dispatch>> {
        let batch = self.batch;
        let (h, inp) = (self.cfg.hidden[l], self.cfg.layer_input(l));
        let rows = (t1 - t0) * batch;
        let w = &self.params.lstm_weight[l];
        let input = self.layer_input(l);
        let x = View::at(input.buffer, input.offset + t0 * batch * inp, rows * inp);
        let z = self.layers[l].z.at(t0 * batch * 4 * h, rows * 4 * h);
        self.product(
            nn(rows, inp, 4 * h),
            x,
            View::at(w, 0, inp * 4 * h),
            Some(View::all(&self.params.lstm_bias[l])),
            z,
            false,
        )
    }

    /// The operands of time step `t` of layer `l` forward: the recurrent product
    /// `h_{t-1} @ W_h` (A, B, and C, the step's pre-activations, to which it is added)
    /// and the cell's.
    fn forward_views(&self, l: usize, t: usize) -> ([View<'_>; 3], CellForwardViews<'_>) {
        let batch = self.batch;
        let h = self.cfg.hidden[l];
        let lb = &self.layers[l];
        let z_t = lb.z.at(t * batch * 4 * h, batch * 4 * h);
        let product = [lb.h.at(t * batch * h, batch * h), self.w_h(l), z_t];
        let cell = CellForwardViews {
            pre: z_t,
            c_prev: lb.c.at(t * batch * h, batch * h),
            act: lb.act.at(t * batch * 4 * h, batch * 4 * h),
            c: lb.c.at((t + 1) * batch * h, batch * h),
            h: lb.h.at((t + 1) * batch * h, batch * h),
        };
        (product, cell)
    }

    /// Time step `t` of layer `l`: the recurrent product `h_{t-1} @ W_h` added to the
    /// step's pre-activations (its split sums, if any, left in scratch slot `slot` for the
    /// cell), and the cell; with the fused recurrence, no product and the fused step.
    fn step_forward(
        &self,
        l: usize,
        t: usize,
        slot: usize,
    ) -> (Vec<Result<Dispatch>>, Result<Dispatch>) {
        let (batch, h) = (self.batch, self.cfg.hidden[l]);
        let ([h_prev, w_h, z_t], views) = self.forward_views(l, t);
        if self.recurrence == Recurrence::Fused {
            let views = StepForwardViews {
                zx: z_t,
                w_h,
                h_prev,
                c_prev: views.c_prev,
                act: views.act,
                c: views.c,
                h: views.h,
            };
            let step = self.k.lstm_step.prepare_forward(
                self.gpu,
                (batch, h),
                self.cfg.forget_bias,
                &views,
            );
            return (Vec::new(), step);
        }
        let (product, partials) =
            self.recurrent_product(nn(batch, h, 4 * h), h_prev, w_h, z_t, slot);
        let shape = CellShape { batch, hidden: h };
        let fb = self.cfg.forget_bias;
        let cell = &self.k.lstm_cell;
        let h_next = views.h;
        let h16 = self.cell_half_output(h_next);
        let h16 = h16
            .as_ref()
            .map(|b| HalfView::at(b, h_next.offset, h_next.len));
        let cell = match (&partials, h16) {
            (Some(p), h16) => cell.prepare_forward_split(self.gpu, shape, fb, &views, p, h16),
            (None, Some(h16)) => cell.prepare_forward_half(self.gpu, shape, fb, &views, h16),
            (None, None) => cell.prepare_forward(self.gpu, shape, fb, &views),
        };
        (product, cell)
    }

    /// Dropout on layer `l`'s output for time steps `[t0, t1)` (the rows of those steps,
    /// with the whole output's mask), when on.
    fn output_dropout(&mut self, l: usize, (t0, t1): (usize, usize)) -> Result<()> {
        let Some(hd) = self.layers[l].h_drop.clone() else {
            return Ok(());
        };
        let (batch, h) = (self.batch, self.cfg.hidden[l]);
        let (first, words) = (t0 * batch * h, (t1 - t0) * batch * h);
        let out = self.layers[l].h.clone();
        let from = out.at(batch * h + first, words);
        let to = View::at(&hd, first, words);
        self.dropout_part(words, from, to, l as u32 + 1, first)
    }

    /// Logits, log-softmax with cross-entropy per row, and the batch loss added up on the
    /// GPU (the mean over rows of each time step, summed over time steps).
    fn head_and_loss(&mut self) -> Result<()> {
        let (n, v) = (self.n, self.cfg.vocab_size);
        let top = self.layers.len() - 1;
        // Tied: logits = h @ E^T, the embedding `[v, top]` read transposed.
        let (shape, weight) = match &self.params.softmax_w {
            Some(w) => (nn(n, self.cfg.top_hidden(), v), w),
            None => (nt(n, self.cfg.top_hidden(), v), &self.params.embedding),
        };
        let logits = self.product(
            shape,
            self.layer_output(top),
            View::all(weight),
            Some(View::all(&self.params.softmax_b)),
            View::all(&self.logits),
            false,
        );
        for d in logits {
            self.push(d)?;
        }
        let forward = self.k.softmax_xent.prepare_forward(
            self.gpu,
            n,
            v,
            View::all(&self.logits),
            View::all(&self.targets),
            View::all(&self.lse),
            View::all(&self.loss_rows),
        );
        self.push(forward)?;
        let accumulate = self.k.softmax_xent.prepare_loss_accumulate(
            self.gpu,
            n,
            View::all(&self.loss_rows),
            View::all(self.step_loss.as_ref().unwrap_or(&self.loss_acc)),
            1.0 / self.batch as f32,
        );
        self.push(accumulate)
    }

    /// A row of the carried state that is not finite starts over from zero.
    fn guard_carried_state(&mut self) -> Result<()> {
        for l in 0..self.layers.len() {
            let lb = &self.layers[l];
            let guard = self.k.reduce.prepare_state_guard(
                self.gpu,
                self.batch,
                self.cfg.hidden[l],
                &lb.state_c,
                &lb.state_h,
            );
            self.push(guard)?;
        }
        Ok(())
    }

    /// d(logits) in place, the softmax weight and bias gradients, and d(top output)
    /// (through its dropout when on).
    fn head_backward(&mut self, grads: &GradBuffers) -> Result<()> {
        let (n, v, ht) = (self.n, self.cfg.vocab_size, self.cfg.top_hidden());
        let top = self.layers.len() - 1;
        // d(logits) in place and their column sums (the bias gradient) in one pass.
        let backward = self.k.softmax_xent.prepare_backward_columns(
            self.gpu,
            n,
            v,
            View::all(&self.logits),
            View::all(&self.targets),
            View::all(&self.lse),
            1.0 / self.batch as f32,
            View::all(&grads.softmax_b),
            false,
            &self.k.reduce,
        );
        self.push(backward)?;
        // Mixed: the products read the logits' gradient times the loss scale, and the bias
        // gradient (summed from the unscaled f32 gradient) is scaled to match.
        if let (Some(half), Some(block)) = (&self.half, &self.loss_scale) {
            let (_, cast) = self.half_copy(half, View::all(&self.logits), n * v, Some(block));
            let scale_bias =
                self.k
                    .loss_scale
                    .apply(self.gpu, View::all(&grads.softmax_b), v, block);
            for d in cast.into_iter().chain([scale_bias]) {
                self.push(d)?;
            }
        }
        // Untied: dW = h^T @ dlogits `[ht, v]`. Tied: dE = dlogits^T @ h `[v, ht]`, the
        // embedding's dense gradient, to which the lookup's rows are added later.
        let dw = match (&grads.softmax_w, &grads.embedding_dense) {
            (Some(dw), _) => self.product(
                tn(ht, n, v),
                self.layer_output(top),
                View::all(&self.logits),
                None,
                View::all(dw),
                false,
            ),
            (None, Some(de)) => self.product(
                tn(v, n, ht),
                View::all(&self.logits),
                self.layer_output(top),
                None,
                View::all(de),
                false,
            ),
            (None, None) => bail!("training buffers without a softmax weight gradient"),
        };
        for d in dw {
            self.push(d)?;
        }
        let top_dh = self.layers[top].dh.clone().expect("training buffers");
        let dropped = self.layers[top].h_drop.is_some();
        let target = if dropped {
            View::all(&grads.scratch_dh)
        } else {
            top_dh.all()
        };
        let (shape, weight) = match &self.params.softmax_w {
            Some(w) => (nt(n, v, ht), w),
            None => (nn(n, v, ht), &self.params.embedding),
        };
        let dh = self.product(
            shape,
            View::all(&self.logits),
            View::all(weight),
            None,
            target,
            false,
        );
        for d in dh {
            self.push(d)?;
        }
        if dropped {
            let site = self.layers.len() as u32;
            self.dropout(n * ht, View::all(&grads.scratch_dh), top_dh.all(), site)?;
        }
        Ok(())
    }

    /// Backward through time of every layer, from the top: each layer's time steps in
    /// turn ([`StepBuilder::layer_backward`]), or as a wavefront.
    fn layers_backward(&mut self, grads: &GradBuffers) -> Result<()> {
        if self.recurrence == Recurrence::Wavefront {
            return self.wavefront_backward(grads);
        }
        for l in (0..self.layers.len()).rev() {
            self.layer_backward(l, grads)?;
        }
        Ok(())
    }

    /// Backward through time of layer `l` (d(h) of its output already in `dh`): per time
    /// step from the last, d(h) from the step after through `W_h^T` and the fused cell
    /// backward, which leaves d(pre-activations) in `z`; then both weight gradients and the
    /// bias gradient over all time steps at once, and d(input) for the layer below (or the
    /// embedding), through its dropout when on.
    fn layer_backward(&mut self, l: usize, grads: &GradBuffers) -> Result<()> {
        let steps = self.steps;
        let mut ops = Vec::new();
        for t in (0..steps).rev() {
            let (product, cell) = self.step_backward(l, t, 0);
            ops.extend(product);
            ops.push(cell);
        }
        ops.extend(self.weight_gradients(l, grads));
        for d in ops {
            self.push(d)?;
        }
        self.input_gradient(l, (0, steps), grads)
    }

    /// The backward pass in a wavefront's order (see [`StepBuilder::wavefront_forward`]):
    /// chunks of time steps counted from the last (so that a short chunk is the earliest in
    /// time, and the steps of a pair always lie exactly one chunk apart, which
    /// [`StepBuilder::dc_slot`] needs), the top layer running chunk `k` in round `k` and each
    /// layer below one round after the layer above it, the layers' time steps in pairs
    /// ([`StepBuilder::steps_together`]). Each round ends with the
    /// d(input) of the chunks just finished by the layers above the first (the next
    /// layer's d(h) rows for that chunk, through its dropout); the weight gradients and the
    /// first layer's d(input) come after the last round. The same operations as
    /// [`StepBuilder::layer_backward`] for every layer, in another order.
    fn wavefront_backward(&mut self, grads: &GradBuffers) -> Result<()> {
        let (steps, layers) = (self.steps, self.layers.len());
        let chunk = wavefront_chunk(steps);
        let chunks = steps.div_ceil(chunk);
        // Chunk k counted from the end, the short one (if any) first in time.
        let span = |k: usize| (steps.saturating_sub((k + 1) * chunk), steps - k * chunk);
        for round in 0..chunks + layers - 1 {
            // (layer, chunk) pairs of this round: the top layer starts with the last chunk.
            let active: Vec<(usize, usize)> = (0..layers)
                .rev()
                .filter_map(|l| {
                    let k = round.checked_sub(layers - 1 - l)?;
                    (k < chunks).then_some((l, k))
                })
                .collect();
            let spans: Vec<_> = active.iter().map(|&(l, k)| (l, span(k))).collect();
            let ops = self.interleaved(chunk, &spans, true);
            for d in ops {
                self.push(d)?;
            }
            for &(l, k) in &active {
                if l > 0 {
                    self.input_gradient(l, span(k), grads)?;
                }
            }
        }
        for l in (0..layers).rev() {
            for d in self.weight_gradients(l, grads) {
                self.push(d)?;
            }
        }
        self.input_gradient(0, (0, steps), grads)
    }

    /// The operands of time step `t` of layer `l` backward: the recurrent product
    /// `dz_{t+1} @ W_h^T` (A, B, and C, the step's d(h), to which it is added; none at the
    /// last step) and the cell's.
    fn backward_views(&self, l: usize, t: usize) -> (Option<[View<'_>; 3]>, CellBackwardViews<'_>) {
        let (batch, steps) = (self.batch, self.steps);
        let h = self.cfg.hidden[l];
        let lb = &self.layers[l];
        let dh = lb.dh.as_ref().expect("training buffers");
        let dc = lb.dc.as_ref().expect("training buffers");
        let dh_t = dh.at(t * batch * h, batch * h);
        // dc of step t comes in through one ping-pong buffer, dc of t-1 goes out through
        // the other; the last step starts from zero (truncated BPTT).
        let dc_in = if t + 1 == steps {
            View::at(&self.zeros, 0, batch * h)
        } else {
            dc[self.dc_slot(l, t + 1)].all()
        };
        let product = (t + 1 < steps).then(|| {
            [
                lb.z.at((t + 1) * batch * 4 * h, batch * 4 * h),
                self.w_h(l),
                dh_t,
            ]
        });
        let cell = CellBackwardViews {
            act: lb.act.at(t * batch * 4 * h, batch * 4 * h),
            c_prev: lb.c.at(t * batch * h, batch * h),
            c: lb.c.at((t + 1) * batch * h, batch * h),
            dh: dh_t,
            dc: dc_in,
            dpre: lb.z.at(t * batch * 4 * h, batch * 4 * h),
            dc_prev: dc[self.dc_slot(l, t)].all(),
        };
        (product, cell)
    }

    /// Time step `t` of layer `l` backward: d(h) from the step after through `W_h^T`
    /// (its split sums, if any, left in scratch slot `slot` for the cell; none at the last
    /// step), and the cell backward; with the fused recurrence, the fused step (or, at the
    /// last step, the cell alone).
    fn step_backward(
        &self,
        l: usize,
        t: usize,
        slot: usize,
    ) -> (Vec<Result<Dispatch>>, Result<Dispatch>) {
        let (batch, h) = (self.batch, self.cfg.hidden[l]);
        let (product_views, views) = self.backward_views(l, t);
        let mut product = Vec::new();
        let mut partials = None;
        if let Some([dz_next, w_h, dh_t]) = product_views {
            if self.recurrence == Recurrence::Fused {
                let views = StepBackwardViews {
                    dz_next,
                    w_h,
                    act: views.act,
                    c_prev: views.c_prev,
                    c: views.c,
                    dh: dh_t,
                    dc: views.dc,
                    dc_prev: views.dc_prev,
                    dz: views.dpre,
                };
                let step = self
                    .k
                    .lstm_step
                    .prepare_backward(self.gpu, (batch, h), &views);
                return (product, step);
            }
            (product, partials) =
                self.recurrent_product(nt(batch, 4 * h, h), dz_next, w_h, dh_t, slot);
        }
        let shape = CellShape { batch, hidden: h };
        let cell = &self.k.lstm_cell;
        let dz_t = views.dpre;
        let d16 = self.cell_half_output(dz_t);
        let d16 = d16.as_ref().map(|b| HalfView::at(b, dz_t.offset, dz_t.len));
        let cell = match (&partials, d16) {
            (Some(p), d16) => cell.prepare_backward_split(self.gpu, shape, &views, p, d16),
            (None, Some(d16)) => cell.prepare_backward_half(self.gpu, shape, &views, d16),
            (None, None) => cell.prepare_backward(self.gpu, shape, &views),
        };
        (product, cell)
    }

    /// Time steps of several layers, `(layer, t)` one each, that depend on nothing of one
    /// another (a wavefront's): grouped ([`StepBuilder::grouped`]), one launch for their
    /// recurrent products and one for their cells; otherwise each layer's product (its split
    /// sums in the layer's own scratch slot), then their cells.
    fn steps_together(&self, members: &[(usize, usize)], backward: bool) -> Vec<Result<Dispatch>> {
        if let Some(ops) = self.grouped_steps(members, backward) {
            return ops;
        }
        self.steps_apart(members, backward)
    }

    /// [`StepBuilder::steps_together`] one launch per layer: each layer's product (its
    /// split sums in the layer's own scratch slot), then their cells.
    fn steps_apart(&self, members: &[(usize, usize)], backward: bool) -> Vec<Result<Dispatch>> {
        let mut ops = Vec::new();
        let mut cells = Vec::new();
        for &(l, t) in members {
            let (product, cell) = if backward {
                self.step_backward(l, t, l)
            } else {
                self.step_forward(l, t, l)
            };
            ops.extend(product);
            cells.push(cell);
        }
        ops.extend(cells);
        ops
    }

    /// [`StepBuilder::steps_together`] as two launches, where the steps are grouped, there
    /// are several, each has a recurrent product (backward, the last time step has none)
    /// and the kernel chosen for the products has a grouped form; else `None`. In a mixed
    /// step the f16 casts the products' operands still need come first (the recurrent
    /// weights' copy, once a step; the previous cells wrote the rest in f16).
    fn grouped_steps(
        &self,
        members: &[(usize, usize)],
        backward: bool,
    ) -> Option<Vec<Result<Dispatch>>> {
        if !self.grouped || members.len() < 2 || members.len() > GROUPS {
            return None;
        }
        let batch = self.batch;
        let mut products = Vec::new();
        let mut shapes = Vec::new();
        let (mut forward, mut backward_cells) = (Vec::new(), Vec::new());
        for &(l, t) in members {
            let h = self.cfg.hidden[l];
            shapes.push(CellShape { batch, hidden: h });
            if backward {
                let (product, cell) = self.backward_views(l, t);
                let [a, b, c] = product?;
                products.push((nt(batch, 4 * h, h), a, b, c));
                backward_cells.push(cell);
            } else {
                let ([a, b, c], cell) = self.forward_views(l, t);
                products.push((nn(batch, h, 4 * h), a, b, c));
                forward.push(cell);
            }
        }
        let (mut ops, grouped) = match &self.half {
            None => (
                Vec::new(),
                self.k
                    .matmul
                    .prepare_group_deferring_sum(self.gpu, &products, 0),
            ),
            Some(half) => self.half_group(half, &products)?,
        };
        let (product, partials) = match grouped {
            Ok(Some(grouped)) => grouped,
            // Declined (the members' kernels differ, or some split k and others do not):
            // one launch per layer, after the casts already made.
            Ok(None) => {
                ops.extend(self.steps_apart(members, backward));
                return Some(ops);
            }
            Err(e) => {
                ops.push(Err(e));
                return Some(ops);
            }
        };
        let partial = |g: usize| partials.as_ref().map(|p| &p[g]);
        let cells = &self.k.lstm_cell;
        // Where the cells write their outputs' f16 copies (mixed): h forward, d(pre)
        // backward.
        let outputs: Vec<View> = if backward {
            backward_cells.iter().map(|v| v.dpre).collect()
        } else {
            forward.iter().map(|v| v.h).collect()
        };
        let shadows: Vec<Option<wgpu::Buffer>> =
            outputs.iter().map(|&v| self.cell_half_output(v)).collect();
        let half_out = |g: usize| {
            shadows[g]
                .as_ref()
                .map(|b| HalfView::at(b, outputs[g].offset, outputs[g].len))
        };
        let cell = if backward {
            let members: Vec<_> = (shapes.iter().zip(backward_cells).enumerate())
                .map(|(g, (&shape, v))| (shape, v, partial(g), half_out(g)))
                .collect();
            cells.prepare_backward_group(self.gpu, &members)
        } else {
            let members: Vec<_> = (shapes.iter().zip(forward).enumerate())
                .map(|(g, (&shape, v))| (shape, v, partial(g), half_out(g)))
                .collect();
            cells.prepare_forward_group(self.gpu, self.cfg.forget_bias, &members)
        };
        ops.extend([Ok(product), cell]);
        Some(ops)
    }

    /// The grouped launch of a mixed step's recurrent products `products` (f32 views whose
    /// f16 shadows the kernels read), after the casts their operands still need; `None`
    /// where the f16 kernel chosen for them has no grouped form (nothing cast then).
    #[allow(clippy::type_complexity)]
    fn half_group(
        &self,
        half: &HalfCopies,
        products: &[(MatmulShape, View, View, View)],
    ) -> Option<(
        Vec<Result<Dispatch>>,
        Result<Option<(Dispatch, Option<Vec<SplitPartials>>)>>,
    )> {
        if !products
            .iter()
            .all(|p| half.kernels.choice(p.0).has_group_form())
        {
            return None;
        }
        let mut ops = Vec::new();
        let mut shadows = Vec::new();
        for &(shape, a, b, _) in products {
            let ([ha, hb], casts) = self.half_operands(half, shape, a, b);
            ops.extend(casts);
            shadows.push((ha, hb));
        }
        let members: Vec<_> = products
            .iter()
            .zip(&shadows)
            .map(|(&(shape, a, b, c), (ha, hb))| {
                (
                    shape,
                    HalfView::at(ha, a.offset, a.len),
                    HalfView::at(hb, b.offset, b.len),
                    c,
                )
            })
            .collect();
        let grouped =
            half.kernels
                .product_group_deferring_sum(self.gpu, &members, (&self.k.matmul, 0));
        Some((ops, grouped))
    }

    /// Layer `l`'s weight gradients over all time steps at once: `x^T @ dz`, `h^T @ dz`
    /// and the bias's column sums.
    fn weight_gradients(&self, l: usize, grads: &GradBuffers) -> Vec<Result<Dispatch>> {
        let n = self.n;
        let (h, inp) = (self.cfg.hidden[l], self.cfg.layer_input(l));
        let lb = &self.layers[l];
        let dz = lb.z.all();
        let gw = &grads.lstm_weight[l];
        let mut ops = self.product(
            tn(inp, n, 4 * h),
            self.layer_input(l),
            dz,
            None,
            View::at(gw, 0, inp * 4 * h),
            false,
        );
        ops.extend(self.product(
            tn(h, n, 4 * h),
            lb.h.at(0, n * h),
            dz,
            None,
            View::at(gw, inp * 4 * h, h * 4 * h),
            false,
        ));
        ops.push(self.k.reduce.prepare_column_sum(
            self.gpu,
            n,
            4 * h,
            dz,
            View::all(&grads.lstm_bias[l]),
            false,
        ));
        ops
    }

    /// d(input) of layer `l` for time steps `[t0, t1)`: `dz @ W_x^T` on their rows, into
    /// the layer below's d(h) (or the embedding output's), through a scratch buffer and
    /// the dropout mask (of those rows of the whole) when one stands between.
    fn input_gradient(
        &mut self,
        l: usize,
        (t0, t1): (usize, usize),
        grads: &GradBuffers,
    ) -> Result<()> {
        let batch = self.batch;
        let (h, inp) = (self.cfg.hidden[l], self.cfg.layer_input(l));
        let rows = (t1 - t0) * batch;
        let w = &self.params.lstm_weight[l];
        let w_x = View::at(w, 0, inp * 4 * h);
        let dz = self.layers[l].z.at(t0 * batch * 4 * h, rows * 4 * h);
        let (final_dx, dropped) = if l == 0 {
            (Region::whole(&grads.dx0), self.x0_drop.is_some())
        } else {
            let below = &self.layers[l - 1];
            (
                below.dh.clone().expect("training buffers"),
                below.h_drop.is_some(),
            )
        };
        let scratch = Region::whole(if l == 0 {
            &grads.scratch_dx0
        } else {
            &grads.scratch_dh
        });
        let target = if dropped { &scratch } else { &final_dx };
        let first = t0 * batch * inp;
        let ops = self.product(
            nt(rows, 4 * h, inp),
            dz,
            w_x,
            None,
            target.at(first, rows * inp),
            false,
        );
        for d in ops {
            self.push(d)?;
        }
        if dropped {
            let (from, to) = (
                scratch.at(first, rows * inp),
                final_dx.at(first, rows * inp),
            );
            self.dropout_part(rows * inp, from, to, l as u32, first)?;
        }
        Ok(())
    }

    /// The embedding's gradient rows: one per distinct id of the batch, summed over its
    /// occurrences in the order the host sorted them (`segments`).
    fn embedding_backward(&mut self, grads: &GradBuffers, segments: &wgpu::Buffer) -> Result<()> {
        let rows = self.k.embedding.prepare_grad_rows(
            self.gpu,
            self.cfg.embedding_size,
            self.n,
            View::all(segments),
            View::all(&grads.dx0),
            View::all(&grads.embedding_rows),
        );
        self.push(rows)?;
        if let Some(dense) = &grads.embedding_dense {
            let scatter = self.k.embedding.prepare_scatter_add_rows(
                self.gpu,
                self.cfg.embedding_size,
                self.n,
                View::all(segments),
                View::all(&grads.embedding_rows),
                View::all(dense),
            );
            self.push(scatter)?;
        }
        Ok(())
    }

    /// The global gradient norm (partial sums of squares of every gradient, then the clip
    /// scale), the step guard that skips a step whose loss or norm is not finite, and the
    /// SGD update of every parameter (the embedding's batch rows only). Returns the buffer
    /// holding the norm and clip scale.
    fn clip_and_update(
        &mut self,
        grads: &GradBuffers,
        segments: &wgpu::Buffer,
    ) -> Result<wgpu::Buffer> {
        let (cfg, params) = (self.cfg, self.params);
        let (n, e) = (self.n, cfg.embedding_size);
        let clip = self.gpu.storage("clip", ClipStats::WORDS);
        // (parameter, its gradient, words), dense tensors in the reference's order.
        let mut dense: Vec<(&wgpu::Buffer, &wgpu::Buffer, usize)> = Vec::new();
        for (l, &h) in cfg.hidden.iter().enumerate() {
            let weight_words = (cfg.layer_input(l) + h) * 4 * h;
            dense.push((&params.lstm_weight[l], &grads.lstm_weight[l], weight_words));
            dense.push((&params.lstm_bias[l], &grads.lstm_bias[l], 4 * h));
        }
        let softmax_words = cfg.top_hidden() * cfg.vocab_size;
        if let (Some(p), Some(g)) = (&params.softmax_w, &grads.softmax_w) {
            dense.push((p, g, softmax_words));
        }
        dense.push((&params.softmax_b, &grads.softmax_b, cfg.vocab_size));
        // Tied: the embedding is a dense tensor like the others (its gradient has both
        // uses); untied: only its batch rows have a gradient.
        let tied = grads.embedding_dense.as_ref();
        if let Some(g) = tied {
            dense.push((&params.embedding, g, cfg.vocab_size * e));
        }
        let sparse_slots = if tied.is_some() {
            0
        } else {
            Reduce::slots(n * e)
        };
        let slots: usize = dense.iter().map(|x| Reduce::slots(x.2)).sum::<usize>() + sparse_slots;
        let partials = self.gpu.storage("norm partials", slots);
        let mut slot = 0;
        for &(_, g, len) in &dense {
            let (dispatch, used) = self.k.reduce.prepare_sum_squares(
                self.gpu,
                View::at(g, 0, len),
                View::all(&partials),
                slot,
            )?;
            self.ops.push(Op::Dispatch(dispatch));
            slot += used;
        }
        if tied.is_none() {
            let (dispatch, used) = self.k.reduce.prepare_sum_squares_rows(
                self.gpu,
                e,
                n,
                View::all(segments),
                View::all(&grads.embedding_rows),
                View::all(&partials),
                slot,
            )?;
            self.ops.push(Op::Dispatch(dispatch));
            slot += used;
        }
        let scale = self.k.reduce.prepare_clip_scale(
            self.gpu,
            View::all(&partials),
            slot,
            cfg.max_grad_norm,
            View::all(&clip),
        );
        self.push(scale)?;
        if let Some(block) = &self.loss_scale {
            let update = self.k.loss_scale.update(
                self.gpu,
                block,
                View::all(self.step_loss.as_ref().expect("training buffers")),
                View::all(&clip),
                cfg.max_grad_norm,
            );
            self.push(update)?;
        }
        let guard = self.k.reduce.prepare_step_guard(
            self.gpu,
            View::all(self.step_loss.as_ref().expect("training buffers")),
            View::all(&self.loss_acc),
            View::all(&clip),
            View::all(&self.hyper),
        );
        self.push(guard)?;
        for &(p, g, len) in &dense {
            let update = self.k.sgd.prepare_dense(
                self.gpu,
                View::at(p, 0, len),
                View::at(g, 0, len),
                View::all(&self.hyper),
                View::all(&clip),
            );
            self.push(update)?;
        }
        if tied.is_none() {
            let sparse = self.k.sgd.prepare_sparse_rows(
                self.gpu,
                e,
                n,
                View::all(&params.embedding),
                View::all(segments),
                View::all(&grads.embedding_rows),
                View::all(&self.hyper),
                View::all(&clip),
            );
            self.push(sparse)?;
        }
        Ok(clip)
    }
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

/// Gradient buffers of a training workspace.
struct GradBuffers {
    lstm_weight: Vec<wgpu::Buffer>,
    lstm_bias: Vec<wgpu::Buffer>,
    /// `None` when the weights are tied.
    softmax_w: Option<wgpu::Buffer>,
    softmax_b: wgpu::Buffer,
    /// Tied weights: the embedding's whole `[vocab, e]` gradient (both uses).
    embedding_dense: Option<wgpu::Buffer>,
    /// d(embedding output) `[n, e]` and the gradient rows of the batch's unique ids.
    dx0: wgpu::Buffer,
    embedding_rows: wgpu::Buffer,
    /// Gradients before a dropout mask is applied.
    scratch_dh: wgpu::Buffer,
    scratch_dx0: wgpu::Buffer,
}

impl GradBuffers {
    fn new(gpu: &Gpu, cfg: &Config, n: usize) -> GradBuffers {
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
