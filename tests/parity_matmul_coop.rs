//! Parity of the cooperative-matrix matmul (`shaders/matmul_coop.wgsl`) with its CPU twin,
//! on a GPU whose matrix units wgpu reaches (NVIDIA, AMD and Intel through Vulkan; Apple
//! through Metal). lavapipe, GL and browsers have none, so these tests are ignored by
//! default: run them with `cargo test --release --test parity_matmul_coop -- --ignored` on
//! such a GPU, where an adapter without the units fails, saying so.
//!
//! The operands are rounded to f16 where they are cast, as the twin rounds them; products of
//! two f16 values are exact in f32, so what remains is f32 summation in the hardware's
//! order: held to 1e-5 relative L2 like every f32 kernel (design.md §4), against an f64
//! product of the rounded operands. Shapes are awkward (no dimension a multiple of the
//! tile or the block, every dimension 1 somewhere), in every transpose form, with and
//! without bias and accumulation, at odd offsets, into a NaN-poisoned buffer whose
//! elements outside C must stay NaN.

mod common;

use common::{assert_close, gpu, nan, random};
use lstm_gpu::gpu::matmul_coop::CoopMatmul;
use lstm_gpu::gpu::matmul_f16::{HalfKernels, HalfView};
use lstm_gpu::gpu::View;
use lstm_gpu::reference::{matmul, round_f16, MatmulShape};

const SIZES: [(usize, usize, usize); 9] = [
    (1, 1, 1),
    (7, 33, 1),
    (1, 7, 33),
    (33, 1, 7),
    (60, 129, 33),
    (129, 60, 7),
    (33, 70, 129),
    (65, 200, 97),
    (300, 650, 260),
];

#[test]
#[ignore = "needs a GPU with cooperative matrices: run with --ignored on one"]
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
    println!("{}: tile {0}x{0}", coop.tile());
    let mut seed = 21;
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
            let d = coop
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
            let what = format!(
                "matmul_coop {m}x{k}x{n} trans_a={ta} trans_b={tb} bias={bias_on} accumulate={accumulate}"
            );
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
        }
    }
}
