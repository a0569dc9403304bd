//! A training run's `metrics.jsonl`, read: its epochs, its log points (with the gradient
//! norms where logged), its test pass and how it stopped, for `lstm-gpu plot` and
//! `lstm-gpu info`.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

use crate::error::usage;

/// The file a training run writes its metrics to, inside its run folder.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// The records of `metrics.jsonl` drawn here. Other kinds are skipped and unknown fields
/// ignored, so the format can grow. Perplexities and speeds are optional because JSON has no
/// NaN or infinity: a diverged run writes `null`, and such points are left out of the plot.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Record {
    /// A log point inside an epoch; `perplexity` is that of the epoch so far.
    Train {
        global_step: u64,
        perplexity: Option<f64>,
        words_per_second: Option<f64>,
        /// The global gradient norm before clipping: the mean and the largest of the steps
        /// since the log point before (absent in older files).
        grad_norm: Option<f64>,
        grad_norm_max: Option<f64>,
        /// The share of those steps whose norm was clipped.
        clipped_fraction: Option<f64>,
    },
    /// The end of an epoch.
    Epoch {
        epoch: u64,
        global_step: u64,
        train_perplexity: Option<f64>,
        valid_perplexity: Option<f64>,
        words_per_second: Option<f64>,
        learning_rate: Option<f64>,
        seconds: Option<f64>,
    },
    /// The test perplexity after the last epoch, and the test pass's shape.
    Test {
        test_perplexity: Option<f64>,
        batch_size: Option<u64>,
        num_steps: Option<u64>,
    },
    /// A run stopped by `--max-steps`, with the perplexities where it stopped.
    Stop {
        /// Absent in hand-made files: the stop is then drawn at the last step logged.
        global_step: Option<u64>,
        /// The epoch's so far (that of the finished epoch where it stopped at an epoch's end).
        train_perplexity: Option<f64>,
        valid_perplexity: Option<f64>,
    },
    /// `--patience` ended the run after this epoch.
    #[serde(rename = "early_stop")]
    EarlyStop { epoch: u64, patience: u64 },
    #[serde(other)]
    Other,
}

/// One end of an epoch.
#[derive(Debug)]
pub(crate) struct EpochPoint {
    pub(crate) epoch: f64,
    pub(crate) global_step: f64,
    pub(crate) train_perplexity: Option<f64>,
    pub(crate) valid_perplexity: Option<f64>,
    pub(crate) words_per_second: Option<f64>,
    pub(crate) learning_rate: Option<f64>,
    pub(crate) seconds: Option<f64>,
}

/// One log point inside an epoch.
#[derive(Debug)]
pub(crate) struct LogPoint {
    pub(crate) global_step: f64,
    pub(crate) perplexity: Option<f64>,
    pub(crate) words_per_second: Option<f64>,
    pub(crate) grad_norm: Option<f64>,
    pub(crate) grad_norm_max: Option<f64>,
    pub(crate) clipped_fraction: Option<f64>,
}

/// Where a run stopped by `--max-steps` stopped, and its perplexities there.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Stop {
    /// The global step (absent in hand-made files).
    pub(crate) global_step: Option<f64>,
    pub(crate) train_perplexity: Option<f64>,
    pub(crate) valid_perplexity: Option<f64>,
}

/// What one `metrics.jsonl` holds that is worth drawing (and that `lstm-gpu info` tells).
#[derive(Debug)]
pub(crate) struct Run {
    /// The run folder's name.
    pub(crate) label: String,
    pub(crate) epochs: Vec<EpochPoint>,
    pub(crate) log_points: Vec<LogPoint>,
    pub(crate) test_perplexity: Option<f64>,
    /// The test pass's batch size and time steps, where recorded.
    pub(crate) test_shape: Option<(u64, u64)>,
    /// Where a run stopped by `--max-steps` stopped.
    pub(crate) stop: Option<Stop>,
    /// The epoch after which `--patience` ended the run, and the patience.
    pub(crate) early_stop: Option<(u64, u64)>,
    /// How many records the file holds (of any kind): none in a run that has logged nothing
    /// yet, or one stopped before its first log point by a signal.
    pub(crate) records: usize,
    /// The metrics file.
    path: PathBuf,
}

