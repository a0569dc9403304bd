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

use common::{assert_close, gpu, nan, random};
use lstm_gpu::gpu::matmul_f16::{HalfKernels, HalfView};
use lstm_gpu::gpu::{Gpu, View};
use lstm_gpu::reference::{matmul, round_f16, MatmulShape};

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

/// (m, k, n): none a multiple of the 32x32 block, every dimension 1 somewhere.
const SIZES: [(usize, usize, usize); 8] = [
    (1, 1, 1),
    (7, 33, 1),
    (1, 7, 33),
    (33, 1, 7),
    (60, 129, 33),
    (129, 60, 7),
    (33, 70, 129),
    (65, 200, 97),
];

#[test]
fn the_f16_matmul_matches_its_twin_on_awkward_shapes() {
    let gpu = gpu();
    let hk = kernels(&gpu);
    let mut seed = 11;
    for (t, &(m, k, n)) in SIZES.iter().enumerate() {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            seed += 1;
            let s = MatmulShape {
                m,
                k,
                n,
                trans_a: ta,
                trans_b: tb,
            };
            let (bias_on, accumulate) = ((t + seed as usize) % 2 == 0, seed % 3 == 0);
            // A and B in one f32 buffer at odd offsets; cast into one f16 buffer, also at
            // odd element offsets.
            let (a_at, b_at) = (3, 3 + m * k + 1);
            let inputs = random(b_at + k * n + 2, 1.0, seed);
            let bias = random(n, 1.0, seed + 1);
            let c_start = random(m * n, 1.0, seed + 2);
            let src = gpu.storage_from("f32 operands", &inputs);
            let half_buf = gpu.storage("f16 operands", inputs.len().div_ceil(2) + 1);
            let bias_buf = gpu.storage_from("bias", &bias);
            let c_at = 5;
            let c_buf = gpu.storage("C", c_at + m * n + 7);
            let mut words = nan(c_at + m * n + 7);
            if accumulate {
                words[c_at..c_at + m * n].copy_from_slice(&c_start);
            }
            gpu.write(&c_buf, 0, &words);
            let cast = hk
                .cast(
                    &gpu,
                    View::all(&src),
                    HalfView::at(&half_buf, 0, inputs.len()),
                    inputs.len(),
                )
                .unwrap();
            let d = hk
                .matmul(
                    &gpu,
                    s,
                    HalfView::at(&half_buf, a_at, m * k),
                    HalfView::at(&half_buf, b_at, k * n),
                    bias_on.then(|| View::all(&bias_buf)),
                    View::at(&c_buf, c_at, m * n),
                    accumulate,
                )
                .unwrap();
            gpu.run(&[&cast, &d]).unwrap();
            let all: Vec<f32> = gpu.read(&c_buf, 0, c_at + m * n + 7).unwrap();
            let what = format!("matmul_f16 {m}x{k}x{n} trans_a={ta} trans_b={tb} bias={bias_on} accumulate={accumulate}");
            assert!(
                all[..c_at]
                    .iter()
                    .chain(&all[c_at + m * n..])
                    .all(|v| v.is_nan()),
                "{what}: wrote outside C's window"
            );
            let rounded = |v: &[f32]| v.iter().map(|&x| round_f16(x) as f64).collect::<Vec<f64>>();
            let mut want: Vec<f64> = if accumulate {
                c_start.iter().map(|&x| x as f64).collect()
            } else {
                vec![0.0; m * n]
            };
            let bias64: Vec<f64> = bias.iter().map(|&x| x as f64).collect();
            matmul(
                s,
                &rounded(&inputs[a_at..a_at + m * k]),
                &rounded(&inputs[b_at..b_at + k * n]),
                bias_on.then_some(&bias64[..]),
                &mut want,
                accumulate,
            );
            assert_close(&what, &all[c_at..c_at + m * n], &want, 1e-5);
            // And it is not the f32 product: the operands really were rounded to f16
            // (the difference is of the order of f16's roundoff, 2^-11, over 1e-5).
            if k >= 33 && !accumulate {
                let mut exact = vec![0.0f64; m * n];
                let f64s = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
                matmul(
                    s,
                    &f64s(&inputs[a_at..a_at + m * k]),
                    &f64s(&inputs[b_at..b_at + k * n]),
                    bias_on.then_some(&bias64[..]),
                    &mut exact,
                    false,
                );
                let (mut num, mut den) = (0.0, 0.0);
                for (g, e) in all[c_at..c_at + m * n].iter().zip(&exact) {
                    num += (*g as f64 - e).powi(2);
                    den += e * e;
                }
                let rel = (num / den).sqrt();
                assert!(
                    rel > 1e-5,
                    "{what}: {rel:e} from the f32 product: not rounded to f16?"
                );
            }
        }
    }
}
