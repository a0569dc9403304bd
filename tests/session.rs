//! `Session`, the step-by-step training run the browser page drives, run natively: timing its
//! kernels one by one leaves the model, the position and the next log point as they were.

mod common;

use lstm_gpu::config::{Config, LrSchedule, Precision, Preset};
use lstm_gpu::data::{Corpus, Tokens};
use lstm_gpu::gpu::block_on;
use lstm_gpu::model::Params;
use lstm_gpu::session::{self, Event, Session};

fn text(words: usize, seed: usize) -> String {
    (0..words)
        .map(|i| format!("w{}", (i * 7 + seed) % 23))
        .collect::<Vec<_>>()
        .chunks(12)
        .map(|l| format!(" {} \n", l.join(" ")))
        .collect()
}

fn session() -> Session {
    session_in(Precision::F32)
}

fn session_in(precision: Precision) -> Session {
    session_of(|cfg| cfg.precision = precision)
}

/// The session's model with `edit` applied to its configuration.
fn session_of(edit: impl FnOnce(&mut Config)) -> Session {
    let (train, valid, test) = (text(3000, 1), text(300, 2), text(300, 3));
    let names = ["train", "valid", "test"];
    let corpus =
        Corpus::from_texts(names, [&train, &valid, &test], Tokens::Words, None, None).unwrap();
    let mut cfg = Config::preset(Preset::Seed);
    cfg.embedding_size = 8;
    cfg.hidden = vec![8, 8];
    cfg.batch_size = 4;
    cfg.num_steps = 5;
    cfg.vocab_size = corpus.vocab.len();
    edit(&mut cfg);
    let params = Params::<f32>::init(&cfg, 3);
    let pos = session::start(&cfg, 3);
    Session::new(common::gpu(), cfg, corpus, &params, pos, None).unwrap()
}

fn losses(events: &[Event]) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Train { loss, .. } => Some(*loss),
            _ => None,
        })
        .collect()
}

#[test]
fn timing_kernels_changes_no_weight_position_or_log_point() {
    let mut s = session();
    s.log_every = 1;
    block_on(s.advance(1)).unwrap();
    let before = block_on(s.params()).unwrap();
    let pos = s.pos.clone();
    let t = block_on(s.time_kernels()).unwrap();
    let runs: usize = t
        .rows
        .iter()
        .filter(|r| r.label != "copy")
        .map(|r| r.runs)
        .sum();
    assert_eq!(
        runs,
        s.dispatches(),
        "every dispatch of the step is timed once"
    );
    assert!(t.rows.iter().all(|r| r.ms >= 0.0) && t.baseline_ms >= 0.0);
    assert!(t.rows.iter().any(|r| r.label.starts_with("matmul")));
    assert_eq!(block_on(s.params()).unwrap(), before, "learning rate 0");
    assert_eq!(s.pos.global_step, pos.global_step);
    assert_eq!(s.pos.step_in_epoch, pos.step_in_epoch);
    // The next log point holds one step's loss, not two: near the one before it.
    let next = losses(&block_on(s.advance(1)).unwrap());
    assert_eq!(next.len(), 1);
    assert_eq!(s.pos.global_step, pos.global_step + 1);
    assert!(
        next[0] > 0.5 * (s.cfg.vocab_size as f64).ln()
            && next[0] < 1.5 * (s.cfg.vocab_size as f64).ln(),
        "one step's mean loss, near ln(V): {next:?}"
    );
}

/// Between log points `advance` reports `progress` events (the epoch's perplexity so far,
/// read without taking the accumulator), and the log point after them reports exactly what
/// it reports without them.
#[test]
fn progress_between_log_points_leaves_the_log_points_as_they_were() {
    let (mut a, mut b) = (session(), session());
    a.log_every = 10;
    b.log_every = 10;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let events = block_on(a.advance(3)).unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        match &events[0] {
            Event::Progress {
                phase,
                step,
                perplexity,
                words_per_second,
                ..
            } => {
                assert_eq!(*phase, session::Phase::Training);
                assert!(perplexity.is_finite() && *perplexity > 1.0, "{events:?}");
                assert!(*words_per_second > 0.0, "{events:?}");
                seen.push(*step);
            }
            other => panic!("a progress event expected before the log point: {other:?}"),
        }
    }
    assert_eq!(seen, vec![3, 6, 9]);
    let with = block_on(a.advance(3)).unwrap();
    let without = block_on(b.advance(100)).unwrap();
    let point = |events: &[Event]| match events {
        [Event::Train {
            step, perplexity, ..
        }] => (*step, perplexity.to_bits()),
        other => panic!("one log point expected: {other:?}"),
    };
    assert_eq!(point(&with), (10, point(&without).1));
    let (mut pa, mut pb) = (a.pos.clone(), b.pos.clone());
    (pa.train_seconds, pb.train_seconds) = (0.0, 0.0);
    assert_eq!(
        pa, pb,
        "the same position, loss sums included (wall time aside)"
    );
}