impl Run {
    /// Read `path`, or the `metrics.jsonl` inside it when it is a folder. A file with nothing
    /// to draw is read too (`lstm-gpu info` tells what there is); [`Run::check_drawable`]
    /// says why it cannot be plotted.
    pub(crate) fn read(path: &Path) -> Result<Run> {
        let path = if path.is_dir() {
            path.join(METRICS_FILE)
        } else {
            path.to_path_buf()
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(usage(format!(
                    "metrics file {} does not exist",
                    path.display()
                )))
            }
            Err(e) => return Err(e).with_context(|| format!("could not read {}", path.display())),
        };
        let mut run = Run {
            label: run_label(&path),
            epochs: Vec::new(),
            log_points: Vec::new(),
            test_perplexity: None,
            test_shape: None,
            stop: None,
            early_stop: None,
            records: 0,
            path: path.clone(),
        };
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            run.records += 1;
            let record: Record = serde_json::from_str(line).with_context(|| {
                format!(
                    "{} line {}: not a metrics record",
                    path.display(),
                    index + 1
                )
            })?;
            match record {
                Record::Train {
                    global_step,
                    perplexity,
                    words_per_second,
                    grad_norm,
                    grad_norm_max,
                    clipped_fraction,
                } => {
                    let global_step = global_step as f64;
                    run.continue_at(global_step, false);
                    run.log_points.push(LogPoint {
                        global_step,
                        perplexity,
                        words_per_second,
                        grad_norm,
                        grad_norm_max,
                        clipped_fraction,
                    })
                }
                Record::Epoch {
                    epoch,
                    global_step,
                    train_perplexity,
                    valid_perplexity,
                    words_per_second,
                    learning_rate,
                    seconds,
                } => {
                    let global_step = global_step as f64;
                    run.continue_at(global_step, true);
                    run.epochs.push(EpochPoint {
                        epoch: epoch as f64,
                        global_step,
                        train_perplexity,
                        valid_perplexity,
                        words_per_second,
                        learning_rate,
                        seconds,
                    })
                }
                Record::Test {
                    test_perplexity,
                    batch_size,
                    num_steps,
                } => {
                    run.test_perplexity = test_perplexity;
                    run.test_shape = batch_size.zip(num_steps);
                }
                Record::Stop {
                    global_step,
                    train_perplexity,
                    valid_perplexity,
                } => {
                    run.stop = Some(Stop {
                        global_step: global_step.map(|s| s as f64),
                        train_perplexity,
                        valid_perplexity,
                    })
                }
                Record::EarlyStop { epoch, patience } => run.early_stop = Some((epoch, patience)),
                Record::Other => {}
            }
        }
        Ok(run)
    }

    /// An error where the file has nothing to draw: no record at all, or no log point, epoch
    /// or perplexity where a `--max-steps` run stopped.
    pub(crate) fn check_drawable(&self) -> Result<()> {
        if self.records == 0 {
            bail!(
                "{} is empty: the run has logged nothing yet",
                self.path.display()
            );
        }
        let stopped_with_a_perplexity = self
            .stop
            .is_some_and(|s| s.train_perplexity.is_some() || s.valid_perplexity.is_some());
        if self.epochs.is_empty() && self.log_points.is_empty() && !stopped_with_a_perplexity {
            bail!(
                "{} has no `train`, `epoch` or `stop` records to plot",
                self.path.display()
            );
        }
        Ok(())
    }
}

