//! Whole training steps on the GPU against the CPU reference (f64): the same weights, the
//! same batch and a non-zero incoming state give the same loss, the same updated parameters
//! and the same carried state.

mod common;

use common::{assert_close, gpu, ptb_dir, random_ids};
use lstm_gpu::check::{training_step, Outcome};
use lstm_gpu::config::Config;
use lstm_gpu::data::{Batches, Corpus};
use lstm_gpu::gpu::sgd::Hyper;
use lstm_gpu::gpu::Gpu;
use lstm_gpu::model::schedule::{Kernels, Mode, ParamBuffers, Workspace};
use lstm_gpu::model::{Params, State};
use lstm_gpu::reference::step;
use lstm_gpu::session::Stream;
use lstm_gpu::train::{evaluate_sliced, PassEnd, PassView, Scored};

fn small_config() -> Config {
    Config {
        vocab_size: 53,
        embedding_size: 12,
        hidden: vec![17, 9],
        batch_size: 5,
        num_steps: 6,
        init_scale: 0.3,
        ..Config::default()
    }
}

fn compare_params(
    what: &str,
    got: &Params<f32>,
    want: &Params<f64>,
    before: &Params<f32>,
    tol: f64,
) {
    for (((name, g), (_, w)), (_, b)) in got
        .tensors()
        .into_iter()
        .zip(want.tensors())
        .zip(before.tensors())
    {
        assert_close(&format!("{what}: {name}"), g, w, tol);
        // The update itself (new - old), a much stricter measure than the parameters.
        let du: Vec<f32> = g.iter().zip(b).map(|(x, y)| x - y).collect();
        let dw: Vec<f64> = w.iter().zip(b).map(|(x, &y)| x - y as f64).collect();
        if dw.iter().any(|&v| v != 0.0) {
            assert_close(&format!("{what}: update of {name}"), &du, &dw, 1e-3);
        }
    }
}

/// One step from the same weights, batch and incoming state; `lr` and `max_grad_norm`
/// choose whether clipping is active. `lstm_gpu::check::training_step` (what `lstm-gpu
/// check` runs) compares the loss, every parameter and its update, and the carried state.
fn one_step(gpu: &Gpu, kernels: &Kernels, cfg: &Config, lr: f32, seed: u64) {
    let mut o = Outcome::new("one step", "");
    training_step(gpu, kernels, cfg, lr, seed, &mut o).unwrap();
    assert!(
        o.passed(),
        "keep {} lr {lr}: {}: relative error {:e} > {:e} ({} cases){}",
        cfg.keep_prob,
        o.worst,
        o.error,
        o.tolerance,
        o.cases,
        o.fault.map(|f| format!(", {f}")).unwrap_or_default()
    );
    assert!(o.cases >= 10, "{o:?}");
}

#[test]
fn one_step_matches_reference_with_and_without_clipping() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu).unwrap();
    let cfg = small_config();
    // Gradient norm about 1-3 here: a clip at 100 is off, at 0.05 on.
    one_step(
        &gpu,
        &kernels,
        &Config {
            max_grad_norm: 100.0,
            ..cfg.clone()
        },
        1.0,
        1,
    );
    one_step(
        &gpu,
        &kernels,
        &Config {
            max_grad_norm: 0.05,
            ..cfg.clone()
        },
        0.7,
        2,
    );
    // Three layers of different widths and a forget bias.
    let deep = Config {
        hidden: vec![8, 13, 5],
        forget_bias: 1.0,
        ..cfg
    };
    one_step(&gpu, &kernels, &deep, 1.0, 3);
}

#[test]
fn one_step_with_dropout_matches_reference() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu).unwrap();
    let cfg = Config {
        keep_prob: 0.6,
        max_grad_norm: 100.0,
        ..small_config()
    };
    one_step(&gpu, &kernels, &cfg, 1.0, 4);
}

/// Tied embeddings: the GPU step (logits from the embedding read transposed, its dense
/// gradient plus the lookup's rows, a dense update) against the CPU reference, with and
/// without clipping and with dropout.
#[test]
fn one_step_with_tied_weights_matches_reference() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu).unwrap();
    let cfg = Config {
        embedding_size: 9,
        tie_weights: true,
        max_grad_norm: 100.0,
        ..small_config()
    };
    cfg.validate().unwrap();
    one_step(&gpu, &kernels, &cfg, 1.0, 5);
    one_step(
        &gpu,
        &kernels,
        &Config {
            max_grad_norm: 0.05,
            ..cfg.clone()
        },
        0.7,
        6,
    );
    one_step(
        &gpu,
        &kernels,
        &Config {
            keep_prob: 0.7,
            ..cfg
        },
        1.0,
        7,
    );
}

