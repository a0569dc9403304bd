//! `--precision mixed` (issue 25) on the scalar f16 fallback (lavapipe has `SHADER_F16`; an
//! adapter without it fails here, saying so, rather than passing silently): the scaled
//! cast, whole mixed training steps against their CPU twin and against the f32 step, and
//! the dynamic loss scale growing and backing off.
//!
//! Tolerances. The twin (`reference::step` with `Precision::Mixed`, in f64) rounds the same
//! operands to f16 at the same points. The GPU computes the values it rounds in f32, so an
//! operand within an f32 rounding of an f16 rounding boundary can land one f16 unit
//! (2^-11 = 4.9e-4 relative) away from the twin's; such flips are rare and average out in
//! sums, so the mixed step is held to its twin at 1e-4 relative L2 for the loss, the
//! parameters and the state, and 2e-3 for the update (new - old) itself. Against the f32
//! step the difference is f16's roundoff: every operand carries a relative error up to
//! 2^-11, so the loss stays within 1e-3 relative and the update within 2e-2.

mod common;

use common::{assert_close, gpu, random, random_ids, random_state, rel_l2, to_f64};
use lstm_gpu::config::{Config, Precision};
use lstm_gpu::gpu::loss_scale::LossScale;
use lstm_gpu::gpu::matmul_f16::{HalfKernels, HalfView};
use lstm_gpu::gpu::sgd::Hyper;
use lstm_gpu::gpu::{Gpu, View};
use lstm_gpu::model::schedule::{Kernels, Mode, ParamBuffers, Workspace};
use lstm_gpu::model::{Params, State};
use lstm_gpu::reference::step::{self, DropoutKey};

fn small_config(precision: Precision) -> Config {
    Config {
        vocab_size: 53,
        embedding_size: 12,
        hidden: vec![17, 9],
        batch_size: 5,
        num_steps: 6,
        init_scale: 0.3,
        keep_prob: 0.8,
        precision,
        ..Config::default()
    }
}

fn half_kernels(gpu: &Gpu) -> HalfKernels {
    HalfKernels::new(gpu).unwrap().unwrap_or_else(|| {
        panic!(
            "adapter {} has no SHADER_F16: --precision mixed cannot be tested here (lavapipe, \
             mesa-vulkan-drivers from Mesa 24 on, has it)",
            gpu.info.name
        )
    })
}

/// A training workspace of `cfg` on fresh parameters of `seed`, with its incoming state.
struct Setup {
    params: Params<f32>,
    state: State<f32>,
    pbuf: ParamBuffers,
    ws: Workspace,
    x: Vec<u32>,
    y: Vec<u32>,
}

fn setup(gpu: &Gpu, kernels: &Kernels, cfg: &Config, seed: u64) -> Setup {
    let params = Params::<f32>::init(cfg, seed);
    let state = random_state(cfg, seed + 100);
    let n = cfg.batch_size * cfg.num_steps;
    let pbuf = ParamBuffers::upload(gpu, cfg, &params).unwrap();
    let ws = Workspace::new(
        gpu,
        kernels,
        cfg,
        &pbuf,
        cfg.batch_size,
        cfg.num_steps,
        Mode::Train,
    )
    .unwrap();
    ws.write_state(gpu, &state).unwrap();
    Setup {
        params,
        state,
        pbuf,
        ws,
        x: random_ids(n, cfg.vocab_size, seed + 200),
        y: random_ids(n, cfg.vocab_size, seed + 300),
    }
}

const HYPER: Hyper = Hyper {
    learning_rate: 0.7,
    step: 3,
    seed: 11,
};

