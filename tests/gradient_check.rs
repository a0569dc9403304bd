//! The CPU reference step checked in f64 on a tiny model: its forward pass against a
//! direct transcription of `design.md` §1, its gradient against central finite
//! differences of the loss for every element of every parameter, and the state it carries.

use lstm_gpu::config::Config;
use lstm_gpu::model::{Params, State};
use lstm_gpu::reference::sigmoid;
use lstm_gpu::reference::step::{forward_loss, gradients, DropoutKey};
use lstm_gpu::rng::SplitMix64;

/// Step of the finite differences. They use the fourth-order central stencil
/// `(8 (L(p+e) - L(p-e)) - (L(p+2e) - L(p-2e))) / 12e`: its truncation error `~e^4 L^(5)`
/// and its rounding error `~1e-16 * |L| / e` (the loss is about `num_steps * ln(vocab)`,
/// 12) are both near 1e-12 here, where a two-point stencil at its best step (1e-6) is
/// limited to ~3e-9 by rounding: too coarse to check small elements to 1e-6.
const EPS: f64 = 1e-3;
/// Bound on the per-element error of [`element_error`].
const TOLERANCE: f64 = 1e-6;
/// Magnitude below which an element is held to an absolute error instead of a relative
/// one: `TOLERANCE * SCALE_FLOOR = 1e-11`, a few times what the differences resolve.
const SCALE_FLOOR: f64 = 1e-5;

fn tiny(forget_bias: f32, keep_prob: f32) -> Config {
    Config {
        vocab_size: 20,
        embedding_size: 5,
        hidden: vec![7, 4],
        num_steps: 4,
        batch_size: 3,
        init_scale: 0.5,
        keep_prob,
        forget_bias,
        ..Config::default()
    }
}

/// A model, an incoming state and a batch, all random.
struct Case {
    cfg: Config,
    params: Params<f64>,
    state: State<f64>,
    x: Vec<u32>,
    y: Vec<u32>,
}

impl Case {
    fn new(cfg: Config, seed: u64) -> Case {
        let mut rng = SplitMix64::new(seed);
        let mut params = Params::init(&cfg, seed);
        // Init leaves the LSTM biases at zero; make them random like everything else.
        for v in params.lstm.iter_mut().flat_map(|l| l.bias.iter_mut()) {
            *v = rng.uniform(-0.5, 0.5);
        }
        let mut state = State::zeros(&cfg, cfg.batch_size);
        for v in state.c.iter_mut().chain(state.h.iter_mut()).flatten() {
            *v = rng.uniform(-0.9, 0.9);
        }
        let tokens = cfg.batch_size * cfg.num_steps;
        let mut ids = || -> Vec<u32> {
            (0..tokens)
                .map(|_| (rng.next_u64() % cfg.vocab_size as u64) as u32)
                .collect()
        };
        let (x, y) = (ids(), ids());
        Case {
            cfg,
            params,
            state,
            x,
            y,
        }
    }

    fn loss(&self, params: &Params<f64>, dropout: Option<DropoutKey>) -> f64 {
        let mut state = self.state.clone();
        forward_loss(&self.cfg, params, &mut state, &self.x, &self.y, dropout)
    }

    /// Finite differences of the loss (see [`EPS`]) for every element of every parameter,
    /// in the layout of [`Params`].
    fn numeric_gradient(&self, dropout: Option<DropoutKey>) -> Params<f64> {
        let mut grad = Params::zeros(&self.cfg);
        let mut params = self.params.clone();
        for (k, (_, g)) in grad.tensors_mut().into_iter().enumerate() {
            for (i, gi) in g.iter_mut().enumerate() {
                let original = self.params.tensors()[k].1[i];
                let mut loss_at = |v: f64| {
                    params.tensors_mut()[k].1[i] = v;
                    self.loss(&params, dropout)
                };
                let near = loss_at(original + EPS) - loss_at(original - EPS);
                let far = loss_at(original + 2.0 * EPS) - loss_at(original - 2.0 * EPS);
                *gi = (8.0 * near - far) / (12.0 * EPS);
                params.tensors_mut()[k].1[i] = original;
            }
        }
        grad
    }
}

/// Per-element error `|a - n| / max(|a| + |n|, SCALE_FLOOR)`: relative for every element
/// but the smallest (see [`SCALE_FLOOR`]).
fn element_error(analytic: f64, numeric: f64) -> f64 {
    (analytic - numeric).abs() / (analytic.abs() + numeric.abs()).max(SCALE_FLOOR)
}

