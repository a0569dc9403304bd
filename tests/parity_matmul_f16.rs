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
use lstm_gpu::gpu::matmul_f16::{HalfKernels, HalfVariant, HalfView};
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

/// The panel kernel on f16 operands (`matmul_panel_f16`, for the mixed step's products of
/// few rows): the same parity as the scalar kernel, unsplit and split.
#[test]
fn the_f16_panel_matches_its_twin_on_awkward_shapes() {
    use lstm_gpu::gpu::matmul::{Matmul, MatmulVariant};
    let gpu = gpu();
    let hk = kernels(&gpu);
    half_matmul_parity(
        &gpu,
        &hk,
        "matmul_panel_f16",
        &SIZES,
        &|gpu, s, a, b, bias, c, acc| {
            hk.matmul_with(HalfVariant::Panel, gpu, s, a, b, bias, c, acc, None)
        },
    );
    let mm = Matmul::with_variant(&gpu, MatmulVariant::StripSplit).unwrap();
    let split = std::cell::Cell::new(0);
    half_matmul_parity(
        &gpu,
        &hk,
        "matmul_panel_f16 split",
        &SIZES,
        &|gpu, s, a, b, bias, c, acc| {
            let d = hk.matmul_with(HalfVariant::Panel, gpu, s, a, b, bias, c, acc, Some(&mm))?;
            split.set(split.get() + usize::from(d.then.is_some()));
            Ok(d)
        },
    );
    assert!(split.get() >= 8, "{} products split", split.get());
}

