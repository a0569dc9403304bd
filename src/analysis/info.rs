//! `lstm-gpu info`: what a checkpoint or a run folder holds, without a GPU. A checkpoint:
//! its model, its training configuration (and the preset it is, where it is one), where
//! training stood, its best epoch, its size and whether its checksum holds. A run folder:
//! its epochs as `metrics.jsonl` recorded them (the best marked), the test perplexity, its
//! checkpoints and TensorBoard files.

use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

use crate::analysis::metrics::{Run, METRICS_FILE};
use crate::config::{Config, Precision, Preset};
use crate::model::checkpoint::{Checkpoint, Position};

/// A checkpoint file, read whole (so that its checksum is verified).
pub struct CheckpointInfo {
    pub path: PathBuf,
    pub bytes: u64,
    pub checkpoint: Checkpoint,
}

impl CheckpointInfo {
    pub fn read(path: &Path) -> Result<CheckpointInfo> {
        let checkpoint = Checkpoint::load(path)?;
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Ok(CheckpointInfo {
            path: path.to_path_buf(),
            bytes,
            checkpoint,
        })
    }

    /// As `lstm-gpu info` prints it: one labelled line per aspect.
    pub fn text(&self) -> String {
        let (cfg, pos) = (&self.checkpoint.config, &self.checkpoint.position);
        let mut lines = vec![
            (
                "checkpoint",
                format!(
                    "{} ({}, {}, checksum verified)",
                    self.path.display(),
                    crate::model::checkpoint::FORMAT,
                    megabytes(self.bytes)
                ),
            ),
            ("model", model_line(cfg)),
            ("training", training_line(cfg)),
            (
                "position",
                position_line(cfg, pos, self.checkpoint.state.is_some()),
            ),
        ];
        if let Some(corpus) = &self.checkpoint.corpus {
            lines.push(("corpus", corpus.flags()));
        }
        if let Some(init) = &self.checkpoint.init {
            lines.push(("started from", format!("{init} (--init)")));
        }
        if let Some(b) = pos.best {
            lines.push((
                "best",
                format!(
                    "epoch {}, valid perplexity {:.3}",
                    b.epoch, b.valid_perplexity
                ),
            ));
        }
        if let Some(ls) = pos.loss_scale {
            lines.push((
                "loss scale",
                format!("{} ({} overflowed steps skipped)", ls.scale, ls.overflows),
            ));
        }
        labelled(&lines)
    }

    pub fn json(&self) -> Value {
        let ck = &self.checkpoint;
        json!({
            "path": self.path,
            "bytes": self.bytes,
            "format": crate::model::checkpoint::FORMAT,
            "parameters": ck.config.num_params(),
            "preset": ck.config.preset_of().map(Preset::name),
            "config": ck.config,
            "position": ck.position,
            "mid_epoch": ck.state.is_some(),
            "vocabulary": ck.vocab.len(),
            "corpus": ck.corpus,
            "init": ck.init,
        })
    }
}

/// A run folder: its metrics and its checkpoints.
pub struct RunInfo {
    pub dir: PathBuf,
    run: Option<Run>,
    /// The run's configuration, from its `last` or `best` checkpoint where one is readable.
    config: Option<Config>,
    /// Checkpoint files by name, with their size and the position in their header (`None`
    /// where the header cannot be read).
    checkpoints: Vec<(String, u64, Option<Position>)>,
    event_files: usize,
    changed_shaders: Vec<String>,
}