impl Run {
    /// A new record at `global_step` (an epoch's end when `epoch_end`). A run resumed from
    /// a checkpoint older than its last records (killed between checkpoints) logs those
    /// steps again: like TensorBoard, the records after the point it went back to are
    /// dropped, so the curves show each step once, as the run that went on computed it.
    /// A stop (`--max-steps`, Ctrl-C) that the run went on from is no longer its end.
    fn continue_at(&mut self, global_step: f64, epoch_end: bool) {
        // An epoch ends at the step of its last log point: only a step before that repeats.
        let repeats_log = |p: &LogPoint| {
            if epoch_end {
                p.global_step > global_step
            } else {
                p.global_step >= global_step
            }
        };
        self.log_points.retain(|p| !repeats_log(p));
        self.epochs.retain(|e| e.global_step < global_step);
        self.stop = None;
        self.early_stop = None;
    }
}

/// The gradient norms of an epoch's steps, gathered from its log points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct EpochNorms {
    /// The mean global norm before clipping over the steps.
    pub(crate) mean: f64,
    /// The largest.
    pub(crate) max: f64,
    /// The share of the steps that were clipped.
    pub(crate) clipped_fraction: f64,
}

impl Run {
    /// The gradient norms of epoch `epoch` (a finished one): its log points' means weighted
    /// by the steps each covers; none where the run logged no norms then.
    pub(crate) fn epoch_norms(&self, epoch: &EpochPoint) -> Option<EpochNorms> {
        let start = self
            .epochs
            .iter()
            .filter(|e| e.global_step < epoch.global_step)
            .map(|e| e.global_step)
            .fold(0.0, f64::max);
        let (mut steps, mut sum, mut clipped, mut max) = (0.0, 0.0, 0.0, 0.0f64);
        let mut before = start;
        for p in &self.log_points {
            if p.global_step <= start || p.global_step > epoch.global_step {
                continue;
            }
            let covered = p.global_step - before;
            before = p.global_step;
            let (Some(mean), Some(largest)) = (p.grad_norm, p.grad_norm_max) else {
                continue;
            };
            steps += covered;
            sum += covered * mean;
            clipped += covered * p.clipped_fraction.unwrap_or(0.0);
            max = max.max(largest);
        }
        (steps > 0.0).then(|| EpochNorms {
            mean: sum / steps,
            max,
            clipped_fraction: clipped / steps,
        })
    }

    /// Where `global_step` falls on the epoch axis, as the epoch points sit: epoch E ends at
    /// E, and a step inside it lies between E - 1 and E in proportion to its steps (after
    /// the last epoch's end, in that epoch's steps).
    pub(crate) fn epoch_of(&self, global_step: f64) -> f64 {
        let mut start = (0.0, 0.0);
        for e in &self.epochs {
            if global_step <= e.global_step {
                let span = e.global_step - start.1;
                return start.0
                    + if span > 0.0 {
                        (global_step - start.1) / span
                    } else {
                        1.0
                    };
            }
            start = (e.epoch, e.global_step);
        }
        let last = match self.epochs.as_slice() {
            [.., before, last] => last.global_step - before.global_step,
            [only] => only.global_step,
            [] => return f64::NAN,
        };
        start.0 + (global_step - start.1) / last.max(1.0)
    }
}

/// The name of the folder that holds a metrics file: the run's name.
fn run_label(metrics: &Path) -> String {
    std::path::absolute(metrics)
        .ok()
        .as_deref()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| metrics.display().to_string())
}

