//! A whole training step on the CPU, composed only of the kernel twins of this module and
//! in the order the GPU runs them, so that it is a faithful reference for the GPU step and
//! (in f64) can itself be checked against finite differences.
//!
//! Semantics are those of `design.md` §1. The schedule:
//!
//! - A batch `x`, `y` arrives as `[batch, num_steps]` row-major ids (TensorFlow's reader).
//!   Activations are **time-major**: row `r = t * batch + b`.
//! - Forward: gather the embeddings of all `T * B` ids into `X_0`. Per layer `l`, one matmul
//!   projects the input of every time step at once, `Z = X_l @ W_x + bias`; then per time
//!   step `Z_t += h_{t-1} @ W_h` (matmul with accumulate) and `lstm_cell_forward`. The
//!   hidden and cell states live in `[T + 1, B, H]` buffers whose slot 0 is the incoming
//!   state, so `h_{t-1}` for every `t` is the contiguous slots `0..T`. The top layer's output
//!   goes through the softmax projection and `softmax_xent_forward`;
//!   `loss = sum(row losses) / batch`.
//! - Backward: `softmax_xent_backward_columns` (the logits' gradient in place with scale
//!   `1 / batch`, and its column sums: the softmax bias gradient), then the softmax weight
//!   and input gradients. Per layer from the top, time steps run backwards:
//!   `dh_t = dH_t + dZ_{t+1} @ W_h^T` (matmul with accumulate) and `lstm_cell_backward`,
//!   with `dc = 0` at the last step (truncated BPTT: nothing flows into the incoming state).
//!   Then one matmul each for `dW_x = X_l^T @ dZ` and `dW_h = H_{0..T}^T @ dZ`, column sums
//!   for the bias, and `dX_l = dZ @ W_x^T`, the output gradient of the layer below, or for
//!   the first layer the embedding output gradient, reduced to one row per distinct id
//!   (`IdSegments` + `embedding_grad_rows`).
//! - Update: the global norm over every gradient (the embedding as its distinct rows, which
//!   has the same norm as the dense gradient), `clip_scale`, `sgd_dense` on every dense
//!   tensor and `sgd_sparse_rows` on the embedding.
//!
//! Tied weights (`cfg.tie_weights`): the softmax weight is the embedding transposed,
//! `logits = h @ E^T + b`; the head's backward gives the dense `dE = dlogits^T @ h` and
//! `dh = dlogits @ E`, and the lookup's gradient rows are added into it
//! (`embedding_scatter_add_rows`): one parameter, the sum of both uses, updated densely.
//!
//! Dropout (when `keep_prob < 1` and a [`DropoutKey`] is given) applies at `num_layers + 1`
//! sites: site 0 is the embedding output, site `l + 1` the output of layer `l` (the last
//! one feeds the softmax). Site `s` of step `k` draws from stream
//! `k * (num_layers + 1) + s` (u32, wrapping) at the element's index in its time-major
//! `[T * B, width]` tensor; the backward pass reuses the same counters, hence the same mask.

use super::{
    clip_scale, dropout, embedding_gather, embedding_grad_rows, embedding_scatter_add_rows,
    lstm_cell_backward, lstm_cell_forward, matmul, round_f16, sgd_dense, sgd_sparse_rows,
    softmax_xent_backward_columns, softmax_xent_forward, sum_squares, IdSegments, MatmulShape,
    Real,
};
use crate::config::{Config, Precision};
use crate::model::{LstmLayer, Params, State};

/// What a training step reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOutput<T> {
    /// The batch's loss before the update: the sum over time steps of the batch mean of
    /// `-ln p(target)`.
    pub loss: T,
    /// Global norm of the gradient, before clipping.
    pub grad_norm: T,
}

/// The counters that make a training step's dropout masks: a run-wide seed and the step
/// number. The masks are a pure function of them (see the module notes for the streams).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropoutKey {
    pub seed: u32,
    pub step: u32,
}

impl DropoutKey {
    /// Stream of dropout site `site` in a model of `num_layers` layers.
    pub fn stream(self, num_layers: usize, site: usize) -> u32 {
        self.step
            .wrapping_mul(num_layers as u32 + 1)
            .wrapping_add(site as u32)
    }
}