impl RunInfo {
    pub fn read(dir: &Path) -> Result<RunInfo> {
        let metrics = dir.join(METRICS_FILE);
        let run = if metrics.is_file() {
            Some(Run::read(&metrics)?)
        } else {
            None
        };
        let mut checkpoints = Vec::new();
        let mut event_files = 0;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".safetensors") && !name.starts_with('.') {
                let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
                let position = Checkpoint::read_position(&entry.path()).ok();
                checkpoints.push((name, bytes, position));
            } else if name.contains("tfevents") {
                event_files += 1;
            }
        }
        // best and last first, then the numbered ones in order.
        checkpoints.sort_by_key(|(name, _, pos)| {
            let rank = match name.as_str() {
                "best.safetensors" => 0,
                "last.safetensors" => 1,
                _ => 2,
            };
            (
                rank,
                pos.as_ref().map_or(0, |p| p.global_step),
                name.clone(),
            )
        });
        let changed_shaders = std::fs::read_dir(dir.join("shaders"))
            .map(|d| {
                let mut names: Vec<String> = d
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                names
            })
            .unwrap_or_default();
        if run.is_none() && checkpoints.is_empty() {
            bail!(
                "{} is not a run folder: it has no {METRICS_FILE} and no checkpoints",
                dir.display()
            );
        }
        let config = ["last.safetensors", "best.safetensors"]
            .iter()
            .find_map(|name| Checkpoint::read_header(&dir.join(name)).ok())
            .map(|h| h.config);
        Ok(RunInfo {
            dir: dir.to_path_buf(),
            run,
            config,
            checkpoints,
            event_files,
            changed_shaders,
        })
    }

    /// The epoch whose validation perplexity is the lowest the metrics recorded.
    fn best_epoch(&self) -> Option<f64> {
        let epochs = &self.run.as_ref()?.epochs;
        epochs
            .iter()
            .filter_map(|e| Some((e.epoch, e.valid_perplexity?)))
            .filter(|(_, v)| v.is_finite())
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(epoch, _)| epoch)
    }

    pub fn text(&self) -> String {
        let mut out = format!("run {}\n", self.dir.display());
        match &self.run {
            Some(run) if !run.epochs.is_empty() => {
                let best = self.best_epoch();
                // The gradient norms where the run logged them (not before they existed).
                let norms: Vec<_> = run.epochs.iter().map(|e| run.epoch_norms(e)).collect();
                let with_norms = norms.iter().any(Option::is_some);
                let rows: Vec<Vec<String>> = run
                    .epochs
                    .iter()
                    .zip(&norms)
                    .map(|(e, n)| {
                        let marked = |v: Option<f64>| match v {
                            Some(v) if Some(e.epoch) == best => format!("{v:.3} *"),
                            Some(v) => format!("{v:.3}"),
                            None => "-".into(),
                        };
                        let mut row = vec![
                            format!("{}", e.epoch),
                            e.learning_rate.map_or("-".into(), |l| format!("{l:.4}")),
                            e.train_perplexity.map_or("-".into(), |v| format!("{v:.3}")),
                            marked(e.valid_perplexity),
                            e.words_per_second.map_or("-".into(), |w| format!("{w:.0}")),
                            e.seconds.map_or("-".into(), super::span),
                        ];
                        if with_norms {
                            row.extend(match n {
                                Some(n) => [
                                    format!("{:.3} ({:.3})", n.mean, n.max),
                                    format!("{:.0}%", 100.0 * n.clipped_fraction),
                                ],
                                None => ["-".into(), "-".into()],
                            });
                        }
                        row
                    })
                    .collect();
                let mut header = vec![
                    "epoch",
                    "learning rate",
                    "train",
                    "valid",
                    "words/s",
                    "time",
                ];
                if with_norms {
                    header.extend(["grad norm (largest)", "clipped"]);
                }
                out += &table(&header, &rows);
                if best.is_some() {
                    out += "  * the lowest validation perplexity\n";
                }
            }
            Some(run) if run.records == 0 => out += "  nothing logged yet\n",
            Some(run) => {
                out += "  no epoch finished yet";
                if let Some(p) = run.log_points.last() {
                    let ppl = p.perplexity.map_or("-".into(), |v| format!("{v:.3}"));
                    let wps = p.words_per_second.map_or("-".into(), |w| format!("{w:.0}"));
                    out += &format!(
                        "; last logged at global step {}: train perplexity {ppl}, {wps} words/s",
                        p.global_step
                    );
                }
                out += "\n";
            }
            None => out += &format!("  no {METRICS_FILE}\n"),
        }
        if let Some(run) = &self.run {
            if let Some(t) = run.test_perplexity {
                let shape = run
                    .test_shape
                    .map_or(String::new(), |(b, s)| format!(" (batches of {b}x{s})"));
                out += &format!("test perplexity {t:.3}{shape}\n");
            }
            if let Some(line) = self.published() {
                out += &format!("  {line}\n");
            }
            if let Some(stop) = run.stop {
                let at = stop
                    .global_step
                    .map_or(String::new(), |s| format!(" at global step {s}"));
                let perplexities: Vec<String> = [
                    ("train perplexity", stop.train_perplexity),
                    ("valid perplexity", stop.valid_perplexity),
                ]
                .iter()
                .filter_map(|(name, v)| Some(format!("{name} {:.3}", (*v)?)))
                .collect();
                let perplexities = match perplexities.is_empty() {
                    true => String::new(),
                    false => format!(": {}", perplexities.join(", ")),
                };
                out += &format!("stopped by --max-steps{at}{perplexities}\n");
            }
            if let Some((epoch, patience)) = run.early_stop {
                out += &format!("stopped early after epoch {epoch} (--patience {patience})\n");
            }
        }
        let mut lines = Vec::new();
        if !self.checkpoints.is_empty() {
            let total: u64 = self.checkpoints.iter().map(|c| c.1).sum();
            let listed: Vec<String> = self
                .checkpoints
                .iter()
                .map(|(name, _, pos)| match pos {
                    Some(p) => format!("{name} ({})", where_line(p)),
                    None => format!("{name} (unreadable)"),
                })
                .collect();
            let files = match listed.len() {
                1 => "1 file".to_string(),
                n => format!("{n} files"),
            };
            lines.push((
                "checkpoints",
                format!("{} ({files}, {})", listed.join(", "), megabytes(total)),
            ));
        }
        if self.event_files > 0 {
            lines.push((
                "tensorboard",
                format!(
                    "{} event file{} (tensorboard --logdir {})",
                    self.event_files,
                    if self.event_files == 1 { "" } else { "s" },
                    self.dir.display()
                ),
            ));
        }
        if !self.changed_shaders.is_empty() {
            lines.push((
                "kernels",
                format!("changed: {}", self.changed_shaders.join(", ")),
            ));
        }
        out + &labelled(&lines)
    }

    /// A run that trained a preset's whole schedule and its test pass, against the
    /// published figures ([`crate::session::published_comparison`]); `None` for any other.
    fn published(&self) -> Option<String> {
        let (run, cfg) = (self.run.as_ref()?, self.config.as_ref()?);
        let whole =
            run.epochs.len() >= cfg.max_epoch && run.stop.is_none() && run.early_stop.is_none();
        let (b, s) = run.test_shape.unwrap_or((1, 1));
        let test = run.test_perplexity.filter(|_| whole)?;
        crate::session::published_comparison(cfg, test, (b as usize, s as usize))
    }

    pub fn json(&self) -> Value {
        let epochs: Vec<Value> = self
            .run
            .iter()
            .flat_map(|r| r.epochs.iter().map(move |e| (e, r.epoch_norms(e))))
            .map(|(e, n)| {
                json!({"epoch": e.epoch, "learning_rate": e.learning_rate, "train_perplexity": e.train_perplexity,
                       "valid_perplexity": e.valid_perplexity, "words_per_second": e.words_per_second,
                       "seconds": e.seconds, "grad_norm": n.map(|n| n.mean),
                       "grad_norm_max": n.map(|n| n.max), "clipped_fraction": n.map(|n| n.clipped_fraction)})
            })
            .collect();
        let checkpoints: Vec<Value> = self
            .checkpoints
            .iter()
            .map(|(name, bytes, pos)| json!({"name": name, "bytes": bytes, "position": pos}))
            .collect();
        json!({
            "dir": self.dir,
            "epochs": epochs,
            "best_epoch": self.best_epoch(),
            "test_perplexity": self.run.as_ref().and_then(|r| r.test_perplexity),
            "stopped": self.run.as_ref().and_then(|r| r.stop).map(|s| json!({
                "global_step": s.global_step, "train_perplexity": s.train_perplexity,
                "valid_perplexity": s.valid_perplexity})),
            "early_stop": self.run.as_ref().and_then(|r| r.early_stop)
                .map(|(epoch, patience)| json!({"epoch": epoch, "patience": patience})),
            "published": self.published(),
            "checkpoints": checkpoints,
            "event_files": self.event_files,
            "changed_shaders": self.changed_shaders,
        })
    }
}

