//! The training loop, as the TensorFlow tutorial runs it: per epoch the learning rate,
//! training with progress every 10% of the epoch, then train and validation perplexity;
//! test perplexity at the end. Metrics go to `metrics.jsonl`, checkpoints beside it.

use anyhow::{bail, Context, Result};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::config::Config;
use crate::data::{Batches, Corpus};
use crate::error::usage;
use crate::gpu::reduce::TrainAccumulator;
use crate::gpu::sgd::Hyper;
use crate::gpu::Gpu;
use crate::model::checkpoint::{load_weights, write_atomic, Checkpoint, Position};

/// The newest checkpoint of a run folder.
pub const LAST: &str = "last.safetensors";
use crate::model::schedule::{Kernels, Mode, ParamBuffers, Workspace};
use crate::model::Params;
use crate::signals::{Interrupt, Interrupted};

/// What a training run is asked to do besides the model's configuration.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Stop after this many training steps counted from the very start (also across resumes).
    pub max_steps: Option<u64>,
    /// Seed of the initialisation and the dropout generator.
    pub seed: u64,
    /// Progress every this many steps (default: every 10% of an epoch).
    pub log_every: Option<usize>,
    /// The run's folder: `metrics.jsonl` and checkpoints.
    pub run_dir: PathBuf,
    /// Also save a checkpoint every this many steps.
    pub checkpoint_every: Option<u64>,
    /// Continue from a checkpoint.
    pub resume: Option<PathBuf>,
    /// Start from these weights.
    pub init: Option<PathBuf>,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
    /// Batch size and steps of the test pass (default: the training shape).
    pub test_batch: Option<(usize, usize)>,
    /// Checked after every step: a signal saves a checkpoint and stops.
    pub interrupt: Option<Interrupt>,
    /// Skip the validation pass when `--max-steps` stops a run mid-epoch.
    pub no_eval_at_stop: bool,
    /// What a step whose loss or gradient norm is not finite does.
    pub on_nan: OnNan,
    /// With [`OnNan::Skip`]: stop when at least this many steps in a row were skipped at a
    /// log point (0: never).
    pub max_skips_in_a_row: u64,
}

/// What a training step whose loss or gradient norm is not finite (NaN or infinite) does
/// (`--on-nan`). Either way the step does not change the parameters: the GPU decides that
/// within the step, and the host reads what happened at log points.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OnNan {
    /// End the run at the next log point, naming the step; the last checkpoint is kept.
    #[default]
    Stop,
    /// Skip the step, zero the rows of the carried state that are not finite, go on, and
    /// report the skipped steps.
    Skip,
}

/// The environment variable of the test-only fault-injection hook, read by [`train`] only:
/// comma-separated `KIND:STEP` with KIND `nan-state` (NaN in the carried state before step
/// STEP, so that its loss and gradient are NaN), `device-lost` (`wgpu::Device::destroy`
/// after step STEP: a real device loss) or `out-of-memory` (an out-of-memory error from the
/// driver after step STEP, see [`Gpu::inject_out_of_memory`]). Steps count from 1, across
/// resumes.
pub const FAULT_ENV: &str = "LSTM_GPU_INJECT_FAULT";

/// A fault injected through [`FAULT_ENV`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    NanState(u64),
    DeviceLost(u64),
    OutOfMemory(u64),
}

/// The faults asked for in [`FAULT_ENV`] (none when it is unset or empty).
pub fn faults_from_env() -> Result<Vec<Fault>> {
    let Some(value) = std::env::var_os(FAULT_ENV) else {
        return Ok(Vec::new());
    };
    let value = value.to_string_lossy().into_owned();
    parse_faults(&value)
}

