//! The model's parameters and recurrent state, their layout and initialisation.
//!
//! Names and layouts (row-major) are the checkpoint format's too:
//!
//! | name | shape | meaning |
//! | --- | --- | --- |
//! | `embedding` | `[vocab, embedding]` | row `id` is the word's vector |
//! | `lstm.{l}.weight` | `[in_l + hidden_l, 4 * hidden_l]` | `[x, h] @ W`, gate columns i, j, f, o |
//! | `lstm.{l}.bias` | `[4 * hidden_l]` | same gate order |
//! | `softmax.weight` | `[hidden_top, vocab]` | logits = h @ W + b |
//! | `softmax.bias` | `[vocab]` | |
//!
//! With tied embeddings (`Config::tie_weights`) there is no `softmax.weight`: the softmax
//! weight is `embedding` transposed (`logits = h @ E^T + b`), one parameter whose gradient
//! sums both uses; [`Params::softmax_w`] is then empty.

pub mod checkpoint;
pub mod fit;
pub mod predict;
pub mod schedule;
pub mod similar;

use crate::config::Config;
use crate::reference::Real;
use crate::rng::SplitMix64;

/// One LSTM layer's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct LstmLayer<T> {
    /// `[input + hidden, 4 * hidden]`.
    pub weight: Vec<T>,
    /// `[4 * hidden]`.
    pub bias: Vec<T>,
}

/// All trainable parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Params<T> {
    pub embedding: Vec<T>,
    pub lstm: Vec<LstmLayer<T>>,
    /// `[hidden_top, vocab]`; empty when the weights are tied (the embedding stands for it).
    pub softmax_w: Vec<T>,
    pub softmax_b: Vec<T>,
}

/// Name and shape of every parameter tensor, in the fixed order used for initialisation,
/// the global norm and checkpoints.
pub fn tensor_specs(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    let mut v = vec![(
        "embedding".to_string(),
        vec![cfg.vocab_size, cfg.embedding_size],
    )];
    for (l, &h) in cfg.hidden.iter().enumerate() {
        v.push((
            format!("lstm.{l}.weight"),
            vec![cfg.layer_input(l) + h, 4 * h],
        ));
        v.push((format!("lstm.{l}.bias"), vec![4 * h]));
    }
    if !cfg.tie_weights {
        v.push((
            "softmax.weight".to_string(),
            vec![cfg.top_hidden(), cfg.vocab_size],
        ));
    }
    v.push(("softmax.bias".to_string(), vec![cfg.vocab_size]));
    v
}

impl<T: Real> Params<T> {
    /// All zeros, in the configuration's shapes.
    pub fn zeros(cfg: &Config) -> Self {
        let z = |n: usize| vec![T::zero(); n];
        Params {
            embedding: z(cfg.vocab_size * cfg.embedding_size),
            lstm: cfg
                .hidden
                .iter()
                .enumerate()
                .map(|(l, &h)| LstmLayer {
                    weight: z((cfg.layer_input(l) + h) * 4 * h),
                    bias: z(4 * h),
                })
                .collect(),
            softmax_w: z(if cfg.tie_weights {
                0
            } else {
                cfg.top_hidden() * cfg.vocab_size
            }),
            softmax_b: z(cfg.vocab_size),
        }
    }

    /// TensorFlow's initialisation: every tensor uniform in `[-init_scale, init_scale]`
    /// except the LSTM biases, which start at zero. Drawn from `SplitMix64(seed)` in the
    /// order of [`tensor_specs`], each value computed in f64 and rounded to `T`.
    pub fn init(cfg: &Config, seed: u64) -> Self {
        let mut p = Self::zeros(cfg);
        let mut rng = SplitMix64::new(seed);
        let s = cfg.init_scale as f64;
        for (name, t) in p.tensors_mut() {
            if name.starts_with("lstm.") && name.ends_with(".bias") {
                continue;
            }
            for v in t.iter_mut() {
                *v = T::from_f64(rng.uniform(-s, s));
            }
        }
        p
    }

