//! The CPU twins: one function per shader entry point, written for clarity, generic over
//! [`Real`] so that the same code runs in f32 (to compare with the GPU) and in f64 (to be
//! checked against finite differences), plus a whole training step in [`step`].
//!
//! Layouts are row-major throughout. Names match the WGSL entry points.

pub mod step;

use crate::rng::dropout_uniform;

/// The floating-point operations the reference needs; implemented for f32 and f64.
pub trait Real:
    Copy
    + PartialOrd
    + std::fmt::Debug
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + Send
    + Sync
    + 'static
{
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn tanh(self) -> Self;
    fn sqrt(self) -> Self;
    fn zero() -> Self {
        Self::from_f64(0.0)
    }
    fn one() -> Self {
        Self::from_f64(1.0)
    }
}

macro_rules! impl_real {
    ($t:ty) => {
        impl Real for $t {
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
        }
    };
}
impl_real!(f32);
impl_real!(f64);

pub fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// Shape of a matmul `C[m, n] = op(A)[m, k] @ op(B)[k, n]`.
/// `A` is stored `[m, k]`, or `[k, m]` when `trans_a`; `B` is stored `[k, n]`, or `[n, k]`
/// when `trans_b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulShape {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub trans_a: bool,
    pub trans_b: bool,
}

impl std::str::FromStr for MatmulShape {
    type Err = String;

    /// `MxKxN`, optionally followed by `:NN`, `:NT`, `:TN` or `:TT` (the transposes of A
    /// and B; `NN` when left out), e.g. `60x256x1024` or `60x1024x256:NT`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("`{s}` is not a matmul shape: write MxKxN, optionally with :NN, :NT, :TN or :TT (e.g. 60x1024x256:NT)")
        };
        let (dims, form) = s.split_once(':').unwrap_or((s, "NN"));
        let (trans_a, trans_b) = match form.to_ascii_uppercase().as_str() {
            "NN" => (false, false),
            "NT" => (false, true),
            "TN" => (true, false),
            "TT" => (true, true),
            _ => return Err(bad()),
        };
        let d: Vec<usize> = dims
            .split(['x', 'X'])
            .map(|v| v.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        match d[..] {
            [m, k, n] if m > 0 && k > 0 && n > 0 => Ok(MatmulShape {
                m,
                k,
                n,
                trans_a,
                trans_b,
            }),
            _ => Err(bad()),
        }
    }
}

