//! What a training run is on every target: the run's arithmetic (`epochs.rs`: learning
//! rates, the best epoch, patience, a log point's and an epoch's perplexity), the evaluation
//! pass (`eval.rs`), and [`Session`], the run a browser tab drives step by step (here); all
//! of it under `crate::session::`.
//!
//! The command line's loop (`crate::train`, native only) adds a run folder, signals, a
//! progress bar and fault hooks around the same pieces; the page in `web/` drives a
//! [`Session`]. Both run [`Workspace::step`], the one step schedule, and wait for the GPU only
//! through [`Gpu::read_async`].

mod epochs;
mod eval;

pub use epochs::*;
pub use eval::*;

use anyhow::{bail, Result};
use web_time::Instant;

use crate::config::Config;
use crate::data::{Batches, Corpus};
use crate::gpu::sgd::Hyper;
use crate::gpu::Gpu;
use crate::model::checkpoint::{Checkpoint, Position};
use crate::model::fit::Needs;
use crate::model::schedule::{Kernels, Mode, ParamBuffers, Workspace};
use crate::model::{Params, State};

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
            grad_norm: (stats.norm_steps > 0).then(|| stats.mean_norm() as f64),
            grad_norm_max: (stats.norm_steps > 0).then(|| stats.max_norm() as f64),
            clipped_fraction: (stats.norm_steps > 0)
                .then(|| stats.clipped as f64 / stats.norm_steps as f64),
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
            corpus: None,
            init: None,
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
