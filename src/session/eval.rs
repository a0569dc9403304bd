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
        let (sum, positions) = self.loss(steps)?;
        Ok((sum / positions as f64).exp())
    }

    /// The loss summed over the pass (each batch's losses summed over its `steps` time
    /// steps and averaged over its rows) and the time steps it covers, once every batch ran.
    pub fn loss(&self, steps: usize) -> Result<(f64, usize)> {
        if !self.finished() || self.counted != self.total as u64 {
            bail!(
                "evaluation counted {} batches, expected {}",
                self.counted,
                self.total
            );
        }
        Ok((self.sum, self.total * steps))
    }
}

/// The tutorial's test pass, batch 1 and one word per batch (82,429 batches on PTB's test
/// split), run as one stream: batches of one row and `steps` time steps score the same
/// words with the same carried state (evaluation has no dropout), many times faster; the
/// last `(n - 1) % steps` words, which fill no such batch, then run one at a time with the
/// state handed over. The perplexity is the 1x1 pass's within f32 rounding
/// ([`Stream::shapes`] are the workspaces it runs on).
#[derive(Clone, Copy, Debug)]
pub struct Stream<'a> {
    /// Batches of 1 x `steps`; `None` where the text is shorter than one.
    pub head: Option<Batches<'a>>,
    /// The words after the head's, one per batch; `None` where the head scores them all.
    pub tail: Option<Batches<'a>>,
}

impl<'a> Stream<'a> {
    /// The stream over `ids` in batches of 1 x `steps`. Fewer than two ids are the usage
    /// error of a 1x1 pass over them.
    pub fn new(ids: &'a [u32], steps: usize) -> Result<Stream<'a>> {
        let words = Batches::new(ids, 1, 1)?.len();
        let full = words / steps.max(1);
        let head = if full > 0 {
            Some(Batches::new(ids, 1, steps)?)
        } else {
            None
        };
        let tail = if full * steps < words {
            Some(Batches::new(&ids[full * steps..], 1, 1)?)
        } else {
            None
        };
        Ok(Stream { head, tail })
    }

    /// The words scored: the 1x1 pass's batches.
    pub fn words(&self) -> usize {
        self.head.map_or(0, |h| h.len() * h.num_steps()) + self.tail.map_or(0, |t| t.len())
    }

    /// The evaluation workspaces a stream in batches of `steps` runs on: 1 x `steps` and
    /// 1 x 1.
    pub fn shapes(steps: usize) -> [(usize, usize, Mode); 2] {
        [(1, steps, Mode::Eval), (1, 1, Mode::Eval)]
    }
}

/// `82429 batches of 1x1, run as 4121 of 1x20 and 9 of 1x1`: the pass it stands for, and
/// how it runs.
impl std::fmt::Display for Stream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} batches of 1x1", self.words())?;
        match (self.head, self.tail) {
            (Some(h), Some(t)) => write!(
                f,
                ", run as {} of 1x{} and {} of 1x1",
                h.len(),
                h.num_steps(),
                t.len()
            ),
            (Some(h), None) => write!(f, ", run as {} of 1x{}", h.len(), h.num_steps()),
            (None, _) => Ok(()),
        }
    }
}