/// Training and evaluation interleaved as the trainer runs them, once with separate
/// logits and once with the evaluation steps using the training step's logits
/// (`Workspace::new_with_logits`, also for a smaller evaluation shape): every loss, the
/// parameters and the carried state come out bit for bit the same. A buffer too small for
/// the shape is refused.
#[test]
fn evaluation_sharing_the_training_logits_changes_nothing() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu).unwrap();
    let cfg = Config {
        keep_prob: 0.8,
        ..small_config()
    };
    let (b, t) = (cfg.batch_size, cfg.num_steps);
    let params = Params::<f32>::init(&cfg, 5);
    let eval_shapes = [(b, t), (2, 3)];
    let run = |shared: bool| {
        let pbuf = ParamBuffers::upload(&gpu, &cfg, &params).unwrap();
        let mut train = Workspace::new(&gpu, &kernels, &cfg, &pbuf, b, t, Mode::Train).unwrap();
        let mut evals: Vec<Workspace> = eval_shapes
            .iter()
            .map(|&shape| {
                let ws = if shared {
                    Workspace::new_with_logits(
                        &gpu,
                        &kernels,
                        &cfg,
                        &pbuf,
                        shape,
                        Mode::Eval,
                        &train.logits,
                    )
                } else {
                    Workspace::new(&gpu, &kernels, &cfg, &pbuf, shape.0, shape.1, Mode::Eval)
                };
                ws.unwrap()
            })
            .collect();
        let mut losses = Vec::new();
        for i in 0..3u64 {
            let x = random_ids(b * t, cfg.vocab_size, 500 + i);
            let y = random_ids(b * t, cfg.vocab_size, 600 + i);
            let hyper = Hyper {
                learning_rate: 0.5,
                step: i as u32,
                seed: 9,
            };
            train.step(&gpu, &x, &y, hyper).unwrap();
            losses.push(train.take_loss(&gpu).unwrap().0);
            for (ws, &(eb, et)) in evals.iter_mut().zip(&eval_shapes) {
                let x = random_ids(eb * et, cfg.vocab_size, 700 + i);
                let y = random_ids(eb * et, cfg.vocab_size, 800 + i);
                ws.zero_state(&gpu);
                ws.step(&gpu, &x, &y, Hyper::default()).unwrap();
                losses.push(ws.take_loss(&gpu).unwrap().0);
            }
        }
        let state = train.read_state(&gpu).unwrap();
        (losses, pbuf.read(&gpu, &cfg).unwrap(), state)
    };
    let (own_losses, own_params, own_state) = run(false);
    let (shared_losses, shared_params, shared_state) = run(true);
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&own_losses), bits(&shared_losses));
    assert!(own_losses.iter().all(|l| l.is_finite() && *l > 0.0));
    assert!(own_params == shared_params, "parameters differ");
    assert!(own_state == shared_state, "carried state differs");

    let pbuf = ParamBuffers::upload(&gpu, &cfg, &params).unwrap();
    let small = gpu.storage("small logits", 2 * 3 * cfg.vocab_size);
    let err = Workspace::new_with_logits(&gpu, &kernels, &cfg, &pbuf, (b, t), Mode::Eval, &small)
        .err()
        .expect("a logits buffer too small is refused");
    assert!(format!("{err:#}").contains("too small"), "{err:#}");
}

