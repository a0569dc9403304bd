//! Parity of the f16 kernels of `--precision mixed` (`shaders/cast_f16.wgsl`,
//! `shaders/matmul_f16.wgsl`) with their CPU twins, on adapters with `SHADER_F16` (lavapipe
//! has it; an adapter without it fails here, saying so, rather than passing silently).
//!
//! The cast must round exactly as `reference::round_f16` (to nearest, ties to even;
//! infinite past f16's range; NaN stays NaN): compared bit for bit. The matmul's operands are
//! those f16 values; a product of two f16 values is exact in f32, so what remains between
//! the kernel and an f64 product of the rounded operands is f32 summation: the same 1e-5
//! relative L2 error the f32 kernels are held to (design.md §4), far below f16's unit
//! roundoff (2^-11 = 4.9e-4), which both sides share.

mod common;

use common::half::{half_matmul_parity, SIZES};
use common::{gpu, random};
use lstm_gpu::gpu::matmul_f16::{HalfKernels, HalfView};
use lstm_gpu::gpu::{Gpu, View};
use lstm_gpu::reference::round_f16;

fn kernels(gpu: &Gpu) -> HalfKernels {
    HalfKernels::new(gpu).unwrap().unwrap_or_else(|| {
        panic!(
            "adapter {} has no SHADER_F16: the f16 kernels cannot be tested here (lavapipe, \
             mesa-vulkan-drivers from Mesa 24 on, has it)",
            gpu.info.name
        )
    })
}

/// The f16 elements of a buffer, as their bits.
fn halves(gpu: &Gpu, buf: &wgpu::Buffer, from: usize, n: usize) -> Vec<u16> {
    let words: Vec<u32> = gpu.read(buf, 0, (from + n).div_ceil(2)).unwrap();
    let all: Vec<u16> = words
        .iter()
        .flat_map(|w| [(*w & 0xffff) as u16, (*w >> 16) as u16])
        .collect();
    all[from..from + n].to_vec()
}

#[test]
fn the_cast_rounds_to_nearest_even_and_overflows_to_infinity() {
    let gpu = gpu();
    let hk = kernels(&gpu);
    // Random values at every scale f16 has, its subnormals, ties, the edges of its range.
    let mut values = random(4099, 1.0, 7);
    let scales = [1e-7f32, 3e-5, 1e-3, 0.5, 3.0, 700.0, 3e4, 6e4];
    for (i, v) in values.iter_mut().enumerate() {
        *v *= scales[i % scales.len()];
    }
    let ulp = f32::EPSILON;
    values.extend([
        0.0,
        -0.0,
        1.0 + 1.0 / 2048.0,       // a tie: to even (1.0)
        1.0 + 3.0 / 2048.0,       // a tie: to even (1 + 2/1024)
        1.0 + 1.0 / 2048.0 + ulp, // just past a tie: up
        65504.0,
        65519.0,
        65520.0, // ties to even: infinity
        -1e6,
        1e30,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        5.96e-8, // the smallest f16 subnormal, about
        2.9e-8,  // below half of it: zero
    ]);
    let n = values.len();
    let src = gpu.storage_from("cast source", &values);
    // The destination at an odd element offset, every element f16 NaN (all bits set)
    // around the window.
    let dst = gpu.storage_from("cast destination", &vec![u32::MAX; (n + 8).div_ceil(2) + 1]);
    let d = hk
        .cast(&gpu, View::all(&src), HalfView::at(&dst, 3, n), n)
        .unwrap();
    gpu.run(&[&d]).unwrap();
    let got = halves(&gpu, &dst, 3, n);
    let mut mismatches = Vec::new();
    for (i, (&v, &g)) in values.iter().zip(&got).enumerate() {
        let want = half::f16::from_f32(v);
        let ok = if want.is_nan() {
            half::f16::from_bits(g).is_nan()
        } else {
            g == want.to_bits()
        };
        if !ok {
            mismatches.push(format!(
                "[{i}] {v:e}: got {} ({g:#06x}), want {} ({:#06x})",
                half::f16::from_bits(g),
                want,
                want.to_bits()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {n} casts differ from round_f16: {}",
        mismatches.len(),
        mismatches[..mismatches.len().min(8)].join("; ")
    );
    // The elements around the window are untouched.
    let around = [halves(&gpu, &dst, 0, 3), halves(&gpu, &dst, 3 + n, 2)].concat();
    assert!(around.iter().all(|&h| h == u16::MAX), "{around:x?}");
    assert_eq!(round_f16(65520.0), f32::INFINITY);
}

#[test]
fn the_f16_matmul_matches_its_twin_on_awkward_shapes() {
    let gpu = gpu();
    let hk = kernels(&gpu);
    half_matmul_parity(
        &gpu,
        &hk,
        "matmul_f16",
        &SIZES,
        &|gpu, s, a, b, bias, c, acc| hk.matmul(gpu, s, a, b, bias, c, acc, None),
    );
}

/// Split-K as on a GPU (forced here by the f32 family's split default: lavapipe's own never
/// splits): the slices into the scratch buffer, `matmul_split_sum` into C; the same parity,
/// and the long products really take two launches.
#[test]
fn the_split_f16_matmul_matches_its_twin_on_awkward_shapes() {
    use lstm_gpu::gpu::matmul::{Matmul, MatmulVariant};
    let gpu = gpu();
    let hk = kernels(&gpu);
    let mm = Matmul::with_variant(&gpu, MatmulVariant::StripSplit).unwrap();
    let split = std::cell::Cell::new(0);
    half_matmul_parity(
        &gpu,
        &hk,
        "matmul_f16 split",
        &SIZES,
        &|gpu, s, a, b, bias, c, acc| {
            let d = hk.matmul(gpu, s, a, b, bias, c, acc, Some(&mm))?;
            assert_eq!(d.then.is_some(), s.k >= 32, "{s:?}: split or not");
            split.set(split.get() + usize::from(d.then.is_some()));
            Ok(d)
        },
    );
    assert!(split.get() >= 16, "{} products split", split.get());
}