/// The gradient of a batch's loss, laid out as the GPU holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Gradients<T> {
    /// The batch's ids, time-major, grouped by value.
    pub embedding_ids: IdSegments,
    /// `[unique ids, embedding]`: row `u` is the gradient of embedding row
    /// `embedding_ids.unique[u]`; every other row's gradient is zero.
    pub embedding_rows: Vec<T>,
    /// Per layer, in the shapes of [`LstmLayer`].
    pub lstm: Vec<LstmLayer<T>>,
    /// Empty when the weights are tied.
    pub softmax_w: Vec<T>,
    pub softmax_b: Vec<T>,
    /// Tied weights: the whole `[vocab, embedding]` gradient of the embedding, its use as
    /// the softmax weight plus the lookup's rows (which are then not used on their own).
    pub embedding_dense: Option<Vec<T>>,
}

impl<T: Real> Gradients<T> {
    /// Every gradient tensor in the order of [`crate::model::tensor_specs`], the embedding
    /// as its distinct rows.
    pub fn tensors(&self) -> Vec<&[T]> {
        let mut v = vec![self
            .embedding_dense
            .as_deref()
            .unwrap_or(&self.embedding_rows)];
        for layer in &self.lstm {
            v.push(&layer.weight);
            v.push(&layer.bias);
        }
        if self.embedding_dense.is_none() {
            v.push(&self.softmax_w);
        }
        v.push(&self.softmax_b);
        v
    }

    /// The squared global norm.
    pub fn sum_squares(&self) -> T {
        sum_squares(&self.tensors())
    }

    /// The gradient in the layout of [`Params`], the embedding dense (zero outside the
    /// batch's ids): for checks and comparisons, not for training.
    pub fn to_dense(&self, cfg: &Config) -> Params<T> {
        let e = cfg.embedding_size;
        let mut embedding = vec![T::zero(); cfg.vocab_size * e];
        if let Some(dense) = &self.embedding_dense {
            embedding.copy_from_slice(dense);
            return Params {
                embedding,
                lstm: self.lstm.clone(),
                softmax_w: Vec::new(),
                softmax_b: self.softmax_b.clone(),
            };
        }
        for (&id, row) in self
            .embedding_ids
            .unique
            .iter()
            .zip(self.embedding_rows.chunks_exact(e))
        {
            embedding[id as usize * e..(id as usize + 1) * e].copy_from_slice(row);
        }
        Params {
            embedding,
            lstm: self.lstm.clone(),
            softmax_w: self.softmax_w.clone(),
            softmax_b: self.softmax_b.clone(),
        }
    }

    /// `params -= lr * scale * gradient`: dense SGD on every tensor but the embedding,
    /// sparse SGD on the embedding's rows.
    pub fn apply_sgd(&self, cfg: &Config, params: &mut Params<T>, lr: T, scale: T) {
        for (p, g) in params.lstm.iter_mut().zip(&self.lstm) {
            sgd_dense(&mut p.weight, &g.weight, lr, scale);
            sgd_dense(&mut p.bias, &g.bias, lr, scale);
        }
        match &self.embedding_dense {
            Some(dense) => sgd_dense(&mut params.embedding, dense, lr, scale),
            None => {
                sgd_dense(&mut params.softmax_w, &self.softmax_w, lr, scale);
                sgd_sparse_rows(
                    cfg.embedding_size,
                    &mut params.embedding,
                    &self.embedding_ids.unique,
                    &self.embedding_rows,
                    lr,
                    scale,
                );
            }
        }
        sgd_dense(&mut params.softmax_b, &self.softmax_b, lr, scale);
    }
}

/// The loss of one batch, with `state` advanced to the end of the batch. Evaluation passes
/// `dropout: None`; with a key it is the loss a training step with that key computes.
pub fn forward_loss<T: Real>(
    cfg: &Config,
    params: &Params<T>,
    state: &mut State<T>,
    x: &[u32],
    y: &[u32],
    dropout: Option<DropoutKey>,
) -> T {
    forward(cfg, params, state, x, y, active_dropout(cfg, dropout)).0
}

/// The loss of one batch and its gradient, with `state` advanced to the end of the batch.
pub fn gradients<T: Real>(
    cfg: &Config,
    params: &Params<T>,
    state: &mut State<T>,
    x: &[u32],
    y: &[u32],
    dropout: Option<DropoutKey>,
) -> (T, Gradients<T>) {
    gradients_scaled(cfg, params, state, x, y, dropout, T::one())
}

