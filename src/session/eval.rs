//! The evaluation pass (validation, test) on the GPU, run whole or a slice at a time, and
//! what a run checks and asks of the adapter before it starts: its splits' batches, the
//! vocabulary, its workspaces' shapes.

use anyhow::{bail, Context, Result};

use crate::config::Config;
use crate::data::{Batches, Corpus};
use crate::gpu::sgd::Hyper;
use crate::gpu::Gpu;
use crate::model::fit::Needs;
use crate::model::schedule::{Mode, Workspace};

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
    pub const CHUNK: usize = 1024;

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

    /// Run up to `max_batches` more batches (at least one while any is left) and wait for
    /// them. The loss sum is taken every [`CHUNK`](Self::CHUNK) batches and after the last,
    /// whatever the slices, so that the perplexity does not depend on how a pass was cut
    /// (the page cuts by time, a terminal by time too, `evaluate` not at all).
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
            if self.next % Self::CHUNK == 0 || self.next == self.total {
                let (sum, count) = ws.take_loss_async(gpu).await?;
                self.sum += sum;
                self.counted += count;
            } else if self.next == end {
                gpu.wait_async().await?;
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