/// Runs from folders of the same name (`a/run`, `b/run`) are named by the path given instead.
pub(crate) fn disambiguate_labels(runs: &mut [Run], files: &[PathBuf]) {
    let labels: Vec<String> = runs.iter().map(|r| r.label.clone()).collect();
    for (run, file) in runs.iter_mut().zip(files) {
        if labels.iter().filter(|l| **l == run.label).count() > 1 {
            run.label = file.display().to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join(METRICS_FILE);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_known_records_and_skips_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            concat!(
                r#"{"kind":"train","epoch":1,"step":10,"global_step":10,"learning_rate":1.0,"perplexity":900.5,"words_per_second":12000.0}"#,
                "\n",
                r#"{"kind":"hello","anything":[1,2]}"#,
                "\n\n",
                r#"{"kind":"train","epoch":1,"step":20,"global_step":20,"learning_rate":1.0,"perplexity":null,"words_per_second":12500.0,"new_field":true}"#,
                "\n",
                r#"{"kind":"epoch","epoch":1,"global_step":25,"learning_rate":1.0,"train_perplexity":700.0,"valid_perplexity":400.0,"words_per_second":12300.0,"seconds":9.5}"#,
                "\n",
                r#"{"kind":"test","test_perplexity":380.25}"#,
                "\n",
            ),
        );
        let run = Run::read(dir.path()).unwrap();
        assert_eq!(run.label, dir.path().file_name().unwrap().to_string_lossy());
        assert_eq!(run.log_points.len(), 2);
        assert_eq!(run.log_points[0].perplexity, Some(900.5));
        assert_eq!(run.log_points[1].perplexity, None);
        assert_eq!(run.log_points[1].global_step, 20.0);
        assert_eq!(run.epochs.len(), 1);
        assert_eq!(run.epochs[0].valid_perplexity, Some(400.0));
        assert_eq!(run.test_perplexity, Some(380.25));
        assert_eq!(Run::read(&path).unwrap().epochs.len(), 1);
    }

    #[test]
    fn malformed_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = r#"{"kind":"test","test_perplexity":1.5}"#;
        let path = write(
            dir.path(),
            &format!("{good}\n{{\"kind\":\"train\",\"global_step\":\"ten\"}}\n"),
        );
        let err = format!("{:#}", Run::read(&path).unwrap_err());
        assert!(err.contains(&format!("{} line 2", path.display())), "{err}");
        let path = write(dir.path(), &format!("{good}\nnot json\n"));
        let err = format!("{:#}", Run::read(&path).unwrap_err());
        assert!(err.contains("line 2"), "{err}");
        // Records without the fields a plot needs are malformed too.
        let path = write(dir.path(), "{\"kind\":\"epoch\",\"epoch\":1}\n");
        let err = format!("{:#}", Run::read(&path).unwrap_err());
        assert!(
            err.contains("line 1") && err.contains("global_step"),
            "{err}"
        );
    }

    #[test]
    fn a_run_resumed_from_an_older_checkpoint_shows_each_step_once() {
        let dir = tempfile::tempdir().unwrap();
        let train = |step: u64, ppl: f64| {
            format!("{{\"kind\":\"train\",\"global_step\":{step},\"perplexity\":{ppl},\"words_per_second\":900}}\n")
        };
        let epoch = |e: u64, step: u64, valid: f64| {
            format!("{{\"kind\":\"epoch\",\"epoch\":{e},\"global_step\":{step},\"train_perplexity\":300,\"valid_perplexity\":{valid},\"words_per_second\":900}}\n")
        };
        let stop = |step: u64| {
            format!("{{\"kind\":\"stop\",\"global_step\":{step},\"train_perplexity\":310,\"valid_perplexity\":250}}\n")
        };
        // Epoch 1 (steps 1-20), killed after step 30 with a checkpoint at step 20; resumed,
        // it logs 25 and 30 again with other values, then stops at 35 (--max-steps), and a
        // second resume finishes epoch 2 at step 40.
        let text = [
            train(10, 500.0),
            train(20, 400.0),
            epoch(1, 20, 260.0),
            train(25, 1.0),
            train(30, 2.0),
            train(25, 350.0),
            train(30, 340.0),
            train(35, 330.0),
            stop(35),
            train(40, 320.0),
            epoch(2, 40, 200.0),
        ]
        .concat();
        let run = Run::read(&write(dir.path(), &text)).unwrap();
        let steps: Vec<(f64, Option<f64>)> = run
            .log_points
            .iter()
            .map(|p| (p.global_step, p.perplexity))
            .collect();
        assert_eq!(
            steps,
            [10.0, 20.0, 25.0, 30.0, 35.0, 40.0]
                .into_iter()
                .zip([500.0, 400.0, 350.0, 340.0, 330.0, 320.0].map(Some))
                .collect::<Vec<_>>()
        );
        let ends: Vec<(f64, Option<f64>)> = run
            .epochs
            .iter()
            .map(|e| (e.global_step, e.valid_perplexity))
            .collect();
        assert_eq!(ends, [(20.0, Some(260.0)), (40.0, Some(200.0))]);
        assert!(run.stop.is_none(), "the run went on after its stop");

        // Killed after an epoch's end, resumed from a checkpoint inside that epoch: the old
        // end is redrawn by the new one; a run that ends in a stop keeps it, at its step.
        let text = [
            train(10, 500.0),
            train(20, 400.0),
            epoch(1, 20, 260.0),
            train(20, 410.0),
            epoch(1, 20, 270.0),
            train(30, 300.0),
            stop(33),
        ]
        .concat();
        let run = Run::read(&write(dir.path(), &text)).unwrap();
        assert_eq!(run.log_points.len(), 3);
        assert_eq!(run.log_points[1].perplexity, Some(410.0));
        assert_eq!(run.epochs.len(), 1);
        assert_eq!(run.epochs[0].valid_perplexity, Some(270.0));
        assert_eq!(
            run.stop,
            Some(Stop {
                global_step: Some(33.0),
                train_perplexity: Some(310.0),
                valid_perplexity: Some(250.0)
            })
        );
    }

    #[test]
    fn a_log_point_sits_on_the_epoch_axis_by_its_steps() {
        let dir = tempfile::tempdir().unwrap();
        let text = concat!(
            r#"{"kind":"train","global_step":50,"perplexity":500}"#,
            "\n",
            r#"{"kind":"epoch","epoch":1,"global_step":100,"train_perplexity":300,"valid_perplexity":260}"#,
            "\n",
            r#"{"kind":"epoch","epoch":2,"global_step":300,"train_perplexity":300,"valid_perplexity":260}"#,
            "\n",
        );
        let run = Run::read(&write(dir.path(), text)).unwrap();
        // Epoch 1 is steps 1-100, epoch 2 steps 101-300; after it, epochs of 200 steps.
        for (step, epoch) in [
            (50.0, 0.5),
            (100.0, 1.0),
            (150.0, 1.25),
            (300.0, 2.0),
            (400.0, 2.5),
        ] {
            assert_eq!(run.epoch_of(step), epoch, "step {step}");
        }
    }

    #[test]
    fn an_epochs_gradient_norms_weigh_each_log_point_by_its_steps() {
        let dir = tempfile::tempdir().unwrap();
        let train = |step: u64, mean: f64, max: f64, clipped: f64| {
            format!("{{\"kind\":\"train\",\"global_step\":{step},\"perplexity\":500,\"grad_norm\":{mean},\"grad_norm_max\":{max},\"clipped_fraction\":{clipped}}}\n")
        };
        let epoch = |e: u64, step: u64| {
            format!("{{\"kind\":\"epoch\",\"epoch\":{e},\"global_step\":{step},\"train_perplexity\":300,\"valid_perplexity\":260}}\n")
        };
        // Epoch 1: steps 1-30 in log points of 10 and 20 steps; epoch 2: steps 31-40.
        let text = [
            train(10, 4.0, 9.0, 1.0),
            train(30, 1.0, 2.0, 0.0),
            epoch(1, 30),
            train(40, 7.0, 8.0, 0.5),
            epoch(2, 40),
            "{\"kind\":\"train\",\"global_step\":50,\"perplexity\":400}\n".to_string(),
            epoch(3, 50),
        ]
        .concat();
        let run = Run::read(&write(dir.path(), &text)).unwrap();
        let norms: Vec<_> = run.epochs.iter().map(|e| run.epoch_norms(e)).collect();
        assert_eq!(
            norms[0],
            Some(EpochNorms {
                mean: (10.0 * 4.0 + 20.0 * 1.0) / 30.0,
                max: 9.0,
                clipped_fraction: 10.0 / 30.0,
            })
        );
        assert_eq!(
            norms[1],
            Some(EpochNorms {
                mean: 7.0,
                max: 8.0,
                clipped_fraction: 0.5,
            })
        );
        // A file from before the norms were logged: none.
        assert_eq!(norms[2], None);
    }
}