/// [`gradients`] of `loss_scale` times the loss: with `--precision mixed` the logits'
/// gradient enters the f16 products multiplied by the loss scale (a power of two), and every
/// gradient comes out that many times the true one (the softmax bias's too, which is scaled
/// to match). In f32 the scale is not applied.
pub fn gradients_scaled<T: Real>(
    cfg: &Config,
    params: &Params<T>,
    state: &mut State<T>,
    x: &[u32],
    y: &[u32],
    dropout: Option<DropoutKey>,
    loss_scale: T,
) -> (T, Gradients<T>) {
    let dropout = active_dropout(cfg, dropout);
    let (loss, tape) = forward(cfg, params, state, x, y, dropout);
    (loss, backward(cfg, params, tape, dropout, loss_scale))
}

/// One training step: forward, backward, global-norm clipping to `cfg.max_grad_norm` and
/// SGD with rate `lr`. `state` ends as the final `c`, `h` of the batch, to be carried into
/// the next one.
pub fn train_step<T: Real>(
    cfg: &Config,
    params: &mut Params<T>,
    state: &mut State<T>,
    x: &[u32],
    y: &[u32],
    lr: T,
    dropout: Option<DropoutKey>,
) -> StepOutput<T> {
    let (loss, grads) = gradients(cfg, params, state, x, y, dropout);
    let sum_sq = grads.sum_squares();
    let scale = clip_scale(sum_sq, T::from_f64(cfg.max_grad_norm as f64));
    grads.apply_sgd(cfg, params, lr, scale);
    StepOutput {
        loss,
        grad_norm: sum_sq.sqrt(),
    }
}

/// The dynamic loss scale of a mixed training step: the CPU twin of the block that
/// `shaders/loss_scale.wgsl` keeps (`gpu::loss_scale::LossScale`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossScale {
    pub scale: f32,
    pub clean: u32,
    pub overflows: u32,
    pub growth_interval: u32,
}

impl LossScale {
    /// The scale is not halved below this; an overflow there is a skipped step like a NaN.
    pub const MIN: f32 = 1.0 / 1024.0;
    /// Nor doubled above this.
    pub const MAX: f32 = 16_777_216.0;

    /// `loss_scale_update` after a step of loss `loss` whose scaled gradients have the
    /// squared norm `sum_sq`: `Some((true squared norm, multiplier of the gradients in the
    /// SGD update))`, or `None` when the step does not update (an f16 overflow backs S off;
    /// a non-finite loss or an overflow at [`LossScale::MIN`] leaves it to the step guard).
    pub fn update<T: Real>(&mut self, loss: T, sum_sq: T, max_norm: T) -> Option<(T, T)> {
        let loss_ok = loss.to_f64().is_finite();
        if !sum_sq.to_f64().is_finite() {
            if loss_ok && self.scale > Self::MIN {
                self.scale *= 0.5;
                self.clean = 0;
                self.overflows += 1;
            }
            return None;
        }
        let s = T::from_f64(self.scale as f64);
        let true_sum_sq = sum_sq / (s * s);
        let norm = true_sum_sq.sqrt();
        let clip = if norm > max_norm {
            max_norm / norm
        } else {
            T::one()
        };
        if loss_ok {
            self.clean += 1;
            if self.clean >= self.growth_interval {
                self.scale = (self.scale * 2.0).min(Self::MAX);
                self.clean = 0;
            }
        }
        loss_ok.then_some((true_sum_sq, clip / s))
    }
}

/// A training step of `--precision mixed` with dynamic loss scaling: the gradients of
/// `ls.scale` times the loss, the scale updated, and the parameters updated unless the
/// step overflowed (then `grad_norm` is infinite and nothing changes but the scale).
#[allow(clippy::too_many_arguments)]
pub fn train_step_scaled<T: Real>(
    cfg: &Config,
    params: &mut Params<T>,
    state: &mut State<T>,
    x: &[u32],
    y: &[u32],
    lr: T,
    dropout: Option<DropoutKey>,
    ls: &mut LossScale,
) -> StepOutput<T> {
    let s = T::from_f64(ls.scale as f64);
    let (loss, grads) = gradients_scaled(cfg, params, state, x, y, dropout, s);
    let sum_sq = grads.sum_squares();
    match ls.update(loss, sum_sq, T::from_f64(cfg.max_grad_norm as f64)) {
        Some((true_sum_sq, multiplier)) => {
            grads.apply_sgd(cfg, params, lr, multiplier);
            StepOutput {
                loss,
                grad_norm: true_sum_sq.sqrt(),
            }
        }
        None => StepOutput {
            loss,
            grad_norm: T::from_f64(f64::INFINITY),
        },
    }
}

