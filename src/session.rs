//! What a training run is on every target: the evaluation pass, the accounting of a log
//! point, and [`Session`], the run a browser tab drives step by step.
//!
//! The command line's loop (`crate::train`, native only) adds a run folder, signals, a
//! progress bar and fault hooks around the same pieces; the page in `web/` drives a
//! [`Session`]. Both run [`Workspace::step`], the one step schedule, and wait for the GPU only
//! through [`Gpu::read_async`].

use anyhow::{bail, Context, Result};
use web_time::Instant;

use crate::config::{Config, LrSchedule};
use crate::data::{Batches, Corpus};
use crate::gpu::reduce::TrainAccumulator;
use crate::gpu::sgd::Hyper;
use crate::gpu::Gpu;
use crate::model::checkpoint::{BestEpoch, Checkpoint, Position};
use crate::model::fit::Needs;
use crate::model::schedule::{Kernels, Mode, ParamBuffers, Workspace};
use crate::model::{Params, State};

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

/// An evaluation pass over a split, run a slice at a time (so that a page can show its
/// progress): from a zero state, every batch in order, the losses summed.
#[derive(Clone, Debug)]
pub struct EvalPass {
    /// The next batch to run.
    next: usize,
    /// Batches of the split.
    total: usize,
    /// Loss sum and batches counted so far, taken from the GPU's f32 accumulator in parts.
    sum: f64,
    counted: u64,
}

impl EvalPass {
    /// The GPU sums batch losses in f32; a test pass at batch 1 and one step has 82,000 of
    /// them, so the host takes the sum every `CHUNK` batches and adds the parts in f64.
    const CHUNK: usize = 1024;

    /// Start a pass over `batches` on `ws`: its carried state zeroed, its accumulator emptied.
    pub async fn start(gpu: &Gpu, ws: &mut Workspace, batches: &Batches<'_>) -> Result<EvalPass> {
        ws.zero_state(gpu);
        ws.take_loss_async(gpu).await?;
        Ok(EvalPass {
            next: 0,
            total: batches.len(),
            sum: 0.0,
            counted: 0,
        })
    }

    /// Run up to `max_batches` more batches (at least one while any is left), then take the
    /// loss sum.
    pub async fn run(
        &mut self,
        gpu: &Gpu,
        ws: &mut Workspace,
        batches: &Batches<'_>,
        seed: u32,
        max_batches: usize,
    ) -> Result<()> {
        let end = (self.next + max_batches.max(1)).min(self.total);
        while self.next < end {
            let (x, y) = batches.batch(self.next);
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
            self.next += 1;
            if self.next % Self::CHUNK == 0 || self.next == end {
                let (sum, count) = ws.take_loss_async(gpu).await?;
                self.sum += sum;
                self.counted += count;
            }
        }
        Ok(())
    }

    /// Batches run so far.
    pub fn done(&self) -> usize {
        self.next
    }

    /// Batches of the split.
    pub fn total(&self) -> usize {
        self.total
    }

    pub fn finished(&self) -> bool {
        self.next >= self.total
    }

    /// The pass's perplexity, once every batch ran (`steps` time steps each).
    pub fn perplexity(&self, steps: usize) -> Result<f64> {
        if !self.finished() || self.counted != self.total as u64 {
            bail!(
                "evaluation counted {} batches, expected {}",
                self.counted,
                self.total
            );
        }
        Ok((self.sum / (self.total * steps) as f64).exp())
    }
}

/// Perplexity of a pass over `batches` of a split, on the GPU, from a zero state.
pub async fn evaluate_async(
    gpu: &Gpu,
    ws: &mut Workspace,
    batches: &Batches<'_>,
    seed: u32,
) -> Result<f64> {
    let mut pass = EvalPass::start(gpu, ws, batches).await?;
    pass.run(gpu, ws, batches, seed, batches.len()).await?;
    pass.perplexity(ws.steps)
}

/// [`evaluate_async`], waited for.
#[cfg(not(target_arch = "wasm32"))]
pub fn evaluate(gpu: &Gpu, ws: &mut Workspace, batches: &Batches, seed: u32) -> Result<f64> {
    crate::gpu::block_on(evaluate_async(gpu, ws, batches, seed))
}

