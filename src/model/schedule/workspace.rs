//! A step of one shape, prepared once and run many times: its uploads, its submit, and
//! the readbacks of its loss, clip statistics, loss scale and carried state.

use anyhow::{bail, Result};

use super::step::{self, StepIo};
use super::{record, Kernels, Op, ParamBuffers};
use crate::config::Config;
use crate::gpu::embedding::pack_segments;
use crate::gpu::loss_scale::LossScale;
use crate::gpu::reduce::{ClipStats, TrainAccumulator};
use crate::gpu::sgd::Hyper;
use crate::gpu::softmax_xent::LossAccumulator;
use crate::gpu::{Dispatch, Gpu, View};
use crate::model::State;
use crate::reference::IdSegments;

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
    /// `[n, vocab]` logits of the last step (their gradient after a training step).
    pub logits: wgpu::Buffer,
    /// `[n]` log-sum-exp of each logits row.
    pub lse: wgpu::Buffer,
    io: StepIo,
    /// Steps submitted so far.
    pub steps_run: u64,
}

impl Workspace {
    /// Allocate and prepare a step of `batch` rows and `steps` time steps: the operations of
    /// [`crate::reference::step`], in its order, recorded stage by stage.
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
        let p = step::prepare(gpu, k, cfg, params, (batch, steps), mode, logits)?;
        Ok(Workspace {
            cfg: cfg.clone(),
            batch,
            steps,
            mode,
            ops: p.ops,
            logits: p.logits,
            lse: p.lse,
            io: p.io,
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
        gpu.write(&self.io.ids, 0, &xs);
        gpu.write(&self.io.targets, 0, &ys);
        if let Some(seg) = &self.io.segments {
            gpu.write(seg, 0, &pack_segments(&IdSegments::new(&xs), b * t));
        }
        gpu.write(&self.io.hyper, 0, &[hyper]);
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
            gpu.write(&self.io.loss_acc, 0, &[LossAccumulator::default()]);
        } else {
            gpu.write(&self.io.loss_acc, 0, &[0u32; TrainAccumulator::RESET_WORDS]);
        }
        Ok(acc)
    }

    /// The accumulator as it stands, left as it is: what a progress display reads between
    /// log points (the log points' sums stay exactly what they would be without it).
    pub async fn peek_stats_async(&self, gpu: &Gpu) -> Result<TrainAccumulator> {
        if self.mode == Mode::Eval {
            let acc = LossAccumulator::read_async(gpu, View::all(&self.io.loss_acc)).await?;
            return Ok(TrainAccumulator {
                loss_sum_bits: acc.loss_sum.to_bits(),
                batches_bits: acc.batches.to_bits(),
                ..Default::default()
            });
        }
        let words: Vec<u32> = gpu
            .read_async(&self.io.loss_acc, 0, TrainAccumulator::WORDS)
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
        let lb = &self.io.layers[0];
        gpu.write(&lb.state_c, 0, &[f32::NAN]);
        gpu.write(&lb.state_h, 0, &[f32::NAN]);
    }

    /// Zero the carried state (epoch start).
    pub fn zero_state(&self, gpu: &Gpu) {
        for (l, lb) in self.io.layers.iter().enumerate() {
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
        for (l, lb) in self.io.layers.iter().enumerate() {
            s.c[l] = gpu.read_async(&lb.state_c, 0, s.c[l].len()).await?;
            s.h[l] = gpu.read_async(&lb.state_h, 0, s.h[l].len()).await?;
        }
        Ok(s)
    }

    pub fn write_state(&self, gpu: &Gpu, s: &State<f32>) -> Result<()> {
        for (l, lb) in self.io.layers.iter().enumerate() {
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
        match &self.io.clip {
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
        match &self.io.loss_scale {
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
        if let Some(b) = &self.io.loss_scale {
            gpu.write(b, 0, &[ls]);
        }
        Ok(())
    }
}