/// Run folders side by side: a row each with its epochs, its lowest validation perplexity
/// and that epoch, its test perplexity, its last epoch's speed and its training time.
pub fn compare_runs(runs: &[RunInfo]) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let epochs = r.run.as_ref().map_or(&[][..], |m| &m.epochs[..]);
            let best = r.best_epoch().and_then(|b| {
                let e = epochs.iter().find(|e| e.epoch == b)?;
                Some(format!("{:.3} ({})", e.valid_perplexity?, b))
            });
            let seconds: f64 = epochs.iter().filter_map(|e| e.seconds).sum();
            vec![
                r.dir.display().to_string(),
                epochs.len().to_string(),
                best.unwrap_or_else(|| "-".into()),
                r.run
                    .as_ref()
                    .and_then(|m| m.test_perplexity)
                    .map_or("-".into(), |t| format!("{t:.3}")),
                // The last epoch's speed; before the first epoch's end, the last log point's.
                epochs
                    .last()
                    .and_then(|e| e.words_per_second)
                    .or_else(|| r.run.as_ref()?.log_points.last()?.words_per_second)
                    .map_or("-".into(), |w| format!("{w:.0}")),
                if seconds > 0.0 {
                    super::span(seconds)
                } else {
                    "-".into()
                },
            ]
        })
        .collect();
    table(
        &[
            "run",
            "epochs",
            "best valid (epoch)",
            "test",
            "words/s",
            "time",
        ],
        &rows,
    )
}

