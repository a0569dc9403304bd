//! The f16 building blocks of `--precision mixed` (issue 25), on adapters with
//! `Features::SHADER_F16`: the launchers of `shaders/cast_f16.wgsl` (f32 -> f16 copies) and
//! `shaders/matmul_f16.wgsl` (the scalar f16-operand matmul with f32 products and sums, the
//! fallback with a matrix core's rounding points). CPU twins: [`crate::reference::round_f16`]
//! and [`crate::reference::matmul`] on rounded operands.
//!
//! f16 buffers are ordinary storage buffers; a [`HalfView`] counts f16 elements (two per
//! 32-bit word).

use anyhow::{bail, Result};

pub use super::half::HalfView;
use super::half::{half_matmul_dispatch, HalfOperands, Split};
use super::matmul::{Matmul, SplitPartials};
use super::{groups_1d, Dispatch, Gpu, View};
use crate::reference::MatmulShape;
/// Rows and columns of C per workgroup of `matmul_f16`.
const BLOCK: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CastParams {
    n: u32,
    src_off: u32,
    dst_off: u32,
    groups_x: u32,
}

/// The compiled f16 kernels of a device.
pub struct HalfKernels {
    cast: wgpu::ComputePipeline,
    cast_scaled: wgpu::ComputePipeline,
    matmul: wgpu::ComputePipeline,
    /// The cooperative-matrix matmul where the adapter has matrix units WGSL can reach;
    /// [`HalfKernels::product`] prefers it.
    pub coop: Option<super::matmul_coop::CoopMatmul>,
}

impl HalfKernels {
    /// Compile them, or `None` where the device lacks `SHADER_F16`.
    pub fn new(gpu: &Gpu) -> Result<Option<HalfKernels>> {
        if !gpu.features.contains(wgpu::Features::SHADER_F16) {
            return Ok(None);
        }
        let cast = gpu.shader("cast_f16", super::shaders::CAST_F16)?;
        let matmul = gpu.shader("matmul_f16", super::shaders::MATMUL_F16)?;
        Ok(Some(HalfKernels {
            cast: gpu.pipeline("cast_f32_to_f16", &cast, "cast_f32_to_f16")?,
            cast_scaled: gpu.pipeline("cast_f32_to_f16_scaled", &cast, "cast_f32_to_f16_scaled")?,
            matmul: gpu.pipeline("matmul_f16", &matmul, "matmul_f16")?,
            coop: super::matmul_coop::CoopMatmul::new(gpu)?,
        }))
    }

    /// A dispatch writing `dst[i] = f16(src[i])` for the `n` elements of the views.
    pub fn cast(&self, gpu: &Gpu, src: View, dst: HalfView, n: usize) -> Result<Dispatch> {
        self.cast_dispatch(gpu, src, dst, n, None)
    }

    /// A dispatch writing `dst[i] = f16(src[i] * S)`, S the loss scale (word 0 of
    /// `scale`, the block of [`super::loss_scale::LossScale`]).
    pub fn cast_scaled(
        &self,
        gpu: &Gpu,
        src: View,
        dst: HalfView,
        n: usize,
        scale: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        self.cast_dispatch(gpu, src, dst, n, Some(scale))
    }

    fn cast_dispatch(
        &self,
        gpu: &Gpu,
        src: View,
        dst: HalfView,
        n: usize,
        scale: Option<&wgpu::Buffer>,
    ) -> Result<Dispatch> {
        let src_off = super::word_offset("cast source", src, n)?;
        let dst_off = dst.check("cast destination", n)?;
        if src.buffer == dst.buffer || scale == Some(dst.buffer) {
            bail!("cast to f16: the destination shares a buffer with an input");
        }
        let (gx, gy) = groups_1d(n, 256);
        let (label, pipeline) = match scale {
            None => ("cast_f32_to_f16", &self.cast),
            Some(_) => ("cast_f32_to_f16_scaled", &self.cast_scaled),
        };
        let uniforms = gpu.uniform_from(
            label,
            &CastParams {
                n: n as u32,
                src_off,
                dst_off,
                groups_x: gx,
            },
        );
        let mut buffers = vec![src.buffer, dst.buffer, &uniforms];
        buffers.extend(scale);
        let bind_group = gpu.bind(label, pipeline, &buffers)?;
        Ok(Dispatch {
            label: label.to_string(),
            pipeline: pipeline.clone(),
            bind_group,
            groups: (gx, gy, 1),
            flops: if scale.is_some() { n as f64 } else { 0.0 },
            bytes: 6.0 * n as f64,
            uniforms: Some(uniforms),
            then: None,
        })
    }

    /// The mixed step's product: [`HalfKernels::matmul`]'s result on the matrix units
    /// where the adapter has them (`coop`), else the scalar kernel itself; k split as
    /// `split`'s family splits it (see `half::half_matmul_dispatch`).
    #[allow(clippy::too_many_arguments)]
    pub fn product(
        &self,
        gpu: &Gpu,
        shape: MatmulShape,
        a: HalfView,
        b: HalfView,
        bias: Option<View>,
        c: View,
        accumulate: bool,
        split: Option<&Matmul>,
    ) -> Result<Dispatch> {
        match &self.coop {
            Some(coop) => coop.matmul(gpu, shape, a, b, bias, c, accumulate, split),
            None => self.matmul(gpu, shape, a, b, bias, c, accumulate, split),
        }
    }