#[test]
fn the_scaled_cast_multiplies_by_the_loss_scale_then_rounds() {
    let gpu = gpu();
    let hk = half_kernels(&gpu);
    let mut values = random(1000, 1.0, 5);
    values.extend([0.0, 1e-9, 3.0, -3.0, 0.2, 65504.0 / 1024.0]);
    let n = values.len();
    for scale in [1.0f32, 1024.0, 65536.0, 1.0 / 64.0] {
        let block = gpu.storage_from(
            "loss scale",
            &[LossScale {
                scale,
                ..LossScale::initial()
            }],
        );
        let src = gpu.storage_from("src", &values);
        let dst = gpu.storage("dst", n.div_ceil(2) + 2);
        let d = hk
            .cast_scaled(&gpu, View::all(&src), HalfView::at(&dst, 3, n), n, &block)
            .unwrap();
        gpu.run(&[&d]).unwrap();
        let words: Vec<u32> = gpu.read(&dst, 0, (n + 3).div_ceil(2)).unwrap();
        let halves: Vec<u16> = words
            .iter()
            .flat_map(|w| [(*w & 0xffff) as u16, (*w >> 16) as u16])
            .collect();
        for (i, &v) in values.iter().enumerate() {
            let want = half::f16::from_f32(v * scale).to_bits();
            assert_eq!(
                halves[3 + i],
                want,
                "element {i}: {v} x {scale}: got {:?}, want {:?}",
                half::f16::from_bits(halves[3 + i]),
                half::f16::from_bits(want)
            );
        }
    }
}

#[test]
fn a_mixed_step_matches_its_cpu_twin() {
    let gpu = gpu();
    half_kernels(&gpu);
    mixed_step_against_twin(&gpu, &Kernels::new(&gpu).unwrap());
}

/// The same with k split on the f16 products as on a GPU (forced through the f32 family's
/// default: lavapipe's own never splits): the slices' sums added by `matmul_split_sum`, a
/// second launch for each long product.
#[test]
fn a_mixed_step_with_split_products_matches_its_cpu_twin() {
    use lstm_gpu::gpu::matmul::MatmulVariant;
    let mut gpu = gpu();
    half_kernels(&gpu);
    let cfg = small_config(Precision::Mixed);
    let plain = setup(&gpu, &Kernels::new(&gpu).unwrap(), &cfg, 1)
        .ws
        .dispatches();
    gpu.matmul = Some(MatmulVariant::StripSplit);
    let kernels = Kernels::new(&gpu).unwrap();
    let split = setup(&gpu, &kernels, &cfg, 1).ws.dispatches();
    assert!(
        split > plain,
        "no product split: {split} launches against {plain}"
    );
    mixed_step_against_twin(&gpu, &kernels);
}

/// One mixed step with `kernels` against its CPU twin, untied and tied.
fn mixed_step_against_twin(gpu: &Gpu, kernels: &Kernels) {
    for tie in [false, true] {
        let cfg = Config {
            tie_weights: tie,
            embedding_size: if tie { 9 } else { 12 },
            ..small_config(Precision::Mixed)
        };
        let mut s = setup(gpu, kernels, &cfg, 41);
        s.ws.take_loss(gpu).unwrap();
        s.ws.step(gpu, &s.x, &s.y, HYPER).unwrap();
        let (loss, batches) = s.ws.take_loss(gpu).unwrap();
        assert_eq!(batches, 1);
        let got = s.pbuf.read(gpu, &cfg).unwrap();
        let got_state = s.ws.read_state(gpu).unwrap();
        let got_scale = s.ws.read_loss_scale(gpu).unwrap().expect("a mixed step");

        let mut want = s.params.cast::<f64>();
        let mut want_state = s.state.cast::<f64>();
        let mut ls = LossScale::initial().to_reference();
        let out = step::train_step_scaled(
            &cfg,
            &mut want,
            &mut want_state,
            &s.x,
            &s.y,
            HYPER.learning_rate as f64,
            Some(DropoutKey { seed: 11, step: 3 }),
            &mut ls,
        );
        assert!(out.grad_norm.is_finite(), "the twin overflowed: {out:?}");
        let what = format!("tied {tie}");
        let rel = (loss - out.loss).abs() / out.loss;
        assert!(rel <= 1e-4, "{what}: loss GPU {loss} vs twin {}", out.loss);
        assert_eq!(got_scale.to_reference(), ls, "{what}: loss scale");
        for (((name, g), (_, w)), (_, b)) in got
            .tensors()
            .into_iter()
            .zip(want.tensors())
            .zip(s.params.tensors())
        {
            assert_close(&format!("{what}: {name}"), g, w, 1e-4);
            let du: Vec<f32> = g.iter().zip(b).map(|(x, y)| x - y).collect();
            let dw: Vec<f64> = w.iter().zip(b).map(|(x, &y)| x - y as f64).collect();
            assert!(
                dw.iter().any(|&v| v != 0.0),
                "{what}: {name} was not updated"
            );
            assert_close(&format!("{what}: update of {name}"), &du, &dw, 2e-3);
        }
        for l in 0..cfg.hidden.len() {
            assert_close(
                &format!("{what}: carried h{l}"),
                &got_state.h[l],
                &want_state.h[l],
                1e-4,
            );
        }
    }
}