#[test]
fn ten_ptb_steps_with_carried_state_match_reference() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu).unwrap();
    let cfg = Config {
        vocab_size: 2000,
        embedding_size: 24,
        hidden: vec![32, 20],
        batch_size: 8,
        num_steps: 10,
        ..Config::default()
    };
    let corpus = Corpus::load(&ptb_dir(), cfg.vocab_size).unwrap();
    let batches = Batches::new(&corpus.train[..20_000], cfg.batch_size, cfg.num_steps).unwrap();
    let params = Params::<f32>::init(&cfg, 5);
    let pbuf = ParamBuffers::upload(&gpu, &cfg, &params).unwrap();
    let mut ws = Workspace::new(
        &gpu,
        &kernels,
        &cfg,
        &pbuf,
        cfg.batch_size,
        cfg.num_steps,
        Mode::Train,
    )
    .unwrap();
    ws.zero_state(&gpu);
    ws.take_loss(&gpu).unwrap();
    let mut want = params.cast::<f64>();
    let mut want_state = State::<f64>::zeros(&cfg, cfg.batch_size);
    let mut losses = Vec::new();
    for i in 0..10 {
        let (x, y) = batches.batch(i);
        ws.step(
            &gpu,
            &x,
            &y,
            Hyper {
                learning_rate: 1.0,
                step: i as u32,
                seed: 1,
            },
        )
        .unwrap();
        let (loss, _) = ws.take_loss(&gpu).unwrap();
        let out = step::train_step(&cfg, &mut want, &mut want_state, &x, &y, 1.0, None);
        let rel = (loss - out.loss).abs() / out.loss;
        assert!(
            rel <= 1e-4,
            "step {i}: loss GPU {loss} vs CPU {} (relative {rel:e})",
            out.loss
        );
        losses.push(loss);
    }
    assert!(
        losses[9] < losses[0],
        "training should lower the loss: {losses:?}"
    );
    let got = pbuf.read(&gpu, &cfg).unwrap();
    compare_params("after 10 PTB steps", &got, &want, &params, 1e-4);
}

/// Where the recurrent products split k (forced here: lavapipe's own choice never splits),
/// the cell adds their partial sums itself (`lstm_cell_*_split`) instead of a sum pass per
/// product: one launch fewer per split product, and the same step bit for bit: loss,
/// parameters and carried state equal to the step with the sum passes.
#[test]
fn the_cell_adds_split_recurrent_sums_bit_for_bit() {
    use lstm_gpu::gpu::matmul::MatmulVariant;
    // The strip kernels' split twin, and the panel's (what GPUs may tune the recurrent
    // products to).
    for variant in [MatmulVariant::StripSplit, MatmulVariant::PanelSplit] {
        let mut gpu = gpu();
        gpu.matmul = Some(variant);
        // Layer 0 (h 40) splits its forward product (k 40: 2 slices) and its backward one
        // (k 160: 10 slices, past the kernels' groups of four); layer 1 (h 24) only the
        // backward one (k 96: 6 slices).
        let cfg = Config {
            hidden: vec![40, 24],
            keep_prob: 0.7,
            ..small_config()
        };
        // Forward: layer 0's products split; backward: both layers' (steps - 1 each).
        let steps = cfg.num_steps;
        common::split::assert_the_cell_adds_the_sums(&gpu, &cfg, steps + 2 * (steps - 1));
    }
}

/// Column sums in row slices (what GPUs run; forced here, with slices of 4 rows where a
/// GPU takes 32) in a whole step with dropout: the CPU twin within the same tolerances as
/// the one-pass sums, and the step really slices the softmax's and each layer's bias sums.
#[test]
fn one_step_with_row_sliced_column_sums_matches_reference() {
    use lstm_gpu::gpu::reduce::ColumnSums;
    let gpu = gpu();
    let mut kernels = Kernels::new(&gpu).unwrap();
    kernels.reduce.column_sums = ColumnSums::Sliced { min_rows: 4 };
    let cfg = Config {
        keep_prob: 0.6,
        max_grad_norm: 100.0,
        ..small_config()
    };
    one_step(&gpu, &kernels, &cfg, 1.0, 4);
    let tied = Config {
        tie_weights: true,
        embedding_size: 9,
        ..cfg.clone()
    };
    one_step(&gpu, &kernels, &tied, 0.7, 5);

    let params = Params::<f32>::init(&cfg, 1);
    let pbuf = ParamBuffers::upload(&gpu, &cfg, &params).unwrap();
    let (batch, steps) = (cfg.batch_size, cfg.num_steps);
    let ws = Workspace::new(&gpu, &kernels, &cfg, &pbuf, batch, steps, Mode::Train).unwrap();
    let sliced = ws.launches_labeled(|k| k.ends_with("_sliced"));
    let finished = ws.launches_labeled(|k| k == "column_slice_sum");
    assert_eq!((sliced, finished), (3, 3), "softmax and two layers");
    assert_eq!(ws.launches_labeled(|k| k == "column_sum"), 0);
}