/// The batches of the training, validation and test splits: a split too small for its
/// shape is a usage error naming it. Needs no GPU, so commands check it first.
pub fn split_batches<'a>(
    corpus: &'a Corpus,
    cfg: &Config,
    (test_batch, test_steps): (usize, usize),
) -> Result<(Batches<'a>, Batches<'a>, Batches<'a>)> {
    let (batch, steps) = (cfg.batch_size, cfg.num_steps);
    Ok((
        Batches::new(&corpus.train, batch, steps).context("training split")?,
        Batches::new(&corpus.valid, batch, steps).context("validation split")?,
        Batches::new(&corpus.test, test_batch, test_steps).context("test split")?,
    ))
}

/// The model's vocabulary is the corpus's: the same size, or an error saying both.
pub fn same_vocabulary(cfg: &Config, corpus: &Corpus) -> Result<()> {
    if corpus.vocab.len() != cfg.vocab_size {
        bail!(
            "the corpus vocabulary has {} words, the model {}",
            corpus.vocab.len(),
            cfg.vocab_size
        );
    }
    Ok(())
}

/// The workspaces of a training run: its training step and the evaluation steps of
/// validation and of the test pass at `test_shape`.
pub fn workspace_shapes(
    cfg: &Config,
    (test_batch, test_steps): (usize, usize),
) -> Vec<(usize, usize, Mode)> {
    let (batch, steps) = (cfg.batch_size, cfg.num_steps);
    vec![
        (batch, steps, Mode::Train),
        (batch, steps, Mode::Eval),
        (test_batch, test_steps, Mode::Eval),
    ]
}

/// What a training run asks of the adapter: the buffers of [`workspace_shapes`].
pub fn needs(cfg: &Config, test_shape: (usize, usize)) -> Needs {
    Needs::of_model(cfg, &workspace_shapes(cfg, test_shape))
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

/// What [`Session::advance`] reports.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A log point: the epoch's perplexity so far and the speed since the last one.
    Train {
        epoch: usize,
        step: usize,
        epoch_size: usize,
        global_step: u64,
        learning_rate: f32,
        perplexity: f64,
        /// The mean loss of the steps since the last log point (with a log point every step:
        /// that step's loss).
        loss: f64,
        words_per_second: f64,
        skipped_steps: usize,
        /// `--precision mixed`: the loss scale S now (absent in f32).
        #[serde(skip_serializing_if = "Option::is_none")]
        loss_scale: Option<f32>,
        /// `--precision mixed`: the steps whose f16 gradients overflowed (S halved, the
        /// update skipped) in the run so far (absent in f32).
        #[serde(skip_serializing_if = "Option::is_none")]
        overflow_steps: Option<u32>,
        /// The mean global gradient norm (before clipping) of the steps since the last log
        /// point, and the share of them whose gradients were clipped (absent when no step
        /// counted).
        #[serde(skip_serializing_if = "Option::is_none")]
        grad_norm: Option<f64>,
        /// The largest of those steps' gradient norms (absent when no step counted).
        #[serde(skip_serializing_if = "Option::is_none")]
        grad_norm_max: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        clipped_fraction: Option<f64>,
    },
    /// An epoch ended: its training perplexity and the validation pass.
    Epoch {
        epoch: usize,
        /// The rate the epoch trained at.
        learning_rate: f32,
        train_perplexity: f64,
        valid_perplexity: f64,
        /// The epoch set the run's best validation perplexity so far.
        best: bool,
        seconds: f64,
    },
    /// The run stops before its last epoch: `patience` epochs in a row ended without a new
    /// best validation perplexity (the test pass follows, as after the last epoch).
    EarlyStop {
        /// The epochs done (counted from 1).
        epoch: usize,
        patience: usize,
        best_epoch: usize,
        best_valid_perplexity: f64,
    },
    /// Every epoch is done (or the run stopped early): the test pass at the training's shape.
    Finished {
        test_perplexity: f64,
        /// Where it stands against the published figures of the preset the model is
        /// ([`published_comparison`]; absent for other models).
        #[serde(skip_serializing_if = "Option::is_none")]
        published: Option<String>,
    },
    /// Between log points: where the run stands, for a display that moves while it trains.
    /// Training: the epoch's perplexity so far (the accumulator read, not taken, so that log
    /// points report what they would without it) and the speed since the last log point;
    /// validating or testing: the batches of the pass done so far.
    Progress {
        phase: Phase,
        epoch: usize,
        step: usize,
        epoch_size: usize,
        global_step: u64,
        learning_rate: f32,
        perplexity: f64,
        words_per_second: f64,
        /// Batches of the evaluation pass in progress done, and its total (0 when training).
        batches_done: usize,
        batches: usize,
    },
}

