//! Parity of `shaders/softmax_xent.wgsl` with its CPU twins `reference::softmax_xent_forward`,
//! `reference::softmax_xent_backward`, `reference::softmax_xent_backward_columns` and
//! `reference::topk`, and of `loss_accumulate` with a plain sum, against f64 references.
//!
//! Operands sit at non-zero word offsets; outputs are poisoned with NaN, and the words around
//! each output window must keep the poison.

mod common;

use std::time::Instant;

use common::{assert_close, gpu, nan, random};
use lstm_gpu::gpu::reduce::{ColumnSums, Reduce};
use lstm_gpu::gpu::softmax_xent::ColumnsViews;
use lstm_gpu::gpu::softmax_xent::{LossAccumulator, SoftmaxXent, MAX_TOPK};
use lstm_gpu::gpu::{Gpu, View};
use lstm_gpu::reference;
use lstm_gpu::rng::SplitMix64;

/// Words before and after every window.
const GUARD: usize = 3;

/// (rows, classes): odd sizes around the 256-wide workgroup and the model's 1200 x 10000.
const SHAPES: [(usize, usize); 6] = [
    (1, 1),
    (7, 33),
    (3, 255),
    (5, 257),
    (60, 1029),
    (1200, 10000),
];

fn with_guard<T: bytemuck::Pod>(guard: T, data: &[T]) -> Vec<T> {
    let mut words = vec![guard; GUARD];
    words.extend_from_slice(data);
    words.extend(std::iter::repeat_n(guard, GUARD));
    words
}