/// The scalar and panel f16 kernels, unsplit, sum exactly what the twin sums in f32 (a
/// product of two f16 values is exact in f32, so fused or not, each step adds the same
/// value; the sums run from zero in increasing order of p, then the bias, then C): bit for
/// bit, in every transpose form, at 4-aligned offsets where the panel reads its operands
/// as vec4<f16> quads (A along p untransposed, B along p transposed) and at odd ones where
/// it cannot; the recurrent products' shapes among them.
#[test]
fn the_f16_kernels_sum_bit_for_bit_as_the_f32_twin() {
    use lstm_gpu::reference::{matmul, MatmulShape};
    let gpu = gpu();
    let hk = kernels(&gpu);
    let sizes = [
        (20, 64, 96),
        (20, 96, 64),
        (7, 36, 260),
        (33, 13, 9),
        (1, 8, 4),
    ];
    let mut compared = 0;
    for (t, &(m, k, n)) in sizes.iter().enumerate() {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            for aligned in [true, false] {
                let s = MatmulShape {
                    m,
                    k,
                    n,
                    trans_a: ta,
                    trans_b: tb,
                };
                let seed = 40 + 8 * t as u64 + 2 * u64::from(ta) + u64::from(tb);
                let (bias_on, accumulate) = (t % 2 == 1, t % 3 != 1);
                let (a_at, b_at) = if aligned {
                    (8, 8 + (m * k).div_ceil(4) * 4 + 4)
                } else {
                    (3, 3 + m * k + 1)
                };
                // No operand among f16's subnormals (below 2^-14): whether a GPU keeps
                // them is its own (Vulkan leaves it to the driver); the twin does.
                let inputs: Vec<f32> = random(b_at + k * n + 2, 1.0, seed)
                    .into_iter()
                    .map(|x| {
                        if x.abs() < 1e-4 {
                            1e-4f32.copysign(x)
                        } else {
                            x
                        }
                    })
                    .collect();
                let bias = random(n, 1.0, seed + 1);
                let c_start = random(m * n, 1.0, seed + 2);
                let src = gpu.storage_from("f32 operands", &inputs);
                let half_buf = gpu.storage("f16 operands", inputs.len().div_ceil(2) + 1);
                let bias_buf = gpu.storage_from("bias", &bias);
                let cast = hk
                    .cast(
                        &gpu,
                        View::all(&src),
                        HalfView::at(&half_buf, 0, inputs.len()),
                        inputs.len(),
                    )
                    .unwrap();
                gpu.run(&[&cast]).unwrap();
                let rounded = |v: &[f32]| v.iter().map(|&x| round_f16(x)).collect::<Vec<f32>>();
                let mut want = c_start.clone();
                matmul(
                    s,
                    &rounded(&inputs[a_at..a_at + m * k]),
                    &rounded(&inputs[b_at..b_at + k * n]),
                    bias_on.then_some(&bias[..]),
                    &mut want,
                    accumulate,
                );
                for variant in [HalfVariant::Scalar, HalfVariant::Panel] {
                    let c_buf = gpu.storage_from("C", &c_start);
                    let d = hk
                        .matmul_with(
                            variant,
                            &gpu,
                            s,
                            HalfView::at(&half_buf, a_at, m * k),
                            HalfView::at(&half_buf, b_at, k * n),
                            bias_on.then(|| View::all(&bias_buf)),
                            View::all(&c_buf),
                            accumulate,
                            None,
                        )
                        .unwrap();
                    gpu.run(&[&d]).unwrap();
                    let got: Vec<f32> = gpu.read(&c_buf, 0, m * n).unwrap();
                    let differ = got
                        .iter()
                        .zip(&want)
                        .filter(|(g, w)| g.to_bits() != w.to_bits())
                        .count();
                    assert_eq!(
                        differ, 0,
                        "{variant} {s:?} aligned={aligned} bias={bias_on} accumulate={accumulate}: \
                         {differ} of {} outputs differ from the f32 twin",
                        m * n
                    );
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, sizes.len() * 4 * 2 * 2);
}

/// The scalar and panel f16 kernels serving several products in one launch (the recurrent
/// products of a mixed wavefront step's layers, which may differ in width): each product
/// bit for bit what its own launch computes, unsplit and split (as a GPU splits: the f32
/// family's split rule forced), the split slices too; declined where some products split
/// and others do not; refused past four products.
#[test]
fn grouped_f16_products_compute_each_product_as_its_own_launch_does() {
    use lstm_gpu::gpu::matmul::{Matmul, MatmulVariant};
    use lstm_gpu::reference::MatmulShape;
    let gpu = gpu();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let shape = |m, k, n, trans_b| MatmulShape {
        m,
        k,
        n,
        trans_a: false,
        trans_b,
    };
    let forward = |h: usize| shape(20, h, 4 * h, false);
    let backward = |h: usize| shape(20, 4 * h, h, true);
    let long = |k: usize, trans_b| shape(9, k, 40, trans_b);
    let families = [
        Matmul::new(&gpu).unwrap(),
        Matmul::with_variant(&gpu, MatmulVariant::StripSplit).unwrap(),
    ];
    let (mut compared, mut split_compared, mut declined) = (0, 0, 0);
    for variant in [HalfVariant::Scalar, HalfVariant::Panel] {
        let mut hk = kernels(&gpu);
        hk.force(variant).unwrap();
        for family in &families {
            let cases: Vec<(Vec<MatmulShape>, u64)> = vec![
                (vec![forward(48), forward(20), forward(36)], 3),
                (vec![backward(48), backward(20), backward(36)], 4),
                (vec![forward(32); 2], 5),
                (
                    vec![long(1040, true), long(1000, true), long(1024, true)],
                    6,
                ),
                (vec![long(1040, false), long(8, false)], 7),
            ];
            for (shapes, seed) in cases {
                let lens =
                    |f: fn(&MatmulShape) -> usize| -> Vec<usize> { shapes.iter().map(f).collect() };
                let (a_len, b_len, c_len) = (
                    lens(|s| s.m * s.k),
                    lens(|s| s.k * s.n),
                    lens(|s| s.m * s.n),
                );
                // 4-aligned offsets for the even seeds (the panel's vec4<f16> loads), odd
                // ones otherwise.
                let gap = if seed % 2 == 0 { 4 } else { 1 };
                let at = |lens: &[usize], g: usize| {
                    lens[..g].iter().map(|l| l.div_ceil(4) * 4).sum::<usize>() + gap * (g + 1)
                };
                let total = |lens: &[usize]| at(lens, lens.len());
                let cast_into = |len: usize, seed: u64| {
                    let src = gpu.storage_from("f32", &random(len, 1.0, seed));
                    let dst = gpu.storage("f16", len.div_ceil(2) + 1);
                    let d = kernels(&gpu)
                        .cast(&gpu, View::all(&src), HalfView::at(&dst, 0, len), len)
                        .unwrap();
                    gpu.run(&[&d]).unwrap();
                    dst
                };
                let a_buf = cast_into(total(&a_len), seed);
                let b_buf = cast_into(total(&b_len), seed + 9);
                let c_start = random(total(&c_len), 1.0, seed + 17);
                let c_group = gpu.storage_from("C grouped", &c_start);
                let c_alone = gpu.storage_from("C alone", &c_start);
                let ab = |g: usize| {
                    (
                        HalfView::at(&a_buf, at(&a_len, g), a_len[g]),
                        HalfView::at(&b_buf, at(&b_len, g), b_len[g]),
                    )
                };
                let group: Vec<_> = (0..shapes.len())
                    .map(|g| {
                        let (a, b) = ab(g);
                        (shapes[g], a, b, View::at(&c_group, at(&c_len, g), c_len[g]))
                    })
                    .collect();
                let what = format!("{variant} (family {}) {shapes:?}", family.variant());
                let splits: Vec<bool> = group
                    .iter()
                    .map(|&(s, a, b, c)| {
                        let (_, p) = hk
                            .product_deferring_sum(&gpu, s, a, b, c, (family, 0))
                            .unwrap();
                        p.is_some()
                    })
                    .collect();
                let grouped = hk
                    .product_group_deferring_sum(&gpu, &group, (family, 1))
                    .unwrap();
                if splits.iter().any(|&x| x != splits[0]) {
                    assert!(grouped.is_none(), "{what}: split {splits:?}, grouped");
                    declined += 1;
                    continue;
                }
                let Some((d, partials)) = grouped else {
                    panic!("{what}: declined");
                };
                assert_eq!(d.launches(), 1, "{what}");
                assert!(d.label.ends_with("_group"), "{what}: {}", d.label);
                gpu.run(&[&d]).unwrap();
                for (g, &s) in shapes.iter().enumerate() {
                    let ((a, b), c) = (ab(g), View::at(&c_alone, at(&c_len, g), c_len[g]));
                    let (alone, alone_partials) = hk
                        .product_deferring_sum(&gpu, s, a, b, c, (family, 0))
                        .unwrap();
                    gpu.run(&[&alone]).unwrap();
                    assert_eq!(partials.is_some(), alone_partials.is_some(), "{what}");
                    if let (Some(p), Some(q)) = (&partials, &alone_partials) {
                        let p = &p[g];
                        assert_eq!((p.slices, p.words), (q.slices, q.words), "{what}");
                        assert!(p.slices > 1, "{what}: split");
                        let words = q.slices * q.words;
                        let got: Vec<f32> = gpu.read(&p.buffer, p.offset, words).unwrap();
                        let want: Vec<f32> = gpu.read(&q.buffer, q.offset, words).unwrap();
                        assert_eq!(bits(&got), bits(&want), "{what}: product {g}'s slices");
                        split_compared += 1;
                    }
                }
                let got: Vec<f32> = gpu.read(&c_group, 0, c_start.len()).unwrap();
                let want: Vec<f32> = gpu.read(&c_alone, 0, c_start.len()).unwrap();
                assert_eq!(bits(&got), bits(&want), "{what}: C");
                if partials.is_none() {
                    assert_ne!(bits(&got), bits(&c_start), "{what}: C written");
                }
                compared += 1;
            }
        }
        // More products than the uniforms hold.
        let a = gpu.storage("A", 1 << 14);
        let c = gpu.storage("C", 1 << 14);
        let one = (
            forward(8),
            HalfView::at(&a, 0, 8 * 20),
            HalfView::at(&a, 0, 8 * 32),
            View::all(&c),
        );
        let Err(err) = hk.product_group_deferring_sum(&gpu, &[one; 5], (&families[0], 1)) else {
            panic!("five products in one launch were accepted");
        };
        assert!(err.to_string().contains("1 to 4 products"), "{err}");
    }
    assert!(compared >= 12, "grouped launches compared: {compared}");
    assert!(
        split_compared >= 6,
        "split products compared: {split_compared}"
    );
    assert!(declined >= 2, "launches declined: {declined}");
}