/// The wavefront step (`--recurrence wavefront`: the layers' time steps interleaved in
/// chunks) runs the unfused step's operations in another order: the same loss, parameters
/// and carried state bit for bit, with and without dropout, on two and three layers and on
/// one (where it is the unfused step); and exactly the launches its chunks add: per layer
/// above the first, one input projection and one d(input) per extra chunk, and with
/// dropout one dropout each way.
#[test]
fn the_wavefront_step_is_the_unfused_step_bit_for_bit() {
    use lstm_gpu::gpu::lstm_step::Recurrence;
    use lstm_gpu::model::schedule::wavefront_chunk;
    let gpu = gpu();
    for (hidden, keep, steps) in [
        (vec![17, 9], 0.6, 6),
        (vec![8, 13, 5], 1.0, 7),
        (vec![16, 12, 8], 0.7, 9),
        (vec![12], 0.7, 5),
    ] {
        let cfg = Config {
            hidden: hidden.clone(),
            keep_prob: keep,
            num_steps: steps,
            ..small_config()
        };
        let what = format!("hidden {hidden:?} keep {keep} steps {steps}");
        let (unfused_launches, unfused_loss, unfused) =
            common::split::two_steps_with(&gpu, &cfg, Recurrence::Unfused, true);
        let (wave_launches, wave_loss, wave) =
            common::split::two_steps_with(&gpu, &cfg, Recurrence::Wavefront, true);
        assert_eq!(wave_loss, unfused_loss, "{what}: loss");
        assert!(wave == unfused, "{what}: parameters or state differ");
        let chunks = steps.div_ceil(wavefront_chunk(steps));
        let dropout = if keep < 1.0 { 2 } else { 0 };
        let extra = (hidden.len() - 1) * (chunks - 1) * (2 + dropout);
        assert_eq!(wave_launches - unfused_launches, extra, "{what}: launches");
    }
}

/// The wavefront's paired time steps run as one launch each (the layers' recurrent
/// products in one, their cells in one: `prepare_group_deferring_sum`,
/// `prepare_*_group`), on the buffers the layers then share, with the recurrent weights
/// copied side by side; the step is still the unfused step bit for bit (and the wavefront
/// run one launch per layer too), unsplit and split (the products' slices side by side in
/// one scratch buffer), with dropout, with a short last chunk (7 steps: chunks of 3, 3, 1;
/// 9: 3 of 3), layers of one width and of two (the seed's case), and three layers. With two
/// layers whose products split alike, every pair of steps but one (the backward's first,
/// whose lower step has no product) is two launches fewer: `2 (2 (steps - chunk) - 1)` per
/// step. The kernels with barriers have no grouped form and run the pairs one launch at a
/// time (subgroup-broadcast, lavapipe's default, here), as do pairs of which one product
/// splits k and the other not (hidden 40 and 24 forward: k 40 splits, 24 not).
#[test]
fn grouped_wavefront_steps_are_the_unfused_step_bit_for_bit() {
    use lstm_gpu::gpu::lstm_step::Recurrence;
    use lstm_gpu::gpu::matmul::MatmulVariant;
    use lstm_gpu::model::schedule::wavefront_chunk;
    for (variant, hidden, keep, steps) in [
        (MatmulVariant::Strip, vec![12, 12], 0.6, 6),
        (MatmulVariant::Strip, vec![17, 9], 0.6, 6),
        (MatmulVariant::Panel, vec![10, 10], 1.0, 7),
        (MatmulVariant::Panel, vec![9, 14], 0.8, 7),
        (MatmulVariant::Strip, vec![8, 8, 8], 0.7, 9),
        // Split products: k 40 forward (2 slices), 160 backward (10).
        (MatmulVariant::StripSplit, vec![40, 40], 0.7, 6),
        (MatmulVariant::PanelSplit, vec![40, 40], 1.0, 7),
        (MatmulVariant::StripSplit, vec![40, 24], 0.7, 6),
        (MatmulVariant::SubgroupBroadcast, vec![12, 12], 0.6, 6),
    ] {
        let mut gpu = gpu();
        // Subgroup-broadcast needs subgroups of at least 8 invocations (GL has none,
        // lavapipe at LP_NATIVE_VECTOR_WIDTH=128 has 4); every other variant is built here.
        let available = lstm_gpu::gpu::matmul::Matmul::new(&gpu)
            .unwrap()
            .variants_available();
        if !available.contains(&variant) {
            assert_eq!(variant, MatmulVariant::SubgroupBroadcast, "{available:?}");
            continue;
        }
        gpu.matmul = Some(variant);
        let cfg = Config {
            hidden: hidden.clone(),
            keep_prob: keep,
            num_steps: steps,
            ..small_config()
        };
        let what = format!("{variant} hidden {hidden:?} keep {keep} steps {steps}");
        let (unfused_launches, unfused_loss, unfused) =
            common::split::two_steps_with(&gpu, &cfg, Recurrence::Unfused, true);
        let mut kernels = Kernels::new(&gpu).unwrap();
        kernels.recurrence = Some(Recurrence::Wavefront);
        let (wave_launches, wave_loss, wave) = common::split::two_steps_of(&gpu, &cfg, &kernels);
        assert_eq!(wave_loss, unfused_loss, "{what}: loss");
        assert!(wave == unfused, "{what}: parameters or state differ");
        kernels.group_wavefront = false;
        let (ungrouped, ungrouped_loss, alone) = common::split::two_steps_of(&gpu, &cfg, &kernels);
        assert_eq!(ungrouped_loss, unfused_loss, "{what}: loss ungrouped");
        assert!(
            alone == unfused,
            "{what}: ungrouped parameters or state differ"
        );
        assert!(
            ungrouped > unfused_launches,
            "{what}: the order's own launches"
        );
        let chunk = wavefront_chunk(steps);
        if variant == MatmulVariant::SubgroupBroadcast {
            assert_eq!(wave_launches, ungrouped, "{what}: launches");
        } else if hidden.len() == 2 && hidden != [40, 24] {
            let saved = 2 * (2 * (steps - chunk) - 1);
            assert_eq!(wave_launches, ungrouped - saved, "{what}: launches");
        } else {
            assert!(
                wave_launches < ungrouped,
                "{what}: {wave_launches} launches"
            );
        }
    }
}