#[test]
fn a_mixed_step_is_close_to_the_f32_step() {
    let gpu = gpu();
    half_kernels(&gpu);
    let kernels = Kernels::new(&gpu).unwrap();
    let mut results = Vec::new();
    for precision in [Precision::F32, Precision::Mixed] {
        let cfg = small_config(precision);
        let mut s = setup(&gpu, &kernels, &cfg, 7);
        s.ws.take_loss(&gpu).unwrap();
        s.ws.step(&gpu, &s.x, &s.y, HYPER).unwrap();
        let (loss, _) = s.ws.take_loss(&gpu).unwrap();
        let got = s.pbuf.read(&gpu, &cfg).unwrap();
        let update: Vec<f32> = got
            .tensors()
            .into_iter()
            .zip(s.params.tensors())
            .flat_map(|((_, g), (_, b))| g.iter().zip(b).map(|(x, y)| x - y).collect::<Vec<_>>())
            .collect();
        results.push((loss, update));
    }
    let (f32_loss, f32_update) = &results[0];
    let (mixed_loss, mixed_update) = &results[1];
    let rel = (f32_loss - mixed_loss).abs() / f32_loss;
    assert!(rel <= 1e-3, "loss f32 {f32_loss} vs mixed {mixed_loss}");
    assert!(
        rel > 0.0,
        "the mixed step computed exactly the f32 loss: no f16 rounding ran"
    );
    let e = rel_l2(mixed_update, &to_f64(f32_update));
    assert!(e <= 2e-2, "update: relative L2 {e:e} between mixed and f32");
    assert!(
        e > 0.0,
        "the mixed update is the f32 update: no f16 rounding ran"
    );
}

#[test]
fn the_loss_scale_doubles_after_its_growth_interval_of_clean_steps() {
    let gpu = gpu();
    half_kernels(&gpu);
    let kernels = Kernels::new(&gpu).unwrap();
    let cfg = small_config(Precision::Mixed);
    let s = setup(&gpu, &kernels, &cfg, 3);
    let mut ws = s.ws;
    let start = LossScale {
        scale: 4.0,
        clean: 0,
        overflows: 0,
        growth_interval: 3,
    };
    ws.write_loss_scale(&gpu, start).unwrap();
    let mut twin = start.to_reference();
    let (mut params, mut state) = (s.params.cast::<f64>(), s.state.cast::<f64>());
    for k in 0..7u32 {
        let hyper = Hyper { step: k, ..HYPER };
        ws.step(&gpu, &s.x, &s.y, hyper).unwrap();
        step::train_step_scaled(
            &cfg,
            &mut params,
            &mut state,
            &s.x,
            &s.y,
            HYPER.learning_rate as f64,
            Some(DropoutKey { seed: 11, step: k }),
            &mut twin,
        );
    }
    let got = ws.read_loss_scale(&gpu).unwrap().unwrap();
    // 7 clean steps at an interval of 3: doubled twice, one clean step since.
    assert_eq!(
        got,
        LossScale {
            scale: 16.0,
            clean: 1,
            overflows: 0,
            growth_interval: 3
        }
    );
    assert_eq!(got.to_reference(), twin);
    let stats = ws.take_stats(&gpu).unwrap();
    assert_eq!((stats.batches(), stats.skipped), (7.0, 0));
}

