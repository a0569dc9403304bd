//! Parity of `shaders/lstm_step.wgsl` (a layer's time step in one dispatch) with its CPU
//! twins `reference::lstm_step_forward` and `reference::lstm_step_backward` against an f64
//! reference, and of whole training steps on the fused path with the unfused one (a
//! matmul, then the cell kernel), which must agree bit for bit.

mod common;

use common::{assert_close, gpu, nan, random, to_f64};
use lstm_gpu::config::Config;
use lstm_gpu::gpu::lstm_step::{LstmStep, Recurrence, StepBackwardViews, StepForwardViews};
use lstm_gpu::gpu::sgd::Hyper;
use lstm_gpu::gpu::{Gpu, View};
use lstm_gpu::model::schedule::{Kernels, Mode, ParamBuffers, Workspace};
use lstm_gpu::model::{Params, State};
use lstm_gpu::reference;

/// Words of poison (or other data) before every window.
const GUARD: usize = 4;

/// (batch, hidden): tiny, not multiples of the tiles (nor of 4 units: the subgroup kernels
/// fall back), and the model's.
const SHAPES: [(usize, usize); 7] = [
    (1, 1),
    (7, 33),
    (17, 21),
    (5, 36),
    (33, 100),
    (60, 256),
    (60, 128),
];

fn buffer(gpu: &Gpu, data: &[f32]) -> wgpu::Buffer {
    let mut words = random(GUARD, 1.0, 9);
    words.extend_from_slice(data);
    gpu.storage_from("operand", &words)
}

fn read(gpu: &Gpu, b: &wgpu::Buffer, offset: usize, words: usize) -> Vec<f32> {
    gpu.read(b, offset, words).unwrap()
}

/// The fused kernels without and with the subgroup blocking.
fn kernels(gpu: &Gpu) -> Vec<(bool, LstmStep)> {
    [false, true]
        .into_iter()
        .map(|sg| {
            (
                sg,
                LstmStep::new(gpu, sg).expect("the fused kernels build here"),
            )
        })
        .collect()
}

/// The entry point that must run: the subgroup one where asked for, available, and the
/// hidden size and every offset are multiples of 4 (the tests' offsets are).
fn label(base: &str, subgroups: bool, gpu: &Gpu, hidden: usize) -> String {
    let capable = gpu.has_subgroups() && gpu.info.subgroup_min_size >= 8;
    if subgroups && capable && hidden % 4 == 0 {
        format!("{base}_subgroup")
    } else {
        base.to_string()
    }
}

#[test]
fn forward_matches_f64_reference() {
    let gpu = gpu();
    for (subgroups, step) in kernels(&gpu) {
        for (k, &(b, h)) in SHAPES.iter().enumerate() {
            let seed = 10 + 7 * k as u64;
            let (gates, states) = (b * 4 * h, b * h);
            let zx = random(gates, 1.5, seed);
            let w_h = random(h * 4 * h, 0.3, seed + 1);
            let h_prev = random(states, 1.0, seed + 2);
            let c_prev = random(states, 2.0, seed + 3);
            let fb = 0.5f32;
            // h and c states: [GUARD | prev | new], the new windows poisoned.
            let mut hs = random(GUARD, 1.0, 1);
            hs.extend_from_slice(&h_prev);
            hs.extend(nan(states));
            let mut cs = random(GUARD, 1.0, 2);
            cs.extend_from_slice(&c_prev);
            cs.extend(nan(states));
            let (zx_b, w_b) = (buffer(&gpu, &zx), buffer(&gpu, &w_h));
            let (h_b, c_b) = (gpu.storage_from("h", &hs), gpu.storage_from("c", &cs));
            let act_b = gpu.storage_from("act", &nan(GUARD + gates));
            let views = StepForwardViews {
                zx: View::at(&zx_b, GUARD, gates),
                w_h: View::at(&w_b, GUARD, h * 4 * h),
                h_prev: View::at(&h_b, GUARD, states),
                c_prev: View::at(&c_b, GUARD, states),
                act: View::at(&act_b, GUARD, gates),
                c: View::at(&c_b, GUARD + states, states),
                h: View::at(&h_b, GUARD + states, states),
            };
            let d = step.prepare_forward(&gpu, (b, h), fb, &views).unwrap();
            assert_eq!(d.label, label("lstm_step_forward", subgroups, &gpu, h));
            gpu.run(&[&d]).unwrap();

            let (mut act, mut c, mut hn) = (vec![0.0; gates], vec![0.0; states], vec![0.0; states]);
            reference::lstm_step_forward(
                b,
                h,
                &to_f64(&zx),
                &to_f64(&h_prev),
                &to_f64(&w_h),
                &to_f64(&c_prev),
                fb as f64,
                &mut act,
                &mut c,
                &mut hn,
            );
            let what = format!("{} {b}x{h}", d.label);
            assert_close(
                &format!("{what} act"),
                &read(&gpu, &act_b, GUARD, gates),
                &act,
                1e-5,
            );
            assert_close(
                &format!("{what} c"),
                &read(&gpu, &c_b, GUARD + states, states),
                &c,
                1e-5,
            );
            assert_close(
                &format!("{what} h"),
                &read(&gpu, &h_b, GUARD + states, states),
                &hn,
                1e-5,
            );
            // The previous states are read, never written.
            assert_eq!(
                read(&gpu, &h_b, GUARD, states),
                h_prev,
                "{what}: h_prev changed"
            );
            assert_eq!(
                read(&gpu, &c_b, GUARD, states),
                c_prev,
                "{what}: c_prev changed"
            );
        }
    }
}