/// Parse the value of [`FAULT_ENV`].
pub fn parse_faults(value: &str) -> Result<Vec<Fault>> {
    let mut faults = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || {
            usage(format!(
                "{FAULT_ENV}: `{item}` is not KIND:STEP with KIND nan-state, device-lost or out-of-memory and STEP at least 1"
            ))
        };
        let (kind, step) = item.split_once(':').ok_or_else(bad)?;
        let step: u64 = step.trim().parse().map_err(|_| bad())?;
        if step == 0 {
            return Err(bad());
        }
        faults.push(match kind.trim() {
            "nan-state" => Fault::NanState(step),
            "device-lost" => Fault::DeviceLost(step),
            "out-of-memory" => Fault::OutOfMemory(step),
            _ => return Err(bad()),
        });
    }
    Ok(faults)
}

/// Training ended because steps were not finite; the message says which and what is kept.
#[derive(Debug)]
pub struct Diverged(pub String);

impl std::fmt::Display for Diverged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Diverged {}

/// Perplexities of a finished run.
#[derive(Clone, Debug, Default)]
pub struct TrainSummary {
    pub epochs: Vec<EpochSummary>,
    pub test_perplexity: Option<f64>,
    pub last_checkpoint: Option<PathBuf>,
    pub global_step: u64,
    /// Steps skipped for a non-finite loss or gradient norm since the very start.
    pub skipped_steps: u64,
}

#[derive(Clone, Debug)]
pub struct EpochSummary {
    pub epoch: usize,
    pub learning_rate: f32,
    pub train_perplexity: f64,
    pub valid_perplexity: f64,
    pub words_per_second: f64,
    pub seconds: f64,
}

/// Append-only JSON lines, flushed per record so that a crash keeps what was measured.
struct Metrics {
    file: std::fs::File,
    path: PathBuf,
}