/// What a [`Session`] is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Training,
    /// The validation pass at an epoch's end.
    Validating,
    /// The test pass after the last epoch.
    Testing,
}

/// The evaluation pass a session is in the middle of.
#[derive(Clone, Debug)]
struct Pending {
    phase: Phase,
    pass: EvalPass,
    /// The training perplexity of the epoch being validated.
    train_perplexity: f64,
}

/// One kernel's share of a step in [`Session::time_kernels`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelTime {
    pub label: String,
    pub ms: f64,
    pub runs: usize,
    pub flops: f64,
}

/// What [`Session::time_kernels`] measured: per kernel, and one submit and readback alone.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelTimes {
    pub baseline_ms: f64,
    pub rows: Vec<KernelTime>,
}

/// A training run driven step by step: what the browser page holds. It owns its corpus, the
/// parameters on the device, a training and an evaluation workspace (sharing the logits) and
/// the position, exactly as a checkpoint records it.
pub struct Session {
    pub gpu: Gpu,
    pub cfg: Config,
    pub corpus: Corpus,
    kernels: Kernels,
    params: ParamBuffers,
    train_ws: Workspace,
    eval_ws: Workspace,
    pub pos: Position,
    /// Log every this many steps.
    pub log_every: usize,
    /// End the run early after this many epochs in a row without a new best validation
    /// perplexity ([`patience_ends`], `train --patience`); `None`: never.
    pub patience: Option<usize>,
    /// The run ended early after this many epochs.
    stopped_early: Option<usize>,
    interval_start: Instant,
    interval_step: usize,
    /// The epoch in progress started (wall clock) here.
    epoch_start: Instant,
    /// The validation or test pass in progress, run a slice per [`Session::advance`].
    pending: Option<Pending>,
    /// A validation pass asked for by [`Session::validate_part`], in progress, and the
    /// global step of the weights it scores.
    validation: Option<(u64, EvalPass)>,
}

impl Session {
    /// What a session asks of the adapter: its training and evaluation workspaces.
    pub fn needs(cfg: &Config) -> Needs {
        Needs::of_model(cfg, &Session::shapes(cfg))
    }

    /// The shapes of its workspaces (what a tuning for it measures): the training step and
    /// the evaluation step at the same batch and time steps.
    pub fn shapes(cfg: &Config) -> [(usize, usize, Mode); 2] {
        [
            (cfg.batch_size, cfg.num_steps, Mode::Train),
            (cfg.batch_size, cfg.num_steps, Mode::Eval),
        ]
    }

    /// Upload `params`, prepare both workspaces, and start at `pos` (a fresh run:
    /// [`start`]; a checkpoint: its own, with the state it carried mid-epoch). Every split
    /// must fill one batch.
    pub fn new(
        gpu: Gpu,
        cfg: Config,
        corpus: Corpus,
        params: &Params<f32>,
        pos: Position,
        carried: Option<&State<f32>>,
    ) -> Result<Session> {
        cfg.validate()?;
        same_vocabulary(&cfg, &corpus)?;
        let (batch, steps) = (cfg.batch_size, cfg.num_steps);
        split_batches(&corpus, &cfg, (batch, steps))?;
        crate::model::fit::check(&Session::needs(&cfg), &gpu.limits, &gpu.info.name)?;
        let kernels = Kernels::new(&gpu)?;
        let pbuf = ParamBuffers::upload(&gpu, &cfg, params)?;
        let train_ws = Workspace::new(&gpu, &kernels, &cfg, &pbuf, batch, steps, Mode::Train)?;
        if let Some(ls) = pos.loss_scale {
            train_ws.write_loss_scale(&gpu, ls)?;
        }
        let eval_ws = Workspace::new_with_logits(
            &gpu,
            &kernels,
            &cfg,
            &pbuf,
            (batch, steps),
            Mode::Eval,
            &train_ws.logits,
        )?;
        if pos.step_in_epoch > 0 {
            if let Some(state) = carried {
                train_ws.write_state(&gpu, state)?;
            }
        }
        let epoch_size = Batches::new(&corpus.train, batch, steps)?.len();
        let now = Instant::now();
        Ok(Session {
            log_every: (epoch_size / 10).max(1),
            patience: None,
            stopped_early: None,
            interval_start: now,
            interval_step: pos.step_in_epoch,
            epoch_start: now,
            pending: None,
            validation: None,
            gpu,
            cfg,
            corpus,
            kernels,
            params: pbuf,
            train_ws,
            eval_ws,
            pos,
        })
    }