/// `x` rounded to the nearest f16 (ties to even; beyond f16's range, infinite), as f32: the
/// twin of `shaders/cast_f16.wgsl`.
pub fn round_f16(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

/// `C = op(A) @ op(B) (+ bias broadcast over rows) (+ C when accumulate)`.
/// Sums in the order of `k`, in `T`.
pub fn matmul<T: Real>(
    s: MatmulShape,
    a: &[T],
    b: &[T],
    bias: Option<&[T]>,
    c: &mut [T],
    accumulate: bool,
) {
    assert!(a.len() >= s.m * s.k && b.len() >= s.k * s.n && c.len() >= s.m * s.n);
    if let Some(bias) = bias {
        assert!(bias.len() >= s.n);
    }
    for i in 0..s.m {
        for j in 0..s.n {
            let mut acc = T::zero();
            for p in 0..s.k {
                let av = if s.trans_a {
                    a[p * s.m + i]
                } else {
                    a[i * s.k + p]
                };
                let bv = if s.trans_b {
                    b[j * s.k + p]
                } else {
                    b[p * s.n + j]
                };
                acc += av * bv;
            }
            if let Some(bias) = bias {
                acc += bias[j];
            }
            let out = &mut c[i * s.n + j];
            *out = if accumulate { *out + acc } else { acc };
        }
    }
}

/// LSTM cell forward (TensorFlow BasicLSTMCell), for a batch of `b` rows of `h` units.
///
/// `pre` is `z = [x, h_prev] @ W + bias`, `[b, 4h]` in gate order i, j, f, o.
/// Writes `act` `[b, 4h]` = (sigmoid(i), tanh(j), sigmoid(f + forget_bias), sigmoid(o)),
/// kept for the backward pass, and the new `c` and `h` `[b, h]`.
#[allow(clippy::too_many_arguments)]
pub fn lstm_cell_forward<T: Real>(
    b: usize,
    h: usize,
    pre: &[T],
    c_prev: &[T],
    forget_bias: T,
    act: &mut [T],
    c: &mut [T],
    h_out: &mut [T],
) {
    for r in 0..b {
        for u in 0..h {
            let z = |g: usize| pre[r * 4 * h + g * h + u];
            let i = sigmoid(z(0));
            let j = z(1).tanh();
            let f = sigmoid(z(2) + forget_bias);
            let o = sigmoid(z(3));
            let cn = c_prev[r * h + u] * f + i * j;
            act[r * 4 * h + u] = i;
            act[r * 4 * h + h + u] = j;
            act[r * 4 * h + 2 * h + u] = f;
            act[r * 4 * h + 3 * h + u] = o;
            c[r * h + u] = cn;
            h_out[r * h + u] = cn.tanh() * o;
        }
    }
}

/// LSTM cell backward. Given the saved activations, `c_prev`, the new `c`, the gradient
/// `dh` of the cell's output and `dc` arriving from the next time step, writes the gradient
/// of the pre-activations `dpre` `[b, 4h]` and of the previous cell state `dc_prev` `[b, h]`.
#[allow(clippy::too_many_arguments)]
pub fn lstm_cell_backward<T: Real>(
    b: usize,
    h: usize,
    act: &[T],
    c_prev: &[T],
    c: &[T],
    dh: &[T],
    dc: &[T],
    dpre: &mut [T],
    dc_prev: &mut [T],
) {
    let one = T::one();
    for r in 0..b {
        for u in 0..h {
            let g = |k: usize| act[r * 4 * h + k * h + u];
            let (i, j, f, o) = (g(0), g(1), g(2), g(3));
            let tc = c[r * h + u].tanh();
            let dhv = dh[r * h + u];
            let dct = dc[r * h + u] + dhv * o * (one - tc * tc);
            dpre[r * 4 * h + u] = dct * j * i * (one - i);
            dpre[r * 4 * h + h + u] = dct * i * (one - j * j);
            dpre[r * 4 * h + 2 * h + u] = dct * c_prev[r * h + u] * f * (one - f);
            dpre[r * 4 * h + 3 * h + u] = dhv * tc * o * (one - o);
            dc_prev[r * h + u] = dct * f;
        }
    }
}

/// One fused time step of an LSTM layer, forward (`shaders/lstm_step.wgsl`): the
/// pre-activations `zx + h_prev @ w_h` (`zx` `[b, 4h]`: the input projection and bias;
/// `w_h` `[h, 4h]`), summed as the unfused path sums them (a matmul accumulating into `zx`),
/// then [`lstm_cell_forward`].
#[allow(clippy::too_many_arguments)]
pub fn lstm_step_forward<T: Real>(
    b: usize,
    h: usize,
    zx: &[T],
    h_prev: &[T],
    w_h: &[T],
    c_prev: &[T],
    forget_bias: T,
    act: &mut [T],
    c: &mut [T],
    h_out: &mut [T],
) {
    let mut pre = zx[..b * 4 * h].to_vec();
    let shape = MatmulShape {
        m: b,
        k: h,
        n: 4 * h,
        trans_a: false,
        trans_b: false,
    };
    matmul(shape, h_prev, w_h, None, &mut pre, true);
    lstm_cell_forward(b, h, &pre, c_prev, forget_bias, act, c, h_out);
}

/// One fused time step of an LSTM layer, backward (`shaders/lstm_step.wgsl`), for every
/// time step but the last: `dh += dz_next @ w_h^T` (`dh` `[b, h]` holds the gradient from
/// above and is left holding the step's whole d(h)), then [`lstm_cell_backward`] into
/// `dz` `[b, 4h]` and `dc_prev`.
#[allow(clippy::too_many_arguments)]
pub fn lstm_step_backward<T: Real>(
    b: usize,
    h: usize,
    dz_next: &[T],
    w_h: &[T],
    act: &[T],
    c_prev: &[T],
    c: &[T],
    dh: &mut [T],
    dc: &[T],
    dz: &mut [T],
    dc_prev: &mut [T],
) {
    let shape = MatmulShape {
        m: b,
        k: 4 * h,
        n: h,
        trans_a: false,
        trans_b: true,
    };
    matmul(shape, dz_next, w_h, None, dh, true);
    lstm_cell_backward(b, h, act, c_prev, c, dh, dc, dz, dc_prev);
}

/// `out[p, :] = table[ids[p], :]` for a table of width `e`.
pub fn embedding_gather<T: Real>(e: usize, ids: &[u32], table: &[T], out: &mut [T]) {
    for (p, &id) in ids.iter().enumerate() {
        let id = id as usize;
        out[p * e..(p + 1) * e].copy_from_slice(&table[id * e..(id + 1) * e]);
    }
}

/// The ids of a batch grouped by value, computed on the host before upload so that the
/// embedding gradient needs no atomics: `unique[u]` occurs at the positions
/// `order[start[u]..start[u + 1]]`, in increasing position order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct IdSegments {
    pub unique: Vec<u32>,
    pub start: Vec<u32>,
    pub order: Vec<u32>,
}

