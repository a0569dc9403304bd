//! Parity of `shaders/matmul*.wgsl` with `reference::matmul` in f64: every variant the
//! adapter has, all four transpose forms, shapes that are not multiples of any tile, bias
//! and accumulate, operands sharing one buffer at odd offsets, outputs poisoned with NaN and
//! guarded against writes outside their window, and bit-identical repeated runs.

mod common;

use common::{gpu, random};
use lstm_gpu::check::{matmul_case, MatmulCase as Case, MATMUL_TOLERANCE};
use lstm_gpu::gpu::matmul::{Matmul, MatmulVariant, SKINNY_ROWS};
use lstm_gpu::gpu::{Gpu, View};
use lstm_gpu::reference::MatmulShape;

/// Run `case` with `variant` twice (C poisoned with NaN and guarded on both sides, the same
/// bits both times) and hold it to the f64 reference: `lstm_gpu::check::matmul_case`, what
/// `lstm-gpu check` runs.
fn check(gpu: &Gpu, mm: &Matmul, variant: MatmulVariant, case: &Case, seed: u64) {
    let s = case.shape;
    let run = matmul_case(gpu, mm, variant, case, seed).unwrap();
    let b_at = case.a_offset + s.m * s.k + case.gap;
    let aligned = [s.m, s.k, s.n, case.a_offset, b_at, case.c_offset]
        .iter()
        .all(|v| v % 4 == 0);
    if variant == MatmulVariant::SubgroupBroadcast {
        assert_eq!(
            run.label.starts_with("matmul_subgroup"),
            aligned,
            "{}: SubgroupBroadcast runs its own kernel exactly when everything is 4-aligned",
            run.label
        );
    }
    let what = format!("{variant} ({}) {}", run.label, case.describe());
    if let Some(fault) = run.fault {
        panic!("{what}: {fault}");
    }
    assert!(
        run.error <= MATMUL_TOLERANCE,
        "{what}: relative L2 error {:e} > {MATMUL_TOLERANCE:e}",
        run.error
    );
}

fn shape(m: usize, k: usize, n: usize, trans_a: bool, trans_b: bool) -> MatmulShape {
    MatmulShape {
        m,
        k,
        n,
        trans_a,
        trans_b,
    }
}

/// (m, k, n) covering 1, 7, 33, 60 and 129 in every position, none a multiple of a tile,
/// then sizes that are multiples of 4 (SubgroupBroadcast's vec4 path) but not of its 64x64
/// block, then few-row products wider than Skinny's 256-column block. Each runs at an odd
/// offset, and the multiples of 4 also at one that is 4-aligned.
const SIZES: [(usize, usize, usize); 14] = [
    (1, 1, 1),
    (7, 33, 1),
    (1, 7, 33),
    (33, 1, 7),
    (60, 129, 33),
    (129, 60, 7),
    (7, 129, 60),
    (33, 33, 129),
    (60, 36, 132),
    (4, 4, 4),
    (12, 68, 196),
    (132, 20, 68),
    (1, 45, 517),
    (3, 9, 260),
];

#[test]
fn every_variant_matches_the_reference_on_awkward_shapes() {
    let gpu = gpu();
    let mm = Matmul::new(&gpu).unwrap();
    let mut seed = 1;
    // On wgpu's GL backend llvmpipe compiles each pipeline at its first dispatch, the tiled
    // ones in 20-100 s each on a cold shader cache: there every entry point runs once (the
    // tile shapes of matmul_tiled are the same GLSL but for constants; Vulkan runs them all).
    let mut entry_points = std::collections::HashSet::new();
    for variant in mm.variants_available() {
        let entry = variant.function(shape(1, 1, 1, false, false));
        if common::backend() == lstm_gpu::gpu::BackendChoice::Gl && !entry_points.insert(entry) {
            continue;
        }
        for (t, &(m, k, n)) in SIZES.iter().enumerate() {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let aligned = [m, k, n].iter().all(|v| v % 4 == 0);
                let offsets: &[usize] = if aligned { &[5, 8] } else { &[3] };
                for &a_offset in offsets {
                    seed += 1;
                    let case = Case {
                        shape: shape(m, k, n, ta, tb),
                        bias: (t + seed as usize) % 2 == 0,
                        accumulate: (t / 2 + seed as usize) % 2 == 0,
                        a_offset,
                        gap: if a_offset % 4 == 0 { 4 } else { 1 },
                        c_offset: if a_offset % 4 == 0 { 36 } else { 37 },
                    };
                    check(&gpu, &mm, variant, &case, seed);
                }
            }
        }
    }
}

