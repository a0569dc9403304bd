//! Whether a model fits an adapter, decided by arithmetic on shapes before anything is
//! allocated on the host or the device.
//!
//! Every buffer a run makes is listed here with its size ([`buffers`]; the split-K matmul's
//! scratch buffers, one, or one per layer with the wavefront recurrence, and the column
//! sums' are each capped below any adapter's binding limit and left out); the largest one must
//! fit one storage binding of the adapter. The check runs on the limits the adapter offers
//! (or a cap of them, such as WebGPU's defaults), and what it finds is also what the device
//! is opened with ([`Needs`]): the program requests WebGPU's default limits, raised only as
//! far as the model needs.
//!
//! Sizes are computed in `u128`: a configuration may claim shapes whose products overflow
//! `usize` (`--hidden 200000,128` is 640 GB of one weight), and those must become the clear
//! error, not a wrapped number or an allocation.

use crate::config::{Config, Precision};
use crate::model::schedule::Mode;

/// One buffer a run allocates on the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferNeed {
    /// What it holds, as the error names it.
    pub what: String,
    pub bytes: u128,
}

/// What a command asks of the adapter: every sizeable buffer it will make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Needs {
    /// In the order the run makes them (parameters first).
    pub buffers: Vec<BufferNeed>,
}

impl Needs {
    /// A command that makes nothing larger than `bytes` (benchmarks, tests).
    pub fn at_most(what: &str, bytes: u128) -> Needs {
        Needs {
            buffers: vec![BufferNeed {
                what: what.to_string(),
                bytes,
            }],
        }
    }

    /// The needs of a model run at the workspace shapes `shapes`: the parameters once, and
    /// each workspace's own buffers.
    pub fn of_model(cfg: &Config, shapes: &[(usize, usize, Mode)]) -> Needs {
        Needs {
            buffers: buffers(cfg, shapes),
        }
    }

    /// What timing the products `shapes` asks (`bench kernels --shape`): the largest
    /// operand or result.
    pub fn of_products(shapes: &[crate::reference::MatmulShape]) -> Needs {
        let words = |a: usize, b: usize| a as u128 * b as u128 * 4;
        let largest = shapes
            .iter()
            .map(|s| words(s.m, s.k).max(words(s.k, s.n)).max(words(s.m, s.n)))
            .max()
            .unwrap_or(4);
        Needs::at_most("an operand of the products timed", largest)
    }

    /// Bytes of the largest buffer: the storage binding size the device must allow.
    pub fn largest_bytes(&self) -> u128 {
        self.buffers.iter().map(|b| b.bytes).max().unwrap_or(4)
    }

    /// Bytes of every buffer together (reported, not checked: drivers overcommit).
    pub fn total_bytes(&self) -> u128 {
        self.buffers.iter().map(|b| b.bytes).sum()
    }
}

fn words(what: impl Into<String>, dims: &[usize]) -> BufferNeed {
    BufferNeed {
        what: what.into(),
        bytes: dims.iter().map(|&d| d as u128).product::<u128>() * 4,
    }
}

