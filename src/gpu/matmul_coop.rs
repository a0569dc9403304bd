//! The cooperative-matrix matmul of `--precision mixed` (issue 25): `shaders/matmul_coop.wgsl`
//! on the matrix units of a GPU (tensor cores, WMMA, XMX through Vulkan; simdgroup
//! matrices through Metal), f16 operands into f32 sums. wgpu reaches them through its
//! experimental cooperative-matrix extension; [`CoopMatmul::new`] builds the kernel only
//! where the adapter lists an f16 x f16 -> f32 tile this source can name (16x16 or 8x8)
//! and its subgroups have one fixed size (Mesa 26's lavapipe lists 8x8 on the CPU). Elsewhere
//! (Debian 12's lavapipe, DX12, GL, browsers) the mixed step runs `matmul_f16`, the scalar
//! kernel with the same rounding points.
//!
//! CPU twin: [`crate::reference::matmul`] on operands rounded with
//! [`crate::reference::round_f16`], as for `matmul_f16`; the parity test is
//! `tests/parity_matmul_coop.rs` (where the adapter has the units: a GPU, or in CI the
//! lavapipe of `scripts/lavapipe-coop.sh`).

use anyhow::Result;

use super::coop::{coop_source, coop_tile};
use super::half::HalfKernel;
use super::Gpu;

/// The compiled cooperative-matrix matmul of a device.
pub struct CoopMatmul {
    pipeline: wgpu::ComputePipeline,
    tile: u32,
}

impl CoopMatmul {
    /// Compile it where the adapter has a tile for it ([`coop_tile`]) and its driver builds
    /// it, else `None`; `what` names it in the warning where the driver refuses it.
    pub fn new(gpu: &Gpu, what: &str) -> Result<Option<CoopMatmul>> {
        let Some(tile) = coop_tile(gpu) else {
            return Ok(None);
        };
        let label = format!("matmul_coop_{tile}x{tile}");
        let source = coop_source(
            &gpu.resolve(super::shaders::MATMUL_COOP),
            tile,
            gpu.info.subgroup_min_size,
            wgpu::CooperativeScalarType::F16,
        );
        // The matrix units are optional: where the driver refuses the kernel, mixed
        // precision runs on the scalar f16 kernels (with a warning that says why).
        let Some(module) = gpu.optional(what, gpu.shader(&label, &source)) else {
            return Ok(None);
        };
        Ok(gpu
            .optional_pipeline(what, &label, &module, "matmul_coop", &[])
            .map(|pipeline| CoopMatmul { pipeline, tile }))
    }

    /// The tile size it was built for.
    pub fn tile(&self) -> u32 {
        self.tile
    }

    /// The kernel as the f16 launches need it: a workgroup computes a block of 4 x 4
    /// tiles.
    pub(crate) fn kernel(&self) -> HalfKernel<'_> {
        let block = 4 * self.tile as usize;
        HalfKernel {
            label: "matmul_coop",
            pipeline: &self.pipeline,
            block: (block, block),
            quads: false,
        }
    }
}
