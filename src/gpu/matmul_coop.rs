//! The cooperative-matrix matmul of `--precision mixed` (issue 25): `shaders/matmul_coop.wgsl`
//! on the matrix units of a GPU (tensor cores, WMMA, XMX through Vulkan; simdgroup
//! matrices through Metal), f16 operands into f32 sums. wgpu reaches them through its
//! experimental cooperative-matrix extension; [`CoopMatmul::new`] builds the kernel only
//! where the adapter lists an f16 x f16 -> f32 tile this source can name (16x16 or 8x8)
//! and its subgroups have one fixed size. Elsewhere (lavapipe, DX12, GL, browsers) the
//! mixed step runs `matmul_f16`, the scalar kernel with the same rounding points.
//!
//! CPU twin: [`crate::reference::matmul`] on operands rounded with
//! [`crate::reference::round_f16`], as for `matmul_f16`; the parity test is
//! `tests/parity_matmul_coop.rs` (on a GPU that has the units).

use anyhow::Result;

use super::coop::{coop_source, coop_tile};
use super::half::{half_matmul_dispatch, HalfOperands, HalfView, Split};
use super::matmul::SplitPartials;
use super::{Dispatch, Gpu, View};
use crate::reference::MatmulShape;

/// The compiled cooperative-matrix matmul of a device.
pub struct CoopMatmul {
    pipeline: wgpu::ComputePipeline,
    tile: u32,
}

impl CoopMatmul {
    /// Compile it where the adapter has a tile for it ([`coop_tile`]), else `None`.
    pub fn new(gpu: &Gpu) -> Result<Option<CoopMatmul>> {
        let Some(tile) = coop_tile(gpu) else {
            return Ok(None);
        };
        let label = format!("matmul_coop_{tile}x{tile}");
        let source = coop_source(
            tile,
            gpu.info.subgroup_min_size,
            wgpu::CooperativeScalarType::F16,
        );
        let module = gpu.shader(&label, &source)?;
        Ok(Some(CoopMatmul {
            pipeline: gpu.pipeline(&label, &module, "matmul_coop")?,
            tile,
        }))
    }

    /// The tile size it was built for.
    pub fn tile(&self) -> u32 {
        self.tile
    }

    /// A dispatch computing `c = op(a) @ op(b) (+ bias) (+ c when accumulate)` with f16
    /// operands and f32 sums, bias and output, on the matrix units (k split as `split`'s
    /// family splits it, when given).
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
        split: Option<&super::matmul::Matmul>,
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

    /// The dispatch of `operands` (see [`half_matmul_dispatch`]).
    pub(crate) fn dispatch(
        &self,
        gpu: &Gpu,
        shape: MatmulShape,
        operands: HalfOperands,
        split: Option<Split>,
    ) -> Result<(Dispatch, Option<SplitPartials>)> {
        let block = 4 * self.tile as usize;
        half_matmul_dispatch(
            gpu,
            "matmul_coop",
            &self.pipeline,
            block,
            shape,
            operands,
            split,
        )
    }
}