/// The LSTM's layers, "650 x 650".
fn layers(cfg: &Config) -> String {
    let layers: Vec<String> = cfg.hidden.iter().map(|h| h.to_string()).collect();
    layers.join(" x ")
}

/// What the vocabulary's tokens are: "words" or "characters".
fn token_kind(cfg: &Config) -> &'static str {
    match cfg.tokens {
        crate::data::Tokens::Chars => "characters",
        _ => "words",
    }
}

fn model_line(cfg: &Config) -> String {
    let preset = cfg
        .preset_of()
        .map_or(String::new(), |p| format!("; the {} preset", p.name()));
    format!(
        "{} parameters: embedding {}, LSTM {}, vocabulary {} {}, softmax {}{preset}",
        cfg.num_params(),
        cfg.embedding_size,
        layers(cfg),
        cfg.vocab_size,
        token_kind(cfg),
        if cfg.tie_weights {
            "tied to the embedding"
        } else {
            "untied"
        }
    )
}

fn training_line(cfg: &Config) -> String {
    let first_decayed = (0..cfg.max_epoch).find(|&e| cfg.lr_for_epoch(e) != cfg.learning_rate);
    let schedule = match (cfg.lr_schedule, first_decayed) {
        (crate::config::LrSchedule::Plateau, _) => format!(
            "x{} after an epoch without a lower valid perplexity",
            cfg.decay
        ),
        (_, Some(e)) => format!("x{} an epoch from epoch {}", cfg.decay, e + 1),
        (_, None) => "constant".into(),
    };
    format!(
        "batch {} x {} steps, {}, SGD at {} ({schedule}), clip {}, keep_prob {}, init ±{}, forget bias {}, {}",
        cfg.batch_size,
        cfg.num_steps,
        epochs(cfg.max_epoch),
        cfg.learning_rate,
        cfg.max_grad_norm,
        cfg.keep_prob,
        cfg.init_scale,
        cfg.forget_bias,
        match cfg.precision {
            Precision::F32 => "f32",
            Precision::Mixed => "mixed precision",
        }
    )
}