    /// Every tensor with its name, in the order of [`tensor_specs`] (no `softmax.weight`
    /// when the weights are tied).
    pub fn tensors(&self) -> Vec<(String, &[T])> {
        let mut v = vec![("embedding".to_string(), self.embedding.as_slice())];
        for (l, layer) in self.lstm.iter().enumerate() {
            v.push((format!("lstm.{l}.weight"), layer.weight.as_slice()));
            v.push((format!("lstm.{l}.bias"), layer.bias.as_slice()));
        }
        if !self.softmax_w.is_empty() {
            v.push(("softmax.weight".to_string(), self.softmax_w.as_slice()));
        }
        v.push(("softmax.bias".to_string(), self.softmax_b.as_slice()));
        v
    }

    /// Mutable twin of [`Params::tensors`].
    pub fn tensors_mut(&mut self) -> Vec<(String, &mut Vec<T>)> {
        let mut v = vec![("embedding".to_string(), &mut self.embedding)];
        for (l, layer) in self.lstm.iter_mut().enumerate() {
            v.push((format!("lstm.{l}.weight"), &mut layer.weight));
            v.push((format!("lstm.{l}.bias"), &mut layer.bias));
        }
        if !self.softmax_w.is_empty() {
            v.push(("softmax.weight".to_string(), &mut self.softmax_w));
        }
        v.push(("softmax.bias".to_string(), &mut self.softmax_b));
        v
    }

    /// Convert every element (f32 <-> f64).
    pub fn cast<U: Real>(&self) -> Params<U> {
        let c = |v: &Vec<T>| v.iter().map(|x| U::from_f64(x.to_f64())).collect();
        Params {
            embedding: c(&self.embedding),
            lstm: self
                .lstm
                .iter()
                .map(|l| LstmLayer {
                    weight: c(&l.weight),
                    bias: c(&l.bias),
                })
                .collect(),
            softmax_w: c(&self.softmax_w),
            softmax_b: c(&self.softmax_b),
        }
    }
}

/// The recurrent state carried between consecutive batches: per layer `c` and `h`,
/// each `[batch, hidden]`.
#[derive(Clone, Debug, PartialEq)]
pub struct State<T> {
    pub c: Vec<Vec<T>>,
    pub h: Vec<Vec<T>>,
}

impl<T: Real> State<T> {
    pub fn zeros(cfg: &Config, batch: usize) -> Self {
        State {
            c: cfg
                .hidden
                .iter()
                .map(|&h| vec![T::zero(); batch * h])
                .collect(),
            h: cfg
                .hidden
                .iter()
                .map(|&h| vec![T::zero(); batch * h])
                .collect(),
        }
    }

    pub fn cast<U: Real>(&self) -> State<U> {
        let c = |v: &Vec<Vec<T>>| {
            v.iter()
                .map(|x| x.iter().map(|y| U::from_f64(y.to_f64())).collect())
                .collect()
        };
        State {
            c: c(&self.c),
            h: c(&self.h),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_shapes_and_ranges() {
        let cfg = Config::default();
        let p = Params::<f32>::init(&cfg, 1);
        let specs = tensor_specs(&cfg);
        let ts = p.tensors();
        assert_eq!(specs.len(), ts.len());
        let mut total = 0;
        for ((sn, shape), (tn, t)) in specs.iter().zip(&ts) {
            assert_eq!(sn, tn);
            assert_eq!(shape.iter().product::<usize>(), t.len(), "{sn}");
            total += t.len();
            if sn.ends_with(".bias") && sn.starts_with("lstm") {
                assert!(t.iter().all(|&v| v == 0.0));
            } else {
                assert!(t.iter().all(|v| v.abs() <= 0.1));
                assert!(t.iter().any(|&v| v != 0.0));
            }
        }
        assert_eq!(total, cfg.num_params());
        assert_eq!(p, Params::<f32>::init(&cfg, 1));
        assert_ne!(p, Params::<f32>::init(&cfg, 2));
    }
}