    /// Training batches per epoch.
    pub fn epoch_size(&self) -> usize {
        crate::data::epoch_size(
            self.corpus.train.len(),
            self.cfg.batch_size,
            self.cfg.num_steps,
        )
    }

    /// Dispatches of one training step.
    pub fn dispatches(&self) -> usize {
        self.train_ws.dispatches()
    }

    /// Which kernels a training step runs, as the native program logs them: the recurrence
    /// and why, then each matmul product's variant and why.
    pub fn kernel_choices(&self) -> Vec<String> {
        let shape = (self.cfg.batch_size, self.cfg.num_steps);
        let (recurrence, source) =
            crate::model::schedule::recurrence_for(&self.gpu, &self.kernels, &self.cfg, shape);
        let mut out = vec![format!("recurrence {recurrence} ({})", source.name())];
        out.extend(crate::gpu::tune::report(&self.kernels.matmul));
        out
    }

    /// Time each operation of one training step alone, by the wall clock: the step's ops in
    /// order, each submitted by itself and waited for with a one-word readback, on the next
    /// batch at learning rate 0 (the weights and the position stay as they are, the timed
    /// step's loss is dropped; the carried state moves on one batch). For adapters without timestamp queries, such as a browser's: the figures
    /// include one submit and readback each, which `baseline_ms` measures alone. Per
    /// kernel label (and product size): total milliseconds, runs and floating-point
    /// operations.
    pub async fn time_kernels(&mut self) -> Result<KernelTimes> {
        let (batch, steps) = (self.cfg.batch_size, self.cfg.num_steps);
        let batches = Batches::new(&self.corpus.train, batch, steps)?;
        let (x, y) = batches.batch(self.pos.step_in_epoch.min(self.epoch_size() - 1));
        let hyper = Hyper {
            learning_rate: 0.0,
            step: self.pos.global_step as u32,
            seed: kernel_seed(self.pos.seed),
        };
        self.train_ws.upload(&self.gpu, &x, &y, hyper)?;
        let probe = self.gpu.storage("timing probe", 1);
        self.gpu.read_async::<u32>(&probe, 0, 1).await?;
        let t = Instant::now();
        for _ in 0..5 {
            self.gpu.read_async::<u32>(&probe, 0, 1).await?;
        }
        let baseline_ms = t.elapsed().as_secs_f64() * 1e3 / 5.0;
        let mut rows: Vec<KernelTime> = Vec::new();
        for op in &self.train_ws.ops {
            let (label, flops) = match op {
                // Products of one kernel differ by their size.
                crate::model::schedule::Op::Dispatch(d) if d.label.starts_with("matmul") => {
                    (format!("{} {:.1} MFLOP", d.label, d.flops / 1e6), d.flops)
                }
                crate::model::schedule::Op::Dispatch(d) => (d.label.clone(), d.flops),
                crate::model::schedule::Op::Copy { .. } => ("copy".to_string(), 0.0),
            };
            let mut enc = self.gpu.device.create_command_encoder(&Default::default());
            crate::model::schedule::record(&mut enc, std::slice::from_ref(op));
            let t = Instant::now();
            self.gpu.submit(enc);
            self.gpu.read_async::<u32>(&probe, 0, 1).await?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            match rows.iter_mut().find(|r| r.label == label) {
                Some(r) => {
                    r.ms += ms;
                    r.runs += 1;
                    r.flops += flops;
                }
                None => rows.push(KernelTime {
                    label,
                    ms,
                    runs: 1,
                    flops,
                }),
            }
        }
        // The timed step's loss is not the run's: the next log point counts its own steps
        // only (`advance` leaves the accumulator empty).
        self.train_ws.take_stats_async(&self.gpu).await?;
        rows.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        Ok(KernelTimes { baseline_ms, rows })
    }

