//! The end of a training step: the global gradient norm, the clip scale, the loss
//! scale's update (mixed precision), the step guard, and the SGD update.

use anyhow::Result;

use super::super::buffers::GradBuffers;
use super::super::Op;
use super::StepBuilder;
use crate::gpu::reduce::{ClipStats, Reduce};
use crate::gpu::View;

impl StepBuilder<'_> {
    /// The global gradient norm (partial sums of squares of every gradient, then the clip
    /// scale), the step guard that skips a step whose loss or norm is not finite, and the
    /// SGD update of every parameter (the embedding's batch rows only). Returns the buffer
    /// holding the norm and clip scale.
    pub(super) fn clip_and_update(
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
            cfg.max_grad_norm,
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
