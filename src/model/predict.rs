//! Next-word prediction and generation on the GPU: the evaluation schedule at batch 1 and
//! one time step, fed word by word with the state carried, then top-k over the logits row
//! on the GPU (`softmax_xent.wgsl`'s `topk`) or the whole distribution read back.

use anyhow::{bail, Result};

use crate::config::Config;
use crate::gpu::sgd::Hyper;
use crate::gpu::softmax_xent::MAX_TOPK;
use crate::gpu::{Dispatch, Gpu, View};
use crate::model::schedule::{Kernels, Mode, ParamBuffers, Workspace};
use crate::model::Params;

/// A model that reads one word at a time.
pub struct Predictor {
    ws: Workspace,
    topk: Dispatch,
    indices: wgpu::Buffer,
    values: wgpu::Buffer,
    k: usize,
    vocab: usize,
    fed: usize,
}

impl Predictor {
    /// What a predictor asks of the adapter: the model at batch 1, one step.
    pub fn needs(cfg: &Config) -> crate::model::fit::Needs {
        crate::model::fit::Needs::of_model(cfg, &[(1, 1, Mode::Eval)])
    }

    /// Upload `params` and prepare a batch-1, one-step forward and a top-`k` selection.
    pub fn new(gpu: &Gpu, cfg: &Config, params: &Params<f32>, k: usize) -> Result<Predictor> {
        Predictor::check_k(cfg, k)?;
        let kernels = Kernels::new(gpu)?;
        let pbuf = ParamBuffers::upload(gpu, cfg, params)?;
        Predictor::on(gpu, &kernels, cfg, &pbuf, k)
    }

    /// A predictor that reads parameters already on the device (a training session's: it
    /// always predicts with the weights as they are now), with kernels already compiled.
    pub fn on(
        gpu: &Gpu,
        kernels: &Kernels,
        cfg: &Config,
        pbuf: &ParamBuffers,
        k: usize,
    ) -> Result<Predictor> {
        Predictor::check_k(cfg, k)?;
        let ws = Workspace::new(gpu, kernels, cfg, pbuf, 1, 1, Mode::Eval)?;
        let indices = gpu.storage("top-k indices", k);
        let values = gpu.storage("top-k values", k);
        let topk = kernels.softmax_xent.prepare_topk(
            gpu,
            cfg.vocab_size,
            k,
            View::at(&ws.logits, 0, cfg.vocab_size),
            View::all(&indices),
            View::all(&values),
        )?;
        ws.zero_state(gpu);
        Ok(Predictor {
            ws,
            topk,
            indices,
            values,
            k,
            vocab: cfg.vocab_size,
            fed: 0,
        })
    }

    fn check_k(cfg: &Config, k: usize) -> Result<()> {
        if k == 0 || k > MAX_TOPK.min(cfg.vocab_size) {
            bail!(
                "top-k must be between 1 and {}",
                MAX_TOPK.min(cfg.vocab_size)
            );
        }
        Ok(())
    }

    /// Run one word through the model; the state carries over to the next call.
    pub fn feed(&mut self, gpu: &Gpu, id: u32) -> Result<()> {
        // The target only feeds the (unused) loss; any valid id will do.
        self.ws.step(gpu, &[id], &[0], Hyper::default())?;
        self.fed += 1;
        Ok(())
    }

    /// Words fed since the start (or the last reset).
    pub fn words_fed(&self) -> usize {
        self.fed
    }

    /// Forget the context.
    pub fn reset(&mut self, gpu: &Gpu) {
        self.ws.zero_state(gpu);
        self.fed = 0;
    }

    /// The `k` most probable next words with their probabilities, most probable first.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn top(&self, gpu: &Gpu) -> Result<Vec<(u32, f32)>> {
        crate::gpu::block_on(self.top_async(gpu))
    }

    /// [`Predictor::top`] awaited.
    pub async fn top_async(&self, gpu: &Gpu) -> Result<Vec<(u32, f32)>> {
        if self.fed == 0 {
            bail!("no context: feed at least one word first");
        }
        gpu.run(&[&self.topk])?;
        let idx: Vec<u32> = gpu.read_async(&self.indices, 0, self.k).await?;
        let val: Vec<f32> = gpu.read_async(&self.values, 0, self.k).await?;
        let lse: Vec<f32> = gpu.read_async(&self.ws.lse, 0, 1).await?;
        Ok(idx
            .into_iter()
            .zip(val)
            .map(|(i, v)| (i, (v - lse[0]).exp()))
            .collect())
    }

    /// The whole next-word distribution (probabilities over the vocabulary).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn distribution(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        crate::gpu::block_on(self.distribution_async(gpu))
    }

    /// [`Predictor::distribution`] awaited.
    pub async fn distribution_async(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        if self.fed == 0 {
            bail!("no context: feed at least one word first");
        }
        let logits: Vec<f32> = gpu.read_async(&self.ws.logits, 0, self.vocab).await?;
        let lse: Vec<f32> = gpu.read_async(&self.ws.lse, 0, 1).await?;
        Ok(logits.iter().map(|&z| (z - lse[0]).exp()).collect())
    }
}

