//! The recording of one step: [`prepare`] makes a step's buffers and appends its
//! operations stage by stage, in [`crate::reference::step`]'s order, through a
//! `StepBuilder` whose methods live by stage: the products (and mixed precision's f16
//! copies) in `products`, the forward pass and the loss in `forward`, the backward pass in
//! `backward`, the layers' time steps in a wavefront's order (and grouped) in `wavefront`,
//! the gradient norm, clipping and SGD in `update`.

use anyhow::{bail, Result};

use super::buffers::{GradBuffers, LayerBuffers, Region};
use super::{nn, nt, recurrence_for, wavefront_chunk, Kernels, Mode, Op, ParamBuffers};
use crate::config::{Config, Precision};
use crate::gpu::embedding::segments_words;
use crate::gpu::loss_scale::LossScale;
use crate::gpu::lstm_step::Recurrence;
use crate::gpu::reduce::TrainAccumulator;
use crate::gpu::sgd::Hyper;
use crate::gpu::softmax_xent::LossAccumulator;
use crate::gpu::{Dispatch, Gpu, View};
use crate::reference::MatmulShape;

mod backward;
mod forward;
mod products;
mod update;
mod wavefront;

use products::HalfCopies;

/// A recorded step: its operations, its logits and their log-sum-exp, and the buffers its
/// [`super::Workspace`] keeps.
pub(super) struct Prepared {
    pub(super) ops: Vec<Op>,
    pub(super) logits: wgpu::Buffer,
    pub(super) lse: wgpu::Buffer,
    pub(super) io: StepIo,
}

/// The buffers of a step that the host writes or reads between steps (uploads, readbacks,
/// the carried state).
pub(super) struct StepIo {
    pub(super) ids: wgpu::Buffer,
    pub(super) targets: wgpu::Buffer,
    /// Training: the batch's ids sorted into segments (the embedding's gradient rows).
    pub(super) segments: Option<wgpu::Buffer>,
    pub(super) hyper: wgpu::Buffer,
    pub(super) loss_acc: wgpu::Buffer,
    /// Training: the global norm and clip scale.
    pub(super) clip: Option<wgpu::Buffer>,
    /// The loss-scale block of a mixed training step ([`LossScale`]).
    pub(super) loss_scale: Option<wgpu::Buffer>,
    pub(super) layers: Vec<LayerBuffers>,
}

/// Allocate and record a step of `batch` rows and `steps` time steps (its logits in
/// `logits` where given): the carried state in, the forward pass, the head and loss, the
/// carried state out; in training then the guard of the carried state, the backward pass,
/// the embedding's gradient rows, clipping and the update.
pub(super) fn prepare(
    gpu: &Gpu,
    k: &Kernels,
    cfg: &Config,
    params: &ParamBuffers,
    (batch, steps): (usize, usize),
    mode: Mode,
    logits: Option<&wgpu::Buffer>,
) -> Result<Prepared> {
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
    Ok(Prepared {
        ops: b.ops,
        logits: b.logits,
        lse: b.lse,
        io: StepIo {
            ids: b.ids,
            targets: b.targets,
            segments,
            hyper: b.hyper,
            loss_acc: b.loss_acc,
            clip,
            loss_scale: b.loss_scale,
            layers: b.layers,
        },
    })
}

/// [`prepare`] in stages: the buffers of one step and the operations recorded so
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
            (Some(kernels), true) => Some(HalfCopies::new(kernels, k.lstm_cell.has_half())),
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

    /// The fused recurrence's kernels, which a fused step has (`recurrence_for` chooses the
    /// fused recurrence only where they were built).
    fn fused(&self) -> &'a crate::gpu::lstm_step::LstmStep {
        self.k
            .lstm_step
            .as_ref()
            .expect("a fused step is recorded only where its kernels were built")
    }

    fn push(&mut self, dispatch: Result<Dispatch>) -> Result<()> {
        self.ops.push(Op::Dispatch(dispatch?));
        Ok(())
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
}