/// A log point's gradient norms are those of its steps: the mean of the norms each step
/// logged alone, and the largest of them (the page draws both, as `plot` does).
#[test]
fn a_log_points_gradient_norms_are_the_mean_and_the_largest_of_its_steps() {
    let (mut one, mut four) = (session(), session());
    one.log_every = 1;
    four.log_every = 4;
    let norms = |events: &[Event]| -> Vec<(f64, f64, f64)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Train {
                    grad_norm: Some(g),
                    grad_norm_max: Some(m),
                    clipped_fraction: Some(c),
                    ..
                } => Some((*g, *m, *c)),
                _ => None,
            })
            .collect()
    };
    let singles: Vec<_> = (0..4)
        .flat_map(|_| norms(&block_on(one.advance(1)).unwrap()))
        .collect();
    let joint = norms(&block_on(four.advance(4)).unwrap());
    assert_eq!(
        (singles.len(), joint.len()),
        (4, 1),
        "{singles:?} {joint:?}"
    );
    for (g, m, _) in &singles {
        assert!(
            g > &0.0 && g == m,
            "one step: its norm is the mean and the largest"
        );
    }
    let mean = singles.iter().map(|s| s.0).sum::<f64>() / 4.0;
    let largest = singles.iter().map(|s| s.1).fold(0.0, f64::max);
    let smallest = singles.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
    let (g, m, c) = joint[0];
    // f32 sums of four f32 norms: a few units of f32 roundoff.
    assert!((g - mean).abs() <= 1e-6 * mean, "mean {g} against {mean}");
    assert!(
        (m - largest).abs() <= 1e-6 * largest,
        "the largest of the four steps' norms: {m} against {largest}"
    );
    assert!(largest > smallest, "the steps' norms differ: {singles:?}");
    let clipped = singles.iter().map(|s| s.2).sum::<f64>() / 4.0;
    assert_eq!(c, clipped, "the share of the steps clipped");
}

/// The page's run follows `--lr-schedule plateau` as `train` does: after each epoch the rate
/// is kept where the validation perplexity set a new best and multiplied by the decay where
/// it did not, and the position holds the run's best.
#[test]
fn the_page_run_anneals_on_a_plateau_as_train_does() {
    let mut s = session_of(|cfg| {
        cfg.lr_schedule = LrSchedule::Plateau;
        cfg.learning_rate = 20.0;
        cfg.decay = 0.25;
    });
    s.log_every = s.epoch_size();
    // A rate this high makes some epochs worse than the best before them.
    let (mut best, mut rate, mut decays) = ((0, f64::INFINITY), 20.0f32, 0);
    let mut seen = Vec::new();
    while s.pos.epoch < 4 {
        for e in block_on(s.advance(10_000)).unwrap() {
            let Event::Epoch {
                epoch,
                learning_rate,
                valid_perplexity: valid,
                best: new_best,
                ..
            } = e
            else {
                continue;
            };
            seen.push(valid);
            assert_eq!(
                learning_rate, rate,
                "epoch {epoch} trained at the rate so far"
            );
            assert_eq!(new_best, valid < best.1, "epoch {epoch}: {seen:?}");
            if valid < best.1 {
                best = (epoch, valid);
            } else {
                rate = (rate as f64 * 0.25) as f32;
                decays += 1;
            }
            assert_eq!(s.pos.epoch, epoch, "{seen:?}");
            assert_eq!(s.pos.learning_rate, rate, "after epoch {epoch}: {seen:?}");
            assert_eq!(s.pos.best.map(|b| b.epoch), Some(best.0), "{seen:?}");
        }
    }
    assert!(
        decays > 0,
        "the test's premise: an epoch set no new best: {seen:?}"
    );
}

