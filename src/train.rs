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
use crate::model::checkpoint::{load_weights, write_atomic, BestEpoch, Checkpoint, Position};

/// The newest checkpoint of a run folder.
pub const LAST: &str = "last.safetensors";
/// The checkpoint of the epoch with the lowest validation perplexity so far.
pub const BEST: &str = "best.safetensors";
use crate::model::schedule::{Kernels, Mode, ParamBuffers, Workspace};
use crate::model::{Params, State};
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
    /// Keep only the newest this many `epoch-N` and `step-N` checkpoints (each kind apart;
    /// `best` and `last` always stay). `None`: keep them all.
    pub keep_checkpoints: Option<usize>,
    /// Stop early once this many epochs in a row ended without a lower validation
    /// perplexity than the best so far (Keras' `EarlyStopping(patience=N)`); the test pass
    /// then runs on the weights the run ended with, as at any end.
    pub patience: Option<usize>,
    /// Continue from a checkpoint.
    pub resume: Option<PathBuf>,
    /// Start from these weights.
    pub init: Option<PathBuf>,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
    /// Batch size and steps of the test pass (default: batch 1 and one step, the TensorFlow
    /// tutorial's protocol: the split read as one stream, every word scored with its whole
    /// history).
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
    /// The run's other command-line flags (the corpus, the adapter, ...: what a checkpoint
    /// does not hold), repeated by the resume command it prints ([`resume_command`]).
    pub resume_flags: Vec<String>,
}

/// The command that continues a run from `checkpoint`: `lstm-gpu train --resume CHECKPOINT
/// --run-dir RUN_DIR` and `flags` (the run's own, so that it reads the same corpus on the
/// same adapter), each quoted for a POSIX shell where it needs it.
pub fn resume_command(checkpoint: &Path, run_dir: &Path, flags: &[String]) -> String {
    let mut words = vec![
        "lstm-gpu".to_string(),
        "train".into(),
        "--resume".into(),
        shell_word(&checkpoint.to_string_lossy()),
        "--run-dir".into(),
        shell_word(&run_dir.to_string_lossy()),
    ];
    words.extend(flags.iter().map(|f| shell_word(f)));
    words.join(" ")
}

/// `word` as a POSIX shell reads it back: unchanged where every character is plain, else in
/// single quotes.
pub fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.,/:=+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The flags of a `train` command line (`args`: what follows `train`) that its resume
/// command repeats: all but `--resume`, `--init` and `--run-dir` (the resume command gives
/// its own), and `drop` (e.g. `--max-steps` once a run stopped there), in either the
/// `--flag value` or the `--flag=value` form.
pub fn flags_to_repeat(args: &[String], drop: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let dropped = ["--resume", "--init", "--run-dir"]
            .iter()
            .chain(drop)
            .find(|f| a == *f || a.starts_with(&format!("{f}=")));
        match dropped {
            Some(f) if a == *f => {
                it.next();
            }
            Some(_) => {}
            None => out.push(a.clone()),
        }
    }
    out
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
    /// `best.safetensors` and its epoch, where an epoch of the run (this sitting or an
    /// earlier one) ended with a finite validation perplexity.
    pub best: Option<(PathBuf, BestEpoch)>,
    /// `--patience` ended the run after this epoch (counted from 1).
    pub stopped_early: Option<usize>,
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