#[test]
fn the_chosen_variant_matches_on_the_seed_model_shapes() {
    let gpu = gpu();
    let mm = Matmul::new(&gpu).unwrap();
    for (i, s) in [
        shape(60, 456, 1024, false, false),
        shape(1200, 128, 10000, false, false),
    ]
    .into_iter()
    .enumerate()
    {
        let case = Case {
            shape: s,
            bias: i == 1,
            accumulate: i == 0,
            a_offset: 0,
            gap: 0,
            c_offset: 4,
        };
        check(&gpu, &mm, mm.variant(), &case, 100 + i as u64);
    }
}

/// `prepare` runs products of at most `SKINNY_ROWS` rows (batch-1 evaluation, prediction,
/// generation) with the Skinny kernel when the default was chosen for the adapter, and the
/// others with the default; a variant asked for (`--matmul`) runs every product.
#[test]
fn few_row_products_take_the_skinny_kernel_unless_a_variant_is_asked_for() {
    let gpu = gpu();
    let auto = Matmul::new(&gpu).unwrap();
    let asked = Matmul::with_variant(&gpu, MatmulVariant::Tiled).unwrap();
    let input = gpu.storage("inputs", 4096);
    let out = gpu.storage("C", 4096);
    // 8 rows: the next size the default variant runs with its own kernel (a multiple of 4).
    for m in (1..=SKINNY_ROWS).chain([8]) {
        for (ta, tb) in [(false, false), (true, true)] {
            let s = shape(m, 8, 300, ta, tb);
            let label = |mm: &Matmul| {
                mm.prepare(
                    &gpu,
                    s,
                    View::at(&input, 0, m * 8),
                    View::at(&input, 1024, 8 * 300),
                    None,
                    View::at(&out, 0, m * 300),
                    false,
                )
                .unwrap()
                .label
            };
            let want = if m <= SKINNY_ROWS {
                "matmul_skinny"
            } else {
                auto.variant().entry_point(s)
            };
            assert_eq!(label(&auto), want, "{m} rows");
            assert_eq!(label(&asked), "matmul_tiled", "{m} rows, tiled asked for");
        }
    }
}

/// More than 65535 workgroups in x: the grid is split over x and y.
#[test]
fn grids_past_the_workgroup_limit_split_over_two_dimensions() {
    let gpu = gpu();
    let mm = Matmul::new(&gpu).unwrap();
    let n = 64 * 65_540;
    // Every variant numbers its blocks the same way; the default and the GPU one suffice.
    let mut variants = vec![mm.variant(), MatmulVariant::Tiled];
    variants.dedup();
    for variant in variants {
        let case = Case {
            shape: shape(4, 4, n, false, false),
            bias: true,
            accumulate: false,
            a_offset: 4,
            gap: 4,
            c_offset: 8,
        };
        check(&gpu, &mm, variant, &case, 7);
    }
}

#[test]
fn short_views_and_an_output_aliasing_an_input_are_refused() {
    let gpu = gpu();
    let mm = Matmul::new(&gpu).unwrap();
    let s = shape(5, 6, 7, false, false);
    let input = gpu.storage("inputs", 120);
    let out = gpu.storage("C", 35);
    let a = View::at(&input, 0, 30);
    let b = View::at(&input, 30, 42);
    let short_b = View::at(&input, 30, 41);
    let c = View::all(&out);
    assert!(mm.prepare(&gpu, s, a, b, None, c, false).is_ok());
    let e = mm
        .prepare(&gpu, s, a, short_b, None, c, false)
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("matmul B"), "{e:#}");
    let e = mm
        .prepare(&gpu, s, a, b, None, View::at(&input, 72, 35), false)
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("shares a buffer"), "{e:#}");
}

