//! The layers' time steps in a wavefront's order (`Recurrence::Wavefront`), and the pairs
//! of time steps it makes run as one launch each where the step is grouped.

use anyhow::Result;

use super::super::buffers::GradBuffers;
use super::super::{nn, nt, wavefront_chunk};
use super::StepBuilder;
use crate::gpu::lstm_cell::CellShape;
use crate::gpu::matmul::GROUPS;
use crate::gpu::matmul_f16::HalfView;
use crate::gpu::{Dispatch, View};

impl StepBuilder<'_> {
    /// The layers' forward passes in a wavefront's order (`Recurrence::Wavefront`): the
    /// time steps in chunks, layer `l` running chunk `j` in round `j + l`, so that from the
    /// second round on the layers' time steps come in pairs that depend on nothing of each
    /// other ([`StepBuilder::steps_together`]): grouped, one launch for both products and
    /// one for both cells; otherwise the products, then the cells: launches that write no buffer in
    /// common but still run one after the other (wgpu records each launch's barriers right
    /// before it, and the second product of a pair always needs one), each layer's split
    /// products leaving their sums in a scratch slot of its own. Each round first gives
    /// every layer above the first the input projection of its chunk (the layer below's
    /// output of that chunk, after its dropout, made the round before), and ends with the
    /// dropout of the chunks just made. The same operations as
    /// [`StepBuilder::layer_forward`], in another order.
    pub(super) fn wavefront_forward(&mut self) -> Result<()> {
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
    pub(super) fn wavefront_backward(&mut self, grads: &GradBuffers) -> Result<()> {
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

    /// The time steps of a wavefront round, for layers `(l, (t0, t1))` each running the
    /// steps of one chunk: the `i`-th step of every chunk (from the first forward, from the
    /// last `backward`; none past a short chunk's end) together
    /// ([`StepBuilder::steps_together`]), for each `i`.
    pub(super) fn interleaved(
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

    /// Time steps of several layers, `(layer, t)` one each, that depend on nothing of one
    /// another (a wavefront's): grouped ([`StepBuilder::grouped`]), one launch for their
    /// recurrent products and one for their cells; otherwise each layer's product (its split
    /// sums in the layer's own scratch slot), then their cells.
    pub(super) fn steps_together(
        &self,
        members: &[(usize, usize)],
        backward: bool,
    ) -> Vec<Result<Dispatch>> {
        if let Some(ops) = self.grouped_steps(members, backward) {
            return ops;
        }
        self.steps_apart(members, backward)
    }

    /// [`StepBuilder::steps_together`] one launch per layer: each layer's product (its
    /// split sums in the layer's own scratch slot), then their cells.
    pub(super) fn steps_apart(
        &self,
        members: &[(usize, usize)],
        backward: bool,
    ) -> Vec<Result<Dispatch>> {
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
    pub(super) fn grouped_steps(
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
}