/// The page's run stops early as `train --patience N` does: after the first epoch that is
/// N epochs past the run's best, an `early_stop` event (the epochs done, the best), then the
/// test pass and `finished`; no epoch trains after it.
#[test]
fn the_page_run_stops_early_as_train_does() {
    let max_epoch = 8;
    let mut s = session_of(|cfg| {
        cfg.learning_rate = 3.0;
        cfg.max_epoch_decay_lr = max_epoch;
        cfg.max_epoch = max_epoch;
    });
    s.log_every = s.epoch_size();
    s.patience = Some(1);
    let mut valid = Vec::new();
    let (mut stop, mut test) = (None, None);
    for _ in 0..10_000 {
        if s.finished() {
            break;
        }
        for e in block_on(s.advance(10_000)).unwrap() {
            match e {
                Event::Epoch {
                    epoch,
                    valid_perplexity,
                    ..
                } => {
                    assert!(stop.is_none(), "epoch {epoch} after the stop");
                    valid.push(valid_perplexity);
                }
                Event::EarlyStop {
                    epoch,
                    patience,
                    best_epoch,
                    best_valid_perplexity,
                } => stop = Some((epoch, patience, best_epoch, best_valid_perplexity)),
                Event::Finished {
                    test_perplexity,
                    published,
                } => {
                    assert!(published.is_none(), "no preset");
                    test = Some(test_perplexity);
                }
                _ => {}
            }
        }
    }
    // The rule, from the recorded perplexities: the first epoch not below the best before it.
    let first_worse = (1..valid.len())
        .find(|&i| valid[..i].iter().any(|&b| b <= valid[i]))
        .map(|i| i + 1);
    let Some(k) = first_worse else {
        panic!("the test's premise: an epoch without a new best within {max_epoch}: {valid:?}");
    };
    let best = (0..k - 1)
        .min_by(|&a, &b| valid[a].total_cmp(&valid[b]))
        .unwrap();
    assert_eq!(
        stop,
        Some((k, 1, best + 1, valid[best])),
        "stopped after epoch {k}, its best epoch {}: {valid:?}",
        best + 1
    );
    assert_eq!(valid.len(), k, "no epoch after the stop: {valid:?}");
    assert!(s.finished() && s.pos.epoch == k && k < max_epoch);
    assert!(
        test.is_some_and(f64::is_finite),
        "the test pass ran: {test:?}"
    );
    assert!(
        block_on(s.advance(10)).unwrap().is_empty(),
        "nothing trains after"
    );
}

/// The validation pass at an epoch's end runs a slice per `advance`, each reported, and
/// ends with the epoch's figures: the same perplexity as a whole validation pass.
#[test]
fn the_epochs_validation_runs_in_slices_that_are_reported() {
    let mut s = session();
    let epoch_size = s.epoch_size();
    s.log_every = epoch_size;
    block_on(s.advance(epoch_size - 1)).unwrap();
    let events = block_on(s.advance(1)).unwrap();
    assert!(
        matches!(events[0], Event::Train { step, .. } if step == epoch_size),
        "{events:?}"
    );
    assert_eq!(s.phase(), session::Phase::Validating);
    assert!(!s.finished());
    let mut done = Vec::new();
    let valid = loop {
        let events = block_on(s.advance(1)).unwrap();
        match events.as_slice() {
            [Event::Progress {
                phase,
                batches_done,
                batches,
                ..
            }] => {
                assert_eq!(*phase, session::Phase::Validating);
                assert!(batches_done < batches);
                done.push(*batches_done);
            }
            [Event::Epoch {
                epoch,
                valid_perplexity,
                ..
            }, ..] => {
                assert_eq!(*epoch, 1);
                break *valid_perplexity;
            }
            other => panic!("unexpected during validation: {other:?}"),
        }
    };
    assert!(done.len() >= 2, "the pass took one call: {done:?}");
    assert!(done.windows(2).all(|w| w[0] < w[1]), "{done:?}");
    assert_eq!(s.phase(), session::Phase::Training);
    assert_eq!((s.pos.epoch, s.pos.step_in_epoch), (1, 0));
    // The weights did not move since: a whole pass gives the same figure (its f32 parts
    // are summed at other points, hence the tolerance).
    let whole = block_on(s.validate()).unwrap();
    assert!(
        ((whole - valid) / valid).abs() < 1e-6,
        "slices {valid}, whole {whole}"
    );
    // validate_part in slices gives the same again.
    let mut parts = 0;
    let sliced = loop {
        parts += 1;
        if let (_, _, Some(p)) = block_on(s.validate_part(2)).unwrap() {
            break p;
        }
    };
    assert!(parts >= 2);
    assert!(
        ((sliced - whole) / whole).abs() < 1e-6,
        "{sliced} vs {whole}"
    );
}

/// The page's log points carry the loss scale in mixed precision (what the page shows
/// beside the speed), and nothing of it in f32.
#[test]
fn mixed_precision_log_points_carry_the_loss_scale() {
    use lstm_gpu::gpu::loss_scale::LossScale;
    for precision in [Precision::F32, Precision::Mixed] {
        let mut s = session_in(precision);
        s.log_every = 2;
        let events = block_on(s.advance(2)).unwrap();
        let [e @ Event::Train {
            loss_scale,
            overflow_steps,
            ..
        }] = events.as_slice()
        else {
            panic!("one log point expected: {events:?}");
        };
        let json = serde_json::to_value(e).unwrap();
        match precision {
            Precision::F32 => {
                assert_eq!((*loss_scale, *overflow_steps), (None, None));
                assert!(json.get("loss_scale").is_none(), "{json}");
            }
            Precision::Mixed => {
                assert_eq!(*loss_scale, Some(LossScale::INITIAL));
                assert_eq!(*overflow_steps, Some(0));
                assert_eq!(json["loss_scale"].as_f64(), Some(LossScale::INITIAL as f64));
            }
        }
    }
}