#[test]
fn backward_matches_f64_reference() {
    let gpu = gpu();
    for (subgroups, step) in kernels(&gpu) {
        for (k, &(b, h)) in SHAPES.iter().enumerate() {
            let seed = 200 + 11 * k as u64;
            let (gates, states) = (b * 4 * h, b * h);
            let dz_next = random(gates, 0.5, seed);
            let w_h = random(h * 4 * h, 0.3, seed + 1);
            // Activations as the forward pass leaves them: sigmoids in (0, 1), tanh in (-1, 1).
            let act: Vec<f32> = random(gates, 1.0, seed + 2)
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    if (i / h) % 4 == 1 {
                        v * 0.9
                    } else {
                        0.5 + 0.45 * v
                    }
                })
                .collect();
            let c_prev = random(states, 1.5, seed + 3);
            let c = random(states, 1.5, seed + 4);
            let dh = random(states, 1.0, seed + 5);
            let dc = random(states, 1.0, seed + 6);
            // dz of all steps: [GUARD | this step (poisoned) | next step].
            let mut dzs = random(GUARD, 1.0, 3);
            dzs.extend(nan(gates));
            dzs.extend_from_slice(&dz_next);
            let mut cs = random(GUARD, 1.0, 4);
            cs.extend_from_slice(&c_prev);
            cs.extend_from_slice(&c);
            let dz_b = gpu.storage_from("dz", &dzs);
            let c_b = gpu.storage_from("c", &cs);
            let (w_b, act_b) = (buffer(&gpu, &w_h), buffer(&gpu, &act));
            let (dh_b, dc_b) = (buffer(&gpu, &dh), buffer(&gpu, &dc));
            let dc_prev_b = gpu.storage_from("dc_prev", &nan(GUARD + states));
            let views = StepBackwardViews {
                dz_next: View::at(&dz_b, GUARD + gates, gates),
                w_h: View::at(&w_b, GUARD, h * 4 * h),
                act: View::at(&act_b, GUARD, gates),
                c_prev: View::at(&c_b, GUARD, states),
                c: View::at(&c_b, GUARD + states, states),
                dh: View::at(&dh_b, GUARD, states),
                dc: View::at(&dc_b, GUARD, states),
                dc_prev: View::at(&dc_prev_b, GUARD, states),
                dz: View::at(&dz_b, GUARD, gates),
            };
            let d = step.prepare_backward(&gpu, (b, h), &views).unwrap();
            assert_eq!(d.label, label("lstm_step_backward", subgroups, &gpu, h));
            gpu.run(&[&d]).unwrap();

            let mut want_dh = to_f64(&dh);
            let (mut dz, mut dc_prev) = (vec![0.0; gates], vec![0.0; states]);
            reference::lstm_step_backward(
                b,
                h,
                &to_f64(&dz_next),
                &to_f64(&w_h),
                &to_f64(&act),
                &to_f64(&c_prev),
                &to_f64(&c),
                &mut want_dh,
                &to_f64(&dc),
                &mut dz,
                &mut dc_prev,
            );
            let what = format!("{} {b}x{h}", d.label);
            assert_close(
                &format!("{what} dh"),
                &read(&gpu, &dh_b, GUARD, states),
                &want_dh,
                1e-5,
            );
            assert_close(
                &format!("{what} dz"),
                &read(&gpu, &dz_b, GUARD, gates),
                &dz,
                1e-5,
            );
            assert_close(
                &format!("{what} dc_prev"),
                &read(&gpu, &dc_prev_b, GUARD, states),
                &dc_prev,
                1e-5,
            );
            assert_eq!(
                read(&gpu, &dz_b, GUARD + gates, gates),
                dz_next,
                "{what}: dz_next changed"
            );
        }
    }
}