    /// Whether every epoch is done, and the test pass after them.
    pub fn finished(&self) -> bool {
        (self.pos.epoch >= self.cfg.max_epoch || self.stopped_early.is_some())
            && self.pending.is_none()
    }

    /// Training, or the validation or test pass that [`Session::advance`] is running.
    pub fn phase(&self) -> Phase {
        self.pending.as_ref().map_or(Phase::Training, |p| p.phase)
    }

    /// Restart the speed measurement (after a pause).
    pub fn resume_clock(&mut self) {
        self.interval_start = Instant::now();
        self.interval_step = self.pos.step_in_epoch;
    }

    /// Evaluation batches a call of [`Session::advance`] runs for each training step it
    /// may run (a forward pass costs about a third of a training step).
    const EVAL_BATCHES_PER_STEP: usize = 3;

    /// Run up to `max_steps` training steps, stopping at the next log point, and read the
    /// accumulator once: a `train` event at a log point, else a `progress` event. At an
    /// epoch's end the validation pass follows, and after the last epoch the test pass,
    /// each run a slice per call (`progress` events) so that the caller can show them
    /// moving, ending with an `epoch` or a `finished` event. Returns what happened, in order.
    pub async fn advance(&mut self, max_steps: usize) -> Result<Vec<Event>> {
        if self.pending.is_some() {
            return self.advance_evaluation(max_steps).await;
        }
        let mut events = Vec::new();
        if self.finished() {
            return Ok(events);
        }
        let (batch, steps) = (self.cfg.batch_size, self.cfg.num_steps);
        let epoch_size = self.epoch_size();
        if self.pos.step_in_epoch == 0 {
            self.train_ws.zero_state(&self.gpu);
            self.train_ws.take_stats_async(&self.gpu).await?;
            self.pos.epoch_loss_sum = 0.0;
            self.pos.epoch_skipped = 0;
            self.pos.learning_rate = epoch_lr(&self.cfg, &self.pos);
            self.epoch_start = Instant::now();
            self.resume_clock();
        }
        let lr = self.pos.learning_rate;
        let seed = kernel_seed(self.pos.seed);
        let batches = Batches::new(&self.corpus.train, batch, steps)?;
        let mut ran = 0;
        while ran < max_steps.max(1) && self.pos.step_in_epoch < epoch_size {
            let (x, y) = batches.batch(self.pos.step_in_epoch);
            let hyper = Hyper {
                learning_rate: lr,
                step: self.pos.global_step as u32,
                seed,
            };
            self.train_ws.step(&self.gpu, &x, &y, hyper)?;
            self.pos.step_in_epoch += 1;
            self.pos.global_step += 1;
            ran += 1;
            if self.pos.step_in_epoch % self.log_every == 0 {
                break;
            }
        }
        let done = self.pos.step_in_epoch;
        let since = done - self.interval_step;
        // The clock is read after the readback, which waits for the steps to finish.
        let speed = |start: Instant| {
            let secs = start.elapsed().as_secs_f64();
            (secs, (since * batch * steps) as f64 / secs.max(1e-9))
        };
        if done % self.log_every != 0 && done < epoch_size {
            let pending = self.train_ws.peek_stats_async(&self.gpu).await?;
            let (_, words_per_second) = speed(self.interval_start);
            if pending.skipped > 0 || !pending.loss_sum().is_finite() {
                bail!(
                    "the training loss became NaN or infinite by step {} (epoch {}): lower the learning rate",
                    self.pos.global_step,
                    self.pos.epoch + 1
                );
            }
            events.push(self.progress(
                Phase::Training,
                running_perplexity(&self.pos, &pending, done, steps),
                words_per_second,
            ));
            return Ok(events);
        }
        let stats = self.train_ws.take_stats_async(&self.gpu).await?;
        let (secs, words_per_second) = speed(self.interval_start);
        let skipped = absorb(&mut self.pos, &stats);
        let sum = stats.loss_sum() as f64;
        if !sum.is_finite() || skipped > 0 {
            bail!(
                "the training loss became NaN or infinite by step {} (epoch {}): lower the learning rate",
                self.pos.global_step,
                self.pos.epoch + 1
            );
        }
        self.pos.epoch_loss_sum += sum;
        self.pos.train_seconds += secs;
        let loss_scale = self.train_ws.read_loss_scale_async(&self.gpu).await?;
        events.push(Event::Train {
            epoch: self.pos.epoch + 1,
            step: done,
            epoch_size,
            global_step: self.pos.global_step,
            learning_rate: lr,
            perplexity: epoch_perplexity(&self.pos, done, steps),
            loss: sum / (since.max(1) * steps) as f64,
            words_per_second,
            skipped_steps: skipped,
            loss_scale: loss_scale.map(|ls| ls.scale),
            overflow_steps: loss_scale.map(|ls| ls.overflows),
            grad_norm: (stats.batches() > 0.0).then(|| stats.mean_norm() as f64),
            grad_norm_max: (stats.batches() > 0.0).then(|| stats.max_norm() as f64),
            clipped_fraction: (stats.batches() > 0.0)
                .then(|| stats.clipped as f64 / stats.batches() as f64),
        });
        self.resume_clock();
        if done == epoch_size {
            let train_perplexity = epoch_perplexity(&self.pos, done, steps);
            let valid = Batches::new(&self.corpus.valid, batch, steps)?;
            // The evaluation workspace is the epoch's now: a pass asked for by
            // `validate_part` and left unfinished starts over when asked again.
            self.validation = None;
            let pass = EvalPass::start(&self.gpu, &mut self.eval_ws, &valid).await?;
            self.pending = Some(Pending {
                phase: Phase::Validating,
                pass,
                train_perplexity,
            });
            events.push(self.progress(Phase::Validating, f64::NAN, 0.0));
        }
        Ok(events)
    }