fn position_line(cfg: &Config, pos: &Position, mid_epoch: bool) -> String {
    let place = if pos.epoch >= cfg.max_epoch {
        format!("trained to the end ({})", epochs(cfg.max_epoch))
    } else if mid_epoch || pos.step_in_epoch > 0 {
        format!(
            "in epoch {} of {}, after {} of its batches (carries the LSTM state)",
            pos.epoch + 1,
            cfg.max_epoch,
            pos.step_in_epoch
        )
    } else {
        format!("{} of {} done", pos.epoch, epochs(cfg.max_epoch))
    };
    let skipped = if pos.skipped_steps > 0 {
        format!(", {} steps skipped", pos.skipped_steps)
    } else {
        String::new()
    };
    format!(
        "{place}; global step {}, learning rate {}, seed {}, {} of training{skipped}",
        pos.global_step,
        pos.learning_rate,
        pos.seed,
        super::span(pos.train_seconds)
    )
}

/// A checkpoint in a few words, for a list of models to choose from: the preset it is (or
/// its layers), where its training stood, and the run's best validation perplexity then,
/// e.g. "the small preset, end of epoch E, step S; best valid perplexity P (epoch B)".
pub fn summary_line(cfg: &Config, pos: &Position) -> String {
    let model = match cfg.preset_of() {
        Some(p) => format!("the {} preset", p.name()),
        None => format!(
            "embedding {}, LSTM {}, {} {}",
            cfg.embedding_size,
            layers(cfg),
            cfg.vocab_size,
            token_kind(cfg)
        ),
    };
    let best = pos.best.map_or(String::new(), |b| {
        format!(
            "; best valid perplexity {:.2} (epoch {})",
            b.valid_perplexity, b.epoch
        )
    });
    format!("{model}, {}{best}", where_line(pos))
}

/// "1 epoch", "3 epochs".
fn epochs(n: usize) -> String {
    if n == 1 {
        "1 epoch".into()
    } else {
        format!("{n} epochs")
    }
}

/// A checkpoint's place in a run, shortly: "initial", "end of epoch E, step S" or "in
/// epoch E, step S".
pub fn where_line(pos: &Position) -> String {
    if pos.step_in_epoch > 0 {
        format!("in epoch {}, step {}", pos.epoch + 1, pos.global_step)
    } else if pos.epoch == 0 {
        "initial".to_string()
    } else {
        format!("end of epoch {}, step {}", pos.epoch, pos.global_step)
    }
}