#[test]
fn an_f16_overflow_halves_the_scale_and_skips_the_update_losing_nothing() {
    let gpu = gpu();
    half_kernels(&gpu);
    let kernels = Kernels::new(&gpu).unwrap();
    let cfg = small_config(Precision::Mixed);
    let s = setup(&gpu, &kernels, &cfg, 9);
    let mut ws = s.ws;
    // The logits' gradient is at most 1 / batch = 0.2 in size: times 2^24 it is far past
    // f16's largest value (65504), so the scaled products overflow.
    let huge = LossScale {
        scale: 16_777_216.0,
        clean: 5,
        overflows: 0,
        growth_interval: 2000,
    };
    ws.write_loss_scale(&gpu, huge).unwrap();
    ws.step(&gpu, &s.x, &s.y, HYPER).unwrap();
    let after = ws.read_loss_scale(&gpu).unwrap().unwrap();
    assert_eq!(
        after,
        LossScale {
            scale: 8_388_608.0,
            clean: 0,
            overflows: 1,
            growth_interval: 2000
        }
    );
    let mut twin = huge.to_reference();
    let (mut p64, mut s64) = (s.params.cast::<f64>(), s.state.cast::<f64>());
    let out = step::train_step_scaled(
        &cfg,
        &mut p64,
        &mut s64,
        &s.x,
        &s.y,
        HYPER.learning_rate as f64,
        Some(DropoutKey { seed: 11, step: 3 }),
        &mut twin,
    );
    assert!(out.grad_norm.is_infinite());
    assert_eq!(after.to_reference(), twin);
    // Nothing changed: every parameter bit for bit.
    let got = s.pbuf.read(&gpu, &cfg).unwrap();
    for ((name, g), (_, b)) in got.tensors().into_iter().zip(s.params.tensors()) {
        assert!(
            g.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{name} changed in a step that overflowed"
        );
    }
    // The step's loss counts (its forward pass was fine) and it is no NaN skip: a run with
    // --on-nan stop goes on.
    let stats = ws.take_stats(&gpu).unwrap();
    assert_eq!((stats.batches(), stats.skipped), (1.0, 0));
    assert!(stats.loss_sum().is_finite() && stats.loss_sum() > 0.0);
    // It has no gradient norm (none enters the mean, it is not clipped).
    assert_eq!((stats.norm_steps, stats.clipped), (0, 0), "{stats:?}");
    assert!(stats.mean_norm().is_nan());
    let clip = ws.read_clip(&gpu).unwrap().unwrap();
    assert_eq!((clip.scale, clip.nonfinite_steps), (0.0, 0.0));
    // Backed off far enough, the next steps update again.
    for k in 0..12u32 {
        let hyper = Hyper {
            step: 4 + k,
            ..HYPER
        };
        ws.step(&gpu, &s.x, &s.y, hyper).unwrap();
    }
    let later = ws.read_loss_scale(&gpu).unwrap().unwrap();
    // The norms gathered are those of the steps that updated: the 12 less their overflows.
    let stats = ws.take_stats(&gpu).unwrap();
    assert_eq!(stats.batches(), 12.0);
    assert_eq!(
        stats.norm_steps,
        12 - (later.overflows - 1),
        "{stats:?} {later:?}"
    );
    assert!(stats.mean_norm().is_finite() && stats.mean_norm() > 0.0);
    // Each overflow halved S; once S fits, the steps are clean (and update) again.
    assert!(
        later.overflows > 1 && later.scale < huge.scale / 2.0 && later.clean > 0,
        "{later:?}"
    );
    assert_eq!(
        later.scale,
        huge.scale / 2f32.powi(later.overflows as i32),
        "{later:?}"
    );
    let moved = s.pbuf.read(&gpu, &cfg).unwrap();
    assert_ne!(moved.tensors()[1], s.params.tensors()[1]);
}

