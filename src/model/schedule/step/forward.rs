//! The forward pass: the embedding lookup, each layer's input projection and time steps,
//! dropout on the layers' outputs, then the logits, softmax and cross-entropy.

use anyhow::Result;

use super::super::{nn, nt};
use super::StepBuilder;
use crate::gpu::lstm_cell::{CellForwardViews, CellShape};
use crate::gpu::lstm_step::{Recurrence, StepForwardViews};
use crate::gpu::matmul_f16::HalfView;
use crate::gpu::{Dispatch, View};

impl StepBuilder<'_> {
    /// Embedding lookup (and its dropout), then every layer.
    pub(super) fn forward(&mut self) -> Result<()> {
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
    pub(super) fn layer_forward(&mut self, l: usize) -> Result<()> {
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

    /// Layer `l`'s input projection for time steps `[t0, t1)`: `z = x @ W_x + b` on their
    /// rows, one matmul.
    pub(super) fn input_projection(
        &self,
        l: usize,
        (t0, t1): (usize, usize),
    ) -> Vec<Result<Dispatch>> {
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
    pub(super) fn forward_views(
        &self,
        l: usize,
        t: usize,
    ) -> ([View<'_>; 3], CellForwardViews<'_>) {
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
    pub(super) fn step_forward(
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
            let step =
                self.fused()
                    .prepare_forward(self.gpu, (batch, h), self.cfg.forget_bias, &views);
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
    pub(super) fn output_dropout(&mut self, l: usize, (t0, t1): (usize, usize)) -> Result<()> {
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
    pub(super) fn head_and_loss(&mut self) -> Result<()> {
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
}