    /// [`HalfKernels::product`] of `c += op(a) @ op(b)` where a split product leaves its
    /// slices, in scratch `slot`, for the kernel that reads `c` next, as
    /// [`Matmul::prepare_deferring_sum_in`] does for the f32 family (`family`, whose split
    /// rule and scratch it uses).
    pub fn product_deferring_sum(
        &self,
        gpu: &Gpu,
        shape: MatmulShape,
        a: HalfView,
        b: HalfView,
        c: View,
        (family, slot): (&Matmul, usize),
    ) -> Result<(Dispatch, Option<SplitPartials>)> {
        let operands = HalfOperands {
            a,
            b,
            bias: None,
            c,
            accumulate: true,
        };
        let split = Some(Split {
            family,
            defer: Some(slot),
        });
        match &self.coop {
            Some(coop) => coop.dispatch(gpu, shape, operands, split),
            None => self.dispatch(gpu, shape, operands, split),
        }
    }

    /// The name of the kernel [`HalfKernels::product`] runs.
    pub fn product_name(&self) -> String {
        match &self.coop {
            Some(coop) => format!("matmul_coop {0}x{0} (cooperative matrices)", coop.tile()),
            None => "matmul_f16 (scalar)".to_string(),
        }
    }

    /// A dispatch computing `c = op(a) @ op(b) (+ bias) (+ c when accumulate)` with f16
    /// operands and f32 products, sums, bias and output: the scalar kernel (k split as
    /// `split`'s family splits it, when given).
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &self,
        gpu: &Gpu,
        shape: MatmulShape,
        a: HalfView,
        b: HalfView,
        bias: Option<View>,
        c: View,
        accumulate: bool,
        split: Option<&Matmul>,
    ) -> Result<Dispatch> {
        let operands = HalfOperands {
            a,
            b,
            bias,
            c,
            accumulate,
        };
        let split = split.map(|family| Split {
            family,
            defer: None,
        });
        Ok(self.dispatch(gpu, shape, operands, split)?.0)
    }

    /// The scalar kernel's dispatch of `operands` (see [`half_matmul_dispatch`]).
    fn dispatch(
        &self,
        gpu: &Gpu,
        shape: MatmulShape,
        operands: HalfOperands,
        split: Option<Split>,
    ) -> Result<(Dispatch, Option<SplitPartials>)> {
        half_matmul_dispatch(
            gpu,
            "matmul_f16",
            &self.matmul,
            BLOCK,
            shape,
            operands,
            split,
        )
    }
}

/// `bench kernels --precision mixed`: the best of `runs` runs of the f16 matmul on each of
/// `shapes` (its operands cast to f16 beforehand, untimed), timed as
/// [`super::matmul::bench_matmul`] times the f32 variants.
pub fn bench_matmul_f16(
    gpu: &Gpu,
    shapes: &[MatmulShape],
    runs: usize,
    mut on_row: impl FnMut(&super::matmul::BenchRow),
) -> Result<Vec<super::matmul::BenchRow>> {
    let Some(hk) = HalfKernels::new(gpu)? else {
        bail!(
            "--precision mixed needs 16-bit floats in shaders (shader-f16), which {} does not offer here",
            gpu.info.name
        );
    };
    let timer = super::matmul::Timer::new(gpu, runs.max(1));
    // The f32 family: how the step splits k on this adapter, and the pass that adds slices.
    let mm = Matmul::new(gpu)?;
    let mut rows = Vec::new();
    for &s in shapes {
        let (na, nb) = (s.m * s.k, s.k * s.n);
        let mut r = crate::rng::SplitMix64::new(1);
        let values: Vec<f32> = (0..na.max(nb))
            .map(|_| r.uniform(-0.5, 0.5) as f32)
            .collect();
        let src = gpu.storage_from("bench f32 operand", &values);
        let a = gpu.storage("bench A (f16)", na.div_ceil(2));
        let b = gpu.storage("bench B (f16)", nb.div_ceil(2));
        let c = gpu.storage("bench C", s.m * s.n);
        let cast_a = hk.cast(gpu, View::all(&src), HalfView::at(&a, 0, na), na)?;
        let cast_b = hk.cast(gpu, View::all(&src), HalfView::at(&b, 0, nb), nb)?;
        gpu.run(&[&cast_a, &cast_b])?;
        let (a, b, c) = (
            HalfView::at(&a, 0, na),
            HalfView::at(&b, 0, nb),
            View::all(&c),
        );
        // Each kernel unsplit, and split where the step splits it (GPUs: `split_plan`).
        let mut kernels = Vec::new();
        for split in [None, Some(&mm)] {
            let suffix = if split.is_some() { "-split" } else { "" };
            let d = hk.matmul(gpu, s, a, b, None, c, false, split)?;
            if split.is_none() || d.then.is_some() {
                kernels.push((format!("f16-scalar{suffix}"), d));
            }
            if let Some(coop) = &hk.coop {
                let d = coop.matmul(gpu, s, a, b, None, c, false, split)?;
                if split.is_none() || d.then.is_some() {
                    kernels.push((format!("f16-coop-{0}x{0}{suffix}", coop.tile()), d));
                }
            }
        }
        for (variant, d) in kernels {
            gpu.run(&[&d])?;
            let (seconds, clock) = timer.best(gpu, &d)?;
            let row = super::matmul::BenchRow::new(variant, s, (seconds, clock), d.flops, 2);
            on_row(&row);
            rows.push(row);
        }
    }
    Ok(rows)
}
