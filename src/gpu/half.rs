//! What the f16-operand matmuls share (the scalar `matmul_f16`, the cooperative
//! `matmul_coop`): views counting f16 elements, and the dispatch of a kernel that reads the
//! uniform block of `matmul_params.wgsl` with A and B in f16.

use anyhow::{bail, Result};

use super::matmul::{product_dispatch, Matmul, Params, ProductLaunch, SplitPartials};
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
pub(crate) struct HalfOperands<'a> {
    pub a: HalfView<'a>,
    pub b: HalfView<'a>,
    pub bias: Option<View<'a>>,
    pub c: View<'a>,
    pub accumulate: bool,
}

/// The dispatch of a kernel with f16 operands whose workgroups each compute a `block` x
/// `block` block of C (`matmul_f16`, `matmul_coop`): the views checked, the shared uniform
/// block of `matmul_params.wgsl` (offsets and strides of A and B in f16 elements) and the
/// bindings A, B, bias, C, uniforms. With `split`, k is cut into slices where that matmul
/// family would cut it ([`Matmul::split_plan`]: on GPUs, for products whose C makes too
/// few workgroups): the slices' sums go to its scratch buffer and its `matmul_split_sum`
/// adds them into C, the second launch of the dispatch; or, with `split.defer`, the
/// slices are left for the kernel that reads C next (see
/// [`Matmul::prepare_deferring_sum`]) and returned.
pub(crate) fn half_matmul_dispatch(
    gpu: &Gpu,
    label: &str,
    pipeline: &wgpu::ComputePipeline,
    block: usize,
    shape: MatmulShape,
    ops: HalfOperands,
    split: Option<Split>,
) -> Result<(Dispatch, Option<SplitPartials>)> {
    let HalfOperands {
        a,
        b,
        bias,
        c,
        accumulate,
    } = ops;
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
    let col_blocks = n.div_ceil(block);
    let blocks = m.div_ceil(block) * col_blocks;
    let (gx, gy) = groups_1d(blocks, 1);
    let [a_row, a_col, b_row, b_col] = super::matmul::strides(shape);
    let (slices, chunk) = split.map_or((1, k), |sp| sp.family.split_plan(m, k, n, blocks));
    let params = Params {
        m: m as u32,
        k: k as u32,
        n: n as u32,
        flags: if bias.is_some() { HAS_BIAS } else { 0 } | if accumulate { ACCUMULATE } else { 0 },
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
    let launch = ProductLaunch {
        label,
        pipeline,
        params,
        operands: [a.buffer, b.buffer],
        groups: (gx, gy),
        bytes,
        quads: false,
    };
    let (Some(split), true) = (split, slices > 1) else {
        return Ok((product_dispatch(gpu, launch, bias, c)?, None));
    };
    split
        .family
        .split_dispatch(gpu, launch, bias, c, split.defer)
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
