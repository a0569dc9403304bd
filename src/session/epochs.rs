//! The arithmetic of a run, the same on every target (the command line's loop and the
//! page's [`Session`](super::Session)): where a fresh run starts, each epoch's learning rate,
//! the best epoch, the next epoch, when patience ends a run, the perplexities of a log point
//! and of an epoch, the dropout seed the kernels take, and a finished preset run beside the
//! published figures. No GPU here.

use crate::config::{Config, LrSchedule};
use crate::gpu::reduce::TrainAccumulator;
use crate::model::checkpoint::{BestEpoch, Position};

/// Where a fresh run starts: epoch 1, the first epoch's learning rate, `seed`.
pub fn start(cfg: &Config, seed: u64) -> Position {
    Position {
        learning_rate: cfg.first_lr(),
        seed,
        ..Default::default()
    }
}

/// The learning rate of the epoch `pos` stands in. The tutorial's schedule: its epoch's
/// (from the configuration, so that a `--learning-rate` or `--decay` given on resume applies
/// at once); the plateau schedule: the rate the run has come to, which the position holds.
pub fn epoch_lr(cfg: &Config, pos: &Position) -> f32 {
    match cfg.lr_schedule {
        LrSchedule::Tutorial => cfg.lr_for_epoch(pos.epoch),
        LrSchedule::Plateau => pos.learning_rate,
    }
}

/// `--patience N` (Keras' `EarlyStopping(patience=N)`): after epoch `done` (counted from 1)
/// of `max_epoch`, whether the run ends early because its best validation perplexity (in
/// `pos`) is `patience` or more epochs back: that many epochs, or `None` to go on (no
/// patience, no best yet, or no epoch left to stop before).
pub fn patience_ends(
    patience: Option<usize>,
    pos: &Position,
    done: usize,
    max_epoch: usize,
) -> Option<usize> {
    let (patience, best) = (patience?, pos.best?);
    let since = done.saturating_sub(best.epoch);
    (since >= patience && done < max_epoch).then_some(since)
}

/// A finished run of a preset's whole schedule against what was published for that model
/// ([`crate::config::Preset::published`]), as one line: `test` is the run's test perplexity,
/// scored in batches of `test_shape` (batch, steps; the tutorial's is 1x1). `None` where
/// `cfg` is no preset with published figures, or `test` is not finite.
pub fn published_comparison(cfg: &Config, test: f64, test_shape: (usize, usize)) -> Option<String> {
    let preset = cfg.preset_of()?;
    let published = preset.published()?;
    if !test.is_finite() {
        return None;
    }
    let change = 100.0 * (test / published.test - 1.0);
    let how = if change.abs() < 0.05 {
        "the same".to_string()
    } else {
        let way = if change < 0.0 { "lower" } else { "higher" };
        format!("{:.1}% {way}", change.abs())
    };
    let shape = match test_shape {
        (1, 1) => String::new(),
        (b, s) => format!(" (in batches of {b}x{s}; the tutorial's are 1x1)"),
    };
    let zaremba = published
        .zaremba_test
        .map_or(String::new(), |z| format!("; Zaremba et al. 2014: {z}"));
    Some(format!(
        "the TensorFlow tutorial's {} model reached test perplexity {} (train {}, valid {}){zaremba}: this run's {test:.2}{shape} is {how}",
        preset.name(),
        published.test,
        published.train,
        published.valid
    ))
}

/// The run's new best where the epoch `pos` stands in ended with validation perplexity
/// `valid` below the best so far (a first finite one always is).
pub fn epoch_best(pos: &Position, valid: f64) -> Option<BestEpoch> {
    BestEpoch::improves(pos.best, valid).then_some(BestEpoch {
        epoch: pos.epoch + 1,
        valid_perplexity: valid,
    })
}

/// The epoch `pos` stands in has ended (`best`: what [`epoch_best`] said of it): the position
/// moves to the next epoch's start, with its learning rate (the plateau schedule's times
/// `decay` where the epoch set no new best) and the run's best.
pub fn next_epoch(cfg: &Config, pos: &mut Position, best: Option<BestEpoch>) {
    pos.epoch += 1;
    pos.step_in_epoch = 0;
    pos.epoch_loss_sum = 0.0;
    pos.epoch_skipped = 0;
    pos.learning_rate = match cfg.lr_schedule {
        LrSchedule::Tutorial => cfg.lr_for_epoch(pos.epoch),
        LrSchedule::Plateau if best.is_some() => pos.learning_rate,
        LrSchedule::Plateau => (pos.learning_rate as f64 * cfg.decay as f64) as f32,
    };
    if best.is_some() {
        pos.best = best;
    }
}

/// Add the skipped steps of a read of the accumulator to the position; returns them.
pub fn absorb(pos: &mut Position, stats: &TrainAccumulator) -> usize {
    let skipped = stats.skipped as usize;
    pos.epoch_skipped += skipped;
    pos.skipped_steps += skipped as u64;
    skipped
}