impl IdSegments {
    pub fn new(ids: &[u32]) -> IdSegments {
        let mut order: Vec<u32> = (0..ids.len() as u32).collect();
        order.sort_by_key(|&p| (ids[p as usize], p));
        let mut unique = Vec::new();
        let mut start = Vec::new();
        for (k, &p) in order.iter().enumerate() {
            let id = ids[p as usize];
            if unique.last() != Some(&id) {
                unique.push(id);
                start.push(k as u32);
            }
        }
        start.push(order.len() as u32);
        IdSegments {
            unique,
            start,
            order,
        }
    }
}

/// Embedding gradient rows: `rows[u, :] = sum of dout[p, :] over the positions p of
/// segment u`, summed in increasing position order. `rows` is `[unique, e]`.
pub fn embedding_grad_rows<T: Real>(e: usize, seg: &IdSegments, dout: &[T], rows: &mut [T]) {
    for u in 0..seg.unique.len() {
        let row = &mut rows[u * e..(u + 1) * e];
        row.iter_mut().for_each(|v| *v = T::zero());
        for &p in &seg.order[seg.start[u] as usize..seg.start[u + 1] as usize] {
            for (r, &d) in row
                .iter_mut()
                .zip(&dout[p as usize * e..(p as usize + 1) * e])
            {
                *r += d;
            }
        }
    }
}

/// Tied embeddings: add the gradient rows of the batch's distinct ids into the dense
/// embedding gradient, `dense[unique[u], :] += rows[u, :]` (the ids are distinct, so every
/// element is written by one row).
pub fn embedding_scatter_add_rows<T: Real>(e: usize, unique: &[u32], rows: &[T], dense: &mut [T]) {
    for (u, &id) in unique.iter().enumerate() {
        let id = id as usize;
        for (d, &r) in dense[id * e..(id + 1) * e]
            .iter_mut()
            .zip(&rows[u * e..(u + 1) * e])
        {
            *d += r;
        }
    }
}

/// Fused log-softmax + cross-entropy over `rows` rows of `classes` logits:
/// `lse[r] = log sum exp(logits[r, :])`, `loss[r] = lse[r] - logits[r, targets[r]]`.
pub fn softmax_xent_forward<T: Real>(
    classes: usize,
    logits: &[T],
    targets: &[u32],
    lse: &mut [T],
    loss: &mut [T],
) {
    for (r, &t) in targets.iter().enumerate() {
        let row = &logits[r * classes..(r + 1) * classes];
        let mx = row
            .iter()
            .copied()
            .fold(row[0], |a, b| if b > a { b } else { a });
        let mut s = T::zero();
        for &v in row {
            s += (v - mx).exp();
        }
        lse[r] = mx + s.ln();
        loss[r] = lse[r] - row[t as usize];
    }
}