/// Three training steps from the same start on `recurrence`: losses, parameters, state.
fn train(gpu: &Gpu, cfg: &Config, recurrence: Recurrence) -> (Vec<u64>, Params<f32>, State<f32>) {
    let mut kernels = Kernels::new(gpu).unwrap();
    kernels.recurrence = Some(recurrence);
    let params = Params::<f32>::init(cfg, 4);
    let pbuf = ParamBuffers::upload(gpu, cfg, &params).unwrap();
    let (b, t) = (cfg.batch_size, cfg.num_steps);
    let mut ws = Workspace::new(gpu, &kernels, cfg, &pbuf, b, t, Mode::Train).unwrap();
    ws.zero_state(gpu);
    ws.take_loss(gpu).unwrap();
    let mut losses = Vec::new();
    let n = b * t;
    for i in 0..3u64 {
        let x: Vec<u32> = (0..n)
            .map(|k| ((k as u64 * 7 + i * 13) % cfg.vocab_size as u64) as u32)
            .collect();
        let y: Vec<u32> = (0..n)
            .map(|k| ((k as u64 * 11 + i * 5 + 1) % cfg.vocab_size as u64) as u32)
            .collect();
        let hyper = Hyper {
            learning_rate: 1.0,
            step: i as u32,
            seed: 3,
        };
        ws.step(gpu, &x, &y, hyper).unwrap();
        losses.push(ws.take_loss(gpu).unwrap().0.to_bits());
    }
    (
        losses,
        pbuf.read(gpu, cfg).unwrap(),
        ws.read_state(gpu).unwrap(),
    )
}

#[test]
fn fused_and_unfused_steps_agree_bit_for_bit() {
    let gpu = gpu();
    // Widths that are not multiples of the tiles, dropout on; then the seed model's widths.
    let configs = [
        Config {
            vocab_size: 50,
            embedding_size: 12,
            hidden: vec![21, 9],
            batch_size: 5,
            num_steps: 4,
            keep_prob: 0.8,
            ..Config::default()
        },
        Config {
            vocab_size: 300,
            embedding_size: 200,
            hidden: vec![256, 128],
            batch_size: 20,
            num_steps: 5,
            ..Config::default()
        },
    ];
    for cfg in &configs {
        let fused = train(&gpu, cfg, Recurrence::Fused);
        let unfused = train(&gpu, cfg, Recurrence::Unfused);
        let what = format!("hidden {:?} batch {}", cfg.hidden, cfg.batch_size);
        assert_eq!(fused.0, unfused.0, "{what}: losses differ");
        for ((name, a), (_, b)) in fused.1.tensors().iter().zip(unfused.1.tensors()) {
            let differ = a
                .iter()
                .zip(b.iter())
                .filter(|(x, y)| x.to_bits() != y.to_bits())
                .count();
            assert_eq!(
                differ,
                0,
                "{what}: {name}: {differ} of {} words differ",
                a.len()
            );
        }
        assert_eq!(fused.2.h, unfused.2.h, "{what}: carried h differs");
        assert_eq!(fused.2.c, unfused.2.c, "{what}: carried c differs");
    }
}

#[test]
fn the_fused_step_launches_fewer_kernels() {
    let gpu = gpu();
    let cfg = Config {
        vocab_size: 40,
        embedding_size: 8,
        hidden: vec![8, 8],
        batch_size: 2,
        num_steps: 20,
        ..Config::default()
    };
    let params = Params::<f32>::init(&cfg, 1);
    let pbuf = ParamBuffers::upload(&gpu, &cfg, &params).unwrap();
    let count = |r: Recurrence| {
        let mut k = Kernels::new(&gpu).unwrap();
        k.recurrence = Some(r);
        Workspace::new(&gpu, &k, &cfg, &pbuf, 2, 20, Mode::Train)
            .unwrap()
            .dispatches()
    };
    let (fused, unfused) = (count(Recurrence::Fused), count(Recurrence::Unfused));
    // Per layer: 20 forward and 19 backward dispatches fewer.
    assert_eq!(
        unfused - fused,
        2 * (20 + 19),
        "fused {fused}, unfused {unfused}"
    );
}