/// The split-K variants cut a long k into slices when C is small (two launches: the slices,
/// then their sum), match the reference there, on a last slice shorter than the others and
/// with bias and accumulation, and run their unsplit twin where k is too short to split.
#[test]
fn split_k_variants_split_long_products_and_match_the_reference() {
    let gpu = gpu();
    let mm = Matmul::new(&gpu).unwrap();
    let split = [
        MatmulVariant::StripSplit,
        MatmulVariant::StripQuadSplit,
        MatmulVariant::Block64Split,
        MatmulVariant::PanelSplit,
    ];
    let available = mm.variants_available();
    assert!(available.contains(&MatmulVariant::StripSplit));
    assert!(available.contains(&MatmulVariant::PanelSplit));
    let buf = gpu.storage("operands", 1 << 20);
    let out = gpu.storage("C", 1 << 16);
    for variant in split.into_iter().filter(|v| available.contains(v)) {
        for (i, (s, splits)) in [
            (shape(60, 1024, 256, false, true), true),
            (shape(7, 130, 9, true, false), true),
            (shape(33, 70, 5, true, true), true),
            (shape(60, 20, 128, false, false), false),
        ]
        .into_iter()
        .enumerate()
        {
            let d = mm
                .prepare_with(
                    variant,
                    &gpu,
                    s,
                    View::at(&buf, 0, s.m * s.k),
                    View::at(&buf, s.m * s.k, s.k * s.n),
                    None,
                    View::all(&out),
                    false,
                )
                .unwrap();
            assert_eq!(d.launches(), if splits { 2 } else { 1 }, "{variant} {s:?}");
            let unsplit = match variant {
                MatmulVariant::StripSplit => "matmul_strip",
                MatmulVariant::StripQuadSplit => "matmul_strip_quad",
                MatmulVariant::PanelSplit => "matmul_panel",
                _ => "matmul_block_64x64",
            };
            if !splits {
                assert_eq!(d.label, unsplit);
            }
            let case = Case {
                shape: s,
                bias: i % 2 == 0,
                accumulate: i != 1,
                a_offset: 3,
                gap: 1,
                c_offset: 5,
            };
            check(&gpu, &mm, variant, &case, 500 + i as u64);
        }
    }
}

/// The block and panel kernels read an aligned operand a vec4 at a time (`A_VEC4`,
/// `B_VEC4`) and an unaligned one word by word: the same words either way, so the same sums
/// bit for bit. Each product runs with its operands 4-aligned and, the same values, one
/// word on; in every transpose form, split (k 260) and unsplit, with edges in m and n,
/// bias and accumulation (no block variant is built on GL; the panel ones are).
#[test]
fn quad_reading_kernels_read_aligned_operands_to_the_same_bits() {
    let gpu = gpu();
    let mm = Matmul::new(&gpu).unwrap();
    let by_quads: Vec<MatmulVariant> = mm
        .variants_available()
        .into_iter()
        .filter(|v| {
            lstm_gpu::gpu::matmul::block_constants(*v).is_some()
                || matches!(v, MatmulVariant::Panel | MatmulVariant::PanelSplit)
        })
        .collect();
    let blocks = by_quads
        .iter()
        .filter(|v| v.name().starts_with("block"))
        .count();
    if common::backend() != lstm_gpu::gpu::BackendChoice::Gl {
        assert!(blocks > 0, "no block variant built on Vulkan");
    }
    assert!(by_quads.contains(&MatmulVariant::PanelSplit));
    let words = 1 << 20;
    let values = random(words, 1.0, 77);
    let bias_values = random(1024, 1.0, 78);
    for variant in by_quads {
        for (m, k, n) in [(132, 20, 68), (60, 260, 196), (8, 12, 4), (20, 1024, 516)] {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let s = shape(m, k, n, ta, tb);
                let c_start = random(m * n, 1.0, 79);
                let mut outputs = Vec::new();
                for shift in [0, 1] {
                    // The same operand values at words 8.. and 8 + m k + 4.. (aligned), or
                    // one word later (not).
                    let (a_at, b_at) = (8 + shift, 8 + m * k + 4 + shift);
                    let mut inputs = vec![f32::NAN; words];
                    inputs[a_at..a_at + m * k].copy_from_slice(&values[..m * k]);
                    inputs[b_at..b_at + k * n].copy_from_slice(&values[m * k..m * k + k * n]);
                    let input_buf = gpu.storage_from("inputs", &inputs);
                    let bias_buf = gpu.storage_from("bias", &bias_values);
                    let c_buf = gpu.storage_from("C", &c_start);
                    let d = mm
                        .prepare_with(
                            variant,
                            &gpu,
                            s,
                            View::at(&input_buf, a_at, m * k),
                            View::at(&input_buf, b_at, k * n),
                            Some(View::at(&bias_buf, 0, n)),
                            View::all(&c_buf),
                            true,
                        )
                        .unwrap();
                    gpu.run(&[&d]).unwrap();
                    let got: Vec<f32> = gpu.read(&c_buf, 0, m * n).unwrap();
                    assert!(
                        got.iter().all(|v| v.is_finite()),
                        "{variant} {s:?}: a NaN word was read"
                    );
                    outputs.push(got.iter().map(|v| v.to_bits()).collect::<Vec<u32>>());
                }
                assert!(
                    outputs[0] == outputs[1],
                    "{variant} {s:?}: quads and words differ"
                );
            }
        }
    }
}