/// Whether a test pass at `test_shape` runs as a [`Stream`] in batches of the training's
/// time steps (the tutorial's 1x1 with a model trained on more than one step), and at how
/// many steps.
pub fn stream_steps(cfg: &Config, test_shape: (usize, usize)) -> Option<usize> {
    (test_shape == (1, 1) && cfg.num_steps > 1).then_some(cfg.num_steps)
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
/// validation and of the test pass at `test_shape` (the two of a [`Stream`] at 1x1).
pub fn workspace_shapes(
    cfg: &Config,
    (test_batch, test_steps): (usize, usize),
) -> Vec<(usize, usize, Mode)> {
    let (batch, steps) = (cfg.batch_size, cfg.num_steps);
    let mut shapes = vec![(batch, steps, Mode::Train), (batch, steps, Mode::Eval)];
    shapes.extend(pass_shapes(cfg, (test_batch, test_steps)));
    shapes
}

/// The workspaces of an evaluation pass at `shape`: the two of a [`Stream`] at 1x1, else
/// one at the shape.
pub fn pass_shapes(cfg: &Config, shape: (usize, usize)) -> Vec<(usize, usize, Mode)> {
    match stream_steps(cfg, shape) {
        Some(s) => Stream::shapes(s).to_vec(),
        None => vec![(shape.0, shape.1, Mode::Eval)],
    }
}

/// What a training run asks of the adapter: the buffers of [`workspace_shapes`].
pub fn needs(cfg: &Config, test_shape: (usize, usize)) -> Needs {
    Needs::of_model(cfg, &workspace_shapes(cfg, test_shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (input, target) pair of the stream, in order.
    fn pairs(stream: &Stream) -> Vec<(u32, u32)> {
        let mut all = Vec::new();
        for part in [stream.head, stream.tail].into_iter().flatten() {
            for (x, y) in &part {
                all.extend(x.into_iter().zip(y));
            }
        }
        all
    }

    #[test]
    fn a_stream_feeds_every_word_once_in_order() {
        let ids: Vec<u32> = (0..40).map(|i| 100 + i * 13 % 37).collect();
        // The 1x1 pass: word i predicts word i + 1, for every i but the last.
        let want: Vec<(u32, u32)> = ids.windows(2).map(|w| (w[0], w[1])).collect();
        for (n, steps, head, tail) in [
            (40, 6, Some(6), Some(3)), // 39 words: 6 batches of 6, then 3
            (37, 6, Some(6), None),    // 36 words: the head takes them all
            (6, 6, None, Some(5)),     // 5 words: shorter than one batch of 6
            (2, 6, None, Some(1)),
            (40, 1, Some(39), None),
        ] {
            let stream = Stream::new(&ids[..n], steps).unwrap();
            assert_eq!(stream.head.map(|h| h.len()), head, "{n} ids, {steps} steps");
            assert_eq!(stream.tail.map(|t| t.len()), tail, "{n} ids, {steps} steps");
            assert!(stream
                .head
                .is_none_or(|h| h.batch_size() == 1 && h.num_steps() == steps));
            assert!(stream
                .tail
                .is_none_or(|t| t.batch_size() == 1 && t.num_steps() == 1));
            assert_eq!(stream.words(), n - 1);
            assert_eq!(pairs(&stream), want[..n - 1], "{n} ids, {steps} steps");
        }
        assert_eq!(
            Stream::new(&ids, 6).unwrap().to_string(),
            "39 batches of 1x1, run as 6 of 1x6 and 3 of 1x1"
        );
        assert_eq!(
            Stream::new(&ids[..37], 6).unwrap().to_string(),
            "36 batches of 1x1, run as 6 of 1x6"
        );
        assert_eq!(
            Stream::new(&ids[..6], 6).unwrap().to_string(),
            "5 batches of 1x1"
        );
        // One id is no pass: the 1x1 pass's usage error.
        let err = Stream::new(&ids[..1], 6).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2, "{err}");
    }

    #[test]
    fn only_the_tutorials_one_word_batches_run_as_a_stream() {
        let cfg = Config::default();
        assert_eq!(stream_steps(&cfg, (1, 1)), Some(cfg.num_steps));
        assert_eq!(stream_steps(&cfg, (1, 35)), None);
        assert_eq!(stream_steps(&cfg, (20, 1)), None);
        let one = Config {
            num_steps: 1,
            ..Config::default()
        };
        assert_eq!(stream_steps(&one, (1, 1)), None);
        let shapes = workspace_shapes(&cfg, (1, 1));
        assert!(
            shapes.contains(&(1, cfg.num_steps, Mode::Eval))
                && shapes.contains(&(1, 1, Mode::Eval))
        );
        assert_eq!(
            workspace_shapes(&cfg, (4, 7)).last(),
            Some(&(4, 7, Mode::Eval))
        );
    }
}