/// What the forward pass keeps for the backward pass.
struct Tape<T> {
    /// The batch's input ids, time-major.
    ids: Vec<u32>,
    /// The target ids, time-major.
    targets: Vec<u32>,
    /// `num_layers + 1` entries, each `[T * B, width]` after its dropout site: the input of
    /// every layer, then the softmax input.
    inputs: Vec<Vec<T>>,
    layers: Vec<LayerTape<T>>,
    logits: Vec<T>,
    /// Log-sum-exp of each logits row.
    lse: Vec<T>,
}

/// One layer's activations.
struct LayerTape<T> {
    /// Gate activations `[T, B, 4H]`.
    act: Vec<T>,
    /// Cell states `[T + 1, B, H]`; slot 0 is the incoming state.
    c: Vec<T>,
    /// Hidden states `[T + 1, B, H]`; slot 0 is the incoming state.
    h: Vec<T>,
}

/// The key to use: none when dropout is off in the configuration.
fn active_dropout(cfg: &Config, key: Option<DropoutKey>) -> Option<DropoutKey> {
    key.filter(|_| cfg.keep_prob < 1.0)
}

/// `x` through dropout site `site`, or unchanged without dropout.
fn dropout_site<T: Real>(cfg: &Config, key: Option<DropoutKey>, site: usize, x: Vec<T>) -> Vec<T> {
    match key {
        None => x,
        Some(key) => {
            let mut y = vec![T::zero(); x.len()];
            let stream = key.stream(cfg.hidden.len(), site);
            dropout(&x, cfg.keep_prob, key.seed, stream, &mut y);
            y
        }
    }
}

/// The shape of `[m, k] @ [k, n]`, neither operand transposed.
fn plain(m: usize, k: usize, n: usize) -> MatmulShape {
    MatmulShape {
        m,
        k,
        n,
        trans_a: false,
        trans_b: false,
    }
}

/// Column sums of a `[rows, cols]` matrix, as the matmul `ones[1, rows] @ x`.
fn column_sums<T: Real>(rows: usize, cols: usize, x: &[T]) -> Vec<T> {
    let ones = vec![T::one(); rows];
    let mut sums = vec![T::zero(); cols];
    matmul(plain(1, rows, cols), &ones, x, None, &mut sums, false);
    sums
}

/// `[batch, steps]` row-major to time-major `[steps, batch]`.
/// One of the step's products: [`matmul`], with `--precision mixed`'s operands rounded to
/// f16 first (the GPU casts them; products and sums stay in `T`). Reductions such as
/// [`column_sums`] are not products and never round.
fn product<T: Real>(
    cfg: &Config,
    s: MatmulShape,
    a: &[T],
    b: &[T],
    bias: Option<&[T]>,
    c: &mut [T],
    accumulate: bool,
) {
    match cfg.precision {
        Precision::F32 => matmul(s, a, b, bias, c, accumulate),
        Precision::Mixed => {
            let (a, b) = (to_f16(&a[..s.m * s.k]), to_f16(&b[..s.k * s.n]));
            matmul(s, &a, &b, bias, c, accumulate)
        }
    }
}

/// Each value rounded to the nearest f16 (as `T`).
fn to_f16<T: Real>(x: &[T]) -> Vec<T> {
    x.iter()
        .map(|&v| T::from_f64(round_f16(v.to_f64() as f32) as f64))
        .collect()
}

fn time_major(ids: &[u32], batch: usize, steps: usize) -> Vec<u32> {
    (0..steps * batch)
        .map(|r| ids[(r % batch) * steps + r / batch])
        .collect()
}