/// Perplexity of the first `done` steps of the epoch, over the steps that were not skipped
/// (NaN when every one was).
pub fn epoch_perplexity(pos: &Position, done: usize, num_steps: usize) -> f64 {
    let counted = done.saturating_sub(pos.epoch_skipped);
    if counted == 0 {
        return f64::NAN;
    }
    (pos.epoch_loss_sum / (counted * num_steps) as f64).exp()
}

/// Perplexity of the first `done` steps of the epoch with `pending`, the accumulator read
/// (not taken) since the last log point: what a progress display shows between log points.
pub fn running_perplexity(
    pos: &Position,
    pending: &TrainAccumulator,
    done: usize,
    num_steps: usize,
) -> f64 {
    let counted = done.saturating_sub(pos.epoch_skipped + pending.skipped as usize);
    if counted == 0 {
        return f64::NAN;
    }
    ((pos.epoch_loss_sum + pending.loss_sum() as f64) / (counted * num_steps) as f64).exp()
}

/// The dropout generator's seed as the kernels take it, from the run's 64-bit seed.
pub fn kernel_seed(seed: u64) -> u32 {
    (seed ^ (seed >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Precision, Preset};

    #[test]
    fn a_finished_preset_run_is_compared_with_the_published_figures() {
        let small = Config::preset(Preset::Small);
        assert_eq!(
            published_comparison(&small, 113.75, (1, 1)).unwrap(),
            "the TensorFlow tutorial's small model reached test perplexity 115.91 (train 37.99, \
             valid 121.39): this run's 113.75 is 1.9% lower"
        );
        let medium = Config {
            precision: Precision::Mixed,
            ..Config::preset(Preset::Medium)
        };
        let line = published_comparison(&medium, 85.0, (20, 35)).unwrap();
        assert!(
            line.contains("medium model reached test perplexity 82.07")
                && line.contains("; Zaremba et al. 2014: 82.7:")
                && line.ends_with(
                    "this run's 85.00 (in batches of 20x35; the tutorial's are 1x1) is 3.6% higher"
                ),
            "{line}"
        );
        let large = Config::preset(Preset::Large);
        assert!(published_comparison(&large, 78.29, (1, 1))
            .unwrap()
            .ends_with("is the same"));
        // No published figures: the seed model, a preset changed, no finite perplexity.
        assert_eq!(
            published_comparison(&Config::preset(Preset::Seed), 117.0, (1, 1)),
            None
        );
        let shorter = Config {
            max_epoch: 3,
            ..Config::preset(Preset::Small)
        };
        assert_eq!(published_comparison(&shorter, 117.0, (1, 1)), None);
        assert_eq!(published_comparison(&small, f64::NAN, (1, 1)), None);
    }

    #[test]
    fn the_plateau_schedule_keeps_the_rate_after_a_new_best_and_decays_it_after_none() {
        let cfg = Config {
            lr_schedule: LrSchedule::Plateau,
            learning_rate: 2.0,
            decay: 0.5,
            max_epoch_decay_lr: 0,
            ..Config::preset(Preset::Seed)
        };
        let mut pos = start(&cfg, 1);
        assert_eq!(pos.learning_rate, 2.0);
        // Valid perplexity after each epoch; the rate and the best epoch after it.
        for (valid, rate, best) in [
            (100.0, 2.0, 1),
            (90.0, 2.0, 2),
            (95.0, 1.0, 2),
            (f64::NAN, 0.5, 2),
            (90.0, 0.25, 2),
            (80.0, 0.25, 6),
        ] {
            let new = epoch_best(&pos, valid);
            next_epoch(&cfg, &mut pos, new);
            assert_eq!(
                (pos.learning_rate, pos.best.map(|b| b.epoch)),
                (rate, Some(best)),
                "after valid {valid}"
            );
            assert_eq!(epoch_lr(&cfg, &pos), rate, "the position holds the rate");
            assert_eq!((pos.step_in_epoch, pos.epoch_loss_sum), (0, 0.0));
        }
        assert_eq!(pos.epoch, 6);
        // The tutorial's schedule: the configuration's rate for the epoch, whatever the
        // position holds (a flag given on resume applies at once).
        let tutorial = Config {
            lr_schedule: LrSchedule::Tutorial,
            ..cfg.clone()
        };
        pos.learning_rate = 123.0;
        assert_eq!(epoch_lr(&tutorial, &pos), tutorial.lr_for_epoch(6));
        next_epoch(&tutorial, &mut pos, None);
        assert_eq!(pos.learning_rate, tutorial.lr_for_epoch(7));
    }

    #[test]
    fn perplexity_leaves_skipped_steps_out() {
        let pos = Position {
            epoch_loss_sum: 30.0,
            epoch_skipped: 1,
            ..Default::default()
        };
        // 4 steps done, 1 skipped: 3 steps of 5 time steps carry the loss.
        assert!((epoch_perplexity(&pos, 4, 5) - 2f64.exp()).abs() < 1e-12);
        assert!(epoch_perplexity(&pos, 1, 5).is_nan());
    }
}
