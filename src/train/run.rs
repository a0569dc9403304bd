//! The training loop: a [`Run`] made once from the starting point, then epoch after epoch
//! of steps, log points, checkpoints and validation, stopped by the schedule, `--max-steps`,
//! `--patience`, a signal or a step that is not finite; the test pass at the end.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::checkpoints::{
    beyond_newest, check_same_model, numbered_checkpoints, settle_best, BEST, LAST,
};
use super::eval_pass::{evaluate_sliced, PassEnd, PassView, Scored};
use super::faults::{faults_from_env, inject_after_step, Fault, FAULT_ENV};
use super::report::{
    bar_message, epoch_estimate, prepare_run_dir, progress_bar, say, valid_text, Metrics,
};
use super::resume::{resume_command, shell_word};
use super::{Diverged, EpochSummary, OnNan, TrainOptions, TrainSummary};
use crate::config::{Config, LrSchedule};
use crate::data::{Batches, Corpus};
use crate::gpu::reduce::TrainAccumulator;
use crate::gpu::sgd::Hyper;
use crate::gpu::Gpu;
use crate::model::checkpoint::{load_weights, write_atomic, Checkpoint, Position};
use crate::model::schedule::{Kernels, Mode, ParamBuffers, Workspace};
use crate::model::{Params, State};
use crate::session::{
    absorb, epoch_best, epoch_lr, epoch_perplexity, kernel_seed, needs, next_epoch,
    running_perplexity, split_batches, stream_steps, Stream,
};
use crate::signals::{Interrupt, Interrupted};

/// Where a run starts: a checkpoint (`--resume`: parameters, position and carried state),
/// given weights (`--init`), or a fresh initialisation.
fn starting_point(
    cfg: &Config,
    corpus: &Corpus,
    opts: &TrainOptions,
) -> Result<(Params<f32>, Position, Option<State<f32>>)> {
    if let Some(path) = &opts.resume {
        let ck = Checkpoint::load(path)?;
        if ck.vocab != corpus.vocab.words() {
            bail!(
                "checkpoint {} was trained on another vocabulary than the corpus in {}",
                path.display(),
                corpus.dir.display()
            );
        }
        check_same_model(&ck.config, cfg, path)?;
        return Ok((ck.params, ck.position, ck.state));
    }
    let params = match &opts.init {
        Some(path) => load_weights(path, cfg)?,
        None => Params::<f32>::init(cfg, opts.seed),
    };
    Ok((params, crate::session::start(cfg, opts.seed), None))
}

/// A training run in progress: what [`train`](super::train) made once, and where it stands.
pub(super) struct Run<'a> {
    gpu: &'a Gpu,
    cfg: Config,
    corpus: &'a Corpus,
    opts: &'a TrainOptions,
    params: ParamBuffers,
    train_ws: Workspace,
    eval_ws: Workspace,
    train_batches: Batches<'a>,
    valid_batches: Batches<'a>,
    test: TestPass<'a>,
    /// Batch size and time steps of the test pass.
    test_shape: (usize, usize),
    metrics: Metrics,
    pos: Position,
    /// The carried state of a checkpoint taken mid-epoch, restored when that epoch resumes.
    carried: Option<State<f32>>,
    summary: TrainSummary,
    /// The newest complete checkpoint, named in the message of a run that fails.
    kept: Option<PathBuf>,
    faults: Vec<Fault>,
    /// The dropout generator's seed as the kernels take it.
    seed32: u32,
    log_every: usize,
    /// `--max-steps`, counted from the very start.
    stop_at: u64,
    /// Set when `--max-steps` is reached.
    stopped: bool,
    /// The speed measurement behind the up-front epoch estimate (once per run).
    estimate: Estimate,
    /// The gradient norms of the steps since the last progress point.
    norms: Norms,
}