fn check_batch<T: Real>(cfg: &Config, params: &Params<T>, state: &State<T>, x: &[u32], y: &[u32]) {
    let tokens = cfg.batch_size * cfg.num_steps;
    assert!(
        x.len() == tokens && y.len() == tokens,
        "batch of {} inputs and {} targets, expected batch_size * num_steps = {tokens}",
        x.len(),
        y.len()
    );
    if let Some(&id) = x.iter().chain(y).find(|&&id| id as usize >= cfg.vocab_size) {
        panic!("id {id} outside the vocabulary of {}", cfg.vocab_size);
    }
    assert_eq!(
        params.lstm.len(),
        cfg.hidden.len(),
        "layers of the parameters"
    );
    for (l, &h) in cfg.hidden.iter().enumerate() {
        let want = cfg.batch_size * h;
        assert!(
            state.c[l].len() == want && state.h[l].len() == want,
            "state of layer {l} is not [batch_size, {h}]"
        );
    }
}

fn forward<T: Real>(
    cfg: &Config,
    params: &Params<T>,
    state: &mut State<T>,
    x: &[u32],
    y: &[u32],
    key: Option<DropoutKey>,
) -> (T, Tape<T>) {
    check_batch(cfg, params, state, x, y);
    let (batch, steps) = (cfg.batch_size, cfg.num_steps);
    let rows = batch * steps;
    let ids = time_major(x, batch, steps);
    let targets = time_major(y, batch, steps);

    let e = cfg.embedding_size;
    let mut embedded = vec![T::zero(); rows * e];
    embedding_gather(e, &ids, &params.embedding, &mut embedded);
    let mut inputs = vec![dropout_site(cfg, key, 0, embedded)];

    let forget_bias = T::from_f64(cfg.forget_bias as f64);
    let mut layers = Vec::with_capacity(cfg.hidden.len());
    for (l, (&hidden, layer)) in cfg.hidden.iter().zip(&params.lstm).enumerate() {
        let width = cfg.layer_input(l);
        let gates = 4 * hidden;
        let slot = batch * hidden;
        let at_gates = |t: usize| t * batch * gates..(t + 1) * batch * gates;
        let at_slot = |t: usize| t * slot..(t + 1) * slot;
        let (w_x, w_h) = layer.weight.split_at(width * gates);

        let mut pre = vec![T::zero(); rows * gates];
        let input = &inputs[l];
        product(
            cfg,
            plain(rows, width, gates),
            input,
            w_x,
            Some(&layer.bias),
            &mut pre,
            false,
        );
        let mut act = vec![T::zero(); rows * gates];
        let mut c = vec![T::zero(); (steps + 1) * slot];
        let mut h = vec![T::zero(); (steps + 1) * slot];
        c[at_slot(0)].copy_from_slice(&state.c[l]);
        h[at_slot(0)].copy_from_slice(&state.h[l]);
        for t in 0..steps {
            let pre_t = &mut pre[at_gates(t)];
            product(
                cfg,
                plain(batch, hidden, gates),
                &h[at_slot(t)],
                w_h,
                None,
                pre_t,
                true,
            );
            let (c_before, c_after) = c.split_at_mut((t + 1) * slot);
            lstm_cell_forward(
                batch,
                hidden,
                pre_t,
                &c_before[at_slot(t)],
                forget_bias,
                &mut act[at_gates(t)],
                &mut c_after[..slot],
                &mut h[at_slot(t + 1)],
            );
        }
        state.c[l].copy_from_slice(&c[at_slot(steps)]);
        state.h[l].copy_from_slice(&h[at_slot(steps)]);
        inputs.push(dropout_site(cfg, key, l + 1, h[slot..].to_vec()));
        layers.push(LayerTape { act, c, h });
    }

    let (vocab, top) = (cfg.vocab_size, cfg.top_hidden());
    let mut logits = vec![T::zero(); rows * vocab];
    let (shape, weight) = if cfg.tie_weights {
        let shape = MatmulShape {
            trans_b: true,
            ..plain(rows, top, vocab)
        };
        (shape, &params.embedding)
    } else {
        (plain(rows, top, vocab), &params.softmax_w)
    };
    product(
        cfg,
        shape,
        &inputs[cfg.hidden.len()],
        weight,
        Some(&params.softmax_b),
        &mut logits,
        false,
    );
    let mut lse = vec![T::zero(); rows];
    let mut row_loss = vec![T::zero(); rows];
    softmax_xent_forward(vocab, &logits, &targets, &mut lse, &mut row_loss);
    let loss = row_loss.iter().fold(T::zero(), |s, &v| s + v) / T::from_f64(batch as f64);
    let tape = Tape {
        ids,
        targets,
        inputs,
        layers,
        logits,
        lse,
    };
    (loss, tape)
}