/// The largest [`element_error`] over every element of every tensor, or the list of the
/// elements above [`TOLERANCE`].
fn compare(analytic: &Params<f64>, numeric: &Params<f64>) -> Result<f64, String> {
    let mut worst = 0.0f64;
    let mut failures = Vec::new();
    for ((name, a), (_, n)) in analytic.tensors().into_iter().zip(numeric.tensors()) {
        assert_eq!(a.len(), n.len(), "{name}");
        for (i, (&av, &nv)) in a.iter().zip(n).enumerate() {
            let err = element_error(av, nv);
            worst = worst.max(err);
            // A NaN error fails too.
            if err.is_nan() || err > TOLERANCE {
                failures.push(format!(
                    "{name}[{i}]: analytic {av:e}, numeric {nv:e}, error {err:e}"
                ));
            }
        }
    }
    if failures.is_empty() {
        Ok(worst)
    } else {
        Err(failures.join("\n"))
    }
}

fn check_gradient(cfg: Config, seed: u64, dropout: Option<DropoutKey>) {
    let case = Case::new(cfg, seed);
    let (loss, grads) = gradients(
        &case.cfg,
        &case.params,
        &mut case.state.clone(),
        &case.x,
        &case.y,
        dropout,
    );
    assert_eq!(loss, case.loss(&case.params, dropout));
    let analytic = grads.to_dense(&case.cfg);
    let numeric = case.numeric_gradient(dropout);
    // Gradients this small would make the check vacuous.
    for (name, g) in numeric.tensors() {
        let rms = (g.iter().map(|v| v * v).sum::<f64>() / g.len() as f64).sqrt();
        assert!(
            rms > 1e-4,
            "{name}: gradient rms {rms:e} is too small to test"
        );
    }
    let worst = compare(&analytic, &numeric).unwrap_or_else(|e| panic!("gradient mismatch:\n{e}"));
    eprintln!("worst element error {worst:e}");

    // Negative control: the comparison flags the largest element of a tensor off by 1e-5
    // relative, and only that one.
    let mut wrong = analytic.clone();
    let (name, w) = wrong.tensors_mut().swap_remove(3);
    let largest = (0..w.len())
        .max_by(|&a, &b| w[a].abs().total_cmp(&w[b].abs()))
        .expect("tensor is not empty");
    w[largest] *= 1.0 + 1e-5;
    let err = compare(&wrong, &numeric).expect_err("a wrong gradient passed the check");
    assert!(
        err.starts_with(&format!("{name}[{largest}]:")) && !err.contains('\n'),
        "{err}"
    );
}

#[test]
fn gradient_matches_finite_differences_without_forget_bias() {
    check_gradient(tiny(0.0, 1.0), 1, None);
}

#[test]
fn gradient_matches_finite_differences_with_forget_bias() {
    check_gradient(tiny(1.0, 1.0), 2, None);
}

#[test]
fn gradient_matches_finite_differences_with_dropout() {
    check_gradient(tiny(0.5, 0.7), 3, Some(DropoutKey { seed: 17, step: 4 }));
}

/// Tied embeddings: one parameter (the embedding, no softmax.weight) whose analytic
/// gradient, the lookup's rows plus the softmax's use, matches the finite differences of
/// the loss, with dropout on too.
#[test]
fn gradient_matches_finite_differences_with_tied_weights() {
    let cfg = Config {
        embedding_size: 4,
        tie_weights: true,
        ..tiny(0.5, 1.0)
    };
    cfg.validate().unwrap();
    assert!(Params::<f64>::zeros(&cfg).softmax_w.is_empty());
    check_gradient(cfg.clone(), 4, None);
    check_gradient(
        Config {
            keep_prob: 0.8,
            ..cfg
        },
        5,
        Some(DropoutKey { seed: 3, step: 2 }),
    );
}

