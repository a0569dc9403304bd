//! The backward pass: d(logits) and the softmax's gradients, each layer's time steps
//! backward through time, the weight gradients, d(input) through the dropout masks, and
//! the embedding's gradient rows.

use anyhow::{bail, Result};

use super::super::buffers::{GradBuffers, Region};
use super::super::{nn, nt, tn};
use super::StepBuilder;
use crate::gpu::lstm_cell::{CellBackwardViews, CellShape};
use crate::gpu::lstm_step::{Recurrence, StepBackwardViews};
use crate::gpu::matmul_f16::HalfView;
use crate::gpu::{Dispatch, View};

impl StepBuilder<'_> {
    /// A row of the carried state that is not finite starts over from zero.
    pub(super) fn guard_carried_state(&mut self) -> Result<()> {
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
    pub(super) fn head_backward(&mut self, grads: &GradBuffers) -> Result<()> {
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
    pub(super) fn layers_backward(&mut self, grads: &GradBuffers) -> Result<()> {
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
    pub(super) fn layer_backward(&mut self, l: usize, grads: &GradBuffers) -> Result<()> {
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

    /// The operands of time step `t` of layer `l` backward: the recurrent product
    /// `dz_{t+1} @ W_h^T` (A, B, and C, the step's d(h), to which it is added; none at the
    /// last step) and the cell's.
    pub(super) fn backward_views(
        &self,
        l: usize,
        t: usize,
    ) -> (Option<[View<'_>; 3]>, CellBackwardViews<'_>) {
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
    pub(super) fn step_backward(
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
                let step = self.fused().prepare_backward(self.gpu, (batch, h), &views);
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

    /// Layer `l`'s weight gradients over all time steps at once: `x^T @ dz`, `h^T @ dz`
    /// and the bias's column sums.
    pub(super) fn weight_gradients(&self, l: usize, grads: &GradBuffers) -> Vec<Result<Dispatch>> {
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
    pub(super) fn input_gradient(
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
    pub(super) fn embedding_backward(
        &mut self,
        grads: &GradBuffers,
        segments: &wgpu::Buffer,
    ) -> Result<()> {
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
}
