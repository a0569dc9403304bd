//! A step's products: the tuned f32 matmul, or in mixed precision the f16 matmul on f16
//! copies of its operands ([`HalfCopies`]), and the recurrent products whose split sums
//! the cells add.

use anyhow::Result;

use std::cell::RefCell;
use std::collections::HashMap;

use super::StepBuilder;
use crate::gpu::matmul::SplitPartials;
use crate::gpu::matmul_f16::{HalfKernels, HalfView};
use crate::gpu::{Dispatch, View};
use crate::reference::MatmulShape;

/// The f16 copies of the operands of a mixed step's products. Every f32 buffer a product
/// reads gets one f16 shadow of its size. The cell kernels write the f16 copies of h and of
/// d(pre) as they write the f32 values (`lstm_cell_f16.wgsl`); every other range is cast
/// right before the first product that reads it, and later products reading a range already
/// copied reuse the copy. That is sound because within one step no range is read as f16,
/// then rewritten, then read again: weights change only in the SGD update at the end,
/// activations and gradients are written once before their products read them (the logits'
/// gradient is cast explicitly, with the loss scale, after the softmax's backward pass
/// rewrote them in place).
pub(super) struct HalfCopies<'a> {
    pub(super) kernels: &'a HalfKernels,
    /// Whether the cell writes its f16 copies itself (else each range is cast like any).
    cell_writes_half: bool,
    shadows: RefCell<HashMap<wgpu::Buffer, wgpu::Buffer>>,
    /// Per buffer, the element ranges `[start, end)` copied so far in this step (sorted,
    /// disjoint, not touching).
    copied: RefCell<HashMap<wgpu::Buffer, Vec<(usize, usize)>>>,
}

impl<'a> HalfCopies<'a> {
    /// No copies yet; `cell_writes_half`: whether the cell kernels write the f16 copies of
    /// their outputs themselves.
    pub(super) fn new(kernels: &'a HalfKernels, cell_writes_half: bool) -> HalfCopies<'a> {
        HalfCopies {
            kernels,
            cell_writes_half,
            shadows: RefCell::new(HashMap::new()),
            copied: RefCell::new(HashMap::new()),
        }
    }

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

impl StepBuilder<'_> {
    /// The dispatches of one product `c = op(a) @ op(b) (+ bias) (+ c)`: the tuned f32
    /// matmul, or in mixed precision the f16 casts its operands still need and the f16
    /// matmul.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn product(
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
    pub(super) fn half_operands(
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
    pub(super) fn recurrent_product(
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
    pub(super) fn half_copy(
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
    pub(super) fn shadow(&self, half: &HalfCopies, buffer: &wgpu::Buffer) -> wgpu::Buffer {
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
    pub(super) fn cell_half_output(&self, v: View) -> Option<wgpu::Buffer> {
        let half = self.half.as_ref().filter(|h| h.cell_writes_half)?;
        half.mark(v.buffer, v.offset, v.len);
        Some(self.shadow(half, v.buffer))
    }

    /// The grouped launch of a mixed step's recurrent products `products` (f32 views whose
    /// f16 shadows the kernels read), after the casts their operands still need; `None`
    /// where the f16 kernel chosen for them has no grouped form (nothing cast then).
    #[allow(clippy::type_complexity)]
    pub(super) fn half_group(
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
}