/// The f16 halves of `buffer`'s first `halves` elements.
fn read_halves(gpu: &Gpu, buffer: &wgpu::Buffer, halves: usize) -> Vec<u16> {
    let words: Vec<u32> = gpu.read(buffer, 0, halves.div_ceil(2)).unwrap();
    words
        .iter()
        .flat_map(|w| [(*w & 0xffff) as u16, (*w >> 16) as u16])
        .take(halves)
        .collect()
}

/// The f16 copies the mixed step's cell kernels write beside their f32 outputs: each one
/// `f16(x)` of the f32 value written (what a separate cast would give, infinite past f16's
/// range), the f32 outputs bit for bit those of the f32 kernels, nothing written outside the
/// copy's window.
#[test]
fn the_cell_writes_its_f16_copies_as_a_cast_would() {
    use lstm_gpu::gpu::lstm_cell::{CellBackwardViews, CellForwardViews, CellShape, LstmCell};
    let gpu = gpu();
    half_kernels(&gpu);
    let cell = LstmCell::new(&gpu).unwrap();
    assert!(cell.has_half(), "the f16 cell kernels were not built");
    let f32_words =
        |b: &wgpu::Buffer| -> Vec<u32> { gpu.read(b, 0, (b.size() / 4) as usize).unwrap() };
    // Poison f16 elements outside the window must stay: 0x7e01 (a NaN no kernel writes).
    const POISON: u16 = 0x7e01;
    let poisoned = |halves: usize| {
        let word = (POISON as u32) | ((POISON as u32) << 16);
        gpu.storage_from("f16 copy", &vec![word; halves.div_ceil(2)])
    };
    for (k, &(batch, hidden)) in [(1, 1), (7, 33), (60, 128)].iter().enumerate() {
        let shape = CellShape { batch, hidden };
        let (states, gates) = (batch * hidden, 4 * batch * hidden);
        let seed = 700 + k as u64;
        let what = format!("b={batch} h={hidden}");
        let pre = gpu.storage_from("pre", &random(gates, 3.0, seed));
        let dh_values: Vec<f32> = random(states, 1.0, seed + 1)
            .iter()
            .enumerate()
            // Loss-scaled gradients: some beyond f16's range.
            .map(|(i, v)| if i % 5 == 0 { v * 3e5 } else { v * 300.0 })
            .collect();
        let dh = gpu.storage_from("dh", &dh_values);
        let dc = gpu.storage_from("dc", &random(states, 50.0, seed + 2));
        let run = |half: bool| {
            let c_states = gpu.storage_from("c", &random(2 * states, 2.0, seed + 3));
            let act = gpu.storage("act", gates);
            let h = gpu.storage("h", states);
            let dpre = gpu.storage("dpre", gates);
            let dc_prev = gpu.storage("dc_prev", states);
            let (h16, d16) = (poisoned(states + 7), poisoned(gates + 6));
            let fwd = CellForwardViews {
                pre: View::all(&pre),
                c_prev: View::at(&c_states, 0, states),
                act: View::all(&act),
                c: View::at(&c_states, states, states),
                h: View::all(&h),
            };
            let bwd = CellBackwardViews {
                act: View::all(&act),
                c_prev: View::at(&c_states, 0, states),
                c: View::at(&c_states, states, states),
                dh: View::all(&dh),
                dc: View::all(&dc),
                dpre: View::all(&dpre),
                dc_prev: View::all(&dc_prev),
            };
            let (f, b) = if half {
                (
                    cell.prepare_forward_half(
                        &gpu,
                        shape,
                        1.0,
                        &fwd,
                        HalfView::at(&h16, 3, states),
                    )
                    .unwrap(),
                    cell.prepare_backward_half(&gpu, shape, &bwd, HalfView::at(&d16, 5, gates))
                        .unwrap(),
                )
            } else {
                (
                    cell.prepare_forward(&gpu, shape, 1.0, &fwd).unwrap(),
                    cell.prepare_backward(&gpu, shape, &bwd).unwrap(),
                )
            };
            gpu.run(&[&f, &b]).unwrap();
            let outputs: Vec<Vec<u32>> = [&c_states, &act, &h, &dpre, &dc_prev]
                .into_iter()
                .map(f32_words)
                .collect();
            let halves = [
                read_halves(&gpu, &h16, states + 7),
                read_halves(&gpu, &d16, gates + 6),
            ];
            (outputs, halves)
        };
        let (plain, _) = run(false);
        let (outputs, [h16, d16]) = run(true);
        assert_eq!(
            outputs, plain,
            "{what}: the f16 kernels changed an f32 output"
        );
        for (name, copy, at, f32s) in [("h", &h16, 3, &plain[2]), ("dpre", &d16, 5, &plain[3])] {
            let mut overflowed = 0;
            for (i, &got) in copy.iter().enumerate() {
                let Some(&x) = (i >= at).then(|| f32s.get(i - at)).flatten() else {
                    assert_eq!(
                        got, POISON,
                        "{what}: {name} f16 element {i} outside the window was written"
                    );
                    continue;
                };
                let x = f32::from_bits(x);
                let want = half::f16::from_f32(x);
                overflowed += usize::from(want.is_infinite());
                assert_eq!(
                    got,
                    want.to_bits(),
                    "{what}: {name}[{}] = {x}: f16 copy {:?}, want {want:?}",
                    i - at,
                    half::f16::from_bits(got)
                );
            }
            if name == "dpre" && states > 1 {
                assert!(
                    overflowed > 0,
                    "{what}: no gradient overflowed f16; the test lost its edge"
                );
            }
        }
    }
}

