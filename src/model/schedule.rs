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

use crate::config::Config;
use crate::gpu::dropout::Dropout;
use crate::gpu::embedding::{pack_segments, segments_words, Embedding};
use crate::gpu::lstm_cell::{CellBackwardViews, CellForwardViews, CellShape, LstmCell};
use crate::gpu::matmul::Matmul;
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
    pub embedding: Embedding,
    pub softmax_xent: SoftmaxXent,
    pub reduce: Reduce,
    pub sgd: Sgd,
    pub dropout: Dropout,
}

impl Kernels {
    pub fn new(gpu: &Gpu) -> Result<Kernels> {
        Ok(Kernels {
            matmul: Matmul::new(gpu)?,
            lstm_cell: LstmCell::new(gpu)?,
            embedding: Embedding::new(gpu)?,
            softmax_xent: SoftmaxXent::new(gpu)?,
            reduce: Reduce::new(gpu)?,
            sgd: Sgd::new(gpu)?,
            dropout: Dropout::new(gpu)?,
        })
    }
}

/// The parameters on the device, one buffer per tensor in the order of [`tensor_specs`].
/// Buffers are reference-counted handles: training and evaluation workspaces share them.
#[derive(Clone)]
pub struct ParamBuffers {
    pub embedding: wgpu::Buffer,
    pub lstm_weight: Vec<wgpu::Buffer>,
    pub lstm_bias: Vec<wgpu::Buffer>,
    pub softmax_w: wgpu::Buffer,
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
            softmax_w: gpu.storage_from("softmax.weight", &p.softmax_w),
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
        gpu.write(&self.softmax_w, 0, &p.softmax_w);
        gpu.write(&self.softmax_b, 0, &p.softmax_b);
    }

    /// Read back to the host.
    pub fn read(&self, gpu: &Gpu, cfg: &Config) -> Result<Params<f32>> {
        let mut p = Params::<f32>::zeros(cfg);
        p.embedding = gpu.read(&self.embedding, 0, p.embedding.len())?;
        for (l, x) in p.lstm.iter_mut().enumerate() {
            x.weight = gpu.read(&self.lstm_weight[l], 0, x.weight.len())?;
            x.bias = gpu.read(&self.lstm_bias[l], 0, x.bias.len())?;
        }
        p.softmax_w = gpu.read(&self.softmax_w, 0, p.softmax_w.len())?;
        p.softmax_b = gpu.read(&self.softmax_b, 0, p.softmax_b.len())?;
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

/// Per-layer activations of one workspace.
struct LayerBuffers {
    /// Pre-activations `[n, 4h]`; reused for their gradient in the backward pass.
    z: wgpu::Buffer,
    /// Saved gate activations `[n, 4h]`.
    act: wgpu::Buffer,
    /// `[steps + 1, batch, h]`, slot 0 = carried in.
    c: wgpu::Buffer,
    h: wgpu::Buffer,
    /// The state carried between batches `[batch, h]`.
    state_c: wgpu::Buffer,
    state_h: wgpu::Buffer,
    /// The layer's output after dropout `[n, h]` (only when dropout is on).
    h_drop: Option<wgpu::Buffer>,
    /// Gradients (training only): of the outputs `[n, h]` and the two ping-pong `dc` buffers.
    dh: Option<wgpu::Buffer>,
    dc: Option<[wgpu::Buffer; 2]>,
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
    layers: Vec<LayerBuffers>,
    /// Steps submitted so far.
    pub steps_run: u64,
}

impl Workspace {
    /// Allocate and prepare a step of `batch` rows and `steps` time steps.
    pub fn new(
        gpu: &Gpu,
        k: &Kernels,
        cfg: &Config,
        params: &ParamBuffers,
        batch: usize,
        steps: usize,
        mode: Mode,
    ) -> Result<Workspace> {
        if batch == 0 || steps == 0 {
            bail!("a step needs at least one row and one time step");
        }
        let n = batch * steps;
        let (v, e, layers_n) = (cfg.vocab_size, cfg.embedding_size, cfg.hidden.len());
        let train = mode == Mode::Train;
        let dropout = train && cfg.keep_prob < 1.0;
        gpu.check_buffer_fits("the logits of one batch", (n * v) as u64 * 4)?;

        let ids = gpu.storage("ids", n);
        let targets = gpu.storage("targets", n);
        let hyper = gpu.storage_from("hyper", &[Hyper::default()]);
        // Training adds each step's loss to its own block first; `step_guard` moves it into
        // the accumulator unless the step is skipped (see gpu::reduce).
        let loss_acc = if train {
            gpu.storage("loss accumulator", TrainAccumulator::WORDS)
        } else {
            gpu.storage("loss accumulator", LossAccumulator::WORDS)
        };
        let step_loss = train.then(|| gpu.storage("step loss", LossAccumulator::WORDS));
        let zeros = gpu.storage(
            "zeros",
            batch * cfg.hidden.iter().copied().max().unwrap_or(1),
        );
        let x0 = gpu.storage("embedding output", n * e);
        let x0_drop = dropout.then(|| gpu.storage("embedding output after dropout", n * e));
        let logits = gpu.storage("logits", n * v);
        let lse = gpu.storage("log-sum-exp", n);
        let loss_rows = gpu.storage("loss rows", n);

        let mut layers = Vec::new();
        for (l, &h) in cfg.hidden.iter().enumerate() {
            layers.push(LayerBuffers {
                z: gpu.storage(&format!("lstm.{l} pre-activations"), n * 4 * h),
                act: gpu.storage(&format!("lstm.{l} gates"), n * 4 * h),
                c: gpu.storage(&format!("lstm.{l} c"), (steps + 1) * batch * h),
                h: gpu.storage(&format!("lstm.{l} h"), (steps + 1) * batch * h),
                state_c: gpu.storage(&format!("lstm.{l} carried c"), batch * h),
                state_h: gpu.storage(&format!("lstm.{l} carried h"), batch * h),
                h_drop: dropout
                    .then(|| gpu.storage(&format!("lstm.{l} output after dropout"), n * h)),
                dh: train.then(|| gpu.storage(&format!("lstm.{l} d(h)"), n * h)),
                dc: train.then(|| {
                    [
                        gpu.storage(&format!("lstm.{l} d(c) a"), batch * h),
                        gpu.storage(&format!("lstm.{l} d(c) b"), batch * h),
                    ]
                }),
            });
        }

        let mut ops = Vec::new();
        let all = View::all;
        let sites = (layers_n + 1) as u32;

        // Carried state into slot 0.
        for (l, lb) in layers.iter().enumerate() {
            let words = batch * cfg.hidden[l];
            ops.push(Op::Copy {
                src: lb.state_c.clone(),
                src_offset: 0,
                dst: lb.c.clone(),
                dst_offset: 0,
                words,
            });
            ops.push(Op::Copy {
                src: lb.state_h.clone(),
                src_offset: 0,
                dst: lb.h.clone(),
                dst_offset: 0,
                words,
            });
        }

        // ---- forward ----
        let d = |ops: &mut Vec<Op>, r: Result<Dispatch>| -> Result<()> {
            ops.push(Op::Dispatch(r?));
            Ok(())
        };
        d(
            &mut ops,
            k.embedding
                .prepare_gather(gpu, n, e, all(&ids), all(&params.embedding), all(&x0)),
        )?;
        if let Some(xd) = &x0_drop {
            d(
                &mut ops,
                k.dropout.prepare(
                    gpu,
                    n * e,
                    all(&x0),
                    all(xd),
                    cfg.keep_prob,
                    0,
                    sites,
                    all(&hyper),
                ),
            )?;
        }
        for l in 0..layers_n {
            let (h, inp) = (cfg.hidden[l], cfg.layer_input(l));
            let input: View = if l == 0 {
                all(x0_drop.as_ref().unwrap_or(&x0))
            } else {
                let below = &layers[l - 1];
                match &below.h_drop {
                    Some(b) => all(b),
                    None => View::at(&below.h, batch * cfg.hidden[l - 1], n * cfg.hidden[l - 1]),
                }
            };
            let lb = &layers[l];
            let w = &params.lstm_weight[l];
            let w_x = View::at(w, 0, inp * 4 * h);
            let w_h = View::at(w, inp * 4 * h, h * 4 * h);
            let proj = MatmulShape {
                m: n,
                k: inp,
                n: 4 * h,
                trans_a: false,
                trans_b: false,
            };
            d(
                &mut ops,
                k.matmul.prepare(
                    gpu,
                    proj,
                    input,
                    w_x,
                    Some(all(&params.lstm_bias[l])),
                    all(&lb.z),
                    false,
                ),
            )?;
            for t in 0..steps {
                let rec = MatmulShape {
                    m: batch,
                    k: h,
                    n: 4 * h,
                    trans_a: false,
                    trans_b: false,
                };
                let h_prev = View::at(&lb.h, t * batch * h, batch * h);
                let z_t = View::at(&lb.z, t * batch * 4 * h, batch * 4 * h);
                d(
                    &mut ops,
                    k.matmul.prepare(gpu, rec, h_prev, w_h, None, z_t, true),
                )?;
                let views = CellForwardViews {
                    pre: z_t,
                    c_prev: View::at(&lb.c, t * batch * h, batch * h),
                    act: View::at(&lb.act, t * batch * 4 * h, batch * 4 * h),
                    c: View::at(&lb.c, (t + 1) * batch * h, batch * h),
                    h: View::at(&lb.h, (t + 1) * batch * h, batch * h),
                };
                d(
                    &mut ops,
                    k.lstm_cell.prepare_forward(
                        gpu,
                        CellShape { batch, hidden: h },
                        cfg.forget_bias,
                        &views,
                    ),
                )?;
            }
            if let Some(hd) = &lb.h_drop {
                let out = View::at(&lb.h, batch * h, n * h);
                d(
                    &mut ops,
                    k.dropout.prepare(
                        gpu,
                        n * h,
                        out,
                        all(hd),
                        cfg.keep_prob,
                        l as u32 + 1,
                        sites,
                        all(&hyper),
                    ),
                )?;
            }
        }
        let top = &layers[layers_n - 1];
        let ht = cfg.top_hidden();
        let h_top: View = match &top.h_drop {
            Some(b) => all(b),
            None => View::at(&top.h, batch * ht, n * ht),
        };
        let logit_shape = MatmulShape {
            m: n,
            k: ht,
            n: v,
            trans_a: false,
            trans_b: false,
        };
        d(
            &mut ops,
            k.matmul.prepare(
                gpu,
                logit_shape,
                h_top,
                all(&params.softmax_w),
                Some(all(&params.softmax_b)),
                all(&logits),
                false,
            ),
        )?;
        d(
            &mut ops,
            k.softmax_xent.prepare_forward(
                gpu,
                n,
                v,
                all(&logits),
                all(&targets),
                all(&lse),
                all(&loss_rows),
            ),
        )?;
        d(
            &mut ops,
            k.softmax_xent.prepare_loss_accumulate(
                gpu,
                n,
                all(&loss_rows),
                all(step_loss.as_ref().unwrap_or(&loss_acc)),
                1.0 / batch as f32,
            ),
        )?;

        // Carried state out of slot `steps` (forward results; backward does not change them).
        for (l, lb) in layers.iter().enumerate() {
            let words = batch * cfg.hidden[l];
            ops.push(Op::Copy {
                src: lb.c.clone(),
                src_offset: steps * words,
                dst: lb.state_c.clone(),
                dst_offset: 0,
                words,
            });
            ops.push(Op::Copy {
                src: lb.h.clone(),
                src_offset: steps * words,
                dst: lb.state_h.clone(),
                dst_offset: 0,
                words,
            });
        }

        let mut segments = None;
        let mut clip = None;
        if train {
            // A row of the carried state that is not finite starts over from zero.
            for (l, lb) in layers.iter().enumerate() {
                d(
                    &mut ops,
                    k.reduce.prepare_state_guard(
                        gpu,
                        batch,
                        cfg.hidden[l],
                        &lb.state_c,
                        &lb.state_h,
                    ),
                )?;
            }
            // ---- backward ----
            let grads = GradBuffers::new(gpu, cfg, n);
            let seg = gpu.storage("id segments", segments_words(n));
            d(
                &mut ops,
                k.softmax_xent.prepare_backward(
                    gpu,
                    n,
                    v,
                    all(&logits),
                    all(&targets),
                    all(&lse),
                    1.0 / batch as f32,
                ),
            )?;
            let dlogits = all(&logits);
            let tn = |m, kk, nn| MatmulShape {
                m,
                k: kk,
                n: nn,
                trans_a: true,
                trans_b: false,
            };
            let nt = |m, kk, nn| MatmulShape {
                m,
                k: kk,
                n: nn,
                trans_a: false,
                trans_b: true,
            };
            d(
                &mut ops,
                k.matmul.prepare(
                    gpu,
                    tn(ht, n, v),
                    h_top,
                    dlogits,
                    None,
                    all(&grads.softmax_w),
                    false,
                ),
            )?;
            d(
                &mut ops,
                k.reduce
                    .prepare_column_sum(gpu, n, v, dlogits, all(&grads.softmax_b), false),
            )?;
            // d(top output): through dropout when on.
            let top_dh = top.dh.as_ref().expect("training buffers");
            let dh_top_target = if top.h_drop.is_some() {
                all(&grads.scratch_dh)
            } else {
                all(top_dh)
            };
            d(
                &mut ops,
                k.matmul.prepare(
                    gpu,
                    nt(n, v, ht),
                    dlogits,
                    all(&params.softmax_w),
                    None,
                    dh_top_target,
                    false,
                ),
            )?;
            if top.h_drop.is_some() {
                d(
                    &mut ops,
                    k.dropout.prepare(
                        gpu,
                        n * ht,
                        all(&grads.scratch_dh),
                        all(top_dh),
                        cfg.keep_prob,
                        layers_n as u32,
                        sites,
                        all(&hyper),
                    ),
                )?;
            }
            for l in (0..layers_n).rev() {
                let (h, inp) = (cfg.hidden[l], cfg.layer_input(l));
                let lb = &layers[l];
                let dh = lb.dh.as_ref().expect("training buffers");
                let dc = lb.dc.as_ref().expect("training buffers");
                let w = &params.lstm_weight[l];
                let w_x = View::at(w, 0, inp * 4 * h);
                let w_h = View::at(w, inp * 4 * h, h * 4 * h);
                for t in (0..steps).rev() {
                    let dh_t = View::at(dh, t * batch * h, batch * h);
                    if t + 1 < steps {
                        let dz_next = View::at(&lb.z, (t + 1) * batch * 4 * h, batch * 4 * h);
                        d(
                            &mut ops,
                            k.matmul.prepare(
                                gpu,
                                nt(batch, 4 * h, h),
                                dz_next,
                                w_h,
                                None,
                                dh_t,
                                true,
                            ),
                        )?;
                    }
                    // dc of step t comes in through one ping-pong buffer, dc of t-1 goes out
                    // through the other; the last step starts from zero (truncated BPTT).
                    let dc_in = if t + 1 == steps {
                        View::at(&zeros, 0, batch * h)
                    } else {
                        all(&dc[(t + 1) % 2])
                    };
                    let views = CellBackwardViews {
                        act: View::at(&lb.act, t * batch * 4 * h, batch * 4 * h),
                        c_prev: View::at(&lb.c, t * batch * h, batch * h),
                        c: View::at(&lb.c, (t + 1) * batch * h, batch * h),
                        dh: dh_t,
                        dc: dc_in,
                        dpre: View::at(&lb.z, t * batch * 4 * h, batch * 4 * h),
                        dc_prev: all(&dc[t % 2]),
                    };
                    d(
                        &mut ops,
                        k.lstm_cell
                            .prepare_backward(gpu, CellShape { batch, hidden: h }, &views),
                    )?;
                }
                let dz = all(&lb.z);
                let input: View = if l == 0 {
                    all(x0_drop.as_ref().unwrap_or(&x0))
                } else {
                    let below = &layers[l - 1];
                    match &below.h_drop {
                        Some(b) => all(b),
                        None => {
                            View::at(&below.h, batch * cfg.hidden[l - 1], n * cfg.hidden[l - 1])
                        }
                    }
                };
                let gw = &grads.lstm_weight[l];
                d(
                    &mut ops,
                    k.matmul.prepare(
                        gpu,
                        tn(inp, n, 4 * h),
                        input,
                        dz,
                        None,
                        View::at(gw, 0, inp * 4 * h),
                        false,
                    ),
                )?;
                let h_prev_all = View::at(&lb.h, 0, n * h);
                d(
                    &mut ops,
                    k.matmul.prepare(
                        gpu,
                        tn(h, n, 4 * h),
                        h_prev_all,
                        dz,
                        None,
                        View::at(gw, inp * 4 * h, h * 4 * h),
                        false,
                    ),
                )?;
                d(
                    &mut ops,
                    k.reduce
                        .prepare_column_sum(gpu, n, 4 * h, dz, all(&grads.lstm_bias[l]), false),
                )?;
                // d(input): the layer below's d(h) (through its dropout), or the embedding's.
                let (dx_target, dx_final, site) = if l == 0 {
                    match &x0_drop {
                        Some(_) => (all(&grads.scratch_dx0), Some(all(&grads.dx0)), 0u32),
                        None => (all(&grads.dx0), None, 0),
                    }
                } else {
                    let below = &layers[l - 1];
                    let below_dh = below.dh.as_ref().expect("training buffers");
                    match &below.h_drop {
                        Some(_) => (all(&grads.scratch_dh), Some(all(below_dh)), l as u32),
                        None => (all(below_dh), None, l as u32),
                    }
                };
                d(
                    &mut ops,
                    k.matmul.prepare(
                        gpu,
                        nt(n, 4 * h, inp),
                        dz,
                        w_x,
                        None,
                        dx_target.slice(0, n * inp),
                        false,
                    ),
                )?;
                if let Some(fin) = dx_final {
                    d(
                        &mut ops,
                        k.dropout.prepare(
                            gpu,
                            n * inp,
                            dx_target.slice(0, n * inp),
                            fin.slice(0, n * inp),
                            cfg.keep_prob,
                            site,
                            sites,
                            all(&hyper),
                        ),
                    )?;
                }
            }
            d(
                &mut ops,
                k.embedding.prepare_grad_rows(
                    gpu,
                    e,
                    n,
                    all(&seg),
                    all(&grads.dx0),
                    all(&grads.embedding_rows),
                ),
            )?;

            // ---- global norm, clip, SGD ----
            let clip_buf = gpu.storage("clip", ClipStats::WORDS);
            let mut dense: Vec<(wgpu::Buffer, wgpu::Buffer, usize)> = Vec::new();
            for l in 0..layers_n {
                let h = cfg.hidden[l];
                dense.push((
                    params.lstm_weight[l].clone(),
                    grads.lstm_weight[l].clone(),
                    (cfg.layer_input(l) + h) * 4 * h,
                ));
                dense.push((
                    params.lstm_bias[l].clone(),
                    grads.lstm_bias[l].clone(),
                    4 * h,
                ));
            }
            dense.push((params.softmax_w.clone(), grads.softmax_w.clone(), ht * v));
            dense.push((params.softmax_b.clone(), grads.softmax_b.clone(), v));
            let slots: usize =
                dense.iter().map(|x| Reduce::slots(x.2)).sum::<usize>() + Reduce::slots(n * e);
            let partials = gpu.storage("norm partials", slots);
            let mut slot = 0;
            for (_, g, len) in &dense {
                let (dispatch, used) = k.reduce.prepare_sum_squares(
                    gpu,
                    View::at(g, 0, *len),
                    all(&partials),
                    slot,
                )?;
                ops.push(Op::Dispatch(dispatch));
                slot += used;
            }
            let (dispatch, used) = k.reduce.prepare_sum_squares_rows(
                gpu,
                e,
                n,
                all(&seg),
                all(&grads.embedding_rows),
                all(&partials),
                slot,
            )?;
            ops.push(Op::Dispatch(dispatch));
            slot += used;
            d(
                &mut ops,
                k.reduce.prepare_clip_scale(
                    gpu,
                    all(&partials),
                    slot,
                    cfg.max_grad_norm,
                    all(&clip_buf),
                ),
            )?;
            d(
                &mut ops,
                k.reduce.prepare_step_guard(
                    gpu,
                    all(step_loss.as_ref().expect("training buffers")),
                    all(&loss_acc),
                    all(&clip_buf),
                    all(&hyper),
                ),
            )?;
            for (p, g, len) in &dense {
                d(
                    &mut ops,
                    k.sgd.prepare_dense(
                        gpu,
                        View::at(p, 0, *len),
                        View::at(g, 0, *len),
                        all(&hyper),
                        all(&clip_buf),
                    ),
                )?;
            }
            d(
                &mut ops,
                k.sgd.prepare_sparse_rows(
                    gpu,
                    e,
                    n,
                    all(&params.embedding),
                    all(&seg),
                    all(&grads.embedding_rows),
                    all(&hyper),
                    all(&clip_buf),
                ),
            )?;
            segments = Some(seg);
            clip = Some(clip_buf);
        }

        Ok(Workspace {
            cfg: cfg.clone(),
            batch,
            steps,
            mode,
            ops,
            ids,
            logits,
            lse,
            targets,
            segments,
            hyper,
            loss_acc,
            clip,
            layers,
            steps_run: 0,
        })
    }

    /// Number of compute dispatches per step.
    pub fn dispatches(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| matches!(o, Op::Dispatch(_)))
            .count()
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
    pub fn take_loss(&self, gpu: &Gpu) -> Result<(f64, u64)> {
        let acc = self.take_stats(gpu)?;
        Ok((acc.loss_sum() as f64, acc.batches() as u64))
    }

    /// The whole accumulator since the last call, skipped steps included (always zero in
    /// evaluation), and reset it. This is the only readback of a training loop.
    pub fn take_stats(&self, gpu: &Gpu) -> Result<TrainAccumulator> {
        if self.mode == Mode::Eval {
            let acc = LossAccumulator::read(gpu, View::all(&self.loss_acc))?;
            gpu.write(&self.loss_acc, 0, &[LossAccumulator::default()]);
            return Ok(TrainAccumulator {
                loss_sum_bits: acc.loss_sum.to_bits(),
                batches_bits: acc.batches.to_bits(),
                ..Default::default()
            });
        }
        let words: Vec<u32> = gpu.read(&self.loss_acc, 0, TrainAccumulator::WORDS)?;
        gpu.write(&self.loss_acc, 0, &[0u32; TrainAccumulator::RESET_WORDS]);
        Ok(*bytemuck::from_bytes::<TrainAccumulator>(
            bytemuck::cast_slice(&words),
        ))
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

    pub fn read_state(&self, gpu: &Gpu) -> Result<State<f32>> {
        let mut s = State::zeros(&self.cfg, self.batch);
        for (l, lb) in self.layers.iter().enumerate() {
            s.c[l] = gpu.read(&lb.state_c, 0, s.c[l].len())?;
            s.h[l] = gpu.read(&lb.state_h, 0, s.h[l].len())?;
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
    pub fn read_clip(&self, gpu: &Gpu) -> Result<Option<ClipStats>> {
        self.clip
            .as_ref()
            .map(|c| ClipStats::read(gpu, View::all(c)))
            .transpose()
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
    softmax_w: wgpu::Buffer,
    softmax_b: wgpu::Buffer,
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
            softmax_w: gpu.storage("d softmax.weight", cfg.top_hidden() * cfg.vocab_size),
            softmax_b: gpu.storage("d softmax.bias", cfg.vocab_size),
            dx0: gpu.storage("d embedding output", n * e),
            embedding_rows: gpu.storage("d embedding rows", n * e),
            scratch_dh: gpu.storage("d h before dropout", n * widest),
            scratch_dx0: gpu.storage("d embedding output before dropout", n * e),
        }
    }
}
