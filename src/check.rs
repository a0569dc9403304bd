//! `lstm-gpu check`: this adapter's kernels against their CPU twins, run by the program
//! itself, so that a GPU no test machine has (Metal, DX12, an AMD, Intel or Apple GPU, a new
//! driver) can be checked by its owner without a Rust toolchain or the test suite.
//!
//! It is the portable core of the parity tests: `tests/parity_matmul.rs` and
//! `tests/train_step_parity.rs` run their cases through [`matmul_case`] and
//! [`training_step`], and the f16 cases mirror `tests/common/half.rs` and
//! `tests/mixed_precision.rs` (which check more); `tune` screens its candidates with
//! [`matmuls`] and [`half_matmuls`], and the recurrences it times with
//! [`recurrence_steps`]. Every matmul variant the adapter has, in every transpose form, on
//! shapes that are no multiple of any tile, with bias and accumulation, operands at odd
//! offsets of one shared buffer, the output poisoned with NaN and guarded on both sides,
//! run twice (the same bits); the f16 matmuls of `--precision mixed` against
//! the product of the f16-rounded operands; and whole training steps (dropout on, clipping
//! on and off, separate and tied softmax weights) on every recurrence, against the f64
//! reference step. Errors are relative L2 (design.md §4); the tolerances are the tests'.

use anyhow::Result;

use crate::config::{Config, Precision};
use crate::gpu::loss_scale::LossScale;
use crate::gpu::lstm_step::Recurrence;
use crate::gpu::matmul::{Matmul, MatmulVariant};
use crate::gpu::matmul_f16::{HalfKernels, HalfVariant, HalfView};
use crate::gpu::sgd::Hyper;
use crate::gpu::{Dispatch, Gpu, View};
use crate::model::schedule::{Kernels, Mode, ParamBuffers, Workspace};
use crate::model::{Params, State};
use crate::reference::step::{self, DropoutKey};
use crate::reference::{matmul, round_f16, MatmulShape};
use crate::rng::SplitMix64;

/// The tolerance of an f32 matmul, and of an f16 one against its rounded operands (a
/// product of two f16 values is exact in f32: what remains is f32 summation).
pub const MATMUL_TOLERANCE: f64 = 1e-5;

/// One kernel's (or one kind of training step's) cases, summed up by the worst.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// What was checked: `matmul strip`, `f16 matmul f16-coop`, `training step f32 fused`.
    pub check: String,
    /// The kernel it names as `--matmul` and `--recurrence` do (`strip`, `f16-coop`,
    /// `fused`).
    pub kernel: String,
    pub cases: usize,
    /// The case whose error was largest against its tolerance: what it was, its relative
    /// L2 error (infinite where the kernel wrote a NaN or an infinity) and its tolerance.
    pub worst: String,
    pub error: f64,
    pub tolerance: f64,
    /// A failure that is not an error size: a write outside the output, repeated runs
    /// that differ, a kernel that could not be built.
    pub fault: Option<String>,
}

impl Outcome {
    pub fn new(check: impl Into<String>, kernel: impl Into<String>) -> Outcome {
        Outcome {
            check: check.into(),
            kernel: kernel.into(),
            cases: 0,
            worst: String::new(),
            error: 0.0,
            tolerance: 1.0,
            fault: None,
        }
    }

    pub fn passed(&self) -> bool {
        self.fault.is_none() && self.error <= self.tolerance
    }

    /// Count a case of relative error `error` held to `tolerance`.
    fn case(&mut self, what: impl Into<String>, error: f64, tolerance: f64) {
        let ratio = |e: f64, t: f64| if e.is_nan() { f64::INFINITY } else { e / t };
        if self.cases == 0 || ratio(error, tolerance) > ratio(self.error, self.tolerance) {
            self.worst = what.into();
            self.error = if error.is_nan() { f64::INFINITY } else { error };
            self.tolerance = tolerance;
        }
        self.cases += 1;
    }

    fn fault(&mut self, what: String) {
        self.fault.get_or_insert(what);
    }

    /// The worst case and what was wrong with it, in one phrase (for a warning).
    pub fn why(&self) -> String {
        match &self.fault {
            Some(fault) => format!("{}: {fault}", self.worst),
            None => format!(
                "{}: relative error {:.1e}, tolerance {:.0e}",
                self.worst, self.error, self.tolerance
            ),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "check": self.check,
            "kernel": self.kernel,
            "cases": self.cases,
            "worst": self.worst,
            "error": if self.error.is_finite() { serde_json::json!(self.error) } else { serde_json::json!("inf") },
            "tolerance": self.tolerance,
            "fault": self.fault,
            "passed": self.passed(),
        })
    }
}

