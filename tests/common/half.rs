//! Parity of a matmul with f16 operands (the scalar `matmul_f16`, the cooperative
//! `matmul_coop`) with its CPU twin: `reference::matmul` in f64 on operands rounded with
//! `reference::round_f16`.

use super::{assert_close, nan, random};
use lstm_gpu::gpu::matmul_f16::{HalfKernels, HalfView};
use lstm_gpu::gpu::{Dispatch, Gpu, View};
use lstm_gpu::reference::{matmul, round_f16, MatmulShape};

/// (m, k, n): none a multiple of the 32x32 block (nor of the cooperative tiles and blocks),
/// every dimension 1 somewhere.
pub const SIZES: [(usize, usize, usize); 8] = [
    (1, 1, 1),
    (7, 33, 1),
    (1, 7, 33),
    (33, 1, 7),
    (60, 129, 33),
    (129, 60, 7),
    (33, 70, 129),
    (65, 200, 97),
];

/// A kernel under test: `c = op(a) @ op(b) (+ bias) (+ c when accumulate)`.
pub type HalfMatmul<'k> = dyn Fn(&Gpu, MatmulShape, HalfView, HalfView, Option<View>, View, bool) -> anyhow::Result<Dispatch>
    + 'k;

/// Every shape of `sizes` in every transpose form, with and without bias and accumulation
/// (A and B cast by `hk` into one f16 buffer at odd offsets, C at an odd offset of a
/// NaN-poisoned buffer): within 1e-5 relative L2 of the twin, nothing written outside C,
/// and measurably not the f32 product (the operands really were rounded to f16).
pub fn half_matmul_parity(
    gpu: &Gpu,
    hk: &HalfKernels,
    name: &str,
    sizes: &[(usize, usize, usize)],
    kernel: &HalfMatmul,
) {
    let mut seed = 11;
    for (t, &(m, k, n)) in sizes.iter().enumerate() {
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
                    gpu,
                    View::all(&src),
                    HalfView::at(&half_buf, 0, inputs.len()),
                    inputs.len(),
                )
                .unwrap();
            let d = kernel(
                gpu,
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
            let what = format!("{name} {m}x{k}x{n} trans_a={ta} trans_b={tb} bias={bias_on} accumulate={accumulate}");
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