fn backward<T: Real>(
    cfg: &Config,
    params: &Params<T>,
    tape: Tape<T>,
    key: Option<DropoutKey>,
    loss_scale: T,
) -> Gradients<T> {
    let Tape {
        ids,
        targets,
        inputs,
        layers,
        mut logits,
        lse,
    } = tape;
    let (batch, steps) = (cfg.batch_size, cfg.num_steps);
    let rows = batch * steps;
    let (vocab, top) = (cfg.vocab_size, cfg.top_hidden());
    let num_layers = cfg.hidden.len();

    let inv_batch = T::one() / T::from_f64(batch as f64);
    let mut softmax_b = vec![T::zero(); vocab];
    softmax_xent_backward_columns(
        vocab,
        &mut logits,
        &targets,
        &lse,
        inv_batch,
        &mut softmax_b,
        false,
    );
    if cfg.precision == Precision::Mixed {
        for v in logits.iter_mut().chain(softmax_b.iter_mut()) {
            *v *= loss_scale;
        }
    }
    let d_logits = logits;
    // Untied: dW = h^T @ dlogits, [top, vocab]. Tied: dE = dlogits^T @ h, [vocab, top].
    let mut softmax_w = Vec::new();
    let mut embedding_dense = None;
    if cfg.tie_weights {
        let mut d_embedding = vec![T::zero(); vocab * top];
        product(
            cfg,
            MatmulShape {
                trans_a: true,
                ..plain(vocab, rows, top)
            },
            &d_logits,
            &inputs[num_layers],
            None,
            &mut d_embedding,
            false,
        );
        embedding_dense = Some(d_embedding);
    } else {
        softmax_w = vec![T::zero(); top * vocab];
        product(
            cfg,
            MatmulShape {
                trans_a: true,
                ..plain(top, rows, vocab)
            },
            &inputs[num_layers],
            &d_logits,
            None,
            &mut softmax_w,
            false,
        );
    }
    // Gradient of the input of the softmax; each turn of the loop below turns the gradient
    // of one layer's input into that of the layer beneath.
    let mut d_input = vec![T::zero(); rows * top];
    if cfg.tie_weights {
        product(
            cfg,
            plain(rows, vocab, top),
            &d_logits,
            &params.embedding,
            None,
            &mut d_input,
            false,
        );
    } else {
        product(
            cfg,
            MatmulShape {
                trans_b: true,
                ..plain(rows, vocab, top)
            },
            &d_logits,
            &params.softmax_w,
            None,
            &mut d_input,
            false,
        );
    }

    let mut lstm = Vec::with_capacity(num_layers);
    for l in (0..num_layers).rev() {
        let d_output = dropout_site(cfg, key, l + 1, d_input);
        let (grad, d_below) =
            layer_backward(cfg, l, &params.lstm[l], &layers[l], &inputs[l], d_output);
        lstm.push(grad);
        d_input = d_below;
    }
    lstm.reverse();

    let d_embedded = dropout_site(cfg, key, 0, d_input);
    let e = cfg.embedding_size;
    let embedding_ids = IdSegments::new(&ids);
    let mut embedding_rows = vec![T::zero(); embedding_ids.unique.len() * e];
    embedding_grad_rows(e, &embedding_ids, &d_embedded, &mut embedding_rows);
    if let Some(dense) = &mut embedding_dense {
        embedding_scatter_add_rows(e, &embedding_ids.unique, &embedding_rows, dense);
    }
    Gradients {
        embedding_ids,
        embedding_rows,
        lstm,
        softmax_w,
        softmax_b,
        embedding_dense,
    }
}

