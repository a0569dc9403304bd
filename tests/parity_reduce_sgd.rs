//! Parity of `shaders/reduce.wgsl` (global norm, clip scale, column sums) and
//! `shaders/sgd.wgsl` (dense and sparse-row updates) with their CPU twins
//! `reference::sum_squares`, `reference::clip_scale`, `reference::sgd_dense` and
//! `reference::sgd_sparse_rows`, against f64 references; the step and state guards with
//! `reference::step_guard` and `reference::state_guard`.

mod common;

use common::{assert_close, gpu, nan, random};
use lstm_gpu::gpu::embedding::{pack_segments, segments_words};
use lstm_gpu::gpu::reduce::{ClipStats, ColumnSums, Reduce, TrainAccumulator};
use lstm_gpu::gpu::sgd::{Hyper, Sgd};
use lstm_gpu::gpu::{Gpu, View};
use lstm_gpu::reference::{self, IdSegments};
use lstm_gpu::rng::SplitMix64;

/// Words before and after every window.
const GUARD: usize = 3;

fn with_guard<T: bytemuck::Pod>(guard: T, data: &[T]) -> Vec<T> {
    let mut words = vec![guard; GUARD];
    words.extend_from_slice(data);
    words.extend(std::iter::repeat_n(guard, GUARD));
    words
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn read_all(gpu: &Gpu, buffer: &wgpu::Buffer) -> Vec<f32> {
    gpu.read(buffer, 0, (buffer.size() / 4) as usize).unwrap()
}

/// A clip block [.., .., scale, 0] at offset GUARD, NaN around it.
fn clip_block(gpu: &Gpu, scale: f32) -> wgpu::Buffer {
    gpu.storage_from(
        "clip",
        &with_guard(f32::NAN, &[f32::NAN, f32::NAN, scale, 0.0]),
    )
}

/// A hyperparameter block at offset GUARD, other words around it.
fn hyper_block(gpu: &Gpu, learning_rate: f32) -> wgpu::Buffer {
    let hyper = Hyper {
        learning_rate,
        step: 3,
        seed: 9,
    };
    let mut words = vec![0xdead_beefu32; GUARD];
    words.extend_from_slice(bytemuck::cast_slice(&[hyper]));
    gpu.storage_from("hyper", &words)
}

/// The global norm of `dense` tensors plus the first U rows of an embedding-style
/// `[capacity, width]` gradient, through partial sums and clip_scale.
struct NormCase {
    dense: Vec<Vec<f32>>,
    width: usize,
    capacity: usize,
    ids: Vec<u32>,
    rows: Vec<f32>,
}

fn ids(n: usize, vocab: u64, seed: u64) -> Vec<u32> {
    let mut r = SplitMix64::new(seed);
    (0..n).map(|_| (r.next_u64() % vocab) as u32).collect()
}

/// Returns the clip block and the partials buffer as the kernels left them.
fn run_norm(gpu: &Gpu, reduce: &Reduce, case: &NormCase, max_norm: f32) -> (ClipStats, Vec<f32>) {
    let tensors: Vec<wgpu::Buffer> = case
        .dense
        .iter()
        .map(|t| gpu.storage_from("grad", &with_guard(f32::NAN, t)))
        .collect();
    let seg = IdSegments::new(&case.ids);
    let seg_buf = gpu.storage_from(
        "segments",
        &with_guard(u32::MAX, &pack_segments(&seg, case.capacity)),
    );
    let rows_buf = gpu.storage_from("rows", &with_guard(f32::NAN, &case.rows));
    let slots: usize = case
        .dense
        .iter()
        .map(|t| Reduce::slots(t.len()))
        .sum::<usize>()
        + Reduce::slots(case.capacity * case.width);
    // Every slot poisoned; the first slot of the first tensor at word GUARD.
    let partials = gpu.storage_from("partials", &nan(slots + 2 * GUARD));
    let partials_view = View::at(&partials, GUARD, slots);

    let mut dispatches = Vec::new();
    let mut slot = 0;
    for (t, data) in tensors.iter().zip(&case.dense) {
        let (d, used) = reduce
            .prepare_sum_squares(gpu, View::at(t, GUARD, data.len()), partials_view, slot)
            .unwrap();
        assert_eq!(d.label, "sum_squares_partial");
        assert_eq!(used, Reduce::slots(data.len()));
        dispatches.push(d);
        slot += used;
    }
    let (d, used) = reduce
        .prepare_sum_squares_rows(
            gpu,
            case.width,
            case.capacity,
            View::at(&seg_buf, GUARD, segments_words(case.capacity)),
            View::at(&rows_buf, GUARD, case.capacity * case.width),
            partials_view,
            slot,
        )
        .unwrap();
    assert_eq!(d.label, "sum_squares_rows_partial");
    dispatches.push(d);
    slot += used;
    assert_eq!(slot, slots);

    let clip = gpu.storage_from(
        "clip",
        &with_guard(f32::NAN, &[f32::NAN, f32::NAN, f32::NAN, 0.0]),
    );
    let clip_view = View::at(&clip, GUARD, ClipStats::WORDS);
    let d = reduce
        .prepare_clip_scale(gpu, partials_view, slots, max_norm, clip_view)
        .unwrap();
    assert_eq!(d.label, "clip_scale");
    dispatches.push(d);
    gpu.run(&dispatches.iter().collect::<Vec<_>>()).unwrap();

    let clip_all = read_all(gpu, &clip);
    for i in (0..GUARD).chain(GUARD + ClipStats::WORDS..clip_all.len()) {
        assert!(
            clip_all[i].is_nan(),
            "clip word {i} outside the block was written"
        );
    }
    let partials_all = read_all(gpu, &partials);
    for (i, v) in partials_all.iter().enumerate() {
        let inside = (GUARD..GUARD + slots).contains(&i);
        assert_eq!(inside, !v.is_nan(), "partial word {i}: {v}");
    }
    (ClipStats::read(gpu, clip_view).unwrap(), partials_all)
}

fn norm_case(
    dense_lens: &[usize],
    width: usize,
    capacity: usize,
    positions: usize,
    seed: u64,
) -> NormCase {
    NormCase {
        dense: dense_lens
            .iter()
            .enumerate()
            .map(|(k, &n)| random(n, 1.0, seed + k as u64))
            .collect(),
        width,
        capacity,
        ids: ids(positions, 2 * positions as u64 / 3 + 1, seed + 99),
        rows: random(capacity * width, 1.0, seed + 100),
    }
}

/// The f64 reference: dense tensors whole, the embedding rows only up to U.
fn reference_sum_sq(case: &NormCase) -> f64 {
    let unique = IdSegments::new(&case.ids).unique.len();
    let mut tensors: Vec<Vec<f64>> = case.dense.iter().map(|t| widen(t)).collect();
    tensors.push(widen(&case.rows[..unique * case.width]));
    let refs: Vec<&[f64]> = tensors.iter().map(|t| t.as_slice()).collect();
    reference::sum_squares(&refs)
}

#[test]
fn global_norm_and_clip_scale_match_reference() {
    let gpu = gpu();
    let reduce = Reduce::new(&gpu).unwrap();
    let cases = [
        norm_case(&[1], 1, 1, 1, 1),
        norm_case(&[7, 4095, 4096, 4097, 33], 7, 40, 33, 10),
        // The model's gradients: LSTM kernels and biases, softmax weight and bias, and the
        // embedding rows of a 60 x 20 batch.
        norm_case(
            &[456 * 1024, 1024, 384 * 512, 512, 128 * 10000, 10000],
            200,
            1200,
            1200,
            20,
        ),
    ];
    for (k, case) in cases.iter().enumerate() {
        let sum_sq = reference_sum_sq(case);
        let norm = sum_sq.sqrt();
        for max_norm in [(norm * 0.5) as f32, (norm * 2.0) as f32] {
            let (stats, partials) = run_norm(&gpu, &reduce, case, max_norm);
            let what = format!("case {k} max_norm {max_norm}");
            assert_close(&format!("{what} sum_sq"), &[stats.sum_sq], &[sum_sq], 1e-5);
            assert_close(&format!("{what} norm"), &[stats.norm], &[norm], 1e-5);
            let scale = reference::clip_scale(sum_sq, max_norm as f64);
            assert_close(&format!("{what} scale"), &[stats.scale], &[scale], 1e-5);
            if max_norm as f64 > norm {
                assert_eq!(
                    stats.scale, 1.0,
                    "{what}: no clipping below the maximum norm"
                );
            }
            assert_eq!(stats.nonfinite_steps, 0.0, "{what}");
            let (again, partials_again) = run_norm(&gpu, &reduce, case, max_norm);
            assert_eq!(again, stats, "{what}: differs between runs");
            assert_eq!(
                bits(&partials_again),
                bits(&partials),
                "{what}: partials differ"
            );
        }
    }
}

/// An infinite gradient: scale 0, one non-finite step counted, and SGD leaves the
/// parameters alone.
#[test]
fn nonfinite_norm_skips_the_update() {
    let gpu = gpu();
    let reduce = Reduce::new(&gpu).unwrap();
    let sgd = Sgd::new(&gpu).unwrap();
    let mut grad = random(100, 1.0, 5);
    grad[37] = f32::INFINITY;
    let grad_buf = gpu.storage_from("grad", &grad);
    let param = random(100, 1.0, 6);
    let param_buf = gpu.storage_from("param", &param);
    let partials = gpu.storage("partials", 1);
    let clip = gpu.storage("clip", ClipStats::WORDS);
    let hyper = hyper_block(&gpu, 1.0);
    let (norm, _) = reduce
        .prepare_sum_squares(&gpu, View::all(&grad_buf), View::all(&partials), 0)
        .unwrap();
    let clip_d = reduce
        .prepare_clip_scale(&gpu, View::all(&partials), 1, 5.0, View::all(&clip))
        .unwrap();
    let update = sgd
        .prepare_dense(
            &gpu,
            View::all(&param_buf),
            View::all(&grad_buf),
            View::at(&hyper, GUARD, Hyper::WORDS),
            View::all(&clip),
        )
        .unwrap();
    gpu.run(&[&norm, &clip_d, &update]).unwrap();
    gpu.run(&[&norm, &clip_d, &update]).unwrap();
    let stats = ClipStats::read(&gpu, View::all(&clip)).unwrap();
    assert_eq!(stats.scale, 0.0);
    assert_eq!(stats.nonfinite_steps, 2.0);
    assert!(stats.sum_sq.is_infinite());
    let after: Vec<f32> = gpu.read(&param_buf, 0, 100).unwrap();
    assert_eq!(bits(&after), bits(&param), "parameters changed");
}

fn column_sum_reference(
    rows: usize,
    cols: usize,
    input: &[f32],
    old: &[f32],
    accumulate: bool,
) -> Vec<f64> {
    let input: Vec<f64> = input.iter().map(|&v| v as f64).collect();
    let mut out: Vec<f64> = old.iter().map(|&v| v as f64).collect();
    lstm_gpu::reference::column_sum(rows, cols, &input, &mut out, accumulate);
    out
}

#[test]
fn column_sum_matches_reference() {
    let gpu = gpu();
    let mut reduce = Reduce::new(&gpu).unwrap();
    // The one-pass kernel, whatever the adapter's default (sliced on GPUs: below).
    reduce.column_sums = ColumnSums::Serial;
    for (k, &(rows, cols)) in [(1, 1), (7, 33), (33, 65), (1200, 1024), (1200, 10000)]
        .iter()
        .enumerate()
    {
        let input = random(rows * cols, 1.0, 30 + k as u64);
        let old = random(cols, 1.0, 40 + k as u64);
        let input_buf = gpu.storage_from("input", &with_guard(f32::NAN, &input));
        for accumulate in [false, true] {
            let start = if accumulate { old.clone() } else { nan(cols) };
            let out = gpu.storage_from("out", &with_guard(f32::NAN, &start));
            let d = reduce
                .prepare_column_sum(
                    &gpu,
                    rows,
                    cols,
                    View::at(&input_buf, GUARD, rows * cols),
                    View::at(&out, GUARD, cols),
                    accumulate,
                )
                .unwrap();
            assert_eq!(d.label, "column_sum");
            gpu.run(&[&d]).unwrap();
            let all = read_all(&gpu, &out);
            for i in (0..GUARD).chain(GUARD + cols..all.len()) {
                assert!(
                    all[i].is_nan(),
                    "column_sum wrote word {i} outside its output"
                );
            }
            let got = &all[GUARD..GUARD + cols];
            let want = column_sum_reference(rows, cols, &input, &old, accumulate);
            let what = format!("column_sum {rows}x{cols} accumulate={accumulate}");
            assert_close(&what, got, &want, 1e-5);
        }
    }
}

/// Column sums in row slices: bit for bit their f32 twin (each slice summed in row order,
/// then the slices' sums in order, then the old value), on slices that divide the rows and
/// ones that leave a short last slice, slices of fewer rows than the kernel's eight loads
/// and of one row; nothing written outside the output; two launches in one dispatch, and
/// one pass when a slice holds every row.
#[test]
fn column_sum_in_row_slices_matches_its_twin_bit_for_bit() {
    let gpu = gpu();
    let reduce = Reduce::new(&gpu).unwrap();
    let cases = [
        (9, 3, 1),
        (13, 33, 5),
        (64, 65, 8),
        (100, 7, 34),
        (1200, 1024, 33),
        (1200, 10000, 86),
        (20, 10, 20),
        (20, 10, 64),
    ];
    for (k, &(rows, cols, slice_rows)) in cases.iter().enumerate() {
        let input = random(rows * cols, 1.0, 130 + k as u64);
        let old = random(cols, 1.0, 140 + k as u64);
        let input_buf = gpu.storage_from("input", &with_guard(f32::NAN, &input));
        for accumulate in [false, true] {
            let what = format!("{rows}x{cols} in slices of {slice_rows}, accumulate={accumulate}");
            let start = if accumulate { old.clone() } else { nan(cols) };
            let out = gpu.storage_from("out", &with_guard(f32::NAN, &start));
            let d = reduce
                .prepare_column_sum_in_slices(
                    &gpu,
                    rows,
                    cols,
                    slice_rows,
                    View::at(&input_buf, GUARD, rows * cols),
                    View::at(&out, GUARD, cols),
                    accumulate,
                )
                .unwrap();
            let sliced = slice_rows < rows;
            let labels: Vec<&str> = std::iter::once(d.label.as_str())
                .chain(d.then.iter().map(|t| t.label.as_str()))
                .collect();
            let want_labels = if sliced {
                vec!["column_sum_sliced", "column_slice_sum"]
            } else {
                vec!["column_sum"]
            };
            assert_eq!(labels, want_labels, "{what}");
            assert_eq!(
                d.groups.2 as usize,
                if sliced { rows.div_ceil(slice_rows) } else { 1 }
            );
            gpu.run(&[&d]).unwrap();
            let all = read_all(&gpu, &out);
            for i in (0..GUARD).chain(GUARD + cols..all.len()) {
                assert!(all[i].is_nan(), "{what}: wrote word {i} outside its output");
            }
            let mut want = start.clone();
            reference::column_sum_sliced(rows, cols, slice_rows, &input, &mut want, accumulate);
            assert_eq!(bits(&all[GUARD..GUARD + cols]), bits(&want), "{what}");
            // And the f64 sum, as the one-pass kernel is held to it.
            let exact = column_sum_reference(rows, cols, &input, &old, accumulate);
            assert_close(&what, &all[GUARD..GUARD + cols], &exact, 1e-5);
        }
    }
}

/// What a GPU runs ([`ColumnSums::GPU`]): about 2^17 invocations in slices of at least 32
/// rows, never more slice sums than the scratch holds, one pass where slicing would not
/// add invocations; a CPU adapter's serial sums never slice.
#[test]
fn row_slices_fill_a_gpu_within_the_scratch() {
    use lstm_gpu::gpu::reduce::COLUMN_SCRATCH_WORDS;
    let gpu_sums = ColumnSums::GPU;
    // The seed step's sums: the softmax bias [1200, 10000], 14 slices of 86 rows; the
    // layers' [1200, 1024], 37 slices of 33 rows.
    assert_eq!(gpu_sums.slice_rows(1200, 10000), 86);
    assert_eq!(gpu_sums.slice_rows(1200, 1024), 33);
    // Too few rows to slice, or so many columns that one pass fills the GPU.
    assert_eq!(gpu_sums.slice_rows(40, 512), 40);
    assert_eq!(gpu_sums.slice_rows(5000, 1 << 18), 5000);
    assert_eq!(ColumnSums::Serial.slice_rows(1200, 10), 1200);
    for rows in [1, 31, 64, 700, 1200, 4096, 100_000] {
        for cols in [1, 3, 200, 1024, 6000, 10000, 33278, 1 << 20] {
            let slice = gpu_sums.slice_rows(rows, cols);
            let slices = rows.div_ceil(slice);
            assert!(slice >= 1 && slice <= rows, "{rows}x{cols}: {slice}");
            assert!(
                slices == 1 || slice >= 32,
                "{rows}x{cols}: slices of {slice}"
            );
            assert!(
                slices == 1 || slices * cols <= COLUMN_SCRATCH_WORDS,
                "{rows}x{cols}"
            );
            assert!(
                slices * cols <= (1 << 17) + cols * 2 || slices == 1,
                "{rows}x{cols}"
            );
        }
    }
}

#[test]
fn sgd_dense_matches_reference_and_reads_the_learning_rate_each_run() {
    let gpu = gpu();
    let sgd = Sgd::new(&gpu).unwrap();
    for (k, len) in [1usize, 7, 255, 257, 128 * 10000 + 3]
        .into_iter()
        .enumerate()
    {
        let param = random(len, 1.0, 50 + k as u64);
        let grad = random(len, 1.0, 60 + k as u64);
        let param_buf = gpu.storage_from("param", &with_guard(f32::NAN, &param));
        let grad_buf = gpu.storage_from("grad", &with_guard(f32::NAN, &grad));
        let hyper = hyper_block(&gpu, 0.7);
        let scale = 0.37f32;
        let clip = clip_block(&gpu, scale);
        let d = sgd
            .prepare_dense(
                &gpu,
                View::at(&param_buf, GUARD, len),
                View::at(&grad_buf, GUARD, len),
                View::at(&hyper, GUARD, Hyper::WORDS),
                View::at(&clip, GUARD, ClipStats::WORDS),
            )
            .unwrap();
        assert_eq!(d.label, "sgd_dense");
        gpu.run(&[&d]).unwrap();
        // A new learning rate takes effect without preparing again.
        let next = Hyper {
            learning_rate: 0.25,
            step: 4,
            seed: 9,
        };
        gpu.write(&hyper, GUARD, bytemuck::cast_slice::<Hyper, u32>(&[next]));
        gpu.run(&[&d]).unwrap();

        let mut want = widen(&param);
        let grad64 = widen(&grad);
        reference::sgd_dense(&mut want, &grad64, 0.7, scale as f64);
        reference::sgd_dense(&mut want, &grad64, 0.25, scale as f64);
        let all = read_all(&gpu, &param_buf);
        for i in (0..GUARD).chain(GUARD + len..all.len()) {
            assert!(
                all[i].is_nan(),
                "sgd_dense wrote word {i} outside the parameters"
            );
        }
        // Compare the change, which is what the kernel computes.
        let delta: Vec<f32> = all[GUARD..GUARD + len]
            .iter()
            .zip(&param)
            .map(|(a, b)| a - b)
            .collect();
        let want_delta: Vec<f64> = want
            .iter()
            .zip(&param)
            .map(|(a, &b)| a - b as f64)
            .collect();
        assert_close(
            &format!("sgd_dense len={len} update"),
            &delta,
            &want_delta,
            1e-5,
        );
    }
}

#[test]
fn sgd_sparse_rows_update_only_the_batch_rows() {
    let gpu = gpu();
    let sgd = Sgd::new(&gpu).unwrap();
    for (k, &(positions, width, vocab)) in
        [(1, 1, 1), (7, 33, 5), (129, 20, 1000), (1200, 200, 10000)]
            .iter()
            .enumerate()
    {
        let capacity = positions + 3;
        let id = ids(positions, vocab as u64, 70 + k as u64);
        let seg = IdSegments::new(&id);
        let unique = seg.unique.len();
        let table = random(vocab * width, 1.0, 80 + k as u64);
        // Rows past U are NaN: reading them would show.
        let mut rows = random(unique * width, 1.0, 90 + k as u64);
        rows.resize(capacity * width, f32::NAN);

        let table_buf = gpu.storage_from("table", &with_guard(f32::NAN, &table));
        let seg_buf = gpu.storage_from(
            "segments",
            &with_guard(7u32, &pack_segments(&seg, capacity)),
        );
        let rows_buf = gpu.storage_from("rows", &with_guard(f32::NAN, &rows));
        let hyper = hyper_block(&gpu, 0.9);
        let scale = 0.6f32;
        let clip = clip_block(&gpu, scale);
        let d = sgd
            .prepare_sparse_rows(
                &gpu,
                width,
                capacity,
                View::at(&table_buf, GUARD, vocab * width),
                View::at(&seg_buf, GUARD, segments_words(capacity)),
                View::at(&rows_buf, GUARD, capacity * width),
                View::at(&hyper, GUARD, Hyper::WORDS),
                View::at(&clip, GUARD, ClipStats::WORDS),
            )
            .unwrap();
        assert_eq!(d.label, "sgd_sparse_rows");
        gpu.run(&[&d]).unwrap();

        let mut want = widen(&table);
        reference::sgd_sparse_rows(
            width,
            &mut want,
            &seg.unique,
            &widen(&rows[..unique * width]),
            0.9,
            scale as f64,
        );
        let all = read_all(&gpu, &table_buf);
        for i in (0..GUARD).chain(GUARD + vocab * width..all.len()) {
            assert!(
                all[i].is_nan(),
                "sgd_sparse_rows wrote word {i} outside the table"
            );
        }
        let got = &all[GUARD..GUARD + vocab * width];
        let what = format!("sgd_sparse_rows n={positions} e={width} V={vocab}");
        for row in 0..vocab {
            let span = row * width..(row + 1) * width;
            if seg.unique.binary_search(&(row as u32)).is_err() {
                assert_eq!(
                    bits(&got[span.clone()]),
                    bits(&table[span]),
                    "{what}: row {row} changed"
                );
            }
        }
        let delta: Vec<f32> = got.iter().zip(&table).map(|(a, b)| a - b).collect();
        let want_delta: Vec<f64> = want
            .iter()
            .zip(&table)
            .map(|(a, &b)| a - b as f64)
            .collect();
        assert_close(&format!("{what} update"), &delta, &want_delta, 1e-5);
    }
}

#[test]
fn prepare_rejects_bad_views() {
    let gpu = gpu();
    let reduce = Reduce::new(&gpu).unwrap();
    let sgd = Sgd::new(&gpu).unwrap();
    let a = gpu.storage("a", 10000);
    let b = gpu.storage("b", 100);
    // Partials too short for the slots asked for.
    assert!(reduce
        .prepare_sum_squares(&gpu, View::at(&a, 0, 9000), View::at(&b, 0, 2), 0)
        .is_err());
    assert!(reduce
        .prepare_sum_squares(&gpu, View::at(&a, 0, 9000), View::at(&b, 0, 3), 0)
        .is_ok());
    assert!(reduce
        .prepare_sum_squares(&gpu, View::at(&a, 0, 9000), View::at(&b, 0, 4), 2)
        .is_err());
    assert!(reduce
        .prepare_clip_scale(&gpu, View::at(&b, 0, 10), 10, 0.0, View::at(&a, 0, 4))
        .is_err());
    assert!(reduce
        .prepare_column_sum(
            &gpu,
            10,
            10,
            View::at(&a, 0, 100),
            View::at(&a, 100, 10),
            false
        )
        .is_err());
    // The parameters in the gradient's buffer.
    assert!(sgd
        .prepare_dense(
            &gpu,
            View::at(&a, 0, 10),
            View::at(&a, 10, 10),
            View::at(&b, 0, 3),
            View::at(&b, 3, 4)
        )
        .is_err());
}

/// The step guard over a sequence of steps, finite and not (loss or norm), against its CPU
/// twin: what is accumulated, what is counted, the scale the SGD kernels get, and that the
/// step loss block is left at zero. Every block sits at an offset with NaN around it.
#[test]
fn step_guard_matches_reference() {
    let gpu = gpu();
    let reduce = Reduce::new(&gpu).unwrap();
    let acc = gpu.storage_from(
        "acc",
        &with_guard(0xffff_ffffu32, &[0u32; TrainAccumulator::WORDS]),
    );
    let nan = f32::NAN;
    let inf = f32::INFINITY;
    // (step loss, squared norm, clip scale, step index), clipping at norm 1. The last two
    // are mixed precision's: the clip scale also divides out the loss scale S (2^10) where
    // the norm is below the threshold (not clipped), and is 0 for a step whose f16
    // gradients overflowed (its loss counts; it has no norm).
    let max_norm = 1.0;
    let steps = [
        (4.5f32, 2.0f32, 0.75f32, 10u32),
        (nan, 3.0, 1.0, 11),
        (1.25, inf, 0.0, 12),
        (-inf, nan, 0.0, 13),
        (2.0, 0.5, 1.0, 14),
        (inf, 1.0, 1.0, 15),
        (3.0, 9.0, 0.5, 16),
        (2.5, 0.25, 1.0 / 1024.0, 17),
        (1.5, 0.0, 0.0, 18),
    ];
    let mut expected = reference::GuardCounts::default();
    for (k, &(loss, sum_sq, clip_scale, step)) in steps.iter().enumerate() {
        let step_loss = gpu.storage_from("step loss", &with_guard(nan, &[loss, 1.0]));
        let clip = gpu.storage_from(
            "clip",
            &with_guard(nan, &[sum_sq, sum_sq.sqrt(), clip_scale, 0.0]),
        );
        let hyper = gpu.storage_from(
            "hyper",
            &with_guard(
                0xdead_beefu32,
                bytemuck::cast_slice(&[Hyper {
                    learning_rate: 1.0,
                    step,
                    seed: 9,
                }]),
            ),
        );
        let d = reduce
            .prepare_step_guard(
                &gpu,
                View::at(&step_loss, GUARD, 2),
                View::at(&acc, GUARD, TrainAccumulator::WORDS),
                View::at(&clip, GUARD, ClipStats::WORDS),
                View::at(&hyper, GUARD, Hyper::WORDS),
                max_norm,
            )
            .unwrap();
        gpu.run(&[&d]).unwrap();
        let scale = reference::step_guard(
            &mut expected,
            loss,
            1.0,
            (sum_sq, sum_sq.sqrt()),
            (clip_scale, max_norm),
            step,
        );
        let clip_after = read_all(&gpu, &clip);
        assert_eq!(clip_after[GUARD + 2], scale, "step {k}: scale");
        let loss_after = read_all(&gpu, &step_loss);
        assert_eq!(
            &loss_after[GUARD..GUARD + 2],
            &[0.0, 0.0],
            "step {k}: step loss"
        );
        assert!(
            loss_after[..GUARD].iter().all(|v| v.is_nan()),
            "step {k}: wrote before"
        );
        let words: Vec<u32> = gpu
            .read(&acc, 0, TrainAccumulator::WORDS + 2 * GUARD)
            .unwrap();
        assert!(
            words[..GUARD]
                .iter()
                .chain(&words[GUARD + TrainAccumulator::WORDS..])
                .all(|&w| w == 0xffff_ffff),
            "step {k}: wrote outside the block"
        );
        let got: TrainAccumulator = *bytemuck::from_bytes(bytemuck::cast_slice(
            &words[GUARD..GUARD + TrainAccumulator::WORDS],
        ));
        assert_eq!(got.loss_sum(), expected.loss_sum, "step {k}");
        assert_eq!(got.batches(), expected.batches, "step {k}");
        assert_eq!(
            (
                got.skipped,
                got.nonfinite_loss,
                got.first_skipped,
                got.last_skipped,
                got.skipped_in_a_row
            ),
            (
                expected.skipped,
                expected.nonfinite_loss,
                expected.first_skipped,
                expected.last_skipped,
                expected.skipped_in_a_row
            ),
            "step {k}"
        );
        assert_eq!(
            (
                f32::from_bits(got.norm_sum_bits),
                got.max_norm(),
                got.clipped,
                got.norm_steps
            ),
            (
                expected.norm_sum,
                expected.norm_max,
                expected.clipped,
                expected.norm_steps
            ),
            "step {k}: gradient norms"
        );
        assert_eq!(got._pad, [0], "step {k}");
    }
    // The sequence above: 5 counted, 4 skipped (3 of them for the loss), first 12, last 16;
    // the norms of the 4 that ran their update sqrt(2), sqrt(0.5), 3 and 0.5, two of them
    // clipped.
    assert_eq!(expected.batches, 5.0);
    assert_eq!(expected.loss_sum, 13.5);
    assert_eq!((expected.skipped, expected.nonfinite_loss), (4, 3));
    assert_eq!((expected.first_skipped, expected.last_skipped), (12, 16));
    assert_eq!(expected.skipped_in_a_row, 0);
    assert_eq!(
        (expected.norm_max, expected.clipped, expected.norm_steps),
        (3.0, 2, 4)
    );
    assert!((expected.norm_sum - (2f32.sqrt() + 0.5f32.sqrt() + 3.5)).abs() < 1e-6);
}

/// The state guard zeroes exactly the rows with a value that is not finite, in c or h, on a
/// width that is not a multiple of the workgroup and with more rows than one grid column.
#[test]
fn state_guard_matches_reference() {
    let gpu = gpu();
    let reduce = Reduce::new(&gpu).unwrap();
    for (rows, width) in [(1, 1), (5, 7), (3, 300), (60, 256)] {
        let mut c = random(rows * width, 2.0, 11);
        let mut h = random(rows * width, 2.0, 12);
        let mut rng = SplitMix64::new(rows as u64 * 31 + width as u64);
        for r in 0..rows {
            let at = r * width + (rng.next_u64() as usize) % width;
            match rng.next_u64() % 4 {
                0 => c[at] = f32::NAN,
                1 => h[at] = f32::INFINITY,
                2 => c[at] = f32::NEG_INFINITY,
                _ => {}
            }
        }
        let (cb, hb) = (gpu.storage_from("c", &c), gpu.storage_from("h", &h));
        let d = reduce
            .prepare_state_guard(&gpu, rows, width, &cb, &hb)
            .unwrap();
        gpu.run(&[&d]).unwrap();
        reference::state_guard(width, &mut c, &mut h);
        assert_eq!(bits(&read_all(&gpu, &cb)), bits(&c), "c {rows}x{width}");
        assert_eq!(bits(&read_all(&gpu, &hb)), bits(&h), "h {rows}x{width}");
        assert!(c.iter().chain(&h).all(|v| v.is_finite()));
    }
}