/// Where the layers' tensors side by side would not fit one storage buffer of the adapter
/// (each layer's alone does), the wavefront's pairs run one launch per layer instead of
/// failing, and train the same. The limit is lowered on the `Gpu` (what its buffer checks
/// read) below the two layers' pre-activations together.
#[test]
fn grouping_falls_back_where_the_shared_buffers_would_not_fit() {
    use lstm_gpu::gpu::lstm_step::Recurrence;
    use lstm_gpu::gpu::matmul::MatmulVariant;
    let cfg = Config {
        hidden: vec![12, 12],
        ..small_config()
    };
    let n = cfg.batch_size * cfg.num_steps;
    let mut gpu = gpu();
    gpu.matmul = Some(MatmulVariant::Strip);
    let launches = |gpu: &Gpu, group: bool| {
        let mut kernels = Kernels::new(gpu).unwrap();
        kernels.recurrence = Some(Recurrence::Wavefront);
        kernels.group_wavefront = group;
        common::split::two_steps_of(gpu, &cfg, &kernels)
    };
    let (grouped, _, trained) = launches(&gpu, true);
    let (per_layer, _, _) = launches(&gpu, false);
    assert!(
        grouped < per_layer,
        "{grouped} grouped, {per_layer} per layer"
    );
    // One layer's pre-activations fit, both side by side do not; every other buffer fits
    // (the logits are the largest).
    let one_layer = (n * 4 * 12 * 4) as u64;
    let limit = 2 * one_layer - 64;
    assert!((n * cfg.vocab_size * 4) as u64 <= limit);
    gpu.limits.max_storage_buffer_binding_size = limit;
    let (fallback, _, fallback_trained) = launches(&gpu, true);
    assert_eq!(
        fallback, per_layer,
        "launches where the shared buffers would not fit"
    );
    assert!(fallback_trained == trained, "parameters or state differ");
}

/// The wavefront step with split products (forced here as a GPU would choose them): each
/// layer's recurrent sums wait in a scratch slot of their own while the other layer's
/// product runs, so the step still matches the f64 reference (with one shared slot the
/// second layer's slices would overwrite the first's before its cell reads them).
#[test]
fn the_wavefront_step_with_split_products_matches_reference() {
    use lstm_gpu::gpu::lstm_step::Recurrence;
    use lstm_gpu::gpu::matmul::MatmulVariant;
    for variant in [MatmulVariant::StripSplit, MatmulVariant::PanelSplit] {
        let mut gpu = gpu();
        gpu.matmul = Some(variant);
        let mut kernels = Kernels::new(&gpu).unwrap();
        kernels.recurrence = Some(Recurrence::Wavefront);
        let cfg = Config {
            hidden: vec![40, 24],
            keep_prob: 0.7,
            max_grad_norm: 100.0,
            ..small_config()
        };
        one_step(&gpu, &kernels, &cfg, 1.0, 8);
    }
}

