//! Parity of `shaders/lstm_cell.wgsl` with its CPU twins `reference::lstm_cell_forward` and
//! `reference::lstm_cell_backward`, against an f64 reference.
//!
//! Every operand sits at a non-zero word offset; outputs are poisoned with NaN, and the words
//! around each output window must still hold the poison afterwards.

mod common;

use common::{assert_close, gpu, nan, random};
use lstm_gpu::gpu::lstm_cell::{CellBackwardViews, CellForwardViews, CellShape, LstmCell};
use lstm_gpu::gpu::matmul_f16::HalfView;
use lstm_gpu::gpu::{Gpu, View};
use lstm_gpu::reference;

/// Words of poison before and after every window.
const GUARD: usize = 5;

/// Shapes (batch, hidden): tiny, not multiples of the 64-wide workgroup, and the model's.
const SHAPES: [(usize, usize); 6] = [(1, 1), (7, 33), (3, 60), (5, 129), (60, 256), (60, 128)];

/// A buffer holding `data` at word offset GUARD, after other data.
fn upload(gpu: &Gpu, data: &[f32], seed: u64) -> wgpu::Buffer {
    let mut words = random(GUARD, 1.0, seed);
    words.extend_from_slice(data);
    gpu.storage_from("input", &words)
}

/// Read a window of `words` at offset GUARD and check that its surroundings are still NaN.
fn read_window(gpu: &Gpu, buffer: &wgpu::Buffer, offset: usize, words: usize) -> Vec<f32> {
    let all: Vec<f32> = gpu.read(buffer, 0, (buffer.size() / 4) as usize).unwrap();
    for (i, v) in all.iter().enumerate() {
        if i < offset || i >= offset + words {
            assert!(
                v.is_nan(),
                "word {i} outside the output window was written: {v}"
            );
        }
    }
    all[offset..offset + words].to_vec()
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

struct ForwardRun {
    act: Vec<f32>,
    c: Vec<f32>,
    h: Vec<f32>,
}

/// Run the forward kernel with c_prev and c as slots 1 and 2 of one [3, batch, hidden] state
/// buffer, the way the training step uses it.
fn run_forward(
    gpu: &Gpu,
    cell: &LstmCell,
    shape: CellShape,
    pre: &[f32],
    c_prev: &[f32],
    forget_bias: f32,
) -> ForwardRun {
    let (states, gates) = (shape.batch * shape.hidden, 4 * shape.batch * shape.hidden);
    let pre_buffer = upload(gpu, pre, 1);
    let mut state_words = nan(GUARD + 3 * states + GUARD);
    state_words[GUARD + states..GUARD + 2 * states].copy_from_slice(c_prev);
    let c_states = gpu.storage_from("c states", &state_words);
    let act = gpu.storage_from("act", &nan(gates + 2 * GUARD));
    let h = gpu.storage_from("h", &nan(states + 2 * GUARD));
    let views = CellForwardViews {
        pre: View::at(&pre_buffer, GUARD, gates),
        c_prev: View::at(&c_states, GUARD + states, states),
        act: View::at(&act, GUARD, gates),
        c: View::at(&c_states, GUARD + 2 * states, states),
        h: View::at(&h, GUARD, states),
    };
    let d = cell
        .prepare_forward(gpu, shape, forget_bias, &views)
        .unwrap();
    assert_eq!(d.label, "lstm_cell_forward");
    gpu.run(&[&d]).unwrap();

    let all: Vec<f32> = gpu.read(&c_states, 0, state_words.len()).unwrap();
    assert_eq!(
        bits(&all[GUARD + states..GUARD + 2 * states]),
        bits(c_prev),
        "c_prev was modified"
    );
    for (i, v) in all.iter().enumerate() {
        let in_window = (GUARD + states..GUARD + 3 * states).contains(&i);
        assert!(in_window || v.is_nan(), "state word {i} was written: {v}");
    }
    ForwardRun {
        act: read_window(gpu, &act, GUARD, gates),
        c: all[GUARD + 2 * states..GUARD + 3 * states].to_vec(),
        h: read_window(gpu, &h, GUARD, states),
    }
}

#[test]
fn forward_matches_f64_reference() {
    let gpu = gpu();
    let cell = LstmCell::new(&gpu).unwrap();
    for (k, &(batch, hidden)) in SHAPES.iter().enumerate() {
        let shape = CellShape { batch, hidden };
        let (states, gates) = (batch * hidden, 4 * batch * hidden);
        let seed = 100 + k as u64;
        let pre = random(gates, 3.0, seed);
        let c_prev = random(states, 2.0, seed + 50);
        let forget_bias = 0.75f32;

        let (mut act, mut c, mut h) = (vec![0.0; gates], vec![0.0; states], vec![0.0; states]);
        reference::lstm_cell_forward(
            batch,
            hidden,
            &widen(&pre),
            &widen(&c_prev),
            forget_bias as f64,
            &mut act,
            &mut c,
            &mut h,
        );
        let got = run_forward(&gpu, &cell, shape, &pre, &c_prev, forget_bias);
        let what = format!("forward b={batch} h={hidden}");
        assert_close(&format!("{what} act"), &got.act, &act, 1e-5);
        assert_close(&format!("{what} c"), &got.c, &c, 1e-5);
        assert_close(&format!("{what} h"), &got.h, &h, 1e-5);

        let again = run_forward(&gpu, &cell, shape, &pre, &c_prev, forget_bias);
        assert_eq!(
            bits(&again.act),
            bits(&got.act),
            "{what}: act differs between runs"
        );
        assert_eq!(
            bits(&again.c),
            bits(&got.c),
            "{what}: c differs between runs"
        );
        assert_eq!(
            bits(&again.h),
            bits(&got.h),
            "{what}: h differs between runs"
        );
    }
}

/// Pre-activations far outside the range where exp and tanh stay finite must saturate
/// cleanly: no NaN, no infinity, and the same values as the f64 reference.
#[test]
fn forward_saturates_without_overflow() {
    let gpu = gpu();
    let cell = LstmCell::new(&gpu).unwrap();
    let shape = CellShape {
        batch: 3,
        hidden: 70,
    };
    let (states, gates) = (210, 840);
    let pre: Vec<f32> = random(gates, 1.0, 7).iter().map(|v| v * 500.0).collect();
    let c_prev: Vec<f32> = random(states, 1.0, 8).iter().map(|v| v * 200.0).collect();
    let (mut act, mut c, mut h) = (vec![0.0; gates], vec![0.0; states], vec![0.0; states]);
    reference::lstm_cell_forward(
        3,
        70,
        &widen(&pre),
        &widen(&c_prev),
        0.0,
        &mut act,
        &mut c,
        &mut h,
    );
    let got = run_forward(&gpu, &cell, shape, &pre, &c_prev, 0.0);
    assert_close("saturated act", &got.act, &act, 1e-5);
    assert_close("saturated c", &got.c, &c, 1e-5);
    assert_close("saturated h", &got.h, &h, 1e-5);
}

/// The reference backward in f64 from the same (f32) inputs the kernel sees.
fn backward_reference(
    shape: CellShape,
    act: &[f32],
    c_prev: &[f32],
    c: &[f32],
    dh: &[f32],
    dc: &[f32],
) -> (Vec<f64>, Vec<f64>) {
    let states = shape.batch * shape.hidden;
    let (mut dpre, mut dc_prev) = (vec![0.0; 4 * states], vec![0.0; states]);
    reference::lstm_cell_backward(
        shape.batch,
        shape.hidden,
        &widen(act),
        &widen(c_prev),
        &widen(c),
        &widen(dh),
        &widen(dc),
        &mut dpre,
        &mut dc_prev,
    );
    (dpre, dc_prev)
}

/// Inputs of a backward step: act and c from a forward pass over random data, so that they
/// are consistent activations; dh and dc random.
struct BackwardInputs {
    act: Vec<f32>,
    c_prev: Vec<f32>,
    c: Vec<f32>,
    dh: Vec<f32>,
    dc: Vec<f32>,
}

fn backward_inputs(shape: CellShape, seed: u64) -> BackwardInputs {
    let (states, gates) = (shape.batch * shape.hidden, 4 * shape.batch * shape.hidden);
    let pre = random(gates, 3.0, seed);
    let c_prev = random(states, 2.0, seed + 1);
    let (mut act, mut c, mut h) = (vec![0f32; gates], vec![0f32; states], vec![0f32; states]);
    reference::lstm_cell_forward(
        shape.batch,
        shape.hidden,
        &pre,
        &c_prev,
        0.25,
        &mut act,
        &mut c,
        &mut h,
    );
    BackwardInputs {
        act,
        c_prev,
        c,
        dh: random(states, 1.0, seed + 2),
        dc: random(states, 1.0, seed + 3),
    }
}

/// Run the backward kernel: c_prev and c in one [2, batch, hidden] buffer, dc and dc_prev
/// in two guarded buffers (the training step's ping-pong pair).
fn run_backward(
    gpu: &Gpu,
    cell: &LstmCell,
    shape: CellShape,
    x: &BackwardInputs,
) -> (Vec<f32>, Vec<f32>) {
    let (states, gates) = (shape.batch * shape.hidden, 4 * shape.batch * shape.hidden);
    let act = upload(gpu, &x.act, 11);
    let mut cs = x.c_prev.clone();
    cs.extend_from_slice(&x.c);
    let c_both = upload(gpu, &cs, 12);
    let dh = upload(gpu, &x.dh, 13);

    let mut dc_words = nan(GUARD + states + GUARD);
    dc_words[GUARD..GUARD + states].copy_from_slice(&x.dc);
    let dc = gpu.storage_from("dc", &dc_words);
    let dc_prev_words = nan(GUARD + 2 * states + GUARD);
    let dc_prev = gpu.storage_from("dc_prev", &dc_prev_words);
    let dc_prev_at = GUARD + states;
    let dpre = gpu.storage_from("dpre", &nan(gates + 2 * GUARD));
    let views = CellBackwardViews {
        act: View::at(&act, GUARD, gates),
        c_prev: View::at(&c_both, GUARD, states),
        c: View::at(&c_both, GUARD + states, states),
        dh: View::at(&dh, GUARD, states),
        dc: View::at(&dc, GUARD, states),
        dpre: View::at(&dpre, GUARD, gates),
        dc_prev: View::at(&dc_prev, dc_prev_at, states),
    };
    let d = cell.prepare_backward(gpu, shape, &views).unwrap();
    assert_eq!(d.label, "lstm_cell_backward");
    gpu.run(&[&d]).unwrap();

    let dc_after: Vec<f32> = gpu.read(&dc, 0, dc_words.len()).unwrap();
    assert_eq!(bits(&dc_after), bits(&dc_words), "dc was modified");
    let all: Vec<f32> = gpu.read(&dc_prev, 0, dc_prev_words.len()).unwrap();
    for (i, v) in all.iter().enumerate() {
        let written = (dc_prev_at..dc_prev_at + states).contains(&i);
        assert!(written || v.is_nan(), "dc_prev word {i} was written: {v}");
    }
    (
        read_window(gpu, &dpre, GUARD, gates),
        all[dc_prev_at..dc_prev_at + states].to_vec(),
    )
}

#[test]
fn backward_matches_f64_reference() {
    let gpu = gpu();
    let cell = LstmCell::new(&gpu).unwrap();
    for (k, &(batch, hidden)) in SHAPES.iter().enumerate() {
        let shape = CellShape { batch, hidden };
        let x = backward_inputs(shape, 300 + 10 * k as u64);
        let (dpre, dc_prev) = backward_reference(shape, &x.act, &x.c_prev, &x.c, &x.dh, &x.dc);
        let what = format!("backward b={batch} h={hidden}");
        let (got_dpre, got_dc_prev) = run_backward(&gpu, &cell, shape, &x);
        assert_close(&format!("{what} dpre"), &got_dpre, &dpre, 1e-5);
        assert_close(&format!("{what} dc_prev"), &got_dc_prev, &dc_prev, 1e-5);

        let (again_dpre, again_dc_prev) = run_backward(&gpu, &cell, shape, &x);
        assert_eq!(
            bits(&again_dpre),
            bits(&got_dpre),
            "{what}: dpre differs between runs"
        );
        assert_eq!(
            bits(&again_dc_prev),
            bits(&got_dc_prev),
            "{what}: dc_prev differs between runs"
        );
    }
}

#[test]
fn prepare_rejects_short_and_aliased_views() {
    let gpu = gpu();
    let cell = LstmCell::new(&gpu).unwrap();
    let shape = CellShape {
        batch: 2,
        hidden: 3,
    };
    let states = gpu.storage("states", 100);
    let pre = gpu.storage("pre", 100);
    let act = gpu.storage("act", 100);
    let h = gpu.storage("h", 100);
    let views = CellForwardViews {
        pre: View::at(&pre, 0, 24),
        c_prev: View::at(&states, 0, 6),
        act: View::at(&act, 10, 24),
        c: View::at(&states, 40, 6),
        h: View::at(&h, 50, 6),
    };
    assert!(cell.prepare_forward(&gpu, shape, 0.0, &views).is_ok());
    let in_place = CellForwardViews {
        c: views.c_prev,
        ..views
    };
    assert!(cell.prepare_forward(&gpu, shape, 0.0, &in_place).is_ok());
    let error = |v: &CellForwardViews| match cell.prepare_forward(&gpu, shape, 0.0, v) {
        Ok(_) => panic!("prepared {v:?}"),
        Err(e) => format!("{e:#}"),
    };
    let short = CellForwardViews {
        act: View::at(&act, 10, 23),
        ..views
    };
    assert!(error(&short).contains("act"));
    let past_end = CellForwardViews {
        h: View::at(&h, 97, 6),
        ..views
    };
    assert!(error(&past_end).contains("h"));
    // Any buffer in two bindings: WebGPU refuses it when one of them is writable.
    let reads_output = CellForwardViews {
        pre: View::at(&act, 60, 24),
        ..views
    };
    assert!(error(&reads_output).contains("WebGPU refuses"));
    let h_in_states = CellForwardViews {
        h: View::at(&states, 60, 6),
        ..views
    };
    assert!(error(&h_in_states).contains("WebGPU refuses"));
    let overlapping = CellForwardViews {
        c: View::at(&states, 3, 6),
        ..views
    };
    assert!(error(&overlapping).contains("overlap"));
    let c_elsewhere = CellForwardViews {
        c: View::at(&h, 0, 6),
        h: View::at(&h, 50, 6),
        ..views
    };
    assert!(error(&c_elsewhere).contains("one state buffer"));

    let dc = gpu.storage("dc", 100);
    let dc_prev = gpu.storage("dc_prev", 100);
    let dpre = gpu.storage("dpre", 100);
    let back = CellBackwardViews {
        act: View::at(&act, 0, 24),
        c_prev: View::at(&states, 0, 6),
        c: View::at(&states, 6, 6),
        dh: View::at(&h, 0, 6),
        dc: View::at(&dc, 0, 6),
        dpre: View::at(&dpre, 0, 24),
        dc_prev: View::at(&dc_prev, 0, 6),
    };
    assert!(cell.prepare_backward(&gpu, shape, &back).is_ok());
    let dc_in_place = CellBackwardViews {
        dc_prev: back.dc,
        ..back
    };
    match cell.prepare_backward(&gpu, shape, &dc_in_place) {
        Ok(_) => panic!("dc and dc_prev in one buffer were prepared"),
        Err(e) => assert!(format!("{e:#}").contains("WebGPU refuses"), "{e:#}"),
    }
}

/// A grouped launch (`prepare_forward_group`, `prepare_backward_group`: the layers of a
/// wavefront step in one launch) computes each cell exactly as its own launch: two cells of
/// different widths (7 x 33 and 7 x 20) at their own offsets of shared buffers, forward and
/// backward, every output buffer bit for bit what one launch per cell leaves (outputs
/// poisoned with NaN around the windows), and so with the f16 copies of h and d(pre) a
/// mixed step's cells write (where the adapter has f16); two cells writing one window are
/// refused.
#[test]
fn grouped_cells_compute_each_cell_as_its_own_launch_does() {
    let gpu = gpu();
    let cell = LstmCell::new(&gpu).unwrap();
    let shapes = [
        CellShape {
            batch: 7,
            hidden: 33,
        },
        CellShape {
            batch: 7,
            hidden: 20,
        },
    ];
    let states: Vec<usize> = shapes.iter().map(|s| s.batch * s.hidden).collect();
    // Cell g's windows: gates at gate_at[g], states at state_at[g] (after GUARD words).
    let gate_at = [GUARD, GUARD + 4 * states[0] + 3];
    let state_at = [GUARD, GUARD + 2 * states[0] + 3];
    let gate_words = gate_at[1] + 4 * states[1] + GUARD;
    // c holds c_prev then c for each cell: [c_prev, c] at state_at[g].
    let state_words = state_at[1] + 2 * states[1] + GUARD;
    let pre = gpu.storage_from("pre", &random(gate_words, 2.0, 1));
    let c_start = random(state_words, 1.0, 2);
    let dh = gpu.storage_from("dh", &random(state_words, 1.0, 3));
    let dc = gpu.storage_from("dc", &random(state_words, 1.0, 4));
    let half = gpu.features.contains(wgpu::Features::SHADER_F16);
    let run = |grouped: bool, with_f16: bool| {
        let c = gpu.storage_from("c", &c_start);
        // The f16 copies, every element f16 NaN (all bits set) around the windows.
        let (h16, dpre16) = (
            gpu.storage_from("h16", &vec![u32::MAX; state_words.div_ceil(2)]),
            gpu.storage_from("dpre16", &vec![u32::MAX; gate_words.div_ceil(2)]),
        );
        let (act, h) = (
            gpu.storage_from("act", &nan(gate_words)),
            gpu.storage_from("h", &nan(state_words)),
        );
        let (dpre, dc_prev) = (
            gpu.storage_from("dpre", &nan(gate_words)),
            gpu.storage_from("dc_prev", &nan(state_words)),
        );
        let forward: Vec<_> = (0..2)
            .map(|g| {
                let s = states[g];
                (
                    shapes[g],
                    CellForwardViews {
                        pre: View::at(&pre, gate_at[g], 4 * s),
                        c_prev: View::at(&c, state_at[g], s),
                        act: View::at(&act, gate_at[g], 4 * s),
                        c: View::at(&c, state_at[g] + s, s),
                        h: View::at(&h, state_at[g], s),
                    },
                    None,
                    with_f16.then(|| HalfView::at(&h16, state_at[g], s)),
                )
            })
            .collect();
        let backward: Vec<_> = (0..2)
            .map(|g| {
                let s = states[g];
                (
                    shapes[g],
                    CellBackwardViews {
                        act: View::at(&act, gate_at[g], 4 * s),
                        c_prev: View::at(&c, state_at[g], s),
                        c: View::at(&c, state_at[g] + s, s),
                        dh: View::at(&dh, state_at[g], s),
                        dc: View::at(&dc, state_at[g], s),
                        dpre: View::at(&dpre, gate_at[g], 4 * s),
                        dc_prev: View::at(&dc_prev, state_at[g], s),
                    },
                    None,
                    with_f16.then(|| HalfView::at(&dpre16, gate_at[g], 4 * s)),
                )
            })
            .collect();
        let launches = if grouped {
            vec![
                cell.prepare_forward_group(&gpu, 0.5, &forward).unwrap(),
                cell.prepare_backward_group(&gpu, &backward).unwrap(),
            ]
        } else {
            let mut d: Vec<_> = forward
                .iter()
                .map(|(s, v, _, h16)| match h16 {
                    Some(h16) => cell.prepare_forward_half(&gpu, *s, 0.5, v, *h16).unwrap(),
                    None => cell.prepare_forward(&gpu, *s, 0.5, v).unwrap(),
                })
                .collect();
            d.extend(backward.iter().map(|(s, v, _, d16)| match d16 {
                Some(d16) => cell.prepare_backward_half(&gpu, *s, v, *d16).unwrap(),
                None => cell.prepare_backward(&gpu, *s, v).unwrap(),
            }));
            d
        };
        gpu.run(&launches.iter().collect::<Vec<_>>()).unwrap();
        let read =
            |b: &wgpu::Buffer| -> Vec<f32> { gpu.read(b, 0, (b.size() / 4) as usize).unwrap() };
        [
            read(&act),
            read(&c),
            read(&h),
            read(&dpre),
            read(&dc_prev),
            read(&h16),
            read(&dpre16),
        ]
    };
    for with_f16 in [false, true].into_iter().filter(|&f| f <= half) {
        let (alone, grouped) = (run(false, with_f16), run(true, with_f16));
        for (what, (a, g)) in ["act", "c", "h", "dpre", "dc_prev", "h16", "dpre16"]
            .iter()
            .zip(alone.iter().zip(&grouped))
        {
            assert_eq!(bits(a), bits(g), "{what} (f16 copies: {with_f16})");
            let written = g.iter().any(|v| v.to_bits() != u32::MAX && !v.is_nan());
            assert_eq!(
                written,
                with_f16 || !what.ends_with("16"),
                "{what} written (f16 copies: {with_f16})"
            );
        }
    }
    // GL has no f16 in shaders; lavapipe's Vulkan (what CI runs first) has.
    assert!(
        half || gpu.info.backend != wgpu::Backend::Vulkan,
        "{}: no SHADER_F16, the f16 copies untested",
        gpu.info.name
    );
    // Two cells writing one window of h.
    let (c, act, h) = (
        gpu.storage_from("c", &c_start),
        gpu.storage("act", gate_words),
        gpu.storage("h", state_words),
    );
    let s = states[1];
    let views = CellForwardViews {
        pre: View::at(&pre, gate_at[1], 4 * s),
        c_prev: View::at(&c, state_at[1], s),
        act: View::at(&act, gate_at[1], 4 * s),
        c: View::at(&c, state_at[1] + s, s),
        h: View::at(&h, state_at[1], s),
    };
    let Err(err) = cell.prepare_forward_group(&gpu, 0.5, &[(shapes[1], views, None, None); 2])
    else {
        panic!("two cells writing one window were accepted");
    };
    assert!(err.to_string().contains("overlap"), "{err}");
}