/// `design.md` §1 written out per row and time step with no kernels, no buffers and no
/// time-major layout: returns the loss and the final state.
fn direct_forward(
    cfg: &Config,
    p: &Params<f64>,
    state: &State<f64>,
    x: &[u32],
    y: &[u32],
) -> (f64, State<f64>) {
    let (batch, steps) = (cfg.batch_size, cfg.num_steps);
    let mut out = state.clone();
    let mut loss = 0.0;
    for b in 0..batch {
        for t in 0..steps {
            let id = x[b * steps + t] as usize;
            let e = cfg.embedding_size;
            let mut input = p.embedding[id * e..(id + 1) * e].to_vec();
            for (l, &hid) in cfg.hidden.iter().enumerate() {
                let h_prev = &out.h[l][b * hid..(b + 1) * hid];
                let c_prev = &out.c[l][b * hid..(b + 1) * hid];
                let concat: Vec<f64> = input.iter().chain(h_prev).copied().collect();
                let w = &p.lstm[l].weight;
                let z = |gate: usize, u: usize| {
                    let col = gate * hid + u;
                    p.lstm[l].bias[col]
                        + (0..concat.len())
                            .map(|k| concat[k] * w[k * 4 * hid + col])
                            .sum::<f64>()
                };
                let (mut c_new, mut h_new) = (vec![0.0; hid], vec![0.0; hid]);
                for u in 0..hid {
                    let forget = sigmoid(z(2, u) + cfg.forget_bias as f64);
                    c_new[u] = c_prev[u] * forget + sigmoid(z(0, u)) * z(1, u).tanh();
                    h_new[u] = c_new[u].tanh() * sigmoid(z(3, u));
                }
                out.c[l][b * hid..(b + 1) * hid].copy_from_slice(&c_new);
                out.h[l][b * hid..(b + 1) * hid].copy_from_slice(&h_new);
                input = h_new;
            }
            let v = cfg.vocab_size;
            let logits: Vec<f64> = (0..v)
                .map(|j| {
                    p.softmax_b[j]
                        + (0..input.len())
                            .map(|k| input[k] * p.softmax_w[k * v + j])
                            .sum::<f64>()
                })
                .collect();
            let total: f64 = logits.iter().map(|l| l.exp()).sum();
            let target = y[b * steps + t] as usize;
            loss += -(logits[target].exp() / total).ln() / batch as f64;
        }
    }
    (loss, out)
}

fn max_abs_diff(a: &State<f64>, b: &State<f64>) -> f64 {
    a.c.iter()
        .chain(&a.h)
        .zip(b.c.iter().chain(&b.h))
        .flat_map(|(u, v)| u.iter().zip(v).map(|(x, y)| (x - y).abs()))
        .fold(0.0, f64::max)
}

/// The forward pass computes the model of the design, and hands out the state after the
/// batch's last step.
#[test]
fn forward_matches_the_model_definition_and_carries_the_last_state() {
    for (forget_bias, seed) in [(0.0, 4), (1.0, 5)] {
        let case = Case::new(tiny(forget_bias, 1.0), seed);
        let mut state = case.state.clone();
        let loss = forward_loss(&case.cfg, &case.params, &mut state, &case.x, &case.y, None);
        let (want_loss, want_state) =
            direct_forward(&case.cfg, &case.params, &case.state, &case.x, &case.y);
        assert!(
            (loss - want_loss).abs() < 1e-12 * want_loss,
            "{loss} vs {want_loss}"
        );
        assert!(max_abs_diff(&state, &want_state) < 1e-14);
        assert!(
            max_abs_diff(&state, &case.state) > 0.1,
            "the state did not move"
        );

        // `gradients` advances the state the same way.
        let mut state_g = case.state.clone();
        gradients(
            &case.cfg,
            &case.params,
            &mut state_g,
            &case.x,
            &case.y,
            None,
        );
        assert_eq!(state_g, state);
    }
}

/// Two half-length batches with the state carried between them compute what one
/// full-length batch does; the carried state matters.
#[test]
fn carried_state_continues_the_sequence() {
    let case = Case::new(tiny(0.0, 1.0), 6);
    let cfg = &case.cfg;
    let mut whole_state = case.state.clone();
    let whole = forward_loss(cfg, &case.params, &mut whole_state, &case.x, &case.y, None);

    let half = Config {
        num_steps: cfg.num_steps / 2,
        ..cfg.clone()
    };
    let columns = |ids: &[u32], range: std::ops::Range<usize>| -> Vec<u32> {
        ids.chunks(cfg.num_steps)
            .flat_map(|row| row[range.clone()].to_vec())
            .collect()
    };
    let mut state = case.state.clone();
    let mut halves = 0.0;
    for range in [0..half.num_steps, half.num_steps..cfg.num_steps] {
        let (x, y) = (columns(&case.x, range.clone()), columns(&case.y, range));
        halves += forward_loss(&half, &case.params, &mut state, &x, &y, None);
    }
    assert!(
        (whole - halves).abs() < 1e-12 * whole,
        "{whole} vs {halves}"
    );
    assert!(max_abs_diff(&state, &whole_state) < 1e-14);

    // A second batch from the carried state differs from the same batch from zeros.
    let (x2, y2) = (case.y.clone(), case.x.clone());
    let from_carried = forward_loss(cfg, &case.params, &mut whole_state.clone(), &x2, &y2, None);
    let mut zeros = State::zeros(cfg, cfg.batch_size);
    let from_zeros = forward_loss(cfg, &case.params, &mut zeros, &x2, &y2, None);
    assert!(
        (from_carried - from_zeros).abs() > 1e-3,
        "{from_carried} vs {from_zeros}"
    );
}