/// Every sizeable buffer of a run: the parameters, and for each workspace shape
/// `(batch, steps, mode)` its activations (and gradients when training). Small fixed-size
/// buffers (uniform blocks, accumulators) are left out.
pub fn buffers(cfg: &Config, shapes: &[(usize, usize, Mode)]) -> Vec<BufferNeed> {
    let (v, e, top) = (cfg.vocab_size, cfg.embedding_size, cfg.top_hidden());
    let mut out = vec![words("parameter embedding", &[v, e])];
    // Tied weights: the softmax reads the embedding; no weight of its own.
    if !cfg.tie_weights {
        out.push(words("parameter softmax.weight", &[top, v]));
    }
    out.push(words("parameter softmax.bias", &[v]));
    for (l, &h) in cfg.hidden.iter().enumerate() {
        out.push(words(
            format!("parameter lstm.{l}.weight"),
            &[cfg.layer_input(l) + h, 4, h],
        ));
        out.push(words(format!("parameter lstm.{l}.bias"), &[4, h]));
    }
    let widest = cfg.hidden.iter().copied().max().unwrap_or(1);
    for &(batch, steps, mode) in shapes {
        let n = batch as u128 * steps as u128;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        out.push(words(
            format!("the logits of one {batch}x{steps} batch"),
            &[n, v],
        ));
        out.push(words("the embedding output", &[n, e]));
        for (l, &h) in cfg.hidden.iter().enumerate() {
            out.push(words(format!("lstm.{l} pre-activations"), &[n, 4, h]));
            out.push(words(format!("lstm.{l} gates"), &[n, 4, h]));
            out.push(words(format!("lstm.{l} states"), &[steps + 1, batch, h]));
        }
        if mode == Mode::Train {
            for (l, &h) in cfg.hidden.iter().enumerate() {
                out.push(words(format!("lstm.{l} d(h)"), &[n, h]));
                out.push(words(
                    format!("gradient of lstm.{l}.weight"),
                    &[cfg.layer_input(l) + h, 4, h],
                ));
            }
            if cfg.tie_weights {
                out.push(words("gradient of the embedding (tied)", &[v, e]));
            } else {
                out.push(words("gradient of softmax.weight", &[top, v]));
            }
            out.push(words("the embedding gradient rows", &[n, e]));
            out.push(words("d(h) before dropout", &[n, widest]));
            out.push(words("the id segments", &[3, n]));
        }
        if cfg.precision == Precision::Mixed {
            out.extend(half_copies(cfg, batch, steps, mode));
        }
    }
    out
}

/// `--precision mixed`: the f16 copies one workspace makes of what its products read
/// (`schedule::step::products::HalfCopies`: each the size of its f32 buffer, in halves).
fn half_copies(cfg: &Config, batch: usize, steps: usize, mode: Mode) -> Vec<BufferNeed> {
    let (v, e, top) = (cfg.vocab_size, cfg.embedding_size, cfg.top_hidden());
    let n = batch.saturating_mul(steps);
    let train = mode == Mode::Train;
    let dropout = train && cfg.keep_prob < 1.0;
    let mut out = vec![if cfg.tie_weights {
        halves("f16 copy of the embedding (tied softmax)", &[v, e])
    } else {
        halves("f16 copy of softmax.weight", &[top, v])
    }];
    out.push(halves("f16 copy of the embedding output", &[n, e]));
    for (l, &h) in cfg.hidden.iter().enumerate() {
        out.push(halves(
            format!("f16 copy of lstm.{l}.weight"),
            &[cfg.layer_input(l) + h, 4, h],
        ));
        out.push(halves(
            format!("f16 copy of lstm.{l} h"),
            &[steps + 1, batch, h],
        ));
        if dropout {
            out.push(halves(
                format!("f16 copy of lstm.{l} output after dropout"),
                &[n, h],
            ));
        }
        if train {
            out.push(halves(
                format!("f16 copy of lstm.{l} d(pre-activations)"),
                &[n, 4, h],
            ));
        }
    }
    if train {
        out.push(halves("f16 copy of the logits' gradient", &[n, v]));
    }
    out
}

fn halves(what: impl Into<String>, dims: &[usize]) -> BufferNeed {
    let count = dims.iter().map(|&d| d as u128).product::<u128>();
    BufferNeed {
        what: what.into(),
        bytes: count.div_ceil(2) * 4,
    }
}