fn megabytes(bytes: u64) -> String {
    if bytes < 1_000_000 {
        format!("{:.0} KB", bytes as f64 / 1e3)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

/// `label  value` lines, the values aligned.
fn labelled(lines: &[(&str, String)]) -> String {
    let width = lines.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    lines
        .iter()
        .map(|(label, value)| format!("{label:width$}  {value}\n"))
        .collect()
}

/// A table with a header row, columns left-aligned.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect();
        format!("  {}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run inside its first epoch: `info` tells its last log point, and side by side its
    /// speed is that point's.
    #[test]
    fn a_run_before_its_first_epochs_end_shows_its_last_log_point() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(METRICS_FILE),
            concat!(
                r#"{"kind":"train","global_step":10,"perplexity":900.0,"words_per_second":2000.0}"#,
                "\n",
                r#"{"kind":"train","global_step":20,"perplexity":700.5,"words_per_second":2400.4}"#,
                "\n",
            ),
        )
        .unwrap();
        let run = RunInfo::read(dir.path()).unwrap();
        let text = run.text();
        assert!(
            text.contains("last logged at global step 20: train perplexity 700.500, 2400 words/s"),
            "{text}"
        );
        let table = compare_runs(&[run]);
        let row = table.lines().nth(1).unwrap();
        assert!(row.contains(" 0 ") && row.contains("2400"), "{table}");
    }

    /// A run folder of the small preset's whole schedule says where its test perplexity
    /// stands against the tutorial's; one stopped before its last epoch does not.
    #[test]
    fn a_finished_preset_run_is_compared_with_the_tutorial() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::preset(Preset::Small);
        let epochs = cfg.max_epoch;
        Checkpoint {
            init: None,
            corpus: None,
            params: crate::model::Params::<f32>::init(&cfg, 1),
            vocab: (0..cfg.vocab_size).map(|i| format!("w{i}")).collect(),
            config: cfg.clone(),
            state: None,
            position: Position {
                epoch: epochs,
                ..Default::default()
            },
        }
        .save(&dir.path().join("last.safetensors"))
        .unwrap();
        let write = |epochs: usize| {
            let mut lines: Vec<String> = (1..=epochs)
                .map(|e| {
                    format!(
                        r#"{{"kind":"epoch","epoch":{e},"global_step":{},"learning_rate":1.0,"train_perplexity":50.0,"valid_perplexity":120.0,"words_per_second":1000.0,"seconds":60.0}}"#,
                        e * 2323
                    )
                })
                .collect();
            lines.push(
                r#"{"kind":"test","global_step":30199,"test_perplexity":113.75,"batch_size":1,"num_steps":1}"#.into(),
            );
            std::fs::write(dir.path().join(METRICS_FILE), lines.join("\n") + "\n").unwrap();
            RunInfo::read(dir.path()).unwrap()
        };
        let whole = write(epochs);
        let text = whole.text();
        assert!(
            text.contains(
                "the TensorFlow tutorial's small model reached test perplexity 115.91 (train 37.99, valid 121.39): this run's 113.75 is 1.9% lower"
            ),
            "{text}"
        );
        assert_eq!(whole.json()["published"], json!(whole.published().unwrap()));
        let part = write(epochs - 1);
        assert!(!part.text().contains("TensorFlow"), "{}", part.text());
        assert_eq!(part.json()["published"], Value::Null);
    }

    #[test]
    fn a_summary_line_names_the_preset_or_the_layers_and_where_training_stood() {
        let pos = Position {
            epoch: 13,
            global_step: 30199,
            best: Some(crate::model::checkpoint::BestEpoch {
                epoch: 6,
                valid_perplexity: 118.13,
            }),
            ..Default::default()
        };
        assert_eq!(
            summary_line(&Config::preset(Preset::Small), &pos),
            "the small preset, end of epoch 13, step 30199; best valid perplexity 118.13 (epoch 6)"
        );
        let cfg = Config {
            hidden: vec![8, 6],
            embedding_size: 8,
            vocab_size: 60,
            tokens: crate::data::Tokens::Chars,
            ..Config::preset(Preset::Small)
        };
        assert_eq!(
            summary_line(&cfg, &Position::default()),
            "embedding 8, LSTM 8 x 6, 60 characters, initial"
        );
    }

    #[test]
    fn a_preset_is_named_only_where_the_config_is_it() {
        for p in [Preset::Seed, Preset::Small, Preset::Medium, Preset::Large] {
            assert_eq!(Config::preset(p).preset_of(), Some(p));
            let mixed = Config {
                precision: Precision::Mixed,
                ..Config::preset(p)
            };
            assert_eq!(mixed.preset_of(), Some(p));
            let longer = Config {
                max_epoch: Config::preset(p).max_epoch + 1,
                ..Config::preset(p)
            };
            assert_eq!(longer.preset_of(), None);
        }
    }

    #[test]
    fn the_schedule_says_from_which_epoch_the_rate_decays() {
        // The medium preset: x0.8 from the 7th epoch, as the tutorial's MediumConfig.
        let line = training_line(&Config::preset(Preset::Medium));
        assert!(line.contains("x0.8 an epoch from epoch 7"), "{line}");
        let constant = Config {
            decay: 1.0,
            ..Config::preset(Preset::Seed)
        };
        assert!(training_line(&constant).contains("(constant)"));
        let plateau = Config {
            lr_schedule: crate::config::LrSchedule::Plateau,
            decay: 0.25,
            ..Config::preset(Preset::Seed)
        };
        let line = training_line(&plateau);
        assert!(
            line.contains("(x0.25 after an epoch without a lower valid perplexity)"),
            "{line}"
        );
        assert_eq!(plateau.preset_of(), None, "not the preset's schedule");
    }
}