/// The window at GUARD of a buffer made by `with_guard`, after checking that the guard
/// words are still NaN.
fn read_window(gpu: &Gpu, buffer: &wgpu::Buffer, words: usize) -> Vec<f32> {
    let all: Vec<f32> = gpu.read(buffer, 0, words + 2 * GUARD).unwrap();
    for i in (0..GUARD).chain(GUARD + words..2 * GUARD + words) {
        assert!(
            all[i].is_nan(),
            "word {i} outside the output window was written: {}",
            all[i]
        );
    }
    all[GUARD..GUARD + words].to_vec()
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn targets(rows: usize, classes: usize, seed: u64) -> Vec<u32> {
    let mut r = SplitMix64::new(seed);
    (0..rows)
        .map(|_| (r.next_u64() % classes as u64) as u32)
        .collect()
}

/// Random logits with a pseudo-random offset per row between -100 and 100: exp leaves the
/// f32 range past 88, so a row maximum that is wrong (a missing barrier, another row's
/// value) shows up as an infinite or zero sum instead of cancelling out of the log-sum-exp.
fn shifted_logits(rows: usize, classes: usize, seed: u64) -> Vec<f32> {
    let mut logits = random(rows * classes, 6.0, seed);
    for (r, row) in logits.chunks_mut(classes).enumerate() {
        let offset = ((r * 7919) % 11) as f32 * 20.0 - 100.0;
        row.iter_mut().for_each(|v| *v += offset);
    }
    logits
}

struct Forward {
    lse: Vec<f32>,
    loss: Vec<f32>,
    seconds: f64,
}

fn run_forward(
    gpu: &Gpu,
    sx: &SoftmaxXent,
    rows: usize,
    classes: usize,
    logits: &[f32],
    target: &[u32],
) -> Forward {
    let logits_buf = gpu.storage_from("logits", &with_guard(f32::NAN, logits));
    let targets_buf = gpu.storage_from("targets", &with_guard(u32::MAX, target));
    let lse = gpu.storage_from("lse", &nan(rows + 2 * GUARD));
    let loss = gpu.storage_from("loss", &nan(rows + 2 * GUARD));
    let d = sx
        .prepare_forward(
            gpu,
            rows,
            classes,
            View::at(&logits_buf, GUARD, rows * classes),
            View::at(&targets_buf, GUARD, rows),
            View::at(&lse, GUARD, rows),
            View::at(&loss, GUARD, rows),
        )
        .unwrap();
    assert_eq!(d.label, "softmax_xent_forward");
    let start = Instant::now();
    gpu.run(&[&d]).unwrap();
    let seconds = start.elapsed().as_secs_f64();
    Forward {
        lse: read_window(gpu, &lse, rows),
        loss: read_window(gpu, &loss, rows),
        seconds,
    }
}

#[test]
fn forward_matches_f64_reference() {
    let gpu = gpu();
    let sx = SoftmaxXent::new(&gpu).unwrap();
    for (k, &(rows, classes)) in SHAPES.iter().enumerate() {
        let logits = shifted_logits(rows, classes, 10 + k as u64);
        let target = targets(rows, classes, 20 + k as u64);
        let (mut lse, mut loss) = (vec![0.0; rows], vec![0.0; rows]);
        reference::softmax_xent_forward(classes, &widen(&logits), &target, &mut lse, &mut loss);

        let got = run_forward(&gpu, &sx, rows, classes, &logits, &target);
        let what = format!("forward {rows}x{classes}");
        assert_close(&format!("{what} lse"), &got.lse, &lse, 1e-5);
        assert_close(&format!("{what} loss"), &got.loss, &loss, 1e-5);
        eprintln!("{what}: {:.2} ms (submit to idle)", got.seconds * 1e3);

        let again = run_forward(&gpu, &sx, rows, classes, &logits, &target);
        assert_eq!(
            bits(&again.lse),
            bits(&got.lse),
            "{what}: lse differs between runs"
        );
        assert_eq!(
            bits(&again.loss),
            bits(&got.loss),
            "{what}: loss differs between runs"
        );
    }
}

/// Logits far apart (a dominant class, very negative others) stay finite and exact.
#[test]
fn forward_is_stable_for_extreme_logits() {
    let gpu = gpu();
    let sx = SoftmaxXent::new(&gpu).unwrap();
    let (rows, classes) = (4, 300);
    let mut logits: Vec<f32> = random(rows * classes, 1.0, 5)
        .iter()
        .map(|v| v * 200.0)
        .collect();
    logits[17] = 500.0;
    logits[classes + 3] = -500.0;
    let target = [17u32, 3, 0, 299];
    let (mut lse, mut loss) = (vec![0.0; rows], vec![0.0; rows]);
    reference::softmax_xent_forward(classes, &widen(&logits), &target, &mut lse, &mut loss);
    let got = run_forward(&gpu, &sx, rows, classes, &logits, &target);
    assert_close("extreme lse", &got.lse, &lse, 1e-5);
    assert_close("extreme loss", &got.loss, &loss, 1e-5);

    // Rows of -inf logits (exp gives exactly 0) with a few finite ones: whole runs of what
    // an invocation reads are -inf, in the four-at-a-time loop (2000 classes) and after it.
    let (rows, classes) = (3, 2000);
    let mut logits = vec![f32::NEG_INFINITY; rows * classes];
    for (r, row) in logits.chunks_mut(classes).enumerate() {
        for c in [5 + r, 700, 1999 - 3 * r] {
            row[c] = (c % 13) as f32 - 4.0;
        }
    }
    let target = [5u32, 700, 1993];
    let (mut lse, mut loss) = (vec![0.0; rows], vec![0.0; rows]);
    reference::softmax_xent_forward(classes, &widen(&logits), &target, &mut lse, &mut loss);
    assert!(lse.iter().chain(&loss).all(|v| v.is_finite()));
    let got = run_forward(&gpu, &sx, rows, classes, &logits, &target);
    assert_close("-inf lse", &got.lse, &lse, 1e-6);
    assert_close("-inf loss", &got.loss, &loss, 1e-6);
}

#[allow(clippy::too_many_arguments)]
fn run_backward(
    gpu: &Gpu,
    sx: &SoftmaxXent,
    rows: usize,
    classes: usize,
    logits: &[f32],
    target: &[u32],
    lse: &[f32],
    scale: f32,
) -> Vec<f32> {
    let logits_buf = gpu.storage_from("logits", &with_guard(f32::NAN, logits));
    let targets_buf = gpu.storage_from("targets", &with_guard(u32::MAX, target));
    let lse_buf = gpu.storage_from("lse", &with_guard(f32::NAN, lse));
    let d = sx
        .prepare_backward(
            gpu,
            rows,
            classes,
            View::at(&logits_buf, GUARD, rows * classes),
            View::at(&targets_buf, GUARD, rows),
            View::at(&lse_buf, GUARD, rows),
            scale,
        )
        .unwrap();
    assert_eq!(d.label, "softmax_xent_backward");
    gpu.run(&[&d]).unwrap();
    read_window(gpu, &logits_buf, rows * classes)
}

#[test]
fn backward_matches_f64_reference() {
    let gpu = gpu();
    let sx = SoftmaxXent::new(&gpu).unwrap();
    let scale = 1.0 / 60.0;
    for (k, &(rows, classes)) in SHAPES.iter().enumerate() {
        let logits = shifted_logits(rows, classes, 30 + k as u64);
        let target = targets(rows, classes, 40 + k as u64);
        let (mut lse, mut loss) = (vec![0.0; rows], vec![0.0; rows]);
        let logits64 = widen(&logits);
        reference::softmax_xent_forward(classes, &logits64, &target, &mut lse, &mut loss);
        let mut want = logits64.clone();
        reference::softmax_xent_backward(classes, &mut want, &target, &lse, scale as f64);

        // The kernel gets the f32 lse a forward pass would have left.
        let lse32: Vec<f32> = lse.iter().map(|&v| v as f32).collect();
        let got = run_backward(&gpu, &sx, rows, classes, &logits, &target, &lse32, scale);
        let what = format!("backward {rows}x{classes}");
        assert_close(&what, &got, &want, 1e-5);
        // The target entries carry most of the gradient: check them on their own too.
        let at_target: Vec<f32> = (0..rows)
            .map(|r| got[r * classes + target[r] as usize])
            .collect();
        let want_target: Vec<f64> = (0..rows)
            .map(|r| want[r * classes + target[r] as usize])
            .collect();
        assert_close(
            &format!("{what} at targets"),
            &at_target,
            &want_target,
            1e-5,
        );

        let again = run_backward(&gpu, &sx, rows, classes, &logits, &target, &lse32, scale);
        assert_eq!(bits(&again), bits(&got), "{what}: differs between runs");
    }
}

/// The fused backward with column sums: the f64 twin within 1e-5, and bit for bit what
/// `softmax_xent_backward` followed by `column_sum` leave, with and without accumulating.
#[test]
fn backward_columns_matches_reference_and_the_two_kernels() {
    let gpu = gpu();
    let sx = SoftmaxXent::new(&gpu).unwrap();
    let mut reduce = Reduce::new(&gpu).unwrap();
    // The one-pass sums, whatever the adapter's default (in row slices: below).
    reduce.column_sums = ColumnSums::Serial;
    let scale = 1.0 / 60.0;
    for (k, &(rows, classes)) in SHAPES.iter().enumerate() {
        let logits = shifted_logits(rows, classes, 70 + k as u64);
        let target = targets(rows, classes, 80 + k as u64);
        let (mut lse, mut loss) = (vec![0.0; rows], vec![0.0; rows]);
        let logits64 = widen(&logits);
        reference::softmax_xent_forward(classes, &logits64, &target, &mut lse, &mut loss);
        let lse32: Vec<f32> = lse.iter().map(|&v| v as f32).collect();
        for accumulate in [false, true] {
            let what = format!("backward_columns {rows}x{classes} accumulate={accumulate}");
            // Old sums to add to, or NaN that must be overwritten.
            let old = if accumulate {
                random(classes, 0.5, 90 + k as u64)
            } else {
                nan(classes)
            };
            let mut want = logits64.clone();
            let mut want_sums = widen(&old);
            reference::softmax_xent_backward_columns(
                classes,
                &mut want,
                &target,
                &lse,
                scale as f64,
                &mut want_sums,
                accumulate,
            );

            let logits_buf = gpu.storage_from("logits", &with_guard(f32::NAN, &logits));
            let targets_buf = gpu.storage_from("targets", &with_guard(u32::MAX, &target));
            let lse_buf = gpu.storage_from("lse", &with_guard(f32::NAN, &lse32));
            let sums_buf = gpu.storage_from("sums", &with_guard(f32::NAN, &old));
            let d = sx
                .prepare_backward_columns(
                    &gpu,
                    rows,
                    classes,
                    View::at(&logits_buf, GUARD, rows * classes),
                    View::at(&targets_buf, GUARD, rows),
                    View::at(&lse_buf, GUARD, rows),
                    scale,
                    View::at(&sums_buf, GUARD, classes),
                    accumulate,
                    &reduce,
                )
                .unwrap();
            assert_eq!(d.label, "softmax_xent_backward_columns");
            gpu.run(&[&d]).unwrap();
            let got = read_window(&gpu, &logits_buf, rows * classes);
            let got_sums = read_window(&gpu, &sums_buf, classes);
            assert_close(&what, &got, &want, 1e-5);
            assert_close(&format!("{what} sums"), &got_sums, &want_sums, 1e-5);

            // The same inputs through the two kernels it fuses.
            let logits2 = gpu.storage_from("logits", &with_guard(f32::NAN, &logits));
            let sums2 = gpu.storage_from("sums", &with_guard(f32::NAN, &old));
            let backward = sx
                .prepare_backward(
                    &gpu,
                    rows,
                    classes,
                    View::at(&logits2, GUARD, rows * classes),
                    View::at(&targets_buf, GUARD, rows),
                    View::at(&lse_buf, GUARD, rows),
                    scale,
                )
                .unwrap();
            let column_sum = reduce
                .prepare_column_sum(
                    &gpu,
                    rows,
                    classes,
                    View::at(&logits2, GUARD, rows * classes),
                    View::at(&sums2, GUARD, classes),
                    accumulate,
                )
                .unwrap();
            gpu.run(&[&backward, &column_sum]).unwrap();
            let two = read_window(&gpu, &logits2, rows * classes);
            let two_sums = read_window(&gpu, &sums2, classes);
            assert_eq!(
                bits(&got),
                bits(&two),
                "{what}: gradient differs from the two kernels"
            );
            assert_eq!(
                bits(&got_sums),
                bits(&two_sums),
                "{what}: sums differ from the two kernels"
            );
        }
    }
}

/// The fused backward with its sums in row slices: the gradient bit for bit the one-pass
/// kernel's, and the sums bit for bit the sliced twin's sums of that gradient, with and
/// without accumulating, on short last slices and slices of one row; two launches.
#[test]
fn backward_columns_in_row_slices_match_the_one_pass_kernel_and_the_twin() {
    let gpu = gpu();
    let sx = SoftmaxXent::new(&gpu).unwrap();
    let reduce = Reduce::new(&gpu).unwrap();
    let scale = 1.0 / 60.0;
    for (k, &(rows, classes, slice_rows)) in
        [(7, 33, 1), (60, 1029, 13), (61, 257, 32), (1200, 10000, 86)]
            .iter()
            .enumerate()
    {
        let logits = shifted_logits(rows, classes, 170 + k as u64);
        let target = targets(rows, classes, 180 + k as u64);
        let (mut lse, mut loss) = (vec![0.0; rows], vec![0.0; rows]);
        reference::softmax_xent_forward(classes, &widen(&logits), &target, &mut lse, &mut loss);
        let lse32: Vec<f32> = lse.iter().map(|&v| v as f32).collect();
        let targets_buf = gpu.storage_from("targets", &with_guard(u32::MAX, &target));
        let lse_buf = gpu.storage_from("lse", &with_guard(f32::NAN, &lse32));
        for accumulate in [false, true] {
            let what =
                format!("{rows}x{classes} in slices of {slice_rows}, accumulate={accumulate}");
            let old = if accumulate {
                random(classes, 0.5, 190 + k as u64)
            } else {
                nan(classes)
            };
            let run = |slice_rows: usize| {
                let logits_buf = gpu.storage_from("logits", &with_guard(f32::NAN, &logits));
                let sums_buf = gpu.storage_from("sums", &with_guard(f32::NAN, &old));
                let views = ColumnsViews {
                    logits: View::at(&logits_buf, GUARD, rows * classes),
                    targets: View::at(&targets_buf, GUARD, rows),
                    lse: View::at(&lse_buf, GUARD, rows),
                    sums: View::at(&sums_buf, GUARD, classes),
                };
                let shape = (rows, classes, slice_rows);
                let d = sx
                    .prepare_backward_columns_in_slices(
                        &gpu, shape, &views, scale, accumulate, &reduce,
                    )
                    .unwrap();
                gpu.run(&[&d]).unwrap();
                let grad = read_window(&gpu, &logits_buf, rows * classes);
                let sums = read_window(&gpu, &sums_buf, classes);
                (d.launches(), d.label.clone(), grad, sums)
            };
            let (launches, label, grad, sums) = run(slice_rows);
            assert_eq!(launches, 2, "{what}");
            assert_eq!(label, "softmax_xent_backward_columns_sliced");
            let (one_launch, _, one_grad, one_sums) = run(rows);
            assert_eq!(one_launch, 1);
            assert_eq!(bits(&grad), bits(&one_grad), "{what}: the gradient");
            let mut want = old.clone();
            reference::column_sum_sliced(rows, classes, slice_rows, &grad, &mut want, accumulate);
            assert_eq!(bits(&sums), bits(&want), "{what}: the sums");
            // Another order of the same sums: close, not equal bit for bit.
            assert_close(&what, &sums, &widen(&one_sums), 1e-5);
        }
    }
}

#[test]
fn loss_accumulate_adds_scaled_sums_and_counts_batches() {
    let gpu = gpu();
    let sx = SoftmaxXent::new(&gpu).unwrap();
    for (k, rows) in [1usize, 7, 255, 257, 1200].into_iter().enumerate() {
        let loss_a: Vec<f32> = random(rows, 4.0, 60 + k as u64)
            .iter()
            .map(|v| v.abs() + 1.0)
            .collect();
        let loss_b: Vec<f32> = random(rows, 4.0, 70 + k as u64)
            .iter()
            .map(|v| v.abs() + 1.0)
            .collect();
        let scale = 1.0 / 60.0f32;
        let a = gpu.storage_from("loss a", &with_guard(f32::NAN, &loss_a));
        let b = gpu.storage_from("loss b", &with_guard(f32::NAN, &loss_b));
        let mut acc_words = nan(LossAccumulator::WORDS + 2 * GUARD);
        acc_words[GUARD..GUARD + LossAccumulator::WORDS].fill(0.0);
        let acc = gpu.storage_from("accumulator", &acc_words);
        let acc_view = View::at(&acc, GUARD, LossAccumulator::WORDS);
        let da = sx
            .prepare_loss_accumulate(&gpu, rows, View::at(&a, GUARD, rows), acc_view, scale)
            .unwrap();
        let db = sx
            .prepare_loss_accumulate(&gpu, rows, View::at(&b, GUARD, rows), acc_view, scale)
            .unwrap();
        assert_eq!(da.label, "loss_accumulate");
        gpu.run(&[&da, &db]).unwrap();
        gpu.run(&[&da]).unwrap();

        let mut want_acc = [0.0f64; 2];
        for loss in [&loss_a, &loss_b, &loss_a] {
            let loss: Vec<f64> = loss.iter().map(|&x| x as f64).collect();
            lstm_gpu::reference::loss_accumulate(&loss, scale as f64, &mut want_acc);
        }
        let want = want_acc[0];
        assert_eq!(want_acc[1], 3.0);
        let got = read_window(&gpu, &acc, LossAccumulator::WORDS);
        assert_close(
            &format!("accumulated loss rows={rows}"),
            &got[..1],
            &[want],
            1e-6,
        );
        assert_eq!(got[1], 3.0, "batch count");
        assert_eq!(LossAccumulator::read(&gpu, acc_view).unwrap().batches, 3.0);
    }
}

fn run_topk(gpu: &Gpu, sx: &SoftmaxXent, row: &[f32], k: usize) -> (Vec<u32>, Vec<f32>) {
    let row_buf = gpu.storage_from("row", &with_guard(f32::NAN, row));
    let indices = gpu.storage_from("top indices", &nan(k + 2 * GUARD));
    let values = gpu.storage_from("top values", &nan(k + 2 * GUARD));
    let d = sx
        .prepare_topk(
            gpu,
            row.len(),
            k,
            View::at(&row_buf, GUARD, row.len()),
            View::at(&indices, GUARD, k),
            View::at(&values, GUARD, k),
        )
        .unwrap();
    assert_eq!(d.label, "topk");
    gpu.run(&[&d]).unwrap();
    (
        read_window(gpu, &indices, k)
            .iter()
            .map(|v| v.to_bits())
            .collect(),
        read_window(gpu, &values, k),
    )
}

#[test]
fn topk_matches_reference_with_ties() {
    let gpu = gpu();
    let sx = SoftmaxXent::new(&gpu).unwrap();
    for (s, &(len, k)) in [(1, 1), (7, 7), (33, 5), (300, 64), (10000, 64), (10000, 1)]
        .iter()
        .enumerate()
    {
        // Values on a coarse grid, so that many tie.
        let row: Vec<f32> = random(len, 1.0, 80 + s as u64)
            .iter()
            .map(|v| (v * 20.0).round() / 20.0 + 2.0)
            .collect();
        let want = reference::topk(&row, k);
        let (idx, val) = run_topk(&gpu, &sx, &row, k);
        let want_idx: Vec<u32> = want.iter().map(|p| p.0).collect();
        let want_val: Vec<f32> = want.iter().map(|p| p.1).collect();
        assert_eq!(idx, want_idx, "topk len={len} k={k}: indices");
        assert_eq!(bits(&val), bits(&want_val), "topk len={len} k={k}: values");
    }
}

#[test]
fn topk_never_picks_nan() {
    let gpu = gpu();
    let sx = SoftmaxXent::new(&gpu).unwrap();
    let row = [0.5f32, f32::NAN, 0.7, f32::NAN];
    let (idx, val) = run_topk(&gpu, &sx, &row, 3);
    assert_eq!(idx, vec![2, 0, u32::MAX]);
    assert_eq!(&val[..2], &[0.7, 0.5]);
    assert_eq!(val[2], f32::NEG_INFINITY);
}

#[test]
fn prepare_rejects_bad_arguments() {
    let gpu = gpu();
    let sx = SoftmaxXent::new(&gpu).unwrap();
    let reduce = Reduce::new(&gpu).unwrap();
    let a = gpu.storage("a", 1000);
    let b = gpu.storage("b", 1000);
    let row = View::at(&a, 0, 100);
    assert!(sx
        .prepare_topk(
            &gpu,
            100,
            MAX_TOPK + 1,
            View::at(&a, 0, 1000),
            View::at(&b, 0, 100),
            View::at(&b, 100, 100)
        )
        .is_err());
    assert!(sx
        .prepare_topk(&gpu, 100, 0, row, View::at(&b, 0, 10), View::at(&b, 10, 10))
        .is_err());
    // Indices and values in one buffer: two writable bindings of it, which WebGPU refuses.
    assert!(sx
        .prepare_topk(
            &gpu,
            100,
            10,
            row,
            View::at(&b, 0, 10),
            View::at(&b, 10, 10)
        )
        .is_err_and(|e| e.to_string().contains("WebGPU refuses")));
    let c = gpu.storage("c", 1000);
    assert!(sx
        .prepare_topk(&gpu, 100, 10, row, View::at(&b, 0, 10), View::at(&c, 0, 10))
        .is_ok());
    // Outputs in the logits' buffer, and a logits view too short.
    assert!(sx
        .prepare_forward(
            &gpu,
            10,
            50,
            View::at(&a, 0, 500),
            View::at(&b, 0, 10),
            View::at(&a, 500, 10),
            View::at(&b, 10, 10)
        )
        .is_err());
    assert!(sx
        .prepare_forward(
            &gpu,
            10,
            50,
            View::at(&a, 0, 499),
            View::at(&b, 0, 10),
            View::at(&b, 20, 10),
            View::at(&b, 10, 10)
        )
        .is_err());
    // The fused backward: sums too short, sums in the logits' or the targets' buffer.
    let c = gpu.storage("c", 100);
    let columns = |sums: View| {
        sx.prepare_backward_columns(
            &gpu,
            10,
            50,
            View::at(&a, 0, 500),
            View::at(&b, 0, 10),
            View::at(&b, 10, 10),
            0.5,
            sums,
            false,
            &reduce,
        )
    };
    assert!(columns(View::at(&c, 0, 50)).is_ok());
    assert!(columns(View::at(&c, 60, 40)).is_err());
    assert!(columns(View::at(&a, 500, 50)).is_err());
    assert!(columns(View::at(&b, 50, 50)).is_err());
}