/// One word of a scored text: how probable the model found it after the words before it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ScoredWord {
    pub id: u32,
    /// Natural log of its probability (`logit - log-sum-exp` of the step's logits).
    pub log_probability: f64,
    /// 1 for the word the model found most probable there, 2 for the next, ...
    pub rank: usize,
}

impl ScoredWord {
    pub fn probability(&self) -> f64 {
        self.log_probability.exp()
    }
}

/// The perplexity of scored words: the exponential of their mean negative log-probability
/// (what `eval` gives a text whose every word is scored so).
pub fn perplexity(words: &[ScoredWord]) -> f64 {
    let n = words.len().max(1) as f64;
    (-words.iter().map(|w| w.log_probability).sum::<f64>() / n).exp()
}

/// Scored words as JSON, `{"words": [{"word", "id", "probability", "log_probability",
/// "rank"}], "perplexity", "start"}` (`start`: the start token fed first, if any): what
/// `predict --score --json` prints and the page's scoring shows.
pub fn scored_json(
    words: &[ScoredWord],
    vocab: &crate::data::Vocab,
    start: Option<u32>,
) -> serde_json::Value {
    let list: Vec<_> = words
        .iter()
        .map(|w| {
            serde_json::json!({"word": vocab.word(w.id), "id": w.id, "probability": w.probability(),
                               "log_probability": w.log_probability, "rank": w.rank})
        })
        .collect();
    serde_json::json!({"words": list, "perplexity": perplexity(words), "start": start.map(|i| vocab.word(i))})
}

impl Predictor {
    /// Score `ids` word by word from a zero state: each word after the first, with the
    /// probability and rank the model gave it after the words before it (the first is
    /// context only: put a start token first, `<eos>`, to score the text's first word as
    /// a sentence's). The state is left after the last word.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn score(&mut self, gpu: &Gpu, ids: &[u32]) -> Result<Vec<ScoredWord>> {
        crate::gpu::block_on(self.score_async(gpu, ids))
    }

    /// [`Predictor::score`] awaited.
    pub async fn score_async(&mut self, gpu: &Gpu, ids: &[u32]) -> Result<Vec<ScoredWord>> {
        let Some((&first, rest)) = ids.split_first() else {
            bail!("nothing to score: give at least one word");
        };
        self.reset(gpu);
        self.feed(gpu, first)?;
        let mut out = Vec::with_capacity(rest.len());
        for &id in rest {
            let logits: Vec<f32> = gpu.read_async(&self.ws.logits, 0, self.vocab).await?;
            let lse: Vec<f32> = gpu.read_async(&self.ws.lse, 0, 1).await?;
            let z = logits[id as usize];
            out.push(ScoredWord {
                id,
                log_probability: z as f64 - lse[0] as f64,
                rank: 1 + logits.iter().filter(|&&q| q > z).count(),
            });
            self.feed(gpu, id)?;
        }
        Ok(out)
    }
}

/// How the next token is drawn: the softmax at `temperature`, cut to the `top_k` most
/// probable tokens (0: all), then to the fewest most probable whose probability together
/// reaches `top_p` (nucleus sampling; 1: all), as Hugging Face's `generate` applies them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
}

impl Default for Sampling {
    /// Plain sampling from the model's distribution.
    fn default() -> Sampling {
        Sampling {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        }
    }
}