/// A grouped launch (`prepare_group_deferring_sum`: the layers' recurrent products of a
/// wavefront step in one launch) computes each of its products exactly as the product's own
/// launch does: the same C bits unsplit, the same partial sums bit for bit where k is split
/// (each product's slices at its own place in the scratch buffer). Three products at odd
/// offsets of shared A, B and C buffers, in the forward and the backward recurrent forms,
/// of one width and of three (layers of 48, 20 and 36 units: the grid is the widest's, and
/// the narrower products' extra workgroups and slices do nothing); a launch whose products
/// would not all split alike, or whose kernel has no grouped form, is declined (`None`);
/// too many products are refused.
#[test]
fn grouped_products_compute_each_product_as_its_own_launch_does() {
    let gpu = gpu();
    let probe = Matmul::new(&gpu).unwrap();
    let available = probe.variants_available();
    let grouped = [
        MatmulVariant::Strip,
        MatmulVariant::StripSplit,
        MatmulVariant::StripQuad,
        MatmulVariant::StripQuadSplit,
        MatmulVariant::Panel,
        MatmulVariant::PanelSplit,
    ];
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let (mut tried, mut declined) = (0, 0);
    for variant in grouped.into_iter().filter(|v| available.contains(v)) {
        let mm = Matmul::with_variant(&gpu, variant).unwrap();
        // Per product (hidden widths h): [batch, h] @ [h, 4h] forward, [batch, 4h] @
        // [4h, h]^T backward; long k splits (1040: 65 slices of 16; 1000 and 1024: more).
        let forward = |h: usize| shape(20, h, 4 * h, false, false);
        let backward = |h: usize| shape(20, 4 * h, h, false, true);
        let long = |k: usize, trans_b| shape(9, k, 40, false, trans_b);
        let cases: Vec<(Vec<MatmulShape>, u64)> = vec![
            (vec![forward(48); 3], 1),
            (vec![backward(48); 3], 2),
            (vec![forward(48), forward(20), forward(36)], 3),
            (vec![backward(48), backward(20), backward(36)], 4),
            (vec![long(1040, false); 3], 5),
            (
                vec![long(1040, true), long(1000, true), long(1024, true)],
                6,
            ),
        ];
        for (shapes, seed) in cases {
            let lens =
                |f: fn(&MatmulShape) -> usize| -> Vec<usize> { shapes.iter().map(f).collect() };
            let (a_len, b_len, c_len) = (
                lens(|s| s.m * s.k),
                lens(|s| s.k * s.n),
                lens(|s| s.m * s.n),
            );
            // Odd offsets: each operand one word after the one before it.
            let at = |lens: &[usize], g: usize| lens[..g].iter().sum::<usize>() + 1 + g;
            let total = |lens: &[usize]| at(lens, lens.len());
            let a_buf = gpu.storage_from("A", &random(total(&a_len), 1.0, seed));
            let b_buf = gpu.storage_from("B", &random(total(&b_len), 1.0, seed + 9));
            let c_start = random(total(&c_len), 1.0, seed + 17);
            let c_group = gpu.storage_from("C grouped", &c_start);
            let c_alone = gpu.storage_from("C alone", &c_start);
            let ab = |g: usize| {
                (
                    View::at(&a_buf, at(&a_len, g), a_len[g]),
                    View::at(&b_buf, at(&b_len, g), b_len[g]),
                )
            };
            let group: Vec<_> = (0..shapes.len())
                .map(|g| {
                    let (a, b) = ab(g);
                    (shapes[g], a, b, View::at(&c_group, at(&c_len, g), c_len[g]))
                })
                .collect();
            let what = format!("{variant} {shapes:?}");
            // Products of which some split k and others not are declined.
            let splits: Vec<bool> = group
                .iter()
                .map(|&(s, a, b, c)| {
                    let (_, partials) = mm.prepare_deferring_sum_in(&gpu, s, a, b, c, 0).unwrap();
                    partials.is_some()
                })
                .collect();
            let grouped = mm.prepare_group_deferring_sum(&gpu, &group, 1).unwrap();
            if splits.iter().any(|&x| x != splits[0]) {
                assert!(grouped.is_none(), "{what}: split {splits:?}, grouped");
                declined += 1;
                continue;
            }
            let Some((d, partials)) = grouped else {
                panic!("{what}: declined");
            };
            assert_eq!(d.launches(), 1, "{what}");
            gpu.run(&[&d]).unwrap();
            for (g, &s) in shapes.iter().enumerate() {
                let ((a, b), c) = (ab(g), View::at(&c_alone, at(&c_len, g), c_len[g]));
                let (alone, alone_partials) =
                    mm.prepare_deferring_sum_in(&gpu, s, a, b, c, 0).unwrap();
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
                    tried += 1;
                }
            }
            let got: Vec<f32> = gpu.read(&c_group, 0, c_start.len()).unwrap();
            let want: Vec<f32> = gpu.read(&c_alone, 0, c_start.len()).unwrap();
            assert_eq!(bits(&got), bits(&want), "{what}: C");
            if partials.is_none() {
                assert_ne!(bits(&got), bits(&c_start), "{what}: C written");
                tried += 1;
            }
        }
    }
    assert!(tried >= 2 * 6, "grouped products compared: {tried}");
    assert!(declined >= 2, "launches declined: {declined}");
    let s = shape(20, 48, 192, false, false);
    let (a, b, c) = (
        gpu.storage("A", 1 << 16),
        gpu.storage("B", 1 << 16),
        gpu.storage("C", 1 << 16),
    );
    let one = (s, View::all(&a), View::all(&b), View::all(&c));
    // A kernel with barriers has no grouped form.
    let mm = Matmul::with_variant(&gpu, MatmulVariant::Tiled).unwrap();
    assert!(mm
        .prepare_group_deferring_sum(&gpu, &[one], 1)
        .unwrap()
        .is_none());
    // One product split and one not: their cells could not share a launch.
    let mm = Matmul::with_variant(&gpu, MatmulVariant::StripSplit).unwrap();
    let split = (
        shape(9, 1040, 40, false, false),
        View::all(&a),
        View::all(&b),
        View::all(&c),
    );
    let short = (
        shape(9, 8, 40, false, false),
        View::all(&a),
        View::all(&b),
        View::all(&c),
    );
    assert!(mm
        .prepare_group_deferring_sum(&gpu, &[short, split], 1)
        .unwrap()
        .is_none());
    // Two products writing the same window of C.
    let mm_strip = Matmul::with_variant(&gpu, MatmulVariant::Strip).unwrap();
    let Err(err) = mm_strip.prepare_group_deferring_sum(&gpu, &[one, one], 1) else {
        panic!("two products writing one window were accepted");
    };
    assert!(err.to_string().contains("overlapping windows"), "{err}");
    // More products than the uniforms hold.
    let Err(err) = mm.prepare_group_deferring_sum(&gpu, &[one; 5], 1) else {
        panic!("five products in one launch were accepted");
    };
    let err = err.to_string();
    assert!(err.contains("1 to 4 products"), "{err}");
}