/// What the test pass runs on.
#[allow(clippy::large_enum_variant)] // one per run
enum TestPass<'a> {
    /// The validation's workspace: `--test-batch` is the training shape.
    Validation(Batches<'a>),
    /// Its own workspace at `--test-batch`'s shape.
    Own(Workspace, Batches<'a>),
    /// The tutorial's 1x1, as a [`Stream`] on its two workspaces.
    Stream(Workspace, Workspace, Stream<'a>),
}

/// The global gradient norms (before clipping) of the steps that counted and ran their
/// update since the last progress point, gathered from each read of the GPU's accumulator (a checkpoint between
/// progress points reads it too).
#[derive(Default)]
struct Norms {
    sum: f64,
    max: f32,
    clipped: u64,
    steps: f64,
}

impl Norms {
    fn add(&mut self, stats: &TrainAccumulator) {
        self.sum += f32::from_bits(stats.norm_sum_bits) as f64;
        self.max = self.max.max(stats.max_norm());
        self.clipped += u64::from(stats.clipped);
        self.steps += stats.norm_steps as f64;
    }
}

/// The first steps' speed, measured once per run (the first step, which compiles kernels on
/// some adapters, left out), and the epoch time it predicts, said up front.
enum Estimate {
    /// Waiting for the first step to end.
    Pending,
    /// Timing from the end of the first step (the instant and the global step then).
    Timing(Instant, u64),
    Done,
}

/// The refreshes of the progress bar between log points: the first few steps, then about
/// once a second (each one reads the loss accumulator back, leaving it as it is).
struct BarRefresh {
    last: Instant,
    count: usize,
}

impl BarRefresh {
    const FIRST_STEPS: usize = 3;
    const EVERY: std::time::Duration = std::time::Duration::from_secs(1);

    fn due(&mut self) -> bool {
        let due = self.count < Self::FIRST_STEPS || self.last.elapsed() >= Self::EVERY;
        if due {
            self.count += 1;
            self.last = Instant::now();
        }
        due
    }
}

/// Where the steps since the last log point started, to measure their speed.
struct Interval {
    start: Instant,
    step: usize,
}

impl<'a> Run<'a> {
    /// The starting point, the batches of each split, the workspaces (checked to fit the
    /// adapter), then the run folder and its metrics file.
    pub(super) fn new(
        gpu: &'a Gpu,
        cfg: Config,
        corpus: &'a Corpus,
        opts: &'a TrainOptions,
    ) -> Result<Run<'a>> {
        let (params, mut pos, carried) = starting_point(&cfg, corpus, opts)?;
        crate::session::same_vocabulary(&cfg, corpus)?;
        let (batch, steps) = (cfg.batch_size, cfg.num_steps);
        let test_shape = opts.test_batch.unwrap_or((1, 1));
        let (train_batches, valid_batches, test_batches) = split_batches(corpus, &cfg, test_shape)?;
        crate::model::fit::check(&needs(&cfg, test_shape), &gpu.limits, &gpu.info.name)?;

        let kernels = Kernels::new(gpu)?;
        let bytes0 = gpu.buffer_bytes();
        let pbuf = ParamBuffers::upload(gpu, &cfg, &params)?;
        let parameter_bytes = gpu.buffer_bytes() - bytes0;
        let train_ws = Workspace::new(gpu, &kernels, &cfg, &pbuf, batch, steps, Mode::Train)?;
        if let Some(ls) = pos.loss_scale {
            train_ws.write_loss_scale(gpu, ls)?;
        }
        // Evaluation never runs at the same time as a training step: it shares the
        // training step's logits (most of a step's memory) when they are large enough.
        let eval_workspace = |(b, t): (usize, usize)| {
            if b * t <= batch * steps {
                let shape = (b, t);
                Workspace::new_with_logits(
                    gpu,
                    &kernels,
                    &cfg,
                    &pbuf,
                    shape,
                    Mode::Eval,
                    &train_ws.logits,
                )
            } else {
                Workspace::new(gpu, &kernels, &cfg, &pbuf, b, t, Mode::Eval)
            }
        };
        let eval_ws = eval_workspace((batch, steps))?;
        let test = match stream_steps(&cfg, test_shape) {
            Some(s) => TestPass::Stream(
                eval_workspace((1, s))?,
                eval_workspace((1, 1))?,
                Stream::new(&corpus.test, s).context("test split")?,
            ),
            None if test_shape == (batch, steps) => TestPass::Validation(test_batches),
            None => TestPass::Own(eval_workspace(test_shape)?, test_batches),
        };
        gpu.wait()?;
        let (recurrence, source) =
            crate::model::schedule::recurrence_for(gpu, &kernels, &cfg, (batch, steps));
        if cfg.precision == crate::config::Precision::Mixed {
            log::info!(
                "precision mixed: every product reads f16 copies of its operands and sums in f32 on {}; recurrence {recurrence} ({}); loss scale {}",
                kernels.half.as_ref().map_or("-".to_string(), |h| h.product_name()),
                source.name(),
                pos.loss_scale.unwrap_or_default().scale
            );
        } else {
            log::info!(
                "kernels: recurrence {recurrence} ({}); matmul {}",
                source.name(),
                crate::gpu::tune::report(&kernels.matmul).join(", ")
            );
        }
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        log::info!(
            "GPU buffers: {:.1} MiB ({:.1} MiB of parameters; the training and evaluation steps share their logits)",
            mib(gpu.buffer_bytes() - bytes0),
            mib(parameter_bytes)
        );

        let metrics = prepare_run_dir(&opts.run_dir)?;
        pos.best = settle_best(&opts.run_dir, opts.resume.as_deref(), pos.best)?;
        if opts.keep_checkpoints.is_none() {
            let left = cfg.max_epoch.saturating_sub(pos.epoch) as f64;
            let each = cfg.num_params() as f64 * 4.0;
            if left * each > 2e9 {
                log::info!(
                    "every epoch keeps its checkpoint: {:.0} MB each, {:.1} GB for the {left} epochs left; --keep-checkpoints N keeps the newest N (best.safetensors and last.safetensors stay)",
                    each / 1e6,
                    left * each / 1e9
                );
            }
        }

        let epoch_size = train_batches.len();
        log::info!(
            "model: {} parameters, embedding {}, hidden {:?}, vocabulary {}; {} batches of {}x{} per epoch; {} dispatches per step on {}",
            cfg.num_params(),
            cfg.embedding_size,
            cfg.hidden,
            cfg.vocab_size,
            epoch_size,
            batch,
            steps,
            train_ws.dispatches(),
            gpu.info.name
        );
        Ok(Run {
            gpu,
            corpus,
            opts,
            params: pbuf,
            train_ws,
            eval_ws,
            train_batches,
            valid_batches,
            test,
            test_shape,
            metrics,
            summary: TrainSummary {
                global_step: pos.global_step,
                best: pos.best.map(|b| (opts.run_dir.join(BEST), b)),
                ..Default::default()
            },
            kept: opts.resume.clone(),
            faults: faults_from_env()?,
            seed32: kernel_seed(pos.seed),
            log_every: opts.log_every.unwrap_or((epoch_size / 10).max(1)).max(1),
            stop_at: opts.max_steps.unwrap_or(u64::MAX),
            stopped: false,
            estimate: Estimate::Pending,
            norms: Norms::default(),
            pos,
            carried,
            cfg,
        })
    }

    fn epoch_size(&self) -> usize {
        self.train_batches.len()
    }

    /// Save a checkpoint under each of `names` in the run folder (one serialisation, each
    /// written atomically: `last.safetensors` is always the newest complete checkpoint,
    /// whatever kills the process); with the carried state when `mid_epoch`.
    fn save(&self, names: &[&str], mid_epoch: bool) -> Result<PathBuf> {
        let ck = Checkpoint {
            corpus: self.opts.corpus.clone(),
            init: self.opts.started_from.clone(),
            config: self.cfg.clone(),
            vocab: self.corpus.vocab.words().to_vec(),
            params: self.params.read(self.gpu, &self.cfg)?,
            state: if mid_epoch {
                Some(self.train_ws.read_state(self.gpu)?)
            } else {
                None
            },
            position: Position {
                loss_scale: self.train_ws.read_loss_scale(self.gpu)?,
                ..self.pos.clone()
            },
        };
        let bytes = ck.to_bytes()?;
        for name in names {
            let path = self.opts.run_dir.join(name);
            write_atomic(&path, &bytes)
                .with_context(|| format!("could not write checkpoint {}", path.display()))?;
        }
        let first = self.opts.run_dir.join(names[0]);
        log::info!("checkpoint written: {}", first.display());
        Ok(first)
    }

    /// What is kept, for the message of a run that fails.
    fn kept_line(&self) -> String {
        self.kept
            .as_ref()
            .map_or("no checkpoint was written yet".to_string(), |p| {
                format!(
                    "the last checkpoint {} is kept (continue with: {})",
                    p.display(),
                    resume_command(p, &self.opts.run_dir, &self.opts.resume_flags)
                )
            })
    }

    /// Every epoch left, then the test pass; or up to `--max-steps`.
    pub(super) fn epochs(&mut self) -> Result<()> {
        while self.pos.epoch < self.cfg.max_epoch
            && !self.stopped
            && self.summary.stopped_early.is_none()
        {
            if self.pos.global_step >= self.stop_at && self.pos.step_in_epoch == 0 {
                // `--max-steps` ended exactly at the end of an epoch.
                self.stopped = true;
                self.stop_at_epoch_end()?;
                break;
            }
            let t0 = Instant::now();
            let first = self.pos.step_in_epoch;
            self.train_epoch()?;
            self.summary.global_step = self.pos.global_step;
            self.summary.skipped_steps = self.pos.skipped_steps;
            if self.stopped && self.pos.step_in_epoch < self.epoch_size() {
                self.stop_mid_epoch()?;
                break;
            }
            self.end_epoch(t0, first)?;
        }
        let finished = self.pos.epoch >= self.cfg.max_epoch || self.summary.stopped_early.is_some();
        if finished && !self.stopped {
            self.test()?;
        }
        Ok(())
    }

    /// The training steps of the epoch in progress (from where it stands), with a log point
    /// every `log_every` steps and a checkpoint every `--checkpoint-every` steps; stops
    /// early at `--max-steps` or on a signal.
    fn train_epoch(&mut self) -> Result<()> {
        let (gpu, epoch, epoch_size) = (self.gpu, self.pos.epoch, self.epoch_size());
        let lr = epoch_lr(&self.cfg, &self.pos);
        self.pos.learning_rate = lr;
        if self.pos.step_in_epoch == 0 {
            self.train_ws.zero_state(gpu);
            self.pos.epoch_loss_sum = 0.0;
            self.pos.epoch_skipped = 0;
            log::info!("epoch {}: learning rate {lr:.6}", epoch + 1);
        } else if let Some(s) = &self.carried {
            self.train_ws.write_state(gpu, s)?;
            log::info!(
                "resuming epoch {} at step {}/{} (global step {})",
                epoch + 1,
                self.pos.step_in_epoch,
                epoch_size,
                self.pos.global_step
            );
        }
        self.train_ws.take_stats(gpu)?;
        let bar = progress_bar(
            self.opts.progress,
            epoch_size as u64,
            self.pos.step_in_epoch as u64,
            epoch + 1,
        );
        let mut interval = Interval {
            start: Instant::now(),
            step: self.pos.step_in_epoch,
        };
        let mut refresh = BarRefresh {
            last: Instant::now(),
            count: 0,
        };
        while self.pos.step_in_epoch < epoch_size {
            if self.pos.global_step >= self.stop_at {
                self.stopped = true;
                break;
            }
            self.step(lr)?;
            let pos = &self.pos;
            // The last step before `--max-steps` stops the run is a log point too: its
            // speed and gradient norms (a short run may have no other).
            let at_stop = pos.global_step >= self.stop_at;
            let at_log = pos.step_in_epoch % self.log_every == 0
                || pos.step_in_epoch == epoch_size
                || at_stop;
            let at_checkpoint = self
                .opts
                .checkpoint_every
                .is_some_and(|n| pos.global_step % n == 0);
            if at_log || at_checkpoint {
                self.log_point(at_log, at_checkpoint, &mut interval, bar.as_ref())?;
            }
            self.estimate_epoch(bar.as_ref())?;
            if let Some(b) = &bar {
                b.set_position(self.pos.step_in_epoch as u64);
                if !at_log && refresh.due() {
                    self.refresh_bar(b, &interval)?;
                }
            }
            if let Some(signal) = self.opts.interrupt.as_ref().and_then(Interrupt::received) {
                if let Some(b) = &bar {
                    b.finish_and_clear();
                }
                return Err(self.interrupted(signal, &interval)?.into());
            }
        }
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        Ok(())
    }

    /// The bar's words/s and perplexity between log points: the epoch's perplexity so far
    /// with the steps since the last log point (read back, not taken, so the log points'
    /// figures do not depend on the bar) and the speed since that log point.
    fn refresh_bar(&self, bar: &indicatif::ProgressBar, interval: &Interval) -> Result<()> {
        let pending = self.train_ws.peek_stats(self.gpu)?;
        let done = self.pos.step_in_epoch;
        let ppl = running_perplexity(&self.pos, &pending, done, self.cfg.num_steps);
        let words = ((done - interval.step) * self.cfg.batch_size * self.cfg.num_steps) as f64;
        let wps = words / interval.start.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(bar_message(ppl, wps));
        Ok(())
    }

    /// Say once, from the first steps' speed, how long an epoch and the whole run take
    /// (and on a CPU adapter, how to get something that learns in minutes). The first
    /// step is left out: on some adapters it waits for the kernels to compile.
    fn estimate_epoch(&mut self, bar: Option<&indicatif::ProgressBar>) -> Result<()> {
        const MIN_SECS: f64 = 3.0;
        const MIN_STEPS: u64 = 5;
        let step = self.pos.global_step;
        match self.estimate {
            Estimate::Done => return Ok(()),
            Estimate::Pending => {
                self.train_ws.peek_stats(self.gpu)?;
                self.estimate = Estimate::Timing(Instant::now(), step);
                return Ok(());
            }
            Estimate::Timing(t0, s0) => {
                let steps = step - s0;
                // Without a readback the host may be ahead of the GPU; look at the clock
                // only after enough steps, then wait for them.
                if steps < MIN_STEPS || t0.elapsed().as_secs_f64() < MIN_SECS {
                    if self.pos.step_in_epoch == self.epoch_size() {
                        // The epoch ended first: its own line says how long it took.
                        self.estimate = Estimate::Done;
                    }
                    return Ok(());
                }
                self.train_ws.peek_stats(self.gpu)?;
                let secs = t0.elapsed().as_secs_f64();
                self.estimate = Estimate::Done;
                if steps == 0 {
                    return Ok(());
                }
                let per_step = secs / steps as f64;
                let words = (self.cfg.batch_size * self.cfg.num_steps) as f64;
                let line = epoch_estimate(
                    &self.gpu.info,
                    words / per_step,
                    per_step * self.epoch_size() as f64,
                    self.cfg.max_epoch,
                );
                match bar {
                    Some(b) => b.println(line),
                    None => log::info!("{line}"),
                }
            }
        }
        Ok(())
    }

    /// One training step (with the fault hooks of the tests around it).
    fn step(&mut self, lr: f32) -> Result<()> {
        let (gpu, step) = (self.gpu, self.pos.global_step);
        let (x, y) = self.train_batches.batch(self.pos.step_in_epoch);
        let hyper = Hyper {
            learning_rate: lr,
            step: step as u32,
            seed: self.seed32,
        };
        if self.faults.contains(&Fault::NanState(step + 1)) {
            log::warn!(
                "{FAULT_ENV}: NaN in the carried state before step {}",
                step + 1
            );
            self.train_ws.poison_state(gpu);
        }
        self.train_ws.step(gpu, &x, &y, hyper)?;
        self.pos.step_in_epoch += 1;
        self.pos.global_step += 1;
        inject_after_step(gpu, &self.faults, self.pos.global_step);
        Ok(())
    }

    /// Read the loss accumulator (the loop's only readback): skipped steps against
    /// `--on-nan`, the perplexity so far and the speed since the last log point, the
    /// progress line and its metrics record (`at_log`), and a checkpoint (`at_checkpoint`).
    fn log_point(
        &mut self,
        at_log: bool,
        at_checkpoint: bool,
        interval: &mut Interval,
        bar: Option<&indicatif::ProgressBar>,
    ) -> Result<()> {
        let (epoch, epoch_size) = (self.pos.epoch, self.epoch_size());
        let stats = self.train_ws.take_stats(self.gpu)?;
        self.norms.add(&stats);
        let done = self.pos.step_in_epoch;
        let steps = done - interval.step;
        let skipped = absorb(&mut self.pos, &stats);
        if skipped > 0 {
            self.skipped_steps(&stats, skipped, steps, bar)?;
        }
        let sum = stats.loss_sum() as f64;
        if !sum.is_finite() {
            // The guard keeps non-finite losses out; a sum can still overflow.
            return Err(Diverged(format!(
                "the training loss summed to {sum} by step {} (epoch {}); {}; lower --learning-rate",
                self.pos.global_step,
                epoch + 1,
                self.kept_line()
            ))
            .into());
        }
        self.pos.epoch_loss_sum += sum;
        let ppl = epoch_perplexity(&self.pos, done, self.cfg.num_steps);
        let secs = interval.start.elapsed().as_secs_f64();
        let words_per_step = (self.cfg.batch_size * self.cfg.num_steps) as f64;
        let wps = steps as f64 * words_per_step / secs.max(1e-9);
        self.pos.train_seconds += secs;
        *interval = Interval {
            start: Instant::now(),
            step: done,
        };
        if at_log {
            let frac = done as f64 / epoch_size as f64;
            let mut line = format!("{frac:.3} perplexity: {ppl:.3} speed: {wps:.0} wps");
            let norms = std::mem::take(&mut self.norms);
            if norms.steps > 0.0 {
                line += &format!(" grad norm: {:.3}", norms.sum / norms.steps);
                if norms.clipped > 0 {
                    let share = 100.0 * norms.clipped as f64 / norms.steps;
                    line += &format!(" (clipped: {share:.0}% of steps)");
                }
            }
            if self.pos.epoch_skipped > 0 {
                line += &format!(" skipped: {}", self.pos.epoch_skipped);
            }
            let loss_scale = self.train_ws.read_loss_scale(self.gpu)?;
            if let Some(ls) = loss_scale {
                line += &format!(" loss scale: {}", ls.scale);
                if ls.overflows > 0 {
                    line += &format!(" (f16 overflows: {} steps skipped)", ls.overflows);
                }
            }
            match bar {
                Some(b) => {
                    b.set_message(bar_message(ppl, wps));
                    b.println(line);
                }
                None => log::info!("epoch {} {line}", epoch + 1),
            }
            let pos = &self.pos;
            let mut record = json!({"kind": "train", "epoch": epoch + 1, "step": done, "global_step": pos.global_step,
                "learning_rate": pos.learning_rate, "perplexity": ppl, "words_per_second": wps,
                "skipped_steps": skipped, "skipped_steps_total": pos.skipped_steps});
            if let Some(ls) = loss_scale {
                record["loss_scale"] = json!(ls.scale);
                record["overflow_steps"] = json!(ls.overflows);
            }
            if norms.steps > 0.0 {
                record["grad_norm"] = json!(norms.sum / norms.steps);
                record["grad_norm_max"] = json!(norms.max);
                record["clipped_fraction"] = json!(norms.clipped as f64 / norms.steps);
            }
            self.metrics.write(record)?;
        }
        if at_checkpoint {
            let step_name = format!("step-{}.safetensors", self.pos.global_step);
            let path = self.save(&[&step_name, LAST], true)?;
            self.kept = Some(self.opts.run_dir.join(LAST));
            self.summary.last_checkpoint = Some(path);
            self.prune("step", self.pos.global_step);
        }
        Ok(())
    }

    /// `skipped` of the last `steps` steps were skipped for a non-finite loss or gradient
    /// norm: with `--on-nan stop` the run ends here, with `skip` it warns, and ends when
    /// `--max-skips-in-a-row` is reached.
    fn skipped_steps(
        &self,
        stats: &TrainAccumulator,
        skipped: usize,
        steps: usize,
        bar: Option<&indicatif::ProgressBar>,
    ) -> Result<()> {
        let epoch = self.pos.epoch;
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
        if self.opts.on_nan == OnNan::Stop {
            return Err(Diverged(format!(
                "the training {what} became NaN or infinite at {at} (epoch {}); {}; lower --learning-rate or --max-grad-norm, or pass --on-nan skip to skip such steps",
                epoch + 1,
                self.kept_line()
            ))
            .into());
        }
        let all = if skipped == steps {
            format!("every step since the last report ({steps}) was skipped")
        } else {
            format!("skipped {skipped} of the last {steps} steps")
        };
        let line = format!(
            "epoch {}: {all}: NaN or infinite {what} at {at}; {} skipped in all",
            epoch + 1,
            self.pos.skipped_steps
        );
        match bar {
            Some(b) => b.println(format!("warning: {line}")),
            None => log::warn!("{line}"),
        }
        let limit = self.opts.max_skips_in_a_row;
        if limit > 0 && u64::from(stats.skipped_in_a_row) >= limit {
            return Err(Diverged(format!(
                "the last {} training steps (to step {}, epoch {}) were all skipped for a NaN or infinite {what} (--max-skips-in-a-row {limit}): the run is not recovering; {}; lower --learning-rate or --max-grad-norm",
                stats.skipped_in_a_row,
                stats.last_skipped,
                epoch + 1,
                self.kept_line()
            ))
            .into());
        }
        Ok(())
    }

    /// A signal arrived: take in the steps since the last log point, save
    /// `last.safetensors` with the exact position, and say how to resume.
    fn interrupted(&mut self, signal: i32, interval: &Interval) -> Result<Interrupted> {
        let stats = self.train_ws.take_stats(self.gpu)?;
        absorb(&mut self.pos, &stats);
        self.pos.epoch_loss_sum += stats.loss_sum() as f64;
        self.pos.train_seconds += interval.start.elapsed().as_secs_f64();
        let path = self.save(&[LAST], true)?;
        Ok(Interrupted {
            signal,
            during: None,
            resume_hint: resume_command(&path, &self.opts.run_dir, &self.opts.resume_flags),
            checkpoint: path,
            in_test_pass: false,
        })
    }

    /// What a pass shows (its bar, labelled, unless `--no-progress`) and listens to.
    fn pass_view<'v>(opts: &'v TrainOptions, label: &'v str) -> PassView<'v> {
        PassView {
            label: opts.progress.then_some(label),
            interrupt: opts.interrupt.as_ref(),
        }
    }

    /// The validation split's perplexity, or `None` where a signal stopped the pass (then
    /// the signal, and how far it got, in `stopped`).
    fn validate(&mut self, stopped: &mut Option<(i32, String)>) -> Result<Option<f64>> {
        let view = Self::pass_view(self.opts, "validation");
        let scored = Scored::Batches(&mut self.eval_ws, &self.valid_batches);
        match evaluate_sliced(self.gpu, scored, self.seed32, view)? {
            PassEnd::Perplexity(p) => Ok(Some(p)),
            PassEnd::Interrupted {
                signal,
                done,
                total,
            } => {
                *stopped = Some((
                    signal,
                    format!("the validation pass (batch {done} of {total})"),
                ));
                Ok(None)
            }
        }
    }

    /// `--max-steps` stopped the run mid-epoch: keep the exact position, and report the
    /// perplexities where it stopped.
    fn stop_mid_epoch(&mut self) -> Result<()> {
        let path = self.save(&[LAST], true)?;
        self.kept = Some(path.clone());
        self.summary.last_checkpoint = Some(path);
        let mut stopped = None;
        let valid = if self.opts.no_eval_at_stop {
            None
        } else {
            self.validate(&mut stopped)?
        };
        let pos = &self.pos;
        let ppl = epoch_perplexity(pos, pos.step_in_epoch, self.cfg.num_steps);
        log::info!(
            "stopped at global step {} (--max-steps): train perplexity so far {ppl:.3}, valid perplexity {}",
            pos.global_step,
            valid_text(valid, stopped.is_some())
        );
        self.metrics.write(json!({"kind": "stop", "epoch": pos.epoch + 1, "step": pos.step_in_epoch, "global_step": pos.global_step,
            "learning_rate": pos.learning_rate, "train_perplexity": ppl, "valid_perplexity": valid,
            "skipped_steps": pos.epoch_skipped, "skipped_steps_total": pos.skipped_steps}))?;
        Ok(())
    }

    /// `--max-steps` stopped the run at the end of an epoch: the finished epoch's figures
    /// (its checkpoint is written already). A run resumed at that very point has trained
    /// nothing: it scores the validation split and has no train perplexity to give.
    fn stop_at_epoch_end(&mut self) -> Result<()> {
        let finished = self.pos.epoch; // counted from 1: the epoch before `pos.epoch`
        let mut stopped = None;
        let (train_ppl, valid) = match self.summary.epochs.last() {
            Some(e) if e.epoch == finished => (Some(e.train_perplexity), Some(e.valid_perplexity)),
            _ if self.opts.no_eval_at_stop => (None, None),
            _ => (None, self.validate(&mut stopped)?),
        };
        let pos = &self.pos;
        let train_text = train_ppl.map_or("not measured in this run".into(), |p| format!("{p:.3}"));
        log::info!(
            "stopped at global step {} (--max-steps), the end of epoch {finished}: train perplexity {train_text}, valid perplexity {}",
            pos.global_step,
            valid_text(valid, stopped.is_some())
        );
        // The finished epoch's rate: this sitting's record, else the tutorial schedule's (the
        // plateau schedule's is not known from a position past that epoch).
        let lr = match (self.summary.epochs.last(), self.cfg.lr_schedule) {
            (Some(e), _) if e.epoch == finished => Some(e.learning_rate),
            (_, LrSchedule::Tutorial) => Some(self.cfg.lr_for_epoch(finished.saturating_sub(1))),
            (_, LrSchedule::Plateau) => None,
        };
        self.metrics.write(json!({"kind": "stop", "epoch": finished, "step": self.epoch_size(), "global_step": pos.global_step,
            "learning_rate": lr, "train_perplexity": train_ppl, "valid_perplexity": valid,
            "skipped_steps_total": pos.skipped_steps}))?;
        Ok(())
    }

    /// The epoch is done: its train and validation perplexity (printed as the tutorial
    /// prints them, and recorded), then the next epoch's position and a checkpoint.
    fn end_epoch(&mut self, t0: Instant, first_step: usize) -> Result<()> {
        let gpu = self.gpu;
        let (epoch, epoch_size, lr) = (self.pos.epoch, self.epoch_size(), self.pos.learning_rate);
        gpu.wait()?;
        let secs = t0.elapsed().as_secs_f64();
        let words_per_step = (self.cfg.batch_size * self.cfg.num_steps) as f64;
        let wps = (epoch_size - first_step) as f64 * words_per_step / secs.max(1e-9);
        let train_ppl = epoch_perplexity(&self.pos, epoch_size, self.cfg.num_steps);
        let mut stopped = None;
        let Some(valid) = self.validate(&mut stopped)? else {
            // Stopped in the epoch's validation: the position stays before it, with the
            // state the epoch ended with, as a signal after its last step would leave it;
            // the resumed run validates the epoch and goes on.
            let (signal, during) = stopped.expect("a stopped pass says why");
            let path = self.save(&[LAST], true)?;
            return Err(Interrupted {
                signal,
                during: Some(during),
                resume_hint: resume_command(&path, &self.opts.run_dir, &self.opts.resume_flags),
                checkpoint: path,
                in_test_pass: false,
            }
            .into());
        };
        let best = epoch_best(&self.pos, valid);
        let skipped_note = if self.pos.epoch_skipped > 0 {
            format!(" ({} steps skipped)", self.pos.epoch_skipped)
        } else {
            String::new()
        };
        // A sitting resumed at the epoch's very end (a signal in its validation) trained none
        // of it: its speed is not known here.
        let trained = first_step < epoch_size;
        let speed = if trained {
            format!("{wps:.0} words/s, {secs:.1} s")
        } else {
            "trained before this sitting".into()
        };
        say(format_args!("Epoch: {} Learning rate: {lr:.3} Train Perplexity: {train_ppl:.3} Valid Perplexity: {valid:.3} ({speed}){skipped_note}", epoch + 1));
        let (wps_field, secs_field) = if trained {
            (Some(wps), Some(secs))
        } else {
            (None, None)
        };
        self.metrics.write(json!({"kind": "epoch", "epoch": epoch + 1, "global_step": self.pos.global_step, "learning_rate": lr,
            "train_perplexity": train_ppl, "valid_perplexity": valid, "words_per_second": wps_field, "seconds": secs_field,
            "skipped_steps": self.pos.epoch_skipped, "best": best.is_some()}))?;
        self.summary.epochs.push(EpochSummary {
            epoch: epoch + 1,
            learning_rate: lr,
            train_perplexity: train_ppl,
            valid_perplexity: valid,
            words_per_second: wps,
            seconds: secs,
        });
        next_epoch(&self.cfg, &mut self.pos, best);
        if self.pos.learning_rate != lr && self.cfg.lr_schedule == LrSchedule::Plateau {
            log::info!(
                "valid perplexity {valid:.3} is not below the run's best: the learning rate goes from {lr} to {} (--lr-schedule plateau)",
                self.pos.learning_rate
            );
        }
        let epoch_name = format!("epoch-{}.safetensors", epoch + 1);
        let mut names = vec![epoch_name.as_str(), LAST];
        if best.is_some() {
            names.push(BEST);
        }
        let path = self.save(&names, false)?;
        self.kept = Some(self.opts.run_dir.join(LAST));
        self.summary.last_checkpoint = Some(path);
        if let Some(b) = best {
            let kept = self.opts.run_dir.join(BEST);
            log::info!(
                "valid perplexity {valid:.3}: the run's best so far, kept as {}",
                kept.display()
            );
            self.summary.best = Some((kept, b));
        }
        self.prune("epoch", epoch as u64 + 1);
        self.check_patience(epoch + 1)
    }

    /// `--patience N`: after epoch `done` (counted from 1), end the run where the best
    /// epoch is N or more epochs back (and epochs are left to train).
    fn check_patience(&mut self, done: usize) -> Result<()> {
        let Some(since) =
            crate::session::patience_ends(self.opts.patience, &self.pos, done, self.cfg.max_epoch)
        else {
            return Ok(());
        };
        let patience = self.opts.patience.unwrap_or(since);
        let best = self
            .pos
            .best
            .expect("patience ends only after a best epoch");
        log::info!(
            "stopping early after epoch {done}: no lower validation perplexity for {since} epochs (--patience {patience}); the best is epoch {}'s {:.3}",
            best.epoch,
            best.valid_perplexity
        );
        self.metrics.write(json!({"kind": "early_stop", "epoch": done, "global_step": self.pos.global_step,
            "patience": patience, "best_epoch": best.epoch, "best_valid_perplexity": best.valid_perplexity}))?;
        self.summary.stopped_early = Some(done);
        Ok(())
    }

    /// `--keep-checkpoints N`: remove the run folder's `{kind}-K.safetensors` beyond the
    /// newest N of those numbered up to `newest` (files numbered past it, left by a longer
    /// earlier sitting, are overwritten as the run gets there). A file that cannot be
    /// removed is a warning: the run goes on.
    fn prune(&self, kind: &str, newest: u64) {
        let Some(keep) = self.opts.keep_checkpoints else {
            return;
        };
        let found = match numbered_checkpoints(&self.opts.run_dir, kind) {
            Ok(found) => found,
            Err(e) => {
                log::warn!(
                    "--keep-checkpoints: cannot list {}: {e}",
                    self.opts.run_dir.display()
                );
                return;
            }
        };
        for path in beyond_newest(found, newest, keep) {
            match std::fs::remove_file(&path) {
                Ok(()) => log::debug!("removed {} (--keep-checkpoints {keep})", path.display()),
                Err(e) => log::warn!("--keep-checkpoints: cannot remove {}: {e}", path.display()),
            }
        }
    }

    /// Test perplexity of the trained model, at `--test-batch`'s shape.
    fn test(&mut self) -> Result<()> {
        let view = Self::pass_view(self.opts, "test");
        let (tb, ts) = self.test_shape;
        let (scored, shape) = match &mut self.test {
            TestPass::Validation(batches) => (
                Scored::Batches(&mut self.eval_ws, batches),
                format!("{} batches of {tb}x{ts}", batches.len()),
            ),
            TestPass::Own(ws, batches) => (
                Scored::Batches(ws, batches),
                format!("{} batches of {tb}x{ts}", batches.len()),
            ),
            TestPass::Stream(head_ws, tail_ws, stream) => {
                let shape = stream.to_string();
                (Scored::Stream(head_ws, tail_ws, stream), shape)
            }
        };
        let test = match evaluate_sliced(self.gpu, scored, self.seed32, view)? {
            PassEnd::Perplexity(p) => p,
            PassEnd::Interrupted {
                signal,
                done,
                total,
            } => {
                // Training is done and its checkpoint written: what is left is the score,
                // which `eval` gives of the checkpoint the same way.
                let path = self.opts.run_dir.join(LAST);
                let mut eval = vec![
                    "lstm-gpu".to_string(),
                    "eval".into(),
                    "--checkpoint".into(),
                    shell_word(&path.to_string_lossy()),
                    "--split".into(),
                    "test".into(),
                ];
                if (tb, ts) != (1, 1) {
                    eval.extend([
                        "--batch-size".into(),
                        tb.to_string(),
                        "--num-steps".into(),
                        ts.to_string(),
                    ]);
                }
                return Err(Interrupted {
                    signal,
                    during: Some(format!("the test pass (batch {done} of {total})")),
                    checkpoint: path,
                    resume_hint: eval.join(" "),
                    in_test_pass: true,
                }
                .into());
            }
        };
        say(format_args!("Test Perplexity: {test:.3}"));
        // A preset's whole schedule: against what the tutorial published for the model.
        if self.pos.epoch >= self.cfg.max_epoch {
            if let Some(line) =
                crate::session::published_comparison(&self.cfg, test, self.test_shape)
            {
                say(format_args!("{line}"));
            }
        }
        log::info!("test pass: {shape}");
        self.metrics.write(json!({"kind": "test", "global_step": self.pos.global_step, "test_perplexity": test, "batch_size": tb, "num_steps": ts,
            "skipped_steps": self.pos.skipped_steps}))?;
        self.summary.test_perplexity = Some(test);
        Ok(())
    }

    /// The summary, or the error of the run: a fault (the device, a write) says where
    /// training stood and what is kept.
    pub(super) fn finish(mut self, result: Result<()>) -> Result<TrainSummary> {
        if let Err(e) = result {
            if e.is::<Interrupted>() || e.is::<Diverged>() {
                return Err(e);
            }
            return Err(e.context(format!(
                "training stopped after step {}; {}",
                self.pos.global_step,
                self.kept_line()
            )));
        }
        self.summary.global_step = self.pos.global_step;
        self.summary.skipped_steps = self.pos.skipped_steps;
        if self.pos.skipped_steps > 0 {
            say(format_args!(
                "Skipped steps: {} (NaN or infinite loss or gradient norm; the parameters were not updated)",
                self.pos.skipped_steps
            ));
        }
        Ok(self.summary)
    }
}