/// d(loss * scale)/d(logits), written over the logits in place:
/// `(softmax(logits) - onehot(target)) * scale`, using the `lse` of the forward pass.
pub fn softmax_xent_backward<T: Real>(
    classes: usize,
    logits: &mut [T],
    targets: &[u32],
    lse: &[T],
    scale: T,
) {
    for (r, &t) in targets.iter().enumerate() {
        let row = &mut logits[r * classes..(r + 1) * classes];
        for (c, v) in row.iter_mut().enumerate() {
            let p = (*v - lse[r]).exp();
            let y = if c == t as usize { T::one() } else { T::zero() };
            *v = (p - y) * scale;
        }
    }
}

/// [`softmax_xent_backward`], then the [`column_sum`] of the gradient into `sums` (the
/// softmax bias gradient): what the fused kernel computes in one pass.
pub fn softmax_xent_backward_columns<T: Real>(
    classes: usize,
    logits: &mut [T],
    targets: &[u32],
    lse: &[T],
    scale: T,
    sums: &mut [T],
    accumulate: bool,
) {
    softmax_xent_backward(classes, logits, targets, lse, scale);
    column_sum(targets.len(), classes, logits, sums, accumulate);
}

/// Column sums (bias gradients): `out[j] = sum over i of input[i, j]` of a `[rows, cols]`
/// matrix, plus the old `out[j]` when `accumulate`.
pub fn column_sum<T: Real>(rows: usize, cols: usize, input: &[T], out: &mut [T], accumulate: bool) {
    for (j, o) in out.iter_mut().enumerate().take(cols) {
        let mut s = T::zero();
        for i in 0..rows {
            s += input[i * cols + j];
        }
        *o = if accumulate { *o + s } else { s };
    }
}

/// [`column_sum`] in row slices, as a GPU adds it (`reduce.wgsl`): each slice of
/// `slice_rows` rows (the last one shorter) summed from zero in row order, then the slices'
/// sums added the same way (plus the old `out[j]` when `accumulate`).
pub fn column_sum_sliced<T: Real>(
    rows: usize,
    cols: usize,
    slice_rows: usize,
    input: &[T],
    out: &mut [T],
    accumulate: bool,
) {
    let slices = rows.div_ceil(slice_rows.max(1));
    let mut partials = vec![T::zero(); slices * cols];
    for (z, part) in partials.chunks_mut(cols).enumerate() {
        let first = z * slice_rows;
        let count = slice_rows.min(rows - first);
        let rows_of_slice = &input[first * cols..(first + count) * cols];
        column_sum(count, cols, rows_of_slice, part, false);
    }
    column_sum(slices, cols, &partials, out, accumulate);
}

/// [`softmax_xent_backward`], then the [`column_sum_sliced`] of the gradient into `sums`:
/// what the fused kernel computes in row slices.
#[allow(clippy::too_many_arguments)]
pub fn softmax_xent_backward_columns_sliced<T: Real>(
    classes: usize,
    slice_rows: usize,
    logits: &mut [T],
    targets: &[u32],
    lse: &[T],
    scale: T,
    sums: &mut [T],
    accumulate: bool,
) {
    softmax_xent_backward(classes, logits, targets, lse, scale);
    column_sum_sliced(targets.len(), classes, slice_rows, logits, sums, accumulate);
}

/// The running loss: adds `scale * sum(loss)` to `acc[0]` and one batch to `acc[1]`.
pub fn loss_accumulate<T: Real>(loss: &[T], scale: T, acc: &mut [T; 2]) {
    let mut s = T::zero();
    for &v in loss {
        s += v;
    }
    acc[0] += s * scale;
    acc[1] += T::one();
}

