//! The program within WebGPU's default limits (`wgpu::Limits::default()`: 128 MiB per
//! storage binding, 8 storage buffers per stage, 16 KiB of workgroup memory, 256
//! invocations), what a browser offers: the adapter is capped to exactly those, the seed
//! model trains a few PTB steps on it (the first checked against the CPU reference) and
//! evaluates; a model too large for them is the clear error of an adapter that small.

mod common;

use common::ptb_dir;

use lstm_gpu::config::Config;
use lstm_gpu::data::{Batches, Corpus};
use lstm_gpu::gpu::matmul::MatmulVariant;
use lstm_gpu::gpu::sgd::Hyper;
use lstm_gpu::model::fit::Needs;
use lstm_gpu::model::schedule::{Kernels, Mode, ParamBuffers, Workspace};
use lstm_gpu::model::{Params, State};
use lstm_gpu::reference::step;

fn shapes(cfg: &Config) -> [(usize, usize, Mode); 2] {
    [
        (cfg.batch_size, cfg.num_steps, Mode::Train),
        (cfg.batch_size, cfg.num_steps, Mode::Eval),
    ]
}

#[test]
fn the_seed_model_trains_within_webgpu_default_limits() {
    train_within_webgpu_limits(Config::default(), None, 3);
}

/// The block matmul kernels (128x128 blocks use exactly WebGPU's 16 KiB of workgroup
/// memory) run every product of a training step within the defaults, and the step is the
/// CPU reference's. A smaller model than the seed: on wgpu's GL backend llvmpipe runs
/// these workgroup-memory kernels slowly, and the shapes still span several blocks.
#[test]
fn the_block_kernels_train_within_webgpu_default_limits() {
    let cfg = Config {
        vocab_size: 2000,
        embedding_size: 72,
        hidden: vec![136, 40],
        batch_size: 20,
        num_steps: 7,
        ..Config::default()
    };
    let picked = common::picked();
    let gpu = picked.open(&Needs::of_model(&cfg, &shapes(&cfg))).unwrap();
    if lstm_gpu::gpu::matmul::block_variants(&gpu).is_empty() {
        // wgpu's GL backend: not compiled there (see block_variants).
        assert_eq!(gpu.info.backend, wgpu::Backend::Gl);
        return;
    }
    drop(gpu);
    for v in [MatmulVariant::Block128, MatmulVariant::Block64Split] {
        train_within_webgpu_limits(cfg.clone(), Some(v), 1);
    }
}

/// `steps` training steps of `cfg` on PTB, on an adapter capped to WebGPU's default
/// limits, every product run by `matmul` when given; the first step checked against the
/// CPU reference.
fn train_within_webgpu_limits(cfg: Config, matmul: Option<MatmulVariant>, steps: usize) {
    let defaults = wgpu::Limits::default();
    let picked = common::picked().cap_limits(&defaults);
    let mut gpu = picked.open(&Needs::of_model(&cfg, &shapes(&cfg))).unwrap();
    gpu.matmul = matmul;
    // The device has no more than the defaults, whatever the adapter offers.
    let got = gpu.device.limits();
    assert!(
        got.check_limits(&defaults),
        "device limits exceed WebGPU's defaults: {got:?}"
    );
    assert_eq!(got.max_storage_buffer_binding_size, 128 << 20);
    assert_eq!(got.max_storage_buffers_per_shader_stage, 8);
    assert_eq!(got.max_compute_invocations_per_workgroup, 256);

    let kernels = Kernels::new(&gpu).unwrap();
    let corpus = Corpus::load(&ptb_dir(), cfg.vocab_size).unwrap();
    let train = Batches::new(&corpus.train, cfg.batch_size, cfg.num_steps).unwrap();
    let params = Params::<f32>::init(&cfg, 3);
    let pbuf = ParamBuffers::upload(&gpu, &cfg, &params).unwrap();
    let (b, t) = (cfg.batch_size, cfg.num_steps);
    let mut ws = Workspace::new(&gpu, &kernels, &cfg, &pbuf, b, t, Mode::Train).unwrap();
    let mut eval =
        Workspace::new_with_logits(&gpu, &kernels, &cfg, &pbuf, (b, t), Mode::Eval, &ws.logits)
            .unwrap();
    ws.zero_state(&gpu);
    ws.take_loss(&gpu).unwrap();

    let mut losses = Vec::new();
    for i in 0..steps {
        let (x, y) = train.batch(i);
        let hyper = Hyper {
            learning_rate: 1.0,
            step: i as u32,
            seed: 1,
        };
        ws.step(&gpu, &x, &y, hyper).unwrap();
        let (loss, _) = ws.take_loss(&gpu).unwrap();
        if i == 0 {
            let mut want = params.cast::<f64>();
            let mut state = State::<f64>::zeros(&cfg, b);
            let out = step::train_step(&cfg, &mut want, &mut state, &x, &y, 1.0, None);
            let rel = (loss - out.loss).abs() / out.loss;
            assert!(
                rel <= 1e-4,
                "first step: loss GPU {loss} vs CPU {} ({rel:e})",
                out.loss
            );
        }
        losses.push(loss);
    }
    gpu.check().unwrap();
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    if steps < 3 {
        return;
    }
    assert!(losses[2] < losses[0], "the loss should fall: {losses:?}");

    // Evaluation on the same device: three validation batches from a zero state (three
    // steps at learning rate 1 leave the model worse than uniform on unseen text, as the
    // TensorFlow tutorial's first steps do; what counts is a finite, measured figure).
    let valid = Batches::new(&corpus.valid[..3 * b * t + b], b, t).unwrap();
    let ppl = lstm_gpu::train::evaluate(&gpu, &mut eval, &valid, 1).unwrap();
    assert!(
        ppl.is_finite() && ppl > 1.0 && ppl < 1e6,
        "validation perplexity {ppl}"
    );
}

#[test]
fn a_model_too_large_for_webgpu_limits_is_one_clear_error() {
    // 60 x 20 rows of 30000 classes: 144 MB of logits, past the 128 MiB binding.
    let cfg = Config {
        vocab_size: 30_000,
        ..Config::default()
    };
    let picked = common::picked().cap_limits(&wgpu::Limits::default());
    let err = picked
        .open(&Needs::of_model(&cfg, &shapes(&cfg)))
        .err()
        .expect("a 144 MB buffer does not fit 128 MiB bindings");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("logits") && msg.contains("138 MiB") && msg.contains("at most 128 MiB"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}