/// Back-propagation through layer `l` over all time steps. `d_output` is the gradient of
/// the layer's outputs `[T, B, H]` (it becomes `dh` in place). Returns the parameter
/// gradient and the gradient of the layer's input `[T, B, in]`.
fn layer_backward<T: Real>(
    cfg: &Config,
    l: usize,
    layer: &LstmLayer<T>,
    tape: &LayerTape<T>,
    input: &[T],
    mut d_output: Vec<T>,
) -> (LstmLayer<T>, Vec<T>) {
    let (batch, steps) = (cfg.batch_size, cfg.num_steps);
    let rows = batch * steps;
    let (width, hidden) = (cfg.layer_input(l), cfg.hidden[l]);
    let gates = 4 * hidden;
    let slot = batch * hidden;
    let at_gates = |t: usize| t * batch * gates..(t + 1) * batch * gates;
    let at_slot = |t: usize| t * slot..(t + 1) * slot;
    let (w_x, w_h) = layer.weight.split_at(width * gates);

    let mut d_pre = vec![T::zero(); rows * gates];
    // Truncated BPTT: no gradient arrives from beyond the batch's last step.
    let mut dc = vec![T::zero(); slot];
    let mut dc_prev = vec![T::zero(); slot];
    for t in (0..steps).rev() {
        let dh = &mut d_output[at_slot(t)];
        if t + 1 < steps {
            let recurrent = MatmulShape {
                trans_b: true,
                ..plain(batch, gates, hidden)
            };
            product(cfg, recurrent, &d_pre[at_gates(t + 1)], w_h, None, dh, true);
        }
        lstm_cell_backward(
            batch,
            hidden,
            &tape.act[at_gates(t)],
            &tape.c[at_slot(t)],
            &tape.c[at_slot(t + 1)],
            dh,
            &dc,
            &mut d_pre[at_gates(t)],
            &mut dc_prev,
        );
        std::mem::swap(&mut dc, &mut dc_prev);
    }

    let mut weight = vec![T::zero(); (width + hidden) * gates];
    let (dw_x, dw_h) = weight.split_at_mut(width * gates);
    let over_steps = |m: usize| MatmulShape {
        trans_a: true,
        ..plain(m, rows, gates)
    };
    product(cfg, over_steps(width), input, &d_pre, None, dw_x, false);
    // Hidden-state slots 0..T are h_{t-1} for t = 0..T.
    product(
        cfg,
        over_steps(hidden),
        &tape.h[..rows * hidden],
        &d_pre,
        None,
        dw_h,
        false,
    );
    let bias = column_sums(rows, gates, &d_pre);
    let mut d_input = vec![T::zero(); rows * width];
    product(
        cfg,
        MatmulShape {
            trans_b: true,
            ..plain(rows, gates, width)
        },
        &d_pre,
        w_x,
        None,
        &mut d_input,
        false,
    );
    (LstmLayer { weight, bias }, d_input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn tiny(keep_prob: f32) -> Config {
        Config {
            vocab_size: 20,
            embedding_size: 5,
            hidden: vec![7, 4],
            num_steps: 4,
            batch_size: 3,
            init_scale: 0.5,
            keep_prob,
            forget_bias: 0.5,
            ..Config::default()
        }
    }

    fn random_ids(n: usize, vocab: usize, rng: &mut SplitMix64) -> Vec<u32> {
        (0..n)
            .map(|_| (rng.next_u64() % vocab as u64) as u32)
            .collect()
    }

    fn random_state(cfg: &Config, rng: &mut SplitMix64) -> State<f64> {
        let mut s = State::zeros(cfg, cfg.batch_size);
        for v in s.c.iter_mut().chain(s.h.iter_mut()).flatten() {
            *v = rng.uniform(-0.8, 0.8);
        }
        s
    }

    /// A batch and a starting point for the tiny model.
    fn setup(cfg: &Config, seed: u64) -> (Params<f64>, State<f64>, Vec<u32>, Vec<u32>) {
        let mut rng = SplitMix64::new(seed);
        let n = cfg.batch_size * cfg.num_steps;
        let x = random_ids(n, cfg.vocab_size, &mut rng);
        let y = random_ids(n, cfg.vocab_size, &mut rng);
        let mut params = Params::init(cfg, seed);
        // Non-zero LSTM biases, so that their gradients are not a special case.
        for v in params.lstm.iter_mut().flat_map(|l| l.bias.iter_mut()) {
            *v = rng.uniform(-0.5, 0.5);
        }
        (params, random_state(cfg, &mut rng), x, y)
    }

    /// With dropout, the analytic gradient matches the derivative of the dropped-out loss
    /// along random directions: the mask is the same function of the counters backward.
    #[test]
    fn dropout_gradient_matches_directional_differences() {
        let cfg = tiny(0.7);
        let (params, state, x, y) = setup(&cfg, 11);
        let key = Some(DropoutKey { seed: 5, step: 3 });
        let (_, grads) = gradients(&cfg, &params, &mut state.clone(), &x, &y, key);
        let dense = grads.to_dense(&cfg);
        let mut rng = SplitMix64::new(99);
        for _ in 0..4 {
            let mut direction = Params::<f64>::zeros(&cfg);
            for (_, t) in direction.tensors_mut() {
                t.iter_mut().for_each(|v| *v = rng.uniform(-1.0, 1.0));
            }
            let moved = |sign: f64| {
                let mut p = params.clone();
                for ((_, t), (_, d)) in p.tensors_mut().into_iter().zip(direction.tensors()) {
                    t.iter_mut()
                        .zip(d)
                        .for_each(|(v, &dv)| *v += sign * 1e-5 * dv);
                }
                forward_loss(&cfg, &p, &mut state.clone(), &x, &y, key)
            };
            let numeric = (moved(1.0) - moved(-1.0)) / 2e-5;
            let analytic: f64 = dense
                .tensors()
                .iter()
                .zip(direction.tensors())
                .map(|((_, g), (_, d))| g.iter().zip(d).map(|(a, b)| a * b).sum::<f64>())
                .sum();
            let rel = (numeric - analytic).abs() / analytic.abs().max(1e-8);
            assert!(
                rel < 1e-7,
                "numeric {numeric} analytic {analytic} rel {rel:e}"
            );
        }
    }

    /// The masks depend on the key only: the same key gives the same result, another step
    /// another one, and `keep_prob = 1` ignores the key.
    #[test]
    fn dropout_masks_follow_the_key() {
        let cfg = tiny(0.7);
        let (params, state, x, y) = setup(&cfg, 12);
        let run = |cfg: &Config, key| gradients(cfg, &params, &mut state.clone(), &x, &y, key);
        let key = DropoutKey { seed: 1, step: 0 };
        let (loss, grads) = run(&cfg, Some(key));
        assert_eq!((loss, grads.clone()), run(&cfg, Some(key)));
        let (no_dropout, _) = run(&cfg, None);
        let (next_step, _) = run(&cfg, Some(DropoutKey { step: 1, ..key }));
        assert!(loss != no_dropout && loss != next_step && next_step != no_dropout);
        let off = tiny(1.0);
        assert_eq!(run(&off, Some(key)), run(&off, None));
        // Dropped embedding elements get no gradient: some ids' rows have exact zeros.
        assert!(grads.embedding_rows.contains(&0.0));
        assert!(grads.embedding_rows.iter().filter(|&&v| v != 0.0).count() > 10);
    }

    /// The update is `lr * min(1, max_norm / norm)` times the gradient: the parameters move
    /// by exactly `lr * max_norm` when clipped and by `lr * norm` when not.
    #[test]
    fn train_step_clips_to_the_global_norm() {
        for max_grad_norm in [0.05f32, 1e3] {
            let cfg = Config {
                max_grad_norm,
                ..tiny(1.0)
            };
            let (mut params, mut state, x, y) = setup(&cfg, 13);
            let before = params.clone();
            let (loss, grads) = gradients(&cfg, &params, &mut state.clone(), &x, &y, None);
            let out = train_step(&cfg, &mut params, &mut state, &x, &y, 0.7, None);
            assert_eq!(out.loss, loss);
            let norm = grads.sum_squares().sqrt();
            assert!((out.grad_norm - norm).abs() <= 1e-12 * norm);
            let moved: f64 = params
                .tensors()
                .iter()
                .zip(before.tensors())
                .flat_map(|((_, a), (_, b))| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)))
                .sum::<f64>()
                .sqrt();
            let want = 0.7 * norm.min(max_grad_norm as f64);
            assert!(
                (moved - want).abs() < 1e-9 * want,
                "moved {moved}, want {want}"
            );
            assert!(
                norm > 0.05 && norm < 1e3,
                "norm {norm} does not separate the cases"
            );
        }
    }
}