/// The mixed step casts no time step's slice: the cell writes the f16 copies the recurrent
/// products read, so the mixed step's extra dispatches (casts of weights, inputs, the
/// carried h and the logits' gradient; the loss scaling) do not grow with the unrolling.
#[test]
fn the_mixed_steps_extra_dispatches_do_not_grow_with_the_time_steps() {
    use lstm_gpu::gpu::lstm_step::Recurrence;
    let gpu = gpu();
    half_kernels(&gpu);
    let mut kernels = Kernels::new(&gpu).unwrap();
    kernels.recurrence = Some(Recurrence::Unfused);
    let extra = |steps: usize| {
        let count = |precision| {
            let cfg = Config {
                num_steps: steps,
                ..small_config(precision)
            };
            let p = Params::<f32>::init(&cfg, 1);
            let pbuf = ParamBuffers::upload(&gpu, &cfg, &p).unwrap();
            Workspace::new(
                &gpu,
                &kernels,
                &cfg,
                &pbuf,
                cfg.batch_size,
                steps,
                Mode::Train,
            )
            .unwrap()
            .dispatches()
        };
        let (f32s, mixed) = (count(Precision::F32), count(Precision::Mixed));
        assert!(
            mixed > f32s,
            "{steps} steps: mixed {mixed} vs f32 {f32s} dispatches"
        );
        mixed - f32s
    };
    assert_eq!(
        extra(3),
        extra(9),
        "the mixed step's extra dispatches grow with the time steps"
    );
}

/// In mixed precision too, where the recurrent f16 products split k (forced as on a GPU),
/// the cell adds their slices itself (`lstm_cell_*_split_f16`, writing its f16 copies as
/// well): one launch fewer per split product and the same two steps bit for bit.
#[test]
fn the_mixed_cell_adds_split_recurrent_sums_bit_for_bit() {
    use lstm_gpu::gpu::matmul::MatmulVariant;
    let mut gpu = gpu();
    half_kernels(&gpu);
    gpu.matmul = Some(MatmulVariant::StripSplit);
    let cfg = Config {
        hidden: vec![40, 24],
        ..small_config(Precision::Mixed)
    };
    // The f16 kernel's 32-row blocks: layer 0's forward products split (k 40), and both
    // layers' backward ones (k 160, 96), as in the f32 test.
    let steps = cfg.num_steps;
    common::split::assert_the_cell_adds_the_sums(&gpu, &cfg, steps + 2 * (steps - 1));
}