/// One line of the run's results on standard output. Where its reader went away (a closed
/// pipe) the line is dropped and the run goes on to its checkpoints: `println!` would panic.
pub fn say(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// Append-only JSON lines, flushed per record so that a crash keeps what was measured, and
/// the same scalars in a TensorBoard event file beside them (made at the first record, so
/// that a folder only checked gets none).
pub struct Metrics {
    file: std::fs::File,
    path: PathBuf,
    events: Option<crate::analysis::tensorboard::EventWriter>,
}

impl Metrics {
    fn open(dir: &Path) -> Result<Metrics> {
        let path = dir.join("metrics.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("could not open {}", path.display()))?;
        Ok(Metrics {
            file,
            path,
            events: None,
        })
    }

    fn write(&mut self, v: serde_json::Value) -> Result<()> {
        writeln!(self.file, "{v}")
            .and_then(|_| self.file.flush())
            .map_err(crate::model::checkpoint::explain_write_error)
            .with_context(|| format!("could not append to {}", self.path.display()))?;
        let events = match &mut self.events {
            Some(events) => events,
            None => {
                let dir = self.path.parent().unwrap_or(Path::new("."));
                let events = crate::analysis::tensorboard::EventWriter::create(dir)?;
                log::info!("TensorBoard events: {}", events.path().display());
                self.events.insert(events)
            }
        };
        events.metrics_record(&v)
    }
}

use crate::session::{absorb, epoch_perplexity, kernel_seed, running_perplexity};
pub use crate::session::{evaluate, needs, split_batches, workspace_shapes};

/// Create the run folder and open its `metrics.jsonl` for appending. The folder is the
/// user's choice (`--run-dir`): one that cannot be made or written is a usage error, found
/// before any training (`train` checks it before opening the adapter, after the model was
/// found to fit, so that an impossible model leaves no folder).
pub fn prepare_run_dir(dir: &Path) -> Result<Metrics> {
    std::fs::create_dir_all(dir).map_err(|e| {
        usage(format!(
            "--run-dir {}: cannot create the folder ({e}); choose a folder you can write to",
            dir.display()
        ))
    })?;
    Metrics::open(dir).map_err(|e| {
        usage(format!(
            "--run-dir {}: {e:#}; choose a folder you can write to",
            dir.display()
        ))
    })
}

/// Train `cfg` on `corpus` as the options say.
pub fn train(gpu: &Gpu, cfg: Config, corpus: &Corpus, opts: &TrainOptions) -> Result<TrainSummary> {
    let mut run = Run::new(gpu, cfg, corpus, opts)?;
    let result = run.epochs();
    run.finish(result)
}

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

/// A training run in progress: what [`train`] made once, and where it stands.
struct Run<'a> {
    gpu: &'a Gpu,
    cfg: Config,
    corpus: &'a Corpus,
    opts: &'a TrainOptions,
    params: ParamBuffers,
    train_ws: Workspace,
    eval_ws: Workspace,
    /// The test pass's own workspace when `--test-batch` differs from the training shape.
    test_ws: Option<Workspace>,
    train_batches: Batches<'a>,
    valid_batches: Batches<'a>,
    test_batches: Batches<'a>,
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

/// The global gradient norms (before clipping) of the steps that counted since the last
/// progress point, gathered from each read of the GPU's accumulator (a checkpoint between
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
        self.steps += stats.batches() as f64;
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
    fn new(
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
        let test_ws = if test_shape == (batch, steps) {
            None
        } else {
            Some(eval_workspace(test_shape)?)
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
            test_ws,
            train_batches,
            valid_batches,
            test_batches,
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
    fn epochs(&mut self) -> Result<()> {
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
        let lr = self.cfg.lr_for_epoch(epoch);
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
            let at_log = pos.step_in_epoch % self.log_every == 0 || pos.step_in_epoch == epoch_size;
            let at_checkpoint = self
                .opts
                .checkpoint_every
                .is_some_and(|n| pos.global_step % n == 0);
            if at_log || at_checkpoint || pos.global_step >= self.stop_at {
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
            resume_hint: resume_command(&path, &self.opts.run_dir, &self.opts.resume_flags),
            checkpoint: path,
        })
    }

    /// `--max-steps` stopped the run mid-epoch: keep the exact position, and report the
    /// perplexities where it stopped.
    fn stop_mid_epoch(&mut self) -> Result<()> {
        let path = self.save(&[LAST], true)?;
        self.kept = Some(path.clone());
        self.summary.last_checkpoint = Some(path);
        let valid = if self.opts.no_eval_at_stop {
            None
        } else {
            Some(evaluate(
                self.gpu,
                &mut self.eval_ws,
                &self.valid_batches,
                self.seed32,
            )?)
        };
        let pos = &self.pos;
        let ppl = epoch_perplexity(pos, pos.step_in_epoch, self.cfg.num_steps);
        log::info!(
            "stopped at global step {} (--max-steps): train perplexity so far {ppl:.3}, valid perplexity {}",
            pos.global_step,
            valid_text(valid)
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
        let pos = &self.pos;
        let finished = pos.epoch; // counted from 1: the epoch before `pos.epoch`
        let (train_ppl, valid) = match self.summary.epochs.last() {
            Some(e) if e.epoch == finished => (Some(e.train_perplexity), Some(e.valid_perplexity)),
            _ if self.opts.no_eval_at_stop => (None, None),
            _ => (
                None,
                Some(evaluate(
                    self.gpu,
                    &mut self.eval_ws,
                    &self.valid_batches,
                    self.seed32,
                )?),
            ),
        };
        let pos = &self.pos;
        let train_text = train_ppl.map_or("not measured in this run".into(), |p| format!("{p:.3}"));
        log::info!(
            "stopped at global step {} (--max-steps), the end of epoch {finished}: train perplexity {train_text}, valid perplexity {}",
            pos.global_step,
            valid_text(valid)
        );
        self.metrics.write(json!({"kind": "stop", "epoch": finished, "step": self.epoch_size(), "global_step": pos.global_step,
            "learning_rate": self.cfg.lr_for_epoch(finished.saturating_sub(1)), "train_perplexity": train_ppl, "valid_perplexity": valid,
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
        let valid = evaluate(gpu, &mut self.eval_ws, &self.valid_batches, self.seed32)?;
        let best = BestEpoch::improves(self.pos.best, valid).then_some(BestEpoch {
            epoch: epoch + 1,
            valid_perplexity: valid,
        });
        let skipped_note = if self.pos.epoch_skipped > 0 {
            format!(" ({} steps skipped)", self.pos.epoch_skipped)
        } else {
            String::new()
        };
        say(format_args!("Epoch: {} Learning rate: {lr:.3} Train Perplexity: {train_ppl:.3} Valid Perplexity: {valid:.3} ({wps:.0} words/s, {secs:.1} s){skipped_note}", epoch + 1));
        self.metrics.write(json!({"kind": "epoch", "epoch": epoch + 1, "global_step": self.pos.global_step, "learning_rate": lr,
            "train_perplexity": train_ppl, "valid_perplexity": valid, "words_per_second": wps, "seconds": secs,
            "skipped_steps": self.pos.epoch_skipped, "best": best.is_some()}))?;
        self.summary.epochs.push(EpochSummary {
            epoch: epoch + 1,
            learning_rate: lr,
            train_perplexity: train_ppl,
            valid_perplexity: valid,
            words_per_second: wps,
            seconds: secs,
        });
        let pos = &mut self.pos;
        pos.epoch += 1;
        pos.step_in_epoch = 0;
        pos.epoch_loss_sum = 0.0;
        pos.epoch_skipped = 0;
        pos.learning_rate = self.cfg.lr_for_epoch(pos.epoch);
        if best.is_some() {
            pos.best = best;
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
        let (Some(patience), Some(best)) = (self.opts.patience, self.pos.best) else {
            return Ok(());
        };
        let since = done.saturating_sub(best.epoch);
        if since < patience || done >= self.cfg.max_epoch {
            return Ok(());
        }
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
        let ws = self.test_ws.as_mut().unwrap_or(&mut self.eval_ws);
        let test = evaluate(self.gpu, ws, &self.test_batches, self.seed32)?;
        let (tb, ts) = self.test_shape;
        say(format_args!("Test Perplexity: {test:.3}"));
        log::info!(
            "test pass: {} batches of {tb}x{ts}",
            self.test_batches.len()
        );
        self.metrics.write(json!({"kind": "test", "global_step": self.pos.global_step, "test_perplexity": test, "batch_size": tb, "num_steps": ts,
            "skipped_steps": self.pos.skipped_steps}))?;
        self.summary.test_perplexity = Some(test);
        Ok(())
    }

    /// The summary, or the error of the run: a fault (the device, a write) says where
    /// training stood and what is kept.
    fn finish(mut self, result: Result<()>) -> Result<TrainSummary> {
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

/// The `{kind}-K.safetensors` files of `dir` (`kind` `epoch` or `step`) and their K.
pub fn numbered_checkpoints(dir: &Path, kind: &str) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let number = name
            .to_str()
            .and_then(|n| n.strip_prefix(kind)?.strip_prefix('-'))
            .and_then(|n| n.strip_suffix(".safetensors"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(k) = number {
            found.push((k, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Of `found` (numbered files), those to remove so that the newest `keep` numbered up to
/// `newest` stay; files numbered past `newest` are not touched.
pub fn beyond_newest(found: Vec<(u64, PathBuf)>, newest: u64, keep: usize) -> Vec<PathBuf> {
    let mut upto: Vec<(u64, PathBuf)> = found.into_iter().filter(|(k, _)| *k <= newest).collect();
    upto.sort_by_key(|(k, _)| std::cmp::Reverse(*k));
    upto.into_iter().skip(keep).map(|(_, p)| p).collect()
}

/// The run's best epoch so far (`pos.best` of the starting point) has its checkpoint as
/// `best.safetensors` in `run_dir`: there already, or copied from the best or the epoch
/// checkpoint of that epoch, in `run_dir` or the folder of the checkpoint resumed from (a
/// run resumed into another folder, or from before a later history overwrote its best). A
/// file holds it when the position in its header names that best. Where none does (deleted,
/// pruned), the best is counted again from the epochs to come.
fn settle_best(
    run_dir: &Path,
    resume: Option<&Path>,
    best: Option<BestEpoch>,
) -> Result<Option<BestEpoch>> {
    let Some(b) = best else {
        return Ok(None);
    };
    let holds =
        |p: &Path| p.is_file() && Checkpoint::read_position(p).is_ok_and(|pos| pos.best == Some(b));
    let here = run_dir.join(BEST);
    if holds(&here) {
        return Ok(best);
    }
    let resumed_from = resume.and_then(|r| r.parent()).map(|d| {
        if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        }
    });
    let epoch_file = format!("epoch-{}.safetensors", b.epoch);
    let found = [Some(run_dir), resumed_from]
        .into_iter()
        .flatten()
        .flat_map(|d| [d.join(BEST), d.join(&epoch_file)])
        .find(|p| holds(p));
    if let Some(there) = found {
        let bytes =
            std::fs::read(&there).with_context(|| format!("could not read {}", there.display()))?;
        write_atomic(&here, &bytes)
            .with_context(|| format!("could not write checkpoint {}", here.display()))?;
        log::info!(
            "the run's best epoch so far ({}, valid perplexity {:.3}): {} copied to {}",
            b.epoch,
            b.valid_perplexity,
            there.display(),
            here.display()
        );
        return Ok(best);
    }
    log::info!(
        "the run's best epoch so far ({}, valid perplexity {:.3}) has no checkpoint in {} or where it resumed from: the best is counted again from the epochs to come",
        b.epoch,
        b.valid_perplexity,
        run_dir.display()
    );
    Ok(None)
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
pub fn check_same_model(ck: &Config, flags: &Config, path: &Path) -> Result<()> {
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
        ("--tokens", ck.tokens.to_string(), flags.tokens.to_string()),
        (
            "--tie-weights",
            ck.tie_weights.to_string(),
            flags.tie_weights.to_string(),
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

/// The progress bar's message: the epoch's perplexity so far and the speed.
fn bar_message(ppl: f64, wps: f64) -> String {
    format!("ppl {ppl:.1}, {wps:.0} words/s")
}

/// A readable span of seconds: "40 s", "12 min", "2.4 h".
pub fn span(secs: f64) -> String {
    if !secs.is_finite() {
        "?".to_string()
    } else if secs < 90.0 {
        format!("{secs:.0} s")
    } else if secs < 5400.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}

/// What the first steps' speed says of the run: an epoch's time and all `epochs`' (the
/// evaluation passes not counted); on a CPU adapter, also what finishes sooner.
pub fn epoch_estimate(
    adapter: &wgpu::AdapterInfo,
    words_per_second: f64,
    epoch_secs: f64,
    epochs: usize,
) -> String {
    let mut line = format!(
        "at {words_per_second:.0} words/s on {} an epoch takes about {}, {epochs} epochs about {}",
        adapter.name,
        span(epoch_secs),
        span(epoch_secs * epochs as f64)
    );
    if adapter.device_type == wgpu::DeviceType::Cpu {
        line += " (a CPU adapter: a GPU runs this tens of times faster; --max-steps N, or smaller --hidden and --embedding-size, end sooner)";
    }
    line
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

/// A validation perplexity for the stop line, or why there is none.
fn valid_text(valid: Option<f64>) -> String {
    valid.map_or("not measured (--no-eval-at-stop)".into(), |v| {
        format!("{v:.3}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resume_command_repeats_the_runs_flags_quoted() {
        let args: Vec<String> = [
            "--data",
            "my corpus",
            "--run-dir",
            "old",
            "--resume=x.safetensors",
            "--init",
            "w.safetensors",
            "--max-steps=40",
            "--adapter",
            "it's",
            "--hidden",
            "8,6",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let kept = flags_to_repeat(&args, &[]);
        assert_eq!(
            kept,
            [
                "--data",
                "my corpus",
                "--max-steps=40",
                "--adapter",
                "it's",
                "--hidden",
                "8,6"
            ]
        );
        assert_eq!(
            flags_to_repeat(&args, &["--max-steps"]),
            [
                "--data",
                "my corpus",
                "--adapter",
                "it's",
                "--hidden",
                "8,6"
            ]
        );
        // A flag that only begins like a dropped one stays.
        let args = vec!["--run-dirs".to_string(), "--max-steps-x".to_string()];
        assert_eq!(flags_to_repeat(&args, &["--max-steps"]), args);
        assert_eq!(
            resume_command(Path::new("r 1/last.safetensors"), Path::new("r 1"), &kept),
            "lstm-gpu train --resume 'r 1/last.safetensors' --run-dir 'r 1' --data 'my corpus' \
             --max-steps=40 --adapter 'it'\\''s' --hidden 8,6"
        );
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("a$b"), "'a$b'");
    }

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

    #[test]
    fn only_the_newest_numbered_checkpoints_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "epoch-1.safetensors",
            "epoch-2.safetensors",
            "epoch-10.safetensors",
            "epoch-11.safetensors",
            "epoch-x.safetensors",
            "epoch-3.safetensors.tmp",
            "step-5.safetensors",
            "best.safetensors",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let found = numbered_checkpoints(dir.path(), "epoch").unwrap();
        let numbers: Vec<u64> = found.iter().map(|(k, _)| *k).collect();
        assert_eq!(numbers, [1, 2, 10, 11], "sorted by number, not by name");
        let names = |paths: Vec<PathBuf>| -> Vec<String> {
            paths
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            names(beyond_newest(found.clone(), 11, 2)),
            ["epoch-2.safetensors", "epoch-1.safetensors"]
        );
        // Resumed at epoch 2 of an earlier, longer history: 10 and 11 are not touched.
        assert_eq!(
            names(beyond_newest(found.clone(), 2, 1)),
            ["epoch-1.safetensors"]
        );
        assert!(beyond_newest(found, 11, 4).is_empty());
        assert_eq!(numbered_checkpoints(dir.path(), "step").unwrap().len(), 1);
    }

    /// A checkpoint file whose position says `best`.
    fn checkpoint_with_best(path: &Path, best: Option<BestEpoch>) {
        let config = Config {
            vocab_size: 4,
            embedding_size: 2,
            hidden: vec![2],
            batch_size: 1,
            ..Config::default()
        };
        let ck = Checkpoint {
            params: Params::<f32>::init(&config, 1),
            vocab: ["<eos>", "a", "b", "<unk>"].map(String::from).to_vec(),
            config,
            state: None,
            position: Position {
                best,
                ..Default::default()
            },
        };
        write_atomic(path, &ck.to_bytes().unwrap()).unwrap();
    }

    #[test]
    fn the_best_checkpoint_follows_a_run_into_another_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("old"), dir.path().join("new"));
        std::fs::create_dir_all(&old).unwrap();
        std::fs::create_dir_all(&new).unwrap();
        let b = |epoch| {
            Some(BestEpoch {
                epoch,
                valid_perplexity: 120.0 + epoch as f64,
            })
        };
        let resume = old.join("step-30.safetensors");
        // No best yet: nothing to settle.
        assert_eq!(settle_best(&new, Some(&resume), None).unwrap(), None);
        // The folder holds it already.
        checkpoint_with_best(&new.join(BEST), b(1));
        assert_eq!(settle_best(&new, Some(&resume), b(1)).unwrap(), b(1));
        // Another history's best (epoch 3) is not this run's (epoch 2), nor is one in the
        // folder resumed from: the best starts over.
        checkpoint_with_best(&new.join(BEST), b(3));
        checkpoint_with_best(&old.join(BEST), b(3));
        assert_eq!(settle_best(&new, Some(&resume), b(2)).unwrap(), None);
        // The folder resumed from holds it: copied, byte for byte.
        checkpoint_with_best(&old.join(BEST), b(2));
        assert_eq!(settle_best(&new, Some(&resume), b(2)).unwrap(), b(2));
        assert_eq!(
            std::fs::read(new.join(BEST)).unwrap(),
            std::fs::read(old.join(BEST)).unwrap()
        );
        // Resumed from epoch 4 in its own folder, whose best.safetensors a later history
        // (epoch 6) overwrote: the epoch checkpoint of the best epoch (3) is the best.
        checkpoint_with_best(&new.join(BEST), b(6));
        checkpoint_with_best(&new.join("epoch-3.safetensors"), b(3));
        let resume_here = new.join("epoch-4.safetensors");
        assert_eq!(settle_best(&new, Some(&resume_here), b(3)).unwrap(), b(3));
        assert_eq!(
            std::fs::read(new.join(BEST)).unwrap(),
            std::fs::read(new.join("epoch-3.safetensors")).unwrap()
        );
        // An epoch file of another history (its best another epoch) is not taken.
        checkpoint_with_best(&new.join("epoch-5.safetensors"), b(4));
        assert_eq!(settle_best(&new, Some(&resume_here), b(5)).unwrap(), None);
    }
}
