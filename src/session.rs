//! What a training run is on every target: the evaluation pass, the accounting of a log
//! point, and [`Session`], the run a browser tab drives step by step.
//!
//! The command line's loop (`crate::train`, native only) adds a run folder, signals, a
//! progress bar and fault hooks around the same pieces; the page in `web/` drives a
//! [`Session`]. Both run [`Workspace::step`], the one step schedule, and wait for the GPU only
//! through [`Gpu::read_async`].

use anyhow::{bail, Context, Result};
use web_time::Instant;

use crate::config::Config;
use crate::data::{Batches, Corpus};
use crate::gpu::reduce::TrainAccumulator;
use crate::gpu::sgd::Hyper;
use crate::gpu::Gpu;
use crate::model::checkpoint::{Checkpoint, Position};
use crate::model::fit::Needs;
use crate::model::schedule::{Kernels, Mode, ParamBuffers, Workspace};
use crate::model::{Params, State};

/// Where a fresh run starts: epoch 1, the first epoch's learning rate, `seed`.
pub fn start(cfg: &Config, seed: u64) -> Position {
    Position {
        learning_rate: cfg.lr_for_epoch(0),
        seed,
        ..Default::default()
    }
}

/// Perplexity of a pass over `batches` of a split, on the GPU, from a zero state.
pub async fn evaluate_async(
    gpu: &Gpu,
    ws: &mut Workspace,
    batches: &Batches<'_>,
    seed: u32,
) -> Result<f64> {
    ws.zero_state(gpu);
    ws.take_loss_async(gpu).await?;
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
    let (sum, count) = ws.take_loss_async(gpu).await?;
    if count != batches.len() as u64 {
        bail!(
            "evaluation counted {count} batches, expected {}",
            batches.len()
        );
    }
    Ok((sum / (batches.len() * ws.steps) as f64).exp())
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
    },
    /// An epoch ended: its training perplexity and the validation pass.
    Epoch {
        epoch: usize,
        train_perplexity: f64,
        valid_perplexity: f64,
        seconds: f64,
    },
    /// Every epoch is done: the test pass at the training's shape.
    Finished { test_perplexity: f64 },
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
    interval_start: Instant,
    interval_step: usize,
    /// The epoch in progress started (wall clock) here.
    epoch_start: Instant,
}

impl Session {
    /// What a session asks of the adapter: its training and evaluation workspaces.
    pub fn needs(cfg: &Config) -> Needs {
        Needs::of_model(
            cfg,
            &[
                (cfg.batch_size, cfg.num_steps, Mode::Train),
                (cfg.batch_size, cfg.num_steps, Mode::Eval),
            ],
        )
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
            interval_start: now,
            interval_step: pos.step_in_epoch,
            epoch_start: now,
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

    /// Whether every epoch is done.
    pub fn finished(&self) -> bool {
        self.pos.epoch >= self.cfg.max_epoch
    }

    /// Restart the speed measurement (after a pause).
    pub fn resume_clock(&mut self) {
        self.interval_start = Instant::now();
        self.interval_step = self.pos.step_in_epoch;
    }

    /// Run training steps up to the next log point (at most `max_steps`), then read the
    /// accumulator once; at the end of an epoch also validate, and after the last epoch run
    /// the test pass. Returns what happened, in order.
    pub async fn advance(&mut self, max_steps: usize) -> Result<Vec<Event>> {
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
            self.pos.learning_rate = self.cfg.lr_for_epoch(self.pos.epoch);
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
        let stats = self.train_ws.take_stats_async(&self.gpu).await?;
        let done = self.pos.step_in_epoch;
        let since = done - self.interval_step;
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
        let secs = self.interval_start.elapsed().as_secs_f64();
        self.pos.train_seconds += secs;
        events.push(Event::Train {
            epoch: self.pos.epoch + 1,
            step: done,
            epoch_size,
            global_step: self.pos.global_step,
            learning_rate: lr,
            perplexity: epoch_perplexity(&self.pos, done, steps),
            loss: sum / (since.max(1) * steps) as f64,
            words_per_second: (since * batch * steps) as f64 / secs.max(1e-9),
            skipped_steps: skipped,
        });
        self.resume_clock();
        if done == epoch_size {
            let train_perplexity = epoch_perplexity(&self.pos, done, steps);
            let valid_perplexity = self.validate().await?;
            events.push(Event::Epoch {
                epoch: self.pos.epoch + 1,
                train_perplexity,
                valid_perplexity,
                seconds: self.epoch_start.elapsed().as_secs_f64(),
            });
            self.pos.epoch += 1;
            self.pos.step_in_epoch = 0;
            self.pos.epoch_loss_sum = 0.0;
            self.pos.epoch_skipped = 0;
            if self.finished() {
                let test_perplexity = self.evaluate_split(&self.corpus.test.clone()).await?;
                events.push(Event::Finished { test_perplexity });
            } else {
                self.pos.learning_rate = self.cfg.lr_for_epoch(self.pos.epoch);
            }
            self.resume_clock();
        }
        Ok(events)
    }

    /// Validation perplexity of the parameters as they are (the training's carried state is
    /// left alone: evaluation has its own workspace).
    pub async fn validate(&mut self) -> Result<f64> {
        let valid = self.corpus.valid.clone();
        self.evaluate_split(&valid).await
    }

    async fn evaluate_split(&mut self, ids: &[u32]) -> Result<f64> {
        let batches = Batches::new(ids, self.cfg.batch_size, self.cfg.num_steps)?;
        let seed = kernel_seed(self.pos.seed);
        evaluate_async(&self.gpu, &mut self.eval_ws, &batches, seed).await
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
            position: self.pos.clone(),
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