    /// A `progress` event of `phase` where the run stands.
    fn progress(&self, phase: Phase, perplexity: f64, words_per_second: f64) -> Event {
        let (batches_done, batches) = self
            .pending
            .as_ref()
            .map_or((0, 0), |p| (p.pass.done(), p.pass.total()));
        Event::Progress {
            phase,
            epoch: (self.pos.epoch + 1).min(self.cfg.max_epoch),
            step: self.pos.step_in_epoch,
            epoch_size: self.epoch_size(),
            global_step: self.pos.global_step,
            learning_rate: self.pos.learning_rate,
            perplexity,
            words_per_second,
            batches_done,
            batches,
        }
    }

    /// The next slice of the validation or test pass in progress; at its end the `epoch`
    /// (and the next epoch's start, or the test pass) or the `finished` event.
    async fn advance_evaluation(&mut self, max_steps: usize) -> Result<Vec<Event>> {
        let Some(mut p) = self.pending.take() else {
            return Ok(Vec::new());
        };
        let (batch, steps) = (self.cfg.batch_size, self.cfg.num_steps);
        let seed = kernel_seed(self.pos.seed);
        let ids = match p.phase {
            Phase::Testing => &self.corpus.test,
            _ => &self.corpus.valid,
        };
        let batches = Batches::new(ids, batch, steps)?;
        let max_batches = max_steps.max(1) * Self::EVAL_BATCHES_PER_STEP;
        p.pass
            .run(&self.gpu, &mut self.eval_ws, &batches, seed, max_batches)
            .await?;
        if !p.pass.finished() {
            let phase = p.phase;
            self.pending = Some(p);
            return Ok(vec![self.progress(phase, f64::NAN, 0.0)]);
        }
        let perplexity = p.pass.perplexity(steps)?;
        let mut events = Vec::new();
        match p.phase {
            Phase::Testing | Phase::Training => {
                let whole = self.pos.epoch >= self.cfg.max_epoch;
                events.push(Event::Finished {
                    test_perplexity: perplexity,
                    published: whole
                        .then(|| {
                            published_comparison(
                                &self.cfg,
                                perplexity,
                                (self.cfg.batch_size, self.cfg.num_steps),
                            )
                        })
                        .flatten(),
                });
            }
            Phase::Validating => {
                let best = epoch_best(&self.pos, perplexity);
                events.push(Event::Epoch {
                    epoch: self.pos.epoch + 1,
                    learning_rate: self.pos.learning_rate,
                    train_perplexity: p.train_perplexity,
                    valid_perplexity: perplexity,
                    best: best.is_some(),
                    seconds: self.epoch_start.elapsed().as_secs_f64(),
                });
                next_epoch(&self.cfg, &mut self.pos, best);
                let done = self.pos.epoch;
                if let Some(since) =
                    patience_ends(self.patience, &self.pos, done, self.cfg.max_epoch)
                {
                    let best = self
                        .pos
                        .best
                        .expect("patience ends only after a best epoch");
                    events.push(Event::EarlyStop {
                        epoch: done,
                        patience: self.patience.unwrap_or(since),
                        best_epoch: best.epoch,
                        best_valid_perplexity: best.valid_perplexity,
                    });
                    self.stopped_early = Some(done);
                }
                if self.pos.epoch >= self.cfg.max_epoch || self.stopped_early.is_some() {
                    let test = Batches::new(&self.corpus.test, batch, steps)?;
                    let pass = EvalPass::start(&self.gpu, &mut self.eval_ws, &test).await?;
                    self.pending = Some(Pending {
                        phase: Phase::Testing,
                        pass,
                        train_perplexity: f64::NAN,
                    });
                    events.push(self.progress(Phase::Testing, f64::NAN, 0.0));
                }
            }
        }
        self.resume_clock();
        Ok(events)
    }