impl Metrics {
    fn open(dir: &Path) -> Result<Metrics> {
        let path = dir.join("metrics.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("could not open {}", path.display()))?;
        Ok(Metrics { file, path })
    }

    fn write(&mut self, v: serde_json::Value) -> Result<()> {
        writeln!(self.file, "{v}")
            .and_then(|_| self.file.flush())
            .map_err(crate::model::checkpoint::explain_write_error)
            .with_context(|| format!("could not append to {}", self.path.display()))?;
        Ok(())
    }
}

/// Perplexity of a pass over `batches` of a split, on the GPU, from a zero state.
pub fn evaluate(gpu: &Gpu, ws: &mut Workspace, batches: &Batches, seed: u32) -> Result<f64> {
    ws.zero_state(gpu);
    ws.take_loss(gpu)?;
    for i in 0..batches.len() {
        let (x, y) = batches.batch(i);
        ws.step(
            gpu,
            &x,
            &y,
            Hyper {
                learning_rate: 0.0,
                step: 0,
                seed,
            },
        )?;
    }
    let (sum, count) = ws.take_loss(gpu)?;
    if count != batches.len() as u64 {
        bail!(
            "evaluation counted {count} batches, expected {}",
            batches.len()
        );
    }
    Ok((sum / (batches.len() * ws.steps) as f64).exp())
}

/// Train `cfg` on `corpus` as the options say.
pub fn train(gpu: &Gpu, cfg: Config, corpus: &Corpus, opts: &TrainOptions) -> Result<TrainSummary> {
    // Where to start: a checkpoint, given weights, or a fresh initialisation.
    let (params, mut pos, carried) = match &opts.resume {
        Some(path) => {
            let ck = Checkpoint::load(path)?;
            if ck.vocab != corpus.vocab.words() {
                bail!(
                    "checkpoint {} was trained on another vocabulary than the corpus in {}",
                    path.display(),
                    corpus.dir.display()
                );
            }
            check_same_model(&ck.config, &cfg, path)?;
            (ck.params, ck.position, ck.state)
        }
        None => {
            let params = match &opts.init {
                Some(path) => load_weights(path, &cfg)?,
                None => Params::<f32>::init(&cfg, opts.seed),
            };
            let pos = Position {
                learning_rate: cfg.lr_for_epoch(0),
                seed: opts.seed,
                ..Default::default()
            };
            (params, pos, None)
        }
    };
    if corpus.vocab.len() != cfg.vocab_size {
        bail!(
            "the corpus vocabulary has {} words, the model {}",
            corpus.vocab.len(),
            cfg.vocab_size
        );
    }

    let train_batches =
        Batches::new(&corpus.train, cfg.batch_size, cfg.num_steps).context("training split")?;
    let valid_batches =
        Batches::new(&corpus.valid, cfg.batch_size, cfg.num_steps).context("validation split")?;
    let (tb, ts) = opts.test_batch.unwrap_or((cfg.batch_size, cfg.num_steps));
    let test_batches = Batches::new(&corpus.test, tb, ts).context("test split")?;

    let kernels = Kernels::new(gpu)?;
    let pbuf = ParamBuffers::upload(gpu, &cfg, &params)?;
    let mut train_ws = Workspace::new(
        gpu,
        &kernels,
        &cfg,
        &pbuf,
        cfg.batch_size,
        cfg.num_steps,
        Mode::Train,
    )?;
    let mut eval_ws = Workspace::new(
        gpu,
        &kernels,
        &cfg,
        &pbuf,
        cfg.batch_size,
        cfg.num_steps,
        Mode::Eval,
    )?;
    let mut test_ws = if (tb, ts) == (cfg.batch_size, cfg.num_steps) {
        None
    } else {
        Some(Workspace::new(
            gpu,
            &kernels,
            &cfg,
            &pbuf,
            tb,
            ts,
            Mode::Eval,
        )?)
    };
    gpu.wait()?;

    // The run folder is the user's choice (--run-dir): one that cannot be made or written
    // is a usage error, found before any training (after the
    // model was found to fit the adapter, so that an impossible model leaves no folder).
    std::fs::create_dir_all(&opts.run_dir).map_err(|e| {
        usage(format!(
            "--run-dir {}: cannot create the folder ({e}); choose a folder you can write to",
            opts.run_dir.display()
        ))
    })?;
    let mut metrics = Metrics::open(&opts.run_dir).map_err(|e| {
        usage(format!(
            "--run-dir {}: {e:#}; choose a folder you can write to",
            opts.run_dir.display()
        ))
    })?;

    let epoch_size = train_batches.len();
    let words_per_step = (cfg.batch_size * cfg.num_steps) as f64;
    let log_every = opts.log_every.unwrap_or((epoch_size / 10).max(1)).max(1);
    let seed32 = (pos.seed ^ (pos.seed >> 32)) as u32;
    log::info!(
        "model: {} parameters, embedding {}, hidden {:?}, vocabulary {}; {} batches of {}x{} per epoch; {} dispatches per step on {}",
        cfg.num_params(),
        cfg.embedding_size,
        cfg.hidden,
        cfg.vocab_size,
        epoch_size,
        cfg.batch_size,
        cfg.num_steps,
        train_ws.dispatches(),
        gpu.info.name
    );

    let mut summary = TrainSummary {
        global_step: pos.global_step,
        ..Default::default()
    };
    let stop_at = opts.max_steps.unwrap_or(u64::MAX);
    // One serialisation, written atomically under each name; `last.safetensors` is always
    // the newest complete checkpoint, whatever kills the process.
    let save =
        |ws: &Workspace, pos: &Position, names: &[&str], mid_epoch: bool| -> Result<PathBuf> {
            let ck = Checkpoint {
                config: cfg.clone(),
                vocab: corpus.vocab.words().to_vec(),
                params: pbuf.read(gpu, &cfg)?,
                state: if mid_epoch {
                    Some(ws.read_state(gpu)?)
                } else {
                    None
                },
                position: pos.clone(),
            };
            let bytes = ck.to_bytes()?;
            for name in names {
                let path = opts.run_dir.join(name);
                write_atomic(&path, &bytes)
                    .with_context(|| format!("could not write checkpoint {}", path.display()))?;
            }
            let first = opts.run_dir.join(names[0]);
            log::info!("checkpoint written: {}", first.display());
            Ok(first)
        };

    // Where the newest complete checkpoint is, for the message of a run that fails.
    let mut kept: Option<PathBuf> = opts.resume.clone();
    let kept_line = |kept: &Option<PathBuf>| {
        kept.as_ref()
            .map_or("no checkpoint was written yet".to_string(), |p| {
                format!(
                    "the last checkpoint {} is kept (continue with --resume {})",
                    p.display(),
                    p.display()
                )
            })
    };
    let faults = faults_from_env()?;
    let mut stopped = false;
    let result = (|| -> Result<()> {
        while pos.epoch < cfg.max_epoch && !stopped {
            let epoch = pos.epoch;
            let lr = cfg.lr_for_epoch(epoch);
            pos.learning_rate = lr;
            if pos.step_in_epoch == 0 {
                train_ws.zero_state(gpu);
                pos.epoch_loss_sum = 0.0;
                pos.epoch_skipped = 0;
                log::info!("epoch {}: learning rate {lr:.6}", epoch + 1);
            } else if let Some(s) = &carried {
                train_ws.write_state(gpu, s)?;
                log::info!(
                    "resuming epoch {} at step {}/{} (global step {})",
                    epoch + 1,
                    pos.step_in_epoch,
                    epoch_size,
                    pos.global_step
                );
            }
            train_ws.take_stats(gpu)?;
            let bar = progress_bar(
                opts.progress,
                epoch_size as u64,
                pos.step_in_epoch as u64,
                epoch + 1,
            );
            let t0 = Instant::now();
            let first = pos.step_in_epoch;
            let mut interval_start = (Instant::now(), pos.step_in_epoch);
            while pos.step_in_epoch < epoch_size {
                if pos.global_step >= stop_at {
                    stopped = true;
                    break;
                }
                let (x, y) = train_batches.batch(pos.step_in_epoch);
                let hyper = Hyper {
                    learning_rate: lr,
                    step: pos.global_step as u32,
                    seed: seed32,
                };
                if faults.contains(&Fault::NanState(pos.global_step + 1)) {
                    log::warn!(
                        "{FAULT_ENV}: NaN in the carried state before step {}",
                        pos.global_step + 1
                    );
                    train_ws.poison_state(gpu);
                }
                train_ws.step(gpu, &x, &y, hyper)?;
                pos.step_in_epoch += 1;
                pos.global_step += 1;
                inject_after_step(gpu, &faults, pos.global_step);
                let at_log = pos.step_in_epoch % log_every == 0 || pos.step_in_epoch == epoch_size;
                let at_ck = opts
                    .checkpoint_every
                    .is_some_and(|n| pos.global_step % n == 0);
                if at_log || at_ck || pos.global_step >= stop_at {
                    let stats = train_ws.take_stats(gpu)?;
                    let done = pos.step_in_epoch;
                    let interval = done - interval_start.1;
                    let skipped = absorb(&mut pos, &stats);
                    if skipped > 0 {
                        let what = if stats.nonfinite_loss > 0 {
                            "loss"
                        } else {
                            "gradient norm"
                        };
                        let at = if stats.first_skipped == stats.last_skipped {
                            format!("step {}", stats.first_skipped)
                        } else {
                            format!("steps {} to {}", stats.first_skipped, stats.last_skipped)
                        };
                        match opts.on_nan {
                            OnNan::Stop => {
                                return Err(Diverged(format!(
                                    "the training {what} became NaN or infinite at {at} (epoch {}); {}; lower --learning-rate or --max-grad-norm, or pass --on-nan skip to skip such steps",
                                    epoch + 1,
                                    kept_line(&kept)
                                ))
                                .into());
                            }
                            OnNan::Skip => {
                                let all = if skipped == interval {
                                    format!(
                                        "every step since the last report ({interval}) was skipped"
                                    )
                                } else {
                                    format!("skipped {skipped} of the last {interval} steps")
                                };
                                let line = format!(
                                    "epoch {}: {all}: NaN or infinite {what} at {at}; {} skipped in all",
                                    epoch + 1,
                                    pos.skipped_steps
                                );
                                match &bar {
                                    Some(b) => b.println(format!("warning: {line}")),
                                    None => log::warn!("{line}"),
                                }
                                let limit = opts.max_skips_in_a_row;
                                if limit > 0 && u64::from(stats.skipped_in_a_row) >= limit {
                                    return Err(Diverged(format!(
                                        "the last {} training steps (to step {}, epoch {}) were all skipped for a NaN or infinite {what} (--max-skips-in-a-row {limit}): the run is not recovering; {}; lower --learning-rate or --max-grad-norm",
                                        stats.skipped_in_a_row,
                                        stats.last_skipped,
                                        epoch + 1,
                                        kept_line(&kept)
                                    ))
                                    .into());
                                }
                            }
                        }
                    }
                    let sum = stats.loss_sum() as f64;
                    if !sum.is_finite() {
                        // The guard keeps non-finite losses out; a sum can still overflow.
                        return Err(Diverged(format!(
                            "the training loss summed to {sum} by step {} (epoch {}); {}; lower --learning-rate",
                            pos.global_step,
                            epoch + 1,
                            kept_line(&kept)
                        ))
                        .into());
                    }
                    pos.epoch_loss_sum += sum;
                    let ppl = epoch_perplexity(&pos, done, cfg.num_steps);
                    let secs = interval_start.0.elapsed().as_secs_f64();
                    let wps = interval as f64 * words_per_step / secs.max(1e-9);
                    pos.train_seconds += secs;
                    interval_start = (Instant::now(), done);
                    if at_log {
                        let frac = done as f64 / epoch_size as f64;
                        let mut line =
                            format!("{frac:.3} perplexity: {ppl:.3} speed: {wps:.0} wps");
                        if pos.epoch_skipped > 0 {
                            line += &format!(" skipped: {}", pos.epoch_skipped);
                        }
                        match &bar {
                            Some(b) => {
                                b.set_message(format!("ppl {ppl:.1}, {wps:.0} words/s"));
                                b.println(line);
                            }
                            None => log::info!("epoch {} {line}", epoch + 1),
                        }
                        metrics.write(json!({"kind": "train", "epoch": epoch + 1, "step": done, "global_step": pos.global_step,
                            "learning_rate": lr, "perplexity": ppl, "words_per_second": wps,
                            "skipped_steps": skipped, "skipped_steps_total": pos.skipped_steps}))?;
                    }
                    if at_ck {
                        let step_name = format!("step-{}.safetensors", pos.global_step);
                        let path = save(&train_ws, &pos, &[&step_name, LAST], true)?;
                        kept = Some(opts.run_dir.join(LAST));
                        summary.last_checkpoint = Some(path);
                    }
                }
                if let Some(b) = &bar {
                    b.set_position(pos.step_in_epoch as u64);
                }
                if let Some(signal) = opts.interrupt.as_ref().and_then(Interrupt::received) {
                    if let Some(b) = &bar {
                        b.finish_and_clear();
                    }
                    let stats = train_ws.take_stats(gpu)?;
                    absorb(&mut pos, &stats);
                    pos.epoch_loss_sum += stats.loss_sum() as f64;
                    pos.train_seconds += interval_start.0.elapsed().as_secs_f64();
                    let path = save(&train_ws, &pos, &[LAST], true)?;
                    return Err(Interrupted {
                        signal,
                        resume_hint: format!(
                            "lstm-gpu train --resume {} --run-dir {}",
                            path.display(),
                            opts.run_dir.display()
                        ),
                        checkpoint: path,
                    }
                    .into());
                }
            }
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            summary.global_step = pos.global_step;
            summary.skipped_steps = pos.skipped_steps;
            if stopped && pos.step_in_epoch < epoch_size {
                // Interrupted by --max-steps mid-epoch: keep the exact position.
                let path = save(&train_ws, &pos, &[LAST], true)?;
                kept = Some(path.clone());
                summary.last_checkpoint = Some(path);
                let valid = if opts.no_eval_at_stop {
                    f64::NAN
                } else {
                    evaluate(gpu, &mut eval_ws, &valid_batches, seed32)?
                };
                let ppl = epoch_perplexity(&pos, pos.step_in_epoch, cfg.num_steps);
                log::info!("stopped at global step {} (--max-steps): train perplexity so far {ppl:.3}, valid perplexity {valid:.3}", pos.global_step);
                metrics.write(json!({"kind": "stop", "epoch": epoch + 1, "step": pos.step_in_epoch, "global_step": pos.global_step,
                    "learning_rate": lr, "train_perplexity": ppl, "valid_perplexity": valid,
                    "skipped_steps": pos.epoch_skipped, "skipped_steps_total": pos.skipped_steps}))?;
                break;
            }
            gpu.wait()?;
            let secs = t0.elapsed().as_secs_f64();
            let wps = (epoch_size - first) as f64 * words_per_step / secs.max(1e-9);
            let train_ppl = epoch_perplexity(&pos, epoch_size, cfg.num_steps);
            let valid = evaluate(gpu, &mut eval_ws, &valid_batches, seed32)?;
            let skipped_note = if pos.epoch_skipped > 0 {
                format!(" ({} steps skipped)", pos.epoch_skipped)
            } else {
                String::new()
            };
            println!("Epoch: {} Learning rate: {lr:.3} Train Perplexity: {train_ppl:.3} Valid Perplexity: {valid:.3} ({wps:.0} words/s, {secs:.1} s){skipped_note}", epoch + 1);
            metrics.write(json!({"kind": "epoch", "epoch": epoch + 1, "global_step": pos.global_step, "learning_rate": lr,
                "train_perplexity": train_ppl, "valid_perplexity": valid, "words_per_second": wps, "seconds": secs,
                "skipped_steps": pos.epoch_skipped}))?;
            summary.epochs.push(EpochSummary {
                epoch: epoch + 1,
                learning_rate: lr,
                train_perplexity: train_ppl,
                valid_perplexity: valid,
                words_per_second: wps,
                seconds: secs,
            });
            pos.epoch += 1;
            pos.step_in_epoch = 0;
            pos.epoch_loss_sum = 0.0;
            pos.epoch_skipped = 0;
            pos.learning_rate = cfg.lr_for_epoch(pos.epoch);
            let epoch_name = format!("epoch-{}.safetensors", epoch + 1);
            let path = save(&train_ws, &pos, &[&epoch_name, LAST], false)?;
            kept = Some(opts.run_dir.join(LAST));
            summary.last_checkpoint = Some(path);
        }

        if pos.epoch >= cfg.max_epoch && !stopped {
            let ws = test_ws.as_mut().unwrap_or(&mut eval_ws);
            let test = evaluate(gpu, ws, &test_batches, seed32)?;
            println!("Test Perplexity: {test:.3}");
            metrics.write(json!({"kind": "test", "global_step": pos.global_step, "test_perplexity": test, "batch_size": tb, "num_steps": ts,
                "skipped_steps": pos.skipped_steps}))?;
            summary.test_perplexity = Some(test);
        }
        Ok(())
    })();
    if let Err(e) = result {
        if e.is::<Interrupted>() || e.is::<Diverged>() {
            return Err(e);
        }
        // A fault (the device, a write): say where training stood and what is kept.
        return Err(e.context(format!(
            "training stopped after step {}; {}",
            pos.global_step,
            kept_line(&kept)
        )));
    }
    summary.global_step = pos.global_step;
    summary.skipped_steps = pos.skipped_steps;
    if pos.skipped_steps > 0 {
        println!(
            "Skipped steps: {} (NaN or infinite loss or gradient norm; the parameters were not updated)",
            pos.skipped_steps
        );
    }
    Ok(summary)
}

/// Add the skipped steps of a read of the accumulator to the position; returns them.
fn absorb(pos: &mut Position, stats: &TrainAccumulator) -> usize {
    let skipped = stats.skipped as usize;
    pos.epoch_skipped += skipped;
    pos.skipped_steps += skipped as u64;
    skipped
}

/// Perplexity of the first `done` steps of the epoch, over the steps that were not skipped
/// (NaN when every one was).
fn epoch_perplexity(pos: &Position, done: usize, num_steps: usize) -> f64 {
    let counted = done.saturating_sub(pos.epoch_skipped);
    if counted == 0 {
        return f64::NAN;
    }
    (pos.epoch_loss_sum / (counted * num_steps) as f64).exp()
}

/// The faults of [`FAULT_ENV`] due after step `step`.
fn inject_after_step(gpu: &Gpu, faults: &[Fault], step: u64) {
    for f in faults {
        match *f {
            Fault::DeviceLost(s) if s == step => {
                log::warn!("{FAULT_ENV}: destroying the GPU device after step {step}");
                gpu.device.destroy();
            }
            Fault::OutOfMemory(s) if s == step => {
                log::warn!("{FAULT_ENV}: an out-of-memory error from wgpu after step {step}");
                gpu.inject_out_of_memory();
            }
            _ => {}
        }
    }
}

/// Flags that change the model's shape cannot differ from the checkpoint's.
fn check_same_model(ck: &Config, flags: &Config, path: &Path) -> Result<()> {
    let diffs: Vec<String> = [
        (
            "--vocab-size",
            ck.vocab_size.to_string(),
            flags.vocab_size.to_string(),
        ),
        (
            "--embedding-size",
            ck.embedding_size.to_string(),
            flags.embedding_size.to_string(),
        ),
        (
            "--hidden",
            format!("{:?}", ck.hidden),
            format!("{:?}", flags.hidden),
        ),
        (
            "--batch-size",
            ck.batch_size.to_string(),
            flags.batch_size.to_string(),
        ),
        (
            "--num-steps",
            ck.num_steps.to_string(),
            flags.num_steps.to_string(),
        ),
    ]
    .into_iter()
    .filter(|(_, a, b)| a != b)
    .map(|(f, a, b)| format!("{f} {b} (checkpoint: {a})"))
    .collect();
    if !diffs.is_empty() {
        return Err(usage(format!(
            "flags contradict checkpoint {}: {}; drop them to resume",
            path.display(),
            diffs.join(", ")
        )));
    }
    Ok(())
}

fn progress_bar(enabled: bool, len: u64, pos: u64, epoch: usize) -> Option<indicatif::ProgressBar> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} {msg} (eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(epoch.to_string());
    bar.set_position(pos);
    Some(bar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_hooks_parse_and_refuse_what_they_do_not_know() {
        assert_eq!(parse_faults("").unwrap(), vec![]);
        assert_eq!(
            parse_faults("nan-state:3, device-lost:5,out-of-memory:1").unwrap(),
            vec![
                Fault::NanState(3),
                Fault::DeviceLost(5),
                Fault::OutOfMemory(1)
            ]
        );
        for bad in ["nan-state", "nan-state:0", "nan-state:x", "meltdown:2"] {
            let e = parse_faults(bad).unwrap_err();
            assert_eq!(crate::error::exit_code(&e), 2, "{bad}");
            assert!(e.to_string().contains(FAULT_ENV), "{bad}: {e}");
        }
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