/// Relative L2 error `|got - want| / |want|`, in f64; infinite when `got` holds a NaN or an
/// infinity (so that NaN never passes) or the lengths differ.
pub fn rel_l2(got: &[f32], want: &[f64]) -> f64 {
    if got.len() != want.len() || got.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).powi(2))
        .sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// `n` values uniform in [-scale, scale], never exactly zero.
pub fn random(n: usize, scale: f64, seed: u64) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    (0..n)
        .map(|_| match r.uniform(-scale, scale) as f32 {
            0.0 => scale as f32 * 0.5,
            v => v,
        })
        .collect()
}

/// `n` ids below half of `vocab`, so that a batch repeats ids (the embedding's gradient then
/// sums repeated rows).
pub fn random_ids(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut r = SplitMix64::new(seed);
    (0..n)
        .map(|_| (r.next_u64() % (vocab as u64 / 2)) as u32)
        .collect()
}

/// A non-zero carried state for a batch of `cfg.batch_size` rows.
pub fn random_state(cfg: &Config, seed: u64) -> State<f32> {
    let mut s = State::<f32>::zeros(cfg, cfg.batch_size);
    for (l, (c, h)) in s.c.iter_mut().zip(s.h.iter_mut()).enumerate() {
        *c = random(c.len(), 1.0, seed + 2 * l as u64);
        *h = random(h.len(), 0.9, seed + 2 * l as u64 + 1);
    }
    s
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// The test hook `LSTM_GPU_MISCOMPUTE` (comma-separated kernel names as `--matmul` and
/// `--recurrence` take them): those matmuls' outputs are negated when read back, and so is
/// the loss of a training step whose outcome names one of them (its recurrence, or its
/// f16 matmul), as if the driver had miscompiled them, so that the paths that meet a wrong
/// kernel (`check`'s failure, `tune` leaving the kernel out) can be tested on an adapter
/// whose kernels are right.
pub const MISCOMPUTE_ENV: &str = "LSTM_GPU_MISCOMPUTE";

fn miscomputed(kernel: &str) -> bool {
    std::env::var(MISCOMPUTE_ENV).is_ok_and(|v| v.split(',').any(|s| s.trim() == kernel))
}

/// Words of NaN kept after the output's window (and `c_offset` words before it): a kernel
/// may change none of them.
pub const GUARD: usize = 37;

/// One matmul case: the shape, what is added, and where the operands lie. A, B and the bias
/// share one input buffer, `gap` words apart from `a_offset` on; C lies at `c_offset` of a
/// NaN-poisoned buffer.
#[derive(Clone, Copy, Debug)]
pub struct MatmulCase {
    pub shape: MatmulShape,
    pub bias: bool,
    pub accumulate: bool,
    pub a_offset: usize,
    pub gap: usize,
    pub c_offset: usize,
}

impl MatmulCase {
    pub fn describe(&self) -> String {
        let s = self.shape;
        format!(
            "{}x{}x{}:{}{}{}{} at {}",
            s.m,
            s.k,
            s.n,
            if s.trans_a { 'T' } else { 'N' },
            if s.trans_b { 'T' } else { 'N' },
            if self.bias { " +bias" } else { "" },
            if self.accumulate { " +C" } else { "" },
            self.a_offset
        )
    }
}

/// What one matmul case gave: the kernel that ran (its label), the larger relative error of
/// its two runs against the f64 reference, and what else went wrong.
#[derive(Clone, Debug)]
pub struct MatmulRun {
    pub label: String,
    pub error: f64,
    pub fault: Option<String>,
}

/// Run `case` twice on `variant` of `mm` (C poisoned with NaN before each run) and hold it
/// to `reference::matmul` in f64.
#[cfg(not(target_arch = "wasm32"))]
pub fn matmul_case(
    gpu: &Gpu,
    mm: &Matmul,
    variant: MatmulVariant,
    case: &MatmulCase,
    seed: u64,
) -> Result<MatmulRun> {
    pollster::block_on(matmul_case_async(gpu, mm, variant, case, seed))
}

/// [`matmul_case`], awaiting the GPU (in a browser tab).
pub async fn matmul_case_async(
    gpu: &Gpu,
    mm: &Matmul,
    variant: MatmulVariant,
    case: &MatmulCase,
    seed: u64,
) -> Result<MatmulRun> {
    let s = case.shape;
    let (a_len, b_len, c_len) = (s.m * s.k, s.k * s.n, s.m * s.n);
    let a_at = case.a_offset;
    let b_at = a_at + a_len + case.gap;
    let bias_at = b_at + b_len + case.gap;
    let inputs = random(bias_at + s.n + 3, 1.0, seed);
    let c_start = random(c_len, 1.0, seed + 1);
    let input_buf = gpu.storage_from("inputs", &inputs);
    let c_at = case.c_offset;
    let c_buf = gpu.storage("C", c_at + c_len + GUARD);

    let mut want = if case.accumulate {
        f64s(&c_start)
    } else {
        vec![0.0; c_len]
    };
    let bias = f64s(&inputs[bias_at..bias_at + s.n]);
    matmul(
        s,
        &f64s(&inputs[a_at..a_at + a_len]),
        &f64s(&inputs[b_at..b_at + b_len]),
        case.bias.then_some(&bias[..]),
        &mut want,
        case.accumulate,
    );
    let d = mm.prepare_with(
        variant,
        gpu,
        s,
        View::at(&input_buf, a_at, a_len),
        View::at(&input_buf, b_at, b_len),
        case.bias.then(|| View::at(&input_buf, bias_at, s.n)),
        View::at(&c_buf, c_at, c_len),
        case.accumulate,
    )?;
    let (error, fault) = run_twice(
        gpu,
        &[&d],
        &c_buf,
        c_at,
        c_len,
        &c_start,
        case.accumulate,
        &want,
        miscomputed(variant.name()),
    )
    .await?;
    Ok(MatmulRun {
        label: d.label.to_string(),
        error,
        fault,
    })
}

/// Poison C (its window holding `c_start` where the product accumulates), run `dispatches`,
/// read C back; twice. The larger of the two runs' errors against `want`, and a fault where
/// a run wrote outside C's window or the two runs differ in a bit.
#[allow(clippy::too_many_arguments)]
async fn run_twice(
    gpu: &Gpu,
    dispatches: &[&Dispatch],
    c_buf: &wgpu::Buffer,
    c_at: usize,
    c_len: usize,
    c_start: &[f32],
    accumulate: bool,
    want: &[f64],
    miscompute: bool,
) -> Result<(f64, Option<String>)> {
    let total = c_at + c_len + GUARD;
    let mut runs: Vec<Vec<f32>> = Vec::new();
    let mut fault = None;
    let mut error: f64 = 0.0;
    for _ in 0..2 {
        let mut words = vec![f32::NAN; total];
        if accumulate {
            words[c_at..c_at + c_len].copy_from_slice(c_start);
        }
        gpu.write(c_buf, 0, &words);
        gpu.run(dispatches)?;
        let all: Vec<f32> = gpu.read_async(c_buf, 0, total).await?;
        if !all[..c_at]
            .iter()
            .chain(&all[c_at + c_len..])
            .all(|v| v.is_nan())
        {
            fault.get_or_insert_with(|| "wrote outside its output".to_string());
        }
        let mut got = all[c_at..c_at + c_len].to_vec();
        if miscompute {
            got.iter_mut().for_each(|v| *v = -*v);
        }
        error = error.max(rel_l2(&got, want));
        runs.push(got);
    }
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    if bits(&runs[0]) != bits(&runs[1]) {
        fault.get_or_insert_with(|| "two runs of the same product differ".to_string());
    }
    Ok((error, fault))
}

/// The shapes of `check`'s matmul cases, (m, k, n): every dimension 1 somewhere, none a
/// multiple of a tile but for the two multiples of 4 (the aligned vec4 paths, run at a
/// 4-aligned offset), a k long enough that the split-K variants split, and a few-row
/// product wider than the skinny kernel's block.
const MATMUL_SIZES: [(usize, usize, usize); 8] = [
    (1, 1, 1),
    (7, 33, 1),
    (1, 7, 33),
    (33, 1, 7),
    (60, 129, 33),
    (12, 68, 196),
    (5, 520, 36),
    (3, 45, 260),
];

/// The cases of `check`'s matmuls: every size in every transpose form, bias and
/// accumulation alternating.
pub fn matmul_cases() -> Vec<MatmulCase> {
    let mut out = Vec::new();
    for (t, &(m, k, n)) in MATMUL_SIZES.iter().enumerate() {
        for (f, (trans_a, trans_b)) in [(false, false), (false, true), (true, false), (true, true)]
            .into_iter()
            .enumerate()
        {
            let aligned = [m, k, n].iter().all(|v| v % 4 == 0);
            out.push(MatmulCase {
                shape: MatmulShape {
                    m,
                    k,
                    n,
                    trans_a,
                    trans_b,
                },
                bias: (t + f) % 2 == 0,
                accumulate: (t / 2 + f) % 2 == 0,
                a_offset: if aligned { 8 } else { 3 },
                gap: if aligned { 4 } else { 1 },
                c_offset: if aligned { 36 } else { 5 },
            });
        }
    }
    out
}

/// Every f32 matmul variant the adapter has, on [`matmul_cases`]. `done` hears of each
/// variant as it finishes (the first run of each compiles its kernels: seconds, on a CPU
/// adapter minutes).
pub async fn matmuls(
    gpu: &Gpu,
    mm: &Matmul,
    done: &mut dyn FnMut(&Outcome),
) -> Result<Vec<Outcome>> {
    let mut out = Vec::new();
    for variant in mm.variants_available() {
        let mut o = Outcome::new(format!("matmul {variant}"), variant.name());
        for (i, case) in matmul_cases().iter().enumerate() {
            match matmul_case_async(gpu, mm, variant, case, 1000 + i as u64).await {
                Ok(run) => {
                    o.case(case.describe(), run.error, MATMUL_TOLERANCE);
                    if let Some(f) = run.fault {
                        o.fault(format!("{}: {f}", case.describe()));
                    }
                }
                Err(e) => o.fault(format!("{}: {e:#}", case.describe())),
            }
        }
        done(&o);
        out.push(o);
    }
    Ok(out)
}

/// Every f16 matmul of `--precision mixed` the adapter has (none without `SHADER_F16`), on
/// [`matmul_cases`]: the operands cast to f16 by the program's cast kernel, the product held
/// to the f64 product of the f16-rounded operands.
pub async fn half_matmuls(
    gpu: &Gpu,
    hk: &HalfKernels,
    done: &mut dyn FnMut(&Outcome),
) -> Result<Vec<Outcome>> {
    let mut out = Vec::new();
    for variant in hk.variants_available() {
        let mut o = Outcome::new(format!("f16 matmul {variant}"), variant.name());
        for (i, case) in matmul_cases().iter().enumerate() {
            let seed = 2000 + i as u64;
            match half_matmul_case(gpu, hk, variant, case, seed).await {
                Ok((error, fault)) => {
                    o.case(case.describe(), error, MATMUL_TOLERANCE);
                    if let Some(f) = fault {
                        o.fault(format!("{}: {f}", case.describe()));
                    }
                }
                Err(e) => o.fault(format!("{}: {e:#}", case.describe())),
            }
        }
        done(&o);
        out.push(o);
    }
    Ok(out)
}

/// One f16 case: A and B cast into one f16 buffer at their (odd) offsets, the bias f32.
async fn half_matmul_case(
    gpu: &Gpu,
    hk: &HalfKernels,
    variant: HalfVariant,
    case: &MatmulCase,
    seed: u64,
) -> Result<(f64, Option<String>)> {
    let s = case.shape;
    let (a_len, b_len, c_len) = (s.m * s.k, s.k * s.n, s.m * s.n);
    let a_at = case.a_offset;
    let b_at = a_at + a_len + case.gap;
    let inputs = random(b_at + b_len + 2, 1.0, seed);
    let bias = random(s.n, 1.0, seed + 1);
    let c_start = random(c_len, 1.0, seed + 2);
    let src = gpu.storage_from("f32 operands", &inputs);
    let half_buf = gpu.storage("f16 operands", inputs.len().div_ceil(2) + 1);
    let bias_buf = gpu.storage_from("bias", &bias);
    let c_at = case.c_offset;
    let c_buf = gpu.storage("C", c_at + c_len + GUARD);
    let cast = hk.cast(
        gpu,
        View::all(&src),
        HalfView::at(&half_buf, 0, inputs.len()),
        inputs.len(),
    )?;
    let d = hk.matmul_with(
        variant,
        gpu,
        s,
        HalfView::at(&half_buf, a_at, a_len),
        HalfView::at(&half_buf, b_at, b_len),
        case.bias.then(|| View::all(&bias_buf)),
        View::at(&c_buf, c_at, c_len),
        case.accumulate,
        None,
    )?;
    let rounded = |v: &[f32]| v.iter().map(|&x| round_f16(x) as f64).collect::<Vec<f64>>();
    let mut want = if case.accumulate {
        f64s(&c_start)
    } else {
        vec![0.0; c_len]
    };
    matmul(
        s,
        &rounded(&inputs[a_at..a_at + a_len]),
        &rounded(&inputs[b_at..b_at + b_len]),
        case.bias.then_some(&f64s(&bias)[..]),
        &mut want,
        case.accumulate,
    );
    run_twice(
        gpu,
        &[&cast, &d],
        &c_buf,
        c_at,
        c_len,
        &c_start,
        case.accumulate,
        &want,
        miscomputed(variant.name()),
    )
    .await
}

/// The model of the training-step checks: two layers of different widths, dropout on.
fn step_config(precision: Precision, tied: bool, max_grad_norm: f32) -> Config {
    Config {
        vocab_size: 53,
        embedding_size: if tied { 9 } else { 12 },
        hidden: vec![17, 9],
        batch_size: 5,
        num_steps: 6,
        init_scale: 0.3,
        keep_prob: 0.8,
        tie_weights: tied,
        max_grad_norm,
        precision,
        ..Config::default()
    }
}

/// Tolerances of a step (design.md §4; `tests/train_step_parity.rs`,
/// `tests/mixed_precision.rs`): the loss, the parameters, the update (new - old, a much
/// stricter measure) and the carried state.
struct StepTolerances {
    loss: f64,
    params: f64,
    update: f64,
    state: f64,
}

const F32_STEP: StepTolerances = StepTolerances {
    loss: 1e-5,
    params: 1e-4,
    update: 1e-3,
    state: 1e-5,
};

/// A mixed step against its twin, which rounds the same operands to f16: the f32 sums of
/// products differ in order only, but through f16 values that a last-bit difference can
/// round the other way.
const MIXED_STEP: StepTolerances = StepTolerances {
    loss: 1e-4,
    params: 1e-4,
    update: 2e-3,
    state: 1e-4,
};

/// One training step of `cfg` on `kernels` at `learning_rate` from fresh weights of `seed`, a
/// random batch and a non-zero incoming state, against the f64 reference step (the mixed
/// one for `--precision mixed`): the loss, every parameter, every parameter's update and
/// the carried state, each counted as a case of `o`.
#[cfg(not(target_arch = "wasm32"))]
pub fn training_step(
    gpu: &Gpu,
    kernels: &Kernels,
    cfg: &Config,
    learning_rate: f32,
    seed: u64,
    o: &mut Outcome,
) -> Result<()> {
    pollster::block_on(training_step_async(
        gpu,
        kernels,
        cfg,
        learning_rate,
        seed,
        o,
    ))
}

/// [`training_step`], awaiting the GPU (in a browser tab).
pub async fn training_step_async(
    gpu: &Gpu,
    kernels: &Kernels,
    cfg: &Config,
    learning_rate: f32,
    seed: u64,
    o: &mut Outcome,
) -> Result<()> {
    let hyper = Hyper {
        learning_rate,
        step: 3,
        seed: 11,
    };
    let params = Params::<f32>::init(cfg, seed);
    let state = random_state(cfg, seed + 100);
    let n = cfg.batch_size * cfg.num_steps;
    let (x, y) = (
        random_ids(n, cfg.vocab_size, seed + 200),
        random_ids(n, cfg.vocab_size, seed + 300),
    );

    let pbuf = ParamBuffers::upload(gpu, cfg, &params)?;
    let mut ws = Workspace::new(
        gpu,
        kernels,
        cfg,
        &pbuf,
        cfg.batch_size,
        cfg.num_steps,
        Mode::Train,
    )?;
    ws.write_state(gpu, &state)?;
    ws.take_loss_async(gpu).await?;
    ws.step(gpu, &x, &y, hyper)?;
    let (mut loss, _) = ws.take_loss_async(gpu).await?;
    if miscomputed(&o.kernel) {
        loss = -loss;
    }
    let got = pbuf.read_async(gpu, cfg).await?;
    let got_state = ws.read_state_async(gpu).await?;

    let mut want = params.cast::<f64>();
    let mut want_state = state.cast::<f64>();
    let key = Some(DropoutKey {
        seed: hyper.seed,
        step: hyper.step,
    });
    let lr = learning_rate as f64;
    let (out, tol) = match cfg.precision {
        Precision::F32 => (
            step::train_step(cfg, &mut want, &mut want_state, &x, &y, lr, key),
            F32_STEP,
        ),
        Precision::Mixed => {
            let mut ls = LossScale::initial().to_reference();
            let out =
                step::train_step_scaled(cfg, &mut want, &mut want_state, &x, &y, lr, key, &mut ls);
            (out, MIXED_STEP)
        }
    };
    let what = format!(
        "{}, clipping {}",
        if cfg.tie_weights { "tied" } else { "separate" },
        if out.grad_norm > cfg.max_grad_norm as f64 {
            "on"
        } else {
            "off"
        }
    );
    let loss_error = if loss.is_finite() {
        (loss - out.loss).abs() / out.loss.abs()
    } else {
        f64::INFINITY
    };
    o.case(format!("{what}: loss"), loss_error, tol.loss);
    for (((name, g), (_, w)), (_, b)) in got
        .tensors()
        .into_iter()
        .zip(want.tensors())
        .zip(params.tensors())
    {
        o.case(format!("{what}: {name}"), rel_l2(g, w), tol.params);
        let du: Vec<f32> = g.iter().zip(b).map(|(x, y)| x - y).collect();
        let dw: Vec<f64> = w.iter().zip(b).map(|(x, &y)| x - y as f64).collect();
        if dw.iter().any(|&v| v != 0.0) {
            o.case(
                format!("{what}: update of {name}"),
                rel_l2(&du, &dw),
                tol.update,
            );
        }
    }
    for l in 0..cfg.hidden.len() {
        for (part, g, w) in [
            ("c", &got_state.c[l], &want_state.c[l]),
            ("h", &got_state.h[l], &want_state.h[l]),
        ] {
            o.case(
                format!("{what}: carried {part}{l}"),
                rel_l2(g, w),
                tol.state,
            );
        }
    }
    Ok(())
}

/// The training steps of one row of the check: two steps of a small model on `kernels` (its
/// recurrence, its matmul choices) at `precision`, with separate softmax weights and
/// clipping off, and tied with clipping on; each counted in `o` (an error as a fault).
/// `tune` screens each recurrence it times with it.
#[cfg(not(target_arch = "wasm32"))]
pub fn recurrence_steps(gpu: &Gpu, kernels: &Kernels, precision: Precision, o: &mut Outcome) {
    pollster::block_on(recurrence_steps_async(gpu, kernels, precision, o))
}

/// [`recurrence_steps`], awaiting the GPU (in a browser tab).
pub async fn recurrence_steps_async(
    gpu: &Gpu,
    kernels: &Kernels,
    precision: Precision,
    o: &mut Outcome,
) {
    // Gradient norms here are about 1-3: a clip at 100 is off, at 0.05 on.
    for (seed, tied, clip, lr) in [(5, false, 100.0, 1.0), (9, true, 0.05, 0.7)] {
        let cfg = step_config(precision, tied, clip);
        if let Err(e) = training_step_async(gpu, kernels, &cfg, lr, seed, o).await {
            o.fault(format!("{e:#}"));
        }
    }
}

/// Whole training steps: in f32 on every recurrence the adapter runs, and in
/// `--precision mixed` (where the adapter has `SHADER_F16`) on every f16 matmul; each with
/// separate softmax weights and clipping off, and tied with clipping on. `gpu`'s kernel
/// choices are restored afterwards.
pub async fn training_steps(gpu: &mut Gpu, done: &mut dyn FnMut(&Outcome)) -> Result<Vec<Outcome>> {
    let saved = (gpu.recurrence, gpu.half_matmul);
    let result = steps(gpu, done).await;
    (gpu.recurrence, gpu.half_matmul) = saved;
    result
}

async fn steps(gpu: &mut Gpu, done: &mut dyn FnMut(&Outcome)) -> Result<Vec<Outcome>> {
    let mut runs: Vec<(String, Precision, Option<Recurrence>, Option<HalfVariant>)> =
        Recurrence::ALL
            .iter()
            .map(|&r| {
                (
                    format!("training step f32 {}", r.name()),
                    Precision::F32,
                    Some(r),
                    None,
                )
            })
            .collect();
    if let Some(hk) = HalfKernels::new(gpu)? {
        for v in hk.variants_available() {
            runs.push((
                format!("training step mixed {v}"),
                Precision::Mixed,
                None,
                Some(v),
            ));
        }
    }
    let mut out = Vec::new();
    for (name, precision, recurrence, half) in runs {
        gpu.recurrence = recurrence;
        gpu.half_matmul = half;
        let kernel = match (recurrence, half) {
            (Some(r), _) => r.name(),
            (None, Some(v)) => v.name(),
            (None, None) => "",
        };
        let mut o = Outcome::new(name, kernel);
        let kernels = match Kernels::new(gpu) {
            Ok(k) => k,
            // The fused recurrence where the driver refused its kernels (a warning said
            // why): not this adapter's. Any other error is the row's fault.
            Err(e)
                if recurrence == Some(Recurrence::Fused) && e.is::<crate::error::UsageError>() =>
            {
                continue
            }
            Err(e) => {
                o.fault(format!("{e:#}"));
                done(&o);
                out.push(o);
                continue;
            }
        };
        recurrence_steps_async(gpu, &kernels, precision, &mut o).await;
        done(&o);
        out.push(o);
    }
    Ok(out)
}

/// Every check, in order: the f32 matmuls, the f16 ones, the training steps (`done` hears
/// of each as it finishes).
pub async fn all(gpu: &mut Gpu, done: &mut dyn FnMut(&Outcome)) -> Result<Vec<Outcome>> {
    let mut out = matmuls(gpu, &Matmul::new(gpu)?, done).await?;
    if let Some(hk) = HalfKernels::new(gpu)? {
        out.extend(half_matmuls(gpu, &hk, done).await?);
    }
    out.extend(training_steps(gpu, done).await?);
    Ok(out)
}

/// The end of a check: `Ok` where every outcome passed, else one line naming those that
/// failed (what `lstm-gpu check` exits 1 with).
pub fn verdict(outcomes: &[Outcome], adapter: &str) -> Result<()> {
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.passed())
        .map(|o| o.check.as_str())
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "{} of {} checks failed on {adapter}: {}",
        failed.len(),
        outcomes.len(),
        failed.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_case_is_the_largest_against_its_tolerance_and_nan_fails() {
        let mut o = Outcome::new("k", "k");
        o.case("a", 5e-6, 1e-5);
        o.case("b", 5e-5, 1e-3);
        assert_eq!((o.cases, o.worst.as_str()), (2, "a"));
        assert!(o.passed());
        o.case("c", f64::NAN, 1.0);
        assert_eq!(o.worst, "c");
        assert!(!o.passed() && o.error.is_infinite());
        let mut o = Outcome::new("k", "k");
        o.case("a", 0.0, 1e-5);
        o.fault("wrote outside".into());
        assert!(!o.passed());
        let good = Outcome::new("matmul strip", "strip");
        assert!(verdict(std::slice::from_ref(&good), "gpu").is_ok());
        let e = verdict(&[good, o], "gpu").unwrap_err().to_string();
        assert_eq!(e, "1 of 2 checks failed on gpu: k");
    }

    #[test]
    fn rel_l2_never_passes_a_nan() {
        assert_eq!(rel_l2(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        assert!(rel_l2(&[f32::NAN, 2.0], &[1.0, 2.0]).is_infinite());
        assert!(rel_l2(&[1.0], &[1.0, 2.0]).is_infinite());
        assert!((rel_l2(&[1.1], &[1.0]) - 0.1).abs() < 1e-6);
    }

    #[test]
    fn the_cases_cover_every_transpose_form_and_the_aligned_paths() {
        let cases = matmul_cases();
        assert_eq!(cases.len(), 4 * MATMUL_SIZES.len());
        for form in [(false, false), (false, true), (true, false), (true, true)] {
            assert!(cases
                .iter()
                .any(|c| (c.shape.trans_a, c.shape.trans_b) == form && c.bias && c.accumulate));
        }
        assert!(cases
            .iter()
            .any(|c| c.a_offset % 4 == 0 && c.shape.m % 4 == 0));
        assert!(cases.iter().any(|c| c.a_offset % 2 == 1));
        assert!(cases.iter().any(|c| c.shape.k >= 130));
    }
}
