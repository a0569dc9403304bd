//! What the f16-operand matmuls share (the scalar `matmul_f16`, the cooperative
//! `matmul_coop`): views counting f16 elements, and the dispatch of a kernel that reads the
//! uniform block of `matmul_params.wgsl` with A and B in f16.

use anyhow::{bail, Result};

use super::matmul::{
    panel_quad_flags, product_dispatch, Matmul, Params, ProductLaunch, SplitPartials, A_VEC4,
    B_VEC4,
};
use super::{groups_1d, Dispatch, Gpu, View};
use crate::reference::MatmulShape;

const HAS_BIAS: u32 = 1;
const ACCUMULATE: u32 = 2;

/// `len` f16 elements of a buffer from element `offset`.
#[derive(Clone, Copy)]
pub struct HalfView<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: usize,
    pub len: usize,
}

impl<'a> HalfView<'a> {
    pub fn at(buffer: &'a wgpu::Buffer, offset: usize, len: usize) -> HalfView<'a> {
        HalfView {
            buffer,
            offset,
            len,
        }
    }

    /// Fail unless the view holds `halves` elements inside its buffer, addressable with
    /// 32-bit element offsets.
    pub(crate) fn check(&self, what: &str, halves: usize) -> Result<u32> {
        let end = self.offset + halves;
        if halves > self.len || end as u64 * 2 > self.buffer.size() {
            bail!(
                "{what}: needs {halves} f16 elements at {} but the view has {} (buffer {} elements)",
                self.offset,
                self.len,
                self.buffer.size() / 2
            );
        }
        u32::try_from(end)
            .map(|_| self.offset as u32)
            .map_err(|_| anyhow::anyhow!("{what}: element {end} is past 32-bit offsets"))
    }
}

/// The operands of a matmul with f16 A and B and f32 bias and C.
#[derive(Clone, Copy)]
pub(crate) struct HalfOperands<'a> {
    pub a: HalfView<'a>,
    pub b: HalfView<'a>,
    pub bias: Option<View<'a>>,
    pub c: View<'a>,
    pub accumulate: bool,
}

/// An f16-operand kernel as its launches need it: the label, the pipeline, the rows and
/// columns of C one workgroup computes, and whether it reads aligned operands by quads
/// (`matmul_panel_f16`: A and B bound again as `vec4<f16>` arrays at 5 and 6, read where the
/// flags say `A_VEC4` / `B_VEC4`).
#[derive(Clone, Copy)]
pub(crate) struct HalfKernel<'a> {
    pub label: &'a str,
    pub pipeline: &'a wgpu::ComputePipeline,
    pub block: (usize, usize),
    pub quads: bool,
}

/// The launch of `kernel` on a product with f16 operands (`matmul_f16`, `matmul_panel_f16`,
/// `matmul_coop`): the views checked, the shared uniform block of `matmul_params.wgsl`
/// (offsets and strides of A and B in f16 elements) and the bindings A, B, bias, C,
/// uniforms (and the quads). With `split`, k is cut into slices where that matmul family
/// would cut it ([`Matmul::split_plan`]: on GPUs, for products whose C makes too few
/// workgroups); a deferred split only for products accumulating without a bias.
pub(crate) fn half_plan<'a>(
    kernel: HalfKernel<'a>,
    shape: MatmulShape,
    ops: &HalfOperands<'a>,
    split: Option<Split>,
) -> Result<ProductLaunch<'a>> {
    let HalfOperands {
        a,
        b,
        bias,
        c,
        accumulate,
    } = *ops;
    let label = kernel.label;
    let MatmulShape { m, k, n, .. } = shape;
    let a_off = a.check(&format!("{label} A"), m * k)?;
    let b_off = b.check(&format!("{label} B"), k * n)?;
    let c_off = super::word_offset(&format!("{label} C"), c, m * n)?;
    let bias_off = match &bias {
        Some(v) => super::word_offset(&format!("{label} bias"), *v, n)?,
        None => 0,
    };
    if [a.buffer, b.buffer].contains(&c.buffer) {
        bail!("{label} {m}x{k}x{n}: the output C shares a buffer with an input");
    }
    if split.is_some_and(|s| s.defer.is_some()) && (bias.is_some() || !accumulate) {
        bail!("{label} {m}x{k}x{n}: only a product accumulating without bias defers its sum");
    }
    let (rows, cols) = kernel.block;
    let col_blocks = n.div_ceil(cols);
    let blocks = m.div_ceil(rows) * col_blocks;
    let (gx, gy) = groups_1d(blocks, 1);
    let [a_row, a_col, b_row, b_col] = super::matmul::strides(shape);
    let (slices, chunk) = split.map_or((1, k), |sp| sp.family.split_plan(m, k, n, blocks));
    let mut flags =
        if bias.is_some() { HAS_BIAS } else { 0 } | if accumulate { ACCUMULATE } else { 0 };
    if kernel.quads {
        flags |= panel_quad_flags(a.offset, a_row, a_col, A_VEC4)
            | panel_quad_flags(b.offset, b_col, b_row, B_VEC4);
    }
    let params = Params {
        m: m as u32,
        k: k as u32,
        n: n as u32,
        flags,
        a_off,
        a_row,
        a_col,
        b_off,
        b_row,
        b_col,
        bias_off,
        c_off,
        col_blocks: col_blocks as u32,
        blocks: blocks as u32,
        groups_x: gx,
        strip_width: 0,
        k_chunk: chunk as u32,
        k_slices: slices as u32,
        member_slices: 0,
        pad1: 0,
    };
    let (mf, kf, nf) = (m as f64, k as f64, n as f64);
    let bytes = 2.0 * (mf * kf + kf * nf) + 4.0 * mf * nf * if accumulate { 2.0 } else { 1.0 };
    Ok(ProductLaunch {
        label,
        pipeline: kernel.pipeline,
        params,
        operands: [a.buffer, b.buffer],
        groups: (gx, gy),
        bytes,
        quads: kernel.quads,
    })
}

/// The dispatch of [`half_plan`]'s launch: one launch unsplit; split, the slices' sums go
/// to the family's scratch buffer and its `matmul_split_sum` adds them into C, the second
/// launch of the dispatch; or, with `split.defer`, the slices are left for the kernel that
/// reads C next (see [`Matmul::prepare_deferring_sum`]) and returned.
pub(crate) fn half_matmul_dispatch(
    gpu: &Gpu,
    kernel: HalfKernel,
    shape: MatmulShape,
    ops: HalfOperands,
    split: Option<Split>,
) -> Result<(Dispatch, Option<SplitPartials>)> {
    let launch = half_plan(kernel, shape, &ops, split)?;
    let (Some(split), true) = (split, launch.params.k_slices > 1) else {
        return Ok((product_dispatch(gpu, launch, ops.bias, ops.c)?, None));
    };
    split
        .family
        .split_dispatch(gpu, launch, ops.bias, ops.c, split.defer)
}

/// How an f16 product may split k: as `family` (the device's f32 matmuls) splits it, its
/// slices summed by a second launch, or with `defer` (a scratch slot, see
/// [`Matmul::prepare_deferring_sum_in`]) left to the kernel that reads C next (only for
/// products that accumulate into C without a bias).
#[derive(Clone, Copy)]
pub struct Split<'a> {
    pub family: &'a Matmul,
    pub defer: Option<usize>,
}