/// Mixed precision in the wavefront's order (`--recurrence wavefront --precision mixed`):
/// the same f16 copies made (the cell's, and casts at each range's first read, whatever
/// the order), so the same two steps bit for bit as the unfused mixed step, with the
/// layers' paired time steps as one launch each (the f16 kernels without barriers have a
/// grouped form: the recurrent weights' f16 copy made once a step, the cells writing their
/// f16 outputs side by side) and one launch per layer alike; and with split products
/// (forced as on a GPU) each layer's f16 slices wait in a scratch slot of their own (or,
/// grouped, in one slot one after the other): the mixed step still matches its CPU twin,
/// grouped and not, bit for bit the same.
#[test]
fn the_mixed_wavefront_step_is_the_mixed_unfused_step_bit_for_bit() {
    use lstm_gpu::gpu::lstm_step::Recurrence;
    use lstm_gpu::gpu::matmul::MatmulVariant;
    use lstm_gpu::gpu::matmul_f16::HalfVariant;
    use lstm_gpu::model::schedule::wavefront_chunk;
    let mut gpu = gpu();
    half_kernels(&gpu);
    // The scalar f16 kernel, on every adapter (a GPU's default, the matrix units' kernel,
    // has barriers and so no grouped form: its pairs run one launch per layer).
    gpu.half_matmul = Some(HalfVariant::Scalar);
    for (hidden, steps) in [(vec![17, 9], 6), (vec![8, 12, 8], 9)] {
        let cfg = Config {
            hidden: hidden.clone(),
            num_steps: steps,
            ..small_config(Precision::Mixed)
        };
        let (unfused_launches, unfused_loss, unfused) =
            common::split::two_steps_with(&gpu, &cfg, Recurrence::Unfused, true);
        let mut kernels = Kernels::new(&gpu).unwrap();
        kernels.recurrence = Some(Recurrence::Wavefront);
        let (wave_launches, wave_loss, wave) = common::split::two_steps_of(&gpu, &cfg, &kernels);
        assert_eq!(wave_loss, unfused_loss, "{hidden:?}: loss");
        assert!(wave == unfused, "{hidden:?}: parameters or state differ");
        kernels.group_wavefront = false;
        let (apart_launches, apart_loss, apart) = common::split::two_steps_of(&gpu, &cfg, &kernels);
        assert_eq!(
            apart_loss, unfused_loss,
            "{hidden:?}: loss, one launch per layer"
        );
        assert!(apart == unfused, "{hidden:?}: one launch per layer differs");
        assert!(
            apart_launches > unfused_launches,
            "{hidden:?}: its chunks' launches"
        );
        if hidden.len() == 2 {
            let saved = 2 * (2 * (steps - wavefront_chunk(steps)) - 1);
            assert_eq!(wave_launches, apart_launches - saved, "{hidden:?}: grouped");
        } else {
            assert!(wave_launches < apart_launches, "{hidden:?}: grouped");
        }
    }
    let mut split = common::gpu();
    split.matmul = Some(MatmulVariant::StripSplit);
    split.half_matmul = Some(HalfVariant::Scalar);
    let cfg = Config {
        hidden: vec![40, 24],
        ..small_config(Precision::Mixed)
    };
    let mut kernels = Kernels::new(&split).unwrap();
    kernels.recurrence = Some(Recurrence::Wavefront);
    let (grouped_launches, grouped_loss, grouped) =
        common::split::two_steps_of(&split, &cfg, &kernels);
    kernels.group_wavefront = false;
    let (apart_launches, apart_loss, apart) = common::split::two_steps_of(&split, &cfg, &kernels);
    assert_eq!(grouped_loss, apart_loss, "split: loss");
    assert!(
        grouped == apart,
        "split: grouped and one launch per layer differ"
    );
    assert!(
        grouped_launches < apart_launches,
        "split: {grouped_launches} grouped, {apart_launches} per layer"
    );
    kernels.group_wavefront = true;
    mixed_step_against_twin(&split, &kernels);
}
