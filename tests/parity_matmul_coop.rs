//! Parity of the cooperative-matrix matmul (`shaders/matmul_coop.wgsl`) with its CPU twin,
//! where wgpu reaches matrix units: a GPU's (NVIDIA, AMD and Intel through Vulkan; Apple
//! through Metal), or Mesa 26's lavapipe, which lists 8x8x8 f16 tiles on the CPU. Debian
//! 12's lavapipe, GL and browsers have none, so these tests are ignored by default: run
//! them with `cargo test --release --test parity_matmul_coop -- --ignored` where the units
//! are, where an adapter without them fails, saying so. CI runs them through the runner of
//! `scripts/lavapipe-coop.sh` (README, "Matrix units on the CPU").
//!
//! The operands are rounded to f16 where they are cast, as the twin rounds them; products of
//! two f16 values are exact in f32, so what remains is f32 summation in the hardware's
//! order: held to 1e-5 relative L2 like every f32 kernel (design.md §4), against an f64
//! product of the rounded operands. Shapes are awkward (no dimension a multiple of the
//! tile or the block, every dimension 1 somewhere), in every transpose form, with and
//! without bias and accumulation, at odd offsets, into a NaN-poisoned buffer whose
//! elements outside C must stay NaN.

mod common;

use common::gpu;
use common::half::{half_matmul_parity, SIZES};
use lstm_gpu::gpu::matmul_coop::CoopMatmul;
use lstm_gpu::gpu::matmul_f16::{HalfKernels, HalfVariant};

#[test]
#[ignore = "needs cooperative matrices (a GPU, or scripts/lavapipe-coop.sh): run with --ignored there"]
fn the_cooperative_matmul_matches_its_twin_on_awkward_shapes() {
    let gpu = gpu();
    let hk = HalfKernels::new(&gpu)
        .unwrap()
        .unwrap_or_else(|| panic!("{} has no SHADER_F16", gpu.info.name));
    let coop: &CoopMatmul = hk.coop.as_ref().unwrap_or_else(|| {
        panic!(
            "{} offers no cooperative-matrix tile this kernel can use (it lists {:?}; \
             subgroups {}..{})",
            gpu.info.name, gpu.coop_tiles, gpu.info.subgroup_min_size, gpu.info.subgroup_max_size
        )
    });
    println!(
        "matmul_coop on {}: tile {1}x{1}",
        gpu.info.name,
        coop.tile()
    );
    // The awkward shapes, and one of the medium preset's size.
    let mut sizes = SIZES.to_vec();
    sizes.push((300, 650, 260));
    half_matmul_parity(
        &gpu,
        &hk,
        "matmul_coop",
        &sizes,
        &|gpu, s, a, b, bias, c, acc| {
            hk.matmul_with(HalfVariant::Coop, gpu, s, a, b, bias, c, acc, None)
        },
    );
    // Split-K, as the step runs the long products on a GPU.
    use lstm_gpu::gpu::matmul::{Matmul, MatmulVariant};
    let mm = Matmul::with_variant(&gpu, MatmulVariant::StripSplit).unwrap();
    half_matmul_parity(
        &gpu,
        &hk,
        "matmul_coop split",
        &sizes,
        &|gpu, s, a, b, bias, c, acc| {
            hk.matmul_with(HalfVariant::Coop, gpu, s, a, b, bias, c, acc, Some(&mm))
        },
    );
}