#[test]
fn wavefront_chunks_are_about_the_square_root_of_the_steps() {
    use lstm_gpu::model::schedule::wavefront_chunk;
    assert_eq!(wavefront_chunk(20), 5);
    assert_eq!(wavefront_chunk(35), 6);
    assert_eq!(wavefront_chunk(1), 1);
    assert_eq!(wavefront_chunk(2), 2);
    for steps in 1..100 {
        let c = wavefront_chunk(steps);
        assert!(c >= 1 && c <= steps, "{steps}: {c}");
    }
}

/// The tutorial's test pass (batch 1, one word per batch) run as one stream (batches of
/// 1 x num_steps, the state handed to a 1x1 workspace for the words left over) scores what
/// the one-word batches score: against the 1x1 pass on the GPU within f32 rounding, and
/// both against the CPU reference's 1x1 pass in f64. Texts with a head and a tail, with a
/// head only, and shorter than one batch.
#[test]
fn the_test_pass_as_one_stream_scores_what_one_word_batches_score() {
    let gpu = gpu();
    let kernels = Kernels::new(&gpu).unwrap();
    // A large init: the carried state moves the losses well beyond rounding.
    let cfg = Config {
        init_scale: 0.6,
        ..small_config()
    };
    let steps = cfg.num_steps;
    let params = Params::<f32>::init(&cfg, 11);
    let pbuf = ParamBuffers::upload(&gpu, &cfg, &params).unwrap();
    let eval_ws = |b, t| Workspace::new(&gpu, &kernels, &cfg, &pbuf, b, t, Mode::Eval).unwrap();
    let (mut head_ws, mut one_ws) = (eval_ws(1, steps), eval_ws(1, 1));
    let ppl = |end: PassEnd| match end {
        PassEnd::Perplexity(p) => p,
        other => panic!("{other:?}"),
    };
    let reference_cfg = Config {
        batch_size: 1,
        num_steps: 1,
        ..cfg.clone()
    };
    let params64 = params.cast::<f64>();
    let ids = random_ids(4 * steps + 4, cfg.vocab_size, 77);
    for n in [4 * steps + 4, 4 * steps + 1, steps] {
        let ids = &ids[..n];
        let stream = Stream::new(ids, steps).unwrap();
        let streamed = ppl(evaluate_sliced(
            &gpu,
            Scored::Stream(&mut head_ws, &mut one_ws, &stream),
            0,
            PassView::default(),
        )
        .unwrap());
        let batches = Batches::new(ids, 1, 1).unwrap();
        let one_by_one = ppl(evaluate_sliced(
            &gpu,
            Scored::Batches(&mut one_ws, &batches),
            0,
            PassView::default(),
        )
        .unwrap());
        // The reference's 1x1 pass; `restart`: its state zeroed at that word.
        let reference = |restart: Option<usize>| {
            let mut state = State::<f64>::zeros(&reference_cfg, 1);
            let mut sum = 0.0;
            for (i, w) in ids.windows(2).enumerate() {
                if restart == Some(i) {
                    state = State::zeros(&reference_cfg, 1);
                }
                sum += step::forward_loss(
                    &reference_cfg,
                    &params64,
                    &mut state,
                    &w[..1],
                    &w[1..],
                    None,
                );
            }
            (sum / (n - 1) as f64).exp()
        };
        let what = format!("{n} ids: {stream}");
        assert!(
            ((streamed - one_by_one) / one_by_one).abs() < 1e-5,
            "{what}: stream {streamed}, 1x1 {one_by_one}"
        );
        let want = reference(None);
        assert!(
            ((streamed - want) / want).abs() < 1e-5,
            "{what}: stream {streamed}, reference {want}"
        );
        // The tolerance tells a tail that starts from a zero state from one that goes on.
        if let (Some(head), Some(_)) = (stream.head, stream.tail) {
            let restarted = reference(Some(head.len() * steps));
            assert!(
                ((restarted - want) / want).abs() > 1e-4,
                "{what}: the state changes nothing ({restarted} vs {want})"
            );
        }
    }
}
