//! The training loop, as the TensorFlow tutorial runs it: per epoch the learning rate,
//! training with progress every 10% of the epoch, then train and validation perplexity;
//! test perplexity at the end. Metrics go to `metrics.jsonl`, checkpoints beside it.
//!
//! The module's parts: `run` the loop itself (epochs, steps, log points, stops, the test
//! pass), `checkpoints` the run folder's checkpoint files (numbered ones kept and pruned,
//! `best`, the model a resume must match), `report` what a run tells (lines, metrics.jsonl
//! and TensorBoard, the progress bar, the estimates), `resume` the command that continues
//! a run, `faults` the test-only fault-injection hook.

mod checkpoints;
mod eval_pass;
mod faults;
mod report;
mod resume;
mod run;

use std::path::PathBuf;

use anyhow::Result;

use crate::config::Config;
use crate::data::Corpus;
use crate::gpu::Gpu;
use crate::model::checkpoint::BestEpoch;
use crate::signals::Interrupt;
use run::Run;

pub use crate::session::{
    evaluate, needs, pass_shapes, split_batches, stream_steps, workspace_shapes, Stream,
};
pub use checkpoints::{
    beyond_newest, check_same_model, check_same_weights, numbered_checkpoints, run_checkpoints,
    BEST, LAST,
};
pub use eval_pass::{evaluate_sliced, PassEnd, PassView, Scored};
pub use faults::{faults_from_env, parse_faults, Fault, FAULT_ENV};
pub use report::{epoch_estimate, prepare_run_dir, say, Metrics};
pub use resume::{flags_to_repeat, resume_command, shell_word};

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
    /// The corpus as the command line named it, recorded in every checkpoint.
    pub corpus: Option<crate::data::CorpusOrigin>,
    /// The weights the run started from (`--init`'s path made absolute, or what a resumed
    /// checkpoint recorded), recorded in every checkpoint.
    pub started_from: Option<String>,
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

/// Train `cfg` on `corpus` as the options say.
pub fn train(gpu: &Gpu, cfg: Config, corpus: &Corpus, opts: &TrainOptions) -> Result<TrainSummary> {
    let mut run = Run::new(gpu, cfg, corpus, opts)?;
    let result = run.epochs();
    run.finish(result)
}