/// Fail, naming the first buffer (in the order the run makes them: parameters first) that
/// does not fit one storage binding and one buffer under `limits`, and the limit.
pub fn check(needs: &Needs, limits: &wgpu::Limits, adapter: &str) -> anyhow::Result<()> {
    let limit = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size);
    if let Some(b) = needs.buffers.iter().find(|b| b.bytes > limit as u128) {
        anyhow::bail!(
            "{} needs a {} MiB buffer but adapter {adapter} allows at most {} MiB per storage buffer; use a smaller model or batch",
            b.what,
            b.bytes.div_ceil(1 << 20),
            limit >> 20
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_buffer_of_the_seed_model_is_its_logits() {
        let cfg = Config::default();
        let needs = Needs::of_model(&cfg, &[(60, 20, Mode::Train), (1, 20, Mode::Eval)]);
        assert_eq!(needs.largest_bytes(), 1200 * 10_000 * 4);
        let largest = needs.buffers.iter().max_by_key(|b| b.bytes).unwrap();
        assert!(largest.what.contains("logits"), "{needs:?}");
        check(&needs, &wgpu::Limits::default(), "test").unwrap();
    }

    /// Tied weights: no softmax.weight and no gradient of it, a dense embedding gradient
    /// instead; the vocabulary of the corpus sizes every buffer.
    #[test]
    fn tied_weights_list_the_embedding_gradient_instead_of_the_softmax_weight() {
        let cfg = Config {
            vocab_size: 33_278,
            embedding_size: 128,
            tie_weights: true,
            ..Config::default()
        };
        let list = buffers(&cfg, &[(60, 20, Mode::Train)]);
        assert!(
            !list.iter().any(|b| b.what.contains("softmax.weight")),
            "{list:?}"
        );
        let tied = list
            .iter()
            .find(|b| b.what.contains("gradient of the embedding"))
            .expect("the tied gradient is listed");
        assert_eq!(tied.bytes, 33_278 * 128 * 4);
        let untied = Config {
            tie_weights: false,
            ..cfg.clone()
        };
        let total = |c: &Config| Needs::of_model(c, &[(60, 20, Mode::Train)]).total_bytes();
        assert_eq!(total(&untied) - total(&cfg), 33_278 * 128 * 4);
        assert_eq!(
            Needs::of_model(&cfg, &[(60, 20, Mode::Train)]).largest_bytes(),
            1200 * 33_278 * 4
        );
    }

    /// Mixed precision adds the f16 copies (half the bytes of what they copy: the logits'
    /// gradient of a training batch, but not in evaluation) and never the largest buffer.
    #[test]
    fn mixed_precision_lists_its_f16_copies() {
        let f32s = Config::default();
        let mixed = Config {
            precision: Precision::Mixed,
            ..f32s.clone()
        };
        let shapes = [(60, 20, Mode::Train), (1, 20, Mode::Eval)];
        let (a, b) = (
            Needs::of_model(&f32s, &shapes),
            Needs::of_model(&mixed, &shapes),
        );
        assert_eq!(a.largest_bytes(), b.largest_bytes());
        let logits: Vec<_> = b
            .buffers
            .iter()
            .filter(|x| x.what.contains("f16 copy of the logits"))
            .collect();
        assert_eq!(logits.len(), 1, "one training workspace: {logits:?}");
        assert_eq!(logits[0].bytes, 1200 * 10_000 * 2);
        let extra = b.total_bytes() - a.total_bytes();
        let copies: u128 = b
            .buffers
            .iter()
            .filter(|x| x.what.starts_with("f16 copy"))
            .map(|x| x.bytes)
            .sum();
        assert_eq!(extra, copies);
        assert!(a.buffers.iter().all(|x| !x.what.starts_with("f16 copy")));
    }

    #[test]
    fn a_huge_layer_is_refused_without_overflow() {
        let cfg = Config {
            hidden: vec![200_000, 128],
            ..Config::default()
        };
        let needs = Needs::of_model(&cfg, &[(60, 20, Mode::Train)]);
        // (200 + 200000) * 4 * 200000 words of lstm.0.weight: 640 GB.
        assert_eq!(needs.largest_bytes(), 200_200 * 800_000 * 4);
        let e = check(&needs, &wgpu::Limits::default(), "test").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("lstm.0") && msg.contains("128 MiB"), "{msg}");
        // Products past u64 stay exact in u128.
        let dims = 1usize << 24;
        let b = words("x", &[dims, dims, dims]);
        assert_eq!(b.bytes, (1u128 << 72) * 4);
    }
}