    /// Run the validation pass in slices of `max_batches`: the first call starts it (when
    /// no pass is in progress), and each returns the batches done, the total, and the
    /// perplexity once the last batch ran. The training's own passes are not disturbed:
    /// this one is refused while [`Session::advance`] is in the middle of one.
    pub async fn validate_part(
        &mut self,
        max_batches: usize,
    ) -> Result<(usize, usize, Option<f64>)> {
        if self.pending.is_some() {
            bail!("busy: the run is in the middle of its own evaluation pass; press Train to finish it");
        }
        let (batch, steps) = (self.cfg.batch_size, self.cfg.num_steps);
        let batches = Batches::new(&self.corpus.valid, batch, steps)?;
        let seed = kernel_seed(self.pos.seed);
        // A pass left unfinished while the weights moved on starts over.
        let step = self.pos.global_step;
        let mut pass = match self.validation.take() {
            Some((at, p)) if at == step => p,
            _ => EvalPass::start(&self.gpu, &mut self.eval_ws, &batches).await?,
        };
        pass.run(&self.gpu, &mut self.eval_ws, &batches, seed, max_batches)
            .await?;
        let (done, total) = (pass.done(), pass.total());
        if pass.finished() {
            return Ok((done, total, Some(pass.perplexity(steps)?)));
        }
        self.validation = Some((step, pass));
        Ok((done, total, None))
    }

    /// Validation perplexity of the parameters as they are (the training's carried state is
    /// left alone: evaluation has its own workspace).
    pub async fn validate(&mut self) -> Result<f64> {
        self.validation = None;
        loop {
            if let (_, _, Some(ppl)) = self.validate_part(usize::MAX).await? {
                return Ok(ppl);
            }
        }
    }

    /// The parameters, read back.
    pub async fn params(&self) -> Result<Params<f32>> {
        self.params.read_async(&self.gpu, &self.cfg).await
    }

    /// A checkpoint of where the run stands (with the carried state when mid-epoch), as the
    /// bytes of a safetensors file that `lstm-gpu eval --checkpoint` and `train --resume` read.
    pub async fn checkpoint(&self) -> Result<Vec<u8>> {
        let state = if self.pos.step_in_epoch > 0 {
            Some(self.train_ws.read_state_async(&self.gpu).await?)
        } else {
            None
        };
        Checkpoint {
            config: self.cfg.clone(),
            vocab: self.corpus.vocab.words().to_vec(),
            params: self.params().await?,
            state,
            position: crate::model::checkpoint::Position {
                loss_scale: self.train_ws.read_loss_scale_async(&self.gpu).await?,
                ..self.pos.clone()
            },
        }
        .to_bytes()
    }

    /// The kernels the session's workspaces were built with.
    pub fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    /// A next-word predictor on the session's own parameter buffers: it predicts with the
    /// weights as training leaves them, with nothing uploaded or compiled again.
    pub fn predictor(&self, k: usize) -> Result<crate::model::predict::Predictor> {
        crate::model::predict::Predictor::on(&self.gpu, &self.kernels, &self.cfg, &self.params, k)
    }
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