/// The `k` largest values of `row` with their indices, largest first; ties go to the lower
/// index. Used on probabilities for prediction.
pub fn topk<T: Real>(row: &[T], k: usize) -> Vec<(u32, T)> {
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    idx.sort_by(|&a, &b| {
        row[b as usize]
            .partial_cmp(&row[a as usize])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    idx.into_iter()
        .take(k)
        .map(|i| (i, row[i as usize]))
        .collect()
}

/// Sum of squares of every element of every tensor (the squared global norm).
pub fn sum_squares<T: Real>(tensors: &[&[T]]) -> T {
    let mut s = T::zero();
    for t in tensors {
        for &v in *t {
            s += v * v;
        }
    }
    s
}

/// Gradient scale of global-norm clipping: `min(1, max_norm / sqrt(sum_sq))`
/// (1 when the norm is zero).
pub fn clip_scale<T: Real>(sum_sq: T, max_norm: T) -> T {
    let norm = sum_sq.sqrt();
    if norm > max_norm {
        max_norm / norm
    } else {
        T::one()
    }
}

/// What [`step_guard`] keeps between steps: the twin of `gpu::reduce::TrainAccumulator`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GuardCounts {
    pub loss_sum: f32,
    pub batches: f32,
    pub skipped: u32,
    pub nonfinite_loss: u32,
    /// 1-based step numbers; 0 when nothing was skipped.
    pub first_skipped: u32,
    pub last_skipped: u32,
    /// Sum and maximum of the gradient norms of the steps that counted and ran their update
    /// (clip scale above 0), how many of them were clipped, and how many there were.
    pub norm_sum: f32,
    pub norm_max: f32,
    pub clipped: u32,
    pub norm_steps: u32,
    pub skipped_in_a_row: u32,
}

/// The step guard of a training step (twin of `step_guard` in reduce.wgsl): the step with
/// loss `step_loss` over `batches` batches, squared gradient norm `sum_sq` (and its root
/// `norm`, as `clip_scale` computed it) and 0-based index `step` counts when both are
/// finite; otherwise it is skipped. A step that counts with a clip scale above 0 (not a mixed
/// step whose f16 gradients overflowed) adds its norm, as clipped where it is above
/// `max_norm`. Returns the clip scale to use: `scale`, or 0 for a skipped step (which makes
/// SGD leave the parameters alone).
pub fn step_guard(
    acc: &mut GuardCounts,
    step_loss: f32,
    batches: f32,
    (sum_sq, norm): (f32, f32),
    (scale, max_norm): (f32, f32),
    step: u32,
) -> f32 {
    if step_loss.is_finite() && sum_sq.is_finite() {
        acc.loss_sum += step_loss;
        acc.batches += batches;
        if scale > 0.0 {
            acc.norm_sum += norm;
            acc.norm_max = acc.norm_max.max(norm);
            if norm > max_norm {
                acc.clipped += 1;
            }
            acc.norm_steps += 1;
        }
        acc.skipped_in_a_row = 0;
        scale
    } else {
        acc.skipped += 1;
        if !step_loss.is_finite() {
            acc.nonfinite_loss += 1;
        }
        if acc.first_skipped == 0 {
            acc.first_skipped = step + 1;
        }
        acc.last_skipped = step + 1;
        acc.skipped_in_a_row += 1;
        0.0
    }
}

/// The carried state guard (twin of `state_guard` in reduce.wgsl): every row of the
/// `[rows, width]` state whose c or h holds a value that is not finite is zeroed in both.
pub fn state_guard<T: Real>(width: usize, c: &mut [T], h: &mut [T]) {
    for (rc, rh) in c.chunks_mut(width).zip(h.chunks_mut(width)) {
        if rc.iter().chain(rh.iter()).any(|v| !v.to_f64().is_finite()) {
            rc.fill(T::zero());
            rh.fill(T::zero());
        }
    }
}

/// Dense SGD: `param -= lr * scale * grad`.
pub fn sgd_dense<T: Real>(param: &mut [T], grad: &[T], lr: T, scale: T) {
    let step = lr * scale;
    for (p, &g) in param.iter_mut().zip(grad) {
        *p -= step * g;
    }
}

/// Sparse SGD on the rows of a `[_, e]` table: `table[unique[u], :] -= lr * scale * rows[u, :]`.
pub fn sgd_sparse_rows<T: Real>(
    e: usize,
    table: &mut [T],
    unique: &[u32],
    rows: &[T],
    lr: T,
    scale: T,
) {
    let step = lr * scale;
    for (u, &id) in unique.iter().enumerate() {
        let id = id as usize;
        for c in 0..e {
            table[id * e + c] -= step * rows[u * e + c];
        }
    }
}

/// Inverted dropout: `y[i] = x[i] / keep` where `dropout_uniform(seed, stream, i) < keep`,
/// else 0. Applied to the upstream gradient with the same counters it is its own backward.
pub fn dropout<T: Real>(x: &[T], keep: f32, seed: u32, stream: u32, y: &mut [T]) {
    let inv = T::from_f64(1.0 / keep as f64);
    for (i, (&xv, yv)) in x.iter().zip(y.iter_mut()).enumerate() {
        *yv = if dropout_uniform(seed, stream, i as u32) < keep {
            xv * inv
        } else {
            T::zero()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_transposes_agree() {
        // A [2,3], B [3,2]
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0f64];
        let b = [7.0, 8.0, 9.0, 10.0, 11.0, 12.0f64];
        let mut c = [0.0; 4];
        let s = MatmulShape {
            m: 2,
            k: 3,
            n: 2,
            trans_a: false,
            trans_b: false,
        };
        matmul(s, &a, &b, Some(&[0.5, -0.5]), &mut c, false);
        assert_eq!(c, [58.5, 63.5, 139.5, 153.5]);
        let at = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0f64];
        let bt = [7.0, 9.0, 11.0, 8.0, 10.0, 12.0f64];
        let mut c2 = [1.0; 4];
        let s2 = MatmulShape {
            trans_a: true,
            trans_b: true,
            ..s
        };
        matmul(s2, &at, &bt, None, &mut c2, true);
        assert_eq!(c2, [59.0, 65.0, 140.0, 155.0]);
    }

    #[test]
    fn matmul_shapes_parse_with_their_transposes() {
        let s: MatmulShape = "60x1024x256:NT".parse().unwrap();
        assert_eq!(
            (s.m, s.k, s.n, s.trans_a, s.trans_b),
            (60, 1024, 256, false, true)
        );
        let s: MatmulShape = "128X1200x10000:tn".parse().unwrap();
        assert_eq!(
            (s.m, s.k, s.n, s.trans_a, s.trans_b),
            (128, 1200, 10000, true, false)
        );
        let s: MatmulShape = "7x1x3".parse().unwrap();
        assert_eq!(
            (s.m, s.k, s.n, s.trans_a, s.trans_b),
            (7, 1, 3, false, false)
        );
        for bad in [
            "",
            "60x256",
            "60x256x1024x2",
            "60x0x4",
            "ax2x3",
            "4x4x4:NX",
            "4x4x4:",
        ] {
            let e = bad.parse::<MatmulShape>().unwrap_err();
            assert!(e.contains("MxKxN"), "{bad}: {e}");
        }
    }

    #[test]
    fn segments_group_ids() {
        let seg = IdSegments::new(&[5, 2, 5, 9, 2, 5]);
        assert_eq!(seg.unique, vec![2, 5, 9]);
        assert_eq!(seg.start, vec![0, 2, 5, 6]);
        assert_eq!(seg.order, vec![1, 4, 0, 2, 5, 3]);
    }

    #[test]
    fn softmax_gradient_rows_sum_to_zero() {
        let mut logits = vec![0.3, -1.2, 2.0, 0.1, 0.0, 0.5f64];
        let t = [2u32, 0];
        let (mut lse, mut loss) = ([0.0; 2], [0.0; 2]);
        softmax_xent_forward(3, &logits, &t, &mut lse, &mut loss);
        let p = (2.0f64 - lse[0]).exp();
        assert!((loss[0] + p.ln()).abs() < 1e-12);
        softmax_xent_backward(3, &mut logits, &t, &lse, 1.0);
        assert!(logits[..3].iter().sum::<f64>().abs() < 1e-12);
        assert!(logits[3] < 0.0 && logits[4] > 0.0);
    }

    #[test]
    fn topk_orders_and_breaks_ties_low_first() {
        let r = topk(&[0.1f32, 0.4, 0.4, 0.05, 0.05], 3);
        assert_eq!(r, vec![(1, 0.4), (2, 0.4), (0, 0.1)]);
    }
}