impl Sampling {
    /// `Ok` where it can be drawn from a vocabulary of `vocab_size`; else the parameter at
    /// fault (`temperature`, `top-k`, `top-p`) and what it must be, for the caller to word as
    /// a flag or a field.
    pub fn check(&self, vocab_size: usize) -> Result<(), (&'static str, String)> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            let got = self.temperature;
            return Err((
                "temperature",
                format!("must be a number above 0, got {got}"),
            ));
        }
        if self.top_k > vocab_size {
            return Err((
                "top-k",
                format!("must be at most the vocabulary size {vocab_size}"),
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            let got = self.top_p;
            return Err(("top-p", format!("must be above 0 and at most 1, got {got}")));
        }
        Ok(())
    }
}

/// Sample an index from `probs` (any non-negative weights) as `how` says, with the uniform
/// draw `u` in [0, 1).
pub fn sample(probs: &[f32], how: &Sampling, u: f64) -> usize {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    if how.top_k > 0 {
        order.truncate(how.top_k);
    }
    // p^(1/T), renormalised: the softmax of logits / T.
    let mut weights: Vec<f64> = order
        .iter()
        .map(|&i| (probs[i].max(0.0) as f64).powf(1.0 / how.temperature as f64))
        .collect();
    if how.top_p < 1.0 {
        // The nucleus: the most probable first, until their share reaches top_p (at
        // least one token).
        let reach = how.top_p as f64 * weights.iter().sum::<f64>();
        let mut sum = 0.0;
        let n = weights
            .iter()
            .position(|w| {
                sum += w;
                sum >= reach
            })
            .map_or(weights.len(), |i| i + 1);
        weights.truncate(n);
        order.truncate(n);
    }
    let total: f64 = weights.iter().sum();
    let mut target = u * total;
    for (w, &i) in weights.iter().zip(&order) {
        if target < *w {
            return i;
        }
        target -= w;
    }
    order[0]
}

#[cfg(test)]
mod tests {
    use super::{sample, Sampling};

    fn at(temperature: f32, top_k: usize, top_p: f32) -> Sampling {
        Sampling {
            temperature,
            top_k,
            top_p,
        }
    }

    #[test]
    fn sampling_respects_top_k_and_temperature() {
        let p = [0.1f32, 0.6, 0.3];
        assert_eq!(sample(&p, &at(1.0, 1, 1.0), 0.99), 1);
        assert_eq!(sample(&p, &at(1.0, 0, 1.0), 0.0), 1);
        assert_eq!(sample(&p, &at(1.0, 0, 1.0), 0.65), 2);
        assert_eq!(sample(&p, &at(1.0, 0, 1.0), 0.95), 0);
        // A very low temperature is nearly greedy.
        assert_eq!(sample(&p, &at(0.05, 0, 1.0), 0.999), 1);
    }

    #[test]
    fn top_p_keeps_the_fewest_most_probable_that_reach_it() {
        let p = [0.1f32, 0.6, 0.3];
        let drawn = |how: Sampling| -> Vec<usize> {
            let mut seen: Vec<usize> = (0..1000)
                .map(|i| sample(&p, &how, (i as f64 + 0.5) / 1000.0))
                .collect();
            seen.sort();
            seen.dedup();
            seen
        };
        assert_eq!(drawn(at(1.0, 0, 1.0)), [0, 1, 2]);
        // 0.6 alone reaches 0.55; 0.6 + 0.3 reach 0.7 and 0.9.
        assert_eq!(drawn(at(1.0, 0, 0.55)), [1]);
        assert_eq!(drawn(at(1.0, 0, 0.7)), [1, 2]);
        assert_eq!(drawn(at(1.0, 0, 0.9)), [1, 2]);
        assert_eq!(drawn(at(1.0, 0, 0.95)), [0, 1, 2]);
        // At least one token, however small top_p.
        assert_eq!(drawn(at(1.0, 0, 1e-6)), [1]);
        // Within the nucleus, the draw follows the renormalised probabilities: 0.6 / 0.9.
        let ones = (0..900)
            .filter(|&i| sample(&p, &at(1.0, 0, 0.7), (i as f64 + 0.5) / 900.0) == 1)
            .count();
        assert_eq!(ones, 600);
        // After the temperature: at T = 0.5 the weights are 0.01 : 0.36 : 0.09, so 0.36
        // alone is 78% and reaches 0.75.
        assert_eq!(drawn(at(0.5, 0, 0.75)), [1]);
        // After top-k: of the two kept (0.6, 0.3), 0.6 is two thirds, and reaches 0.6.
        assert_eq!(drawn(at(1.0, 2, 0.6)), [1]);
        assert_eq!(drawn(at(1.0, 2, 0.7)), [1, 2]);
    }

    #[test]
    fn a_sampling_that_cannot_be_drawn_names_its_parameter() {
        assert!(at(0.7, 10, 0.9).check(10).is_ok());
        let fault = |how: Sampling| how.check(10).unwrap_err().0;
        assert_eq!(fault(at(0.0, 0, 1.0)), "temperature");
        assert_eq!(fault(at(f32::NAN, 0, 1.0)), "temperature");
        assert_eq!(fault(at(1.0, 11, 1.0)), "top-k");
        assert_eq!(fault(at(1.0, 0, 0.0)), "top-p");
        assert_eq!(fault(at(1.0, 0, 1.5)), "top-p");
        assert_eq!(fault(at(1.0, 0, f32::NAN)), "top-p");
    }
}
