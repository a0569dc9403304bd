// Fused log-softmax and cross-entropy, its gradient in place, the running loss, and top-k.
// CPU twins: reference::softmax_xent_forward, reference::softmax_xent_backward,
// reference::softmax_xent_backward_columns and reference::topk; loss_accumulate is a sum.
//
// logits are [rows, classes] row-major at a word offset; targets are u32 class ids.
// Reductions use a fixed tree (256 partial results, 16 sums of 16, then 16 folded in
// order), so results are bit-identical from run to run.

// WORKGROUP, FAN, stage1, stage2 and workgroup_sum come from workgroup_sum.wgsl.
const NO_INDEX: u32 = 0xffffffffu;
// Exactly f32::MAX: a literal above it (3.40282347e38 read as a double is) is an error in Tint.
const FLT_MAX: f32 = 3.4028234663852886e38;

// WGSL has no literal for infinity or NaN, and a constant expression that evaluates to
// one is an error (Tint, the browsers' compiler, rejects it): the bits go through a `var`,
// which is not a constant expression.
fn neg_inf() -> f32 {
    var bits = 0xff800000u;
    return bitcast<f32>(bits);
}

fn quiet_nan() -> f32 {
    var bits = 0x7fc00000u;
    return bitcast<f32>(bits);
}

var<workgroup> stage1_index: array<u32, WORKGROUP>;
var<workgroup> stage2_index: array<u32, FAN>;

// The workgroup's maximum, in the two stages of workgroup_sum (see there).
fn workgroup_max(lid: u32, value: f32) -> f32 {
    stage1[lid] = value;
    workgroupBarrier();
    if lid < FAN {
        var m = stage1[lid];
        for (var j = 1u; j < WORKGROUP / FAN; j++) {
            m = max(m, stage1[lid + j * FAN]);
        }
        stage2[lid] = m;
    }
    workgroupBarrier();
    var m = stage2[0];
    for (var j = 1u; j < FAN; j++) {
        m = max(m, stage2[j]);
    }
    return m;
}

// The row a workgroup of a grid split over x and y works on (see gpu::groups_1d).
fn row_index(wid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wid.x + wid.y * groups.x;
}

// ---------------------------------------------------------------------------------------
// lse[r] = log sum exp(logits[r, :]), loss[r] = lse[r] - logits[r, targets[r]]: one
// workgroup per row. A target outside the classes gives a NaN loss.

struct ForwardParams {
    rows: u32,
    classes: u32,
    logits: u32,
    targets: u32,
    lse: u32,
    loss: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> fwd_logits: array<f32>;
@group(0) @binding(1) var<storage, read> fwd_targets: array<u32>;
@group(0) @binding(2) var<storage, read_write> fwd_lse: array<f32>;
@group(0) @binding(3) var<storage, read_write> fwd_loss: array<f32>;
@group(0) @binding(4) var<uniform> fwd: ForwardParams;

@compute @workgroup_size(WORKGROUP)
fn softmax_xent_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = row_index(wid, groups);
    if row >= fwd.rows {
        return;
    }
    let base = fwd.logits + row * fwd.classes;
    // One pass over the row: each invocation keeps the maximum m of the logits it has read
    // and s = sum of exp(logit - m), rescaling s when m grows; four logits at a time, so
    // that rescaling costs one exp per four. Shifting by at least -FLT_MAX keeps a run of
    // -inf logits at s = 0 instead of exp(-inf + inf) = NaN.
    var m = neg_inf();
    var s = 0.0;
    var c = lid;
    for (; c + 3u * WORKGROUP < fwd.classes; c += 4u * WORKGROUP) {
        let x0 = fwd_logits[base + c];
        let x1 = fwd_logits[base + c + WORKGROUP];
        let x2 = fwd_logits[base + c + 2u * WORKGROUP];
        let x3 = fwd_logits[base + c + 3u * WORKGROUP];
        let m_new = max(m, max(max(x0, x1), max(x2, x3)));
        let shift = max(m_new, -FLT_MAX);
        s = s * exp(m - shift) + ((exp(x0 - shift) + exp(x1 - shift)) + (exp(x2 - shift) + exp(x3 - shift)));
        m = m_new;
    }
    for (; c < fwd.classes; c += WORKGROUP) {
        let x = fwd_logits[base + c];
        let m_new = max(m, x);
        let shift = max(m_new, -FLT_MAX);
        s = s * exp(m - shift) + exp(x - shift);
        m = m_new;
    }
    let row_max = workgroup_max(lid, m);
    let total = workgroup_sum(lid, s * exp(m - max(row_max, -FLT_MAX)));
    if lid == 0u {
        let lse = row_max + log(total);
        let label = fwd_targets[fwd.targets + row];
        var loss = quiet_nan();
        if label < fwd.classes {
            loss = lse - fwd_logits[base + label];
        }
        fwd_lse[fwd.lse + row] = lse;
        fwd_loss[fwd.loss + row] = loss;
    }
}

// ---------------------------------------------------------------------------------------
// logits[r, c] <- (exp(logits[r, c] - lse[r]) - (c == targets[r])) * scale, in place: one
// workgroup per row.

struct BackwardParams {
    rows: u32,
    classes: u32,
    logits: u32,
    targets: u32,
    lse: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read_write> bwd_logits: array<f32>;
@group(0) @binding(1) var<storage, read> bwd_targets: array<u32>;
@group(0) @binding(2) var<storage, read> bwd_lse: array<f32>;
@group(0) @binding(3) var<uniform> bwd: BackwardParams;

@compute @workgroup_size(WORKGROUP)
fn softmax_xent_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = row_index(wid, groups);
    if row >= bwd.rows {
        return;
    }
    let base = bwd.logits + row * bwd.classes;
    let lse = bwd_lse[bwd.lse + row];
    let label = bwd_targets[bwd.targets + row];
    for (var c = lid; c < bwd.classes; c += WORKGROUP) {
        let p = exp(bwd_logits[base + c] - lse);
        let y = select(0.0, 1.0, c == label);
        bwd_logits[base + c] = (p - y) * bwd.scale;
    }
}

// ---------------------------------------------------------------------------------------
// softmax_xent_backward and the column sums of its result (the softmax bias gradient) in
// one pass over the logits: one invocation per class, down the rows in order. Each
// gradient is computed exactly as softmax_xent_backward computes it and each sum is added
// in column_sum's order (reduce.wgsl), so the results are bit for bit those of the two
// kernels; the logits are read once instead of twice.
//
// In row slices, as column_sum (reduce.wgsl) cuts them: invocation (c, z) computes the
// gradients of rows [z * slice_rows, ...) of class c and writes their sum to
// sums[sums + z * classes + c], never accumulating; column_sum then adds the slices' sums
// (reference::softmax_xent_backward_columns_sliced). Unsliced, z is 0 and `slice_rows`
// is `rows`.

struct ColumnsParams {
    rows: u32,
    classes: u32,
    logits: u32,
    targets: u32,
    lse: u32,
    scale: f32,
    sums: u32,
    accumulate: u32,
    slice_rows: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const COLUMNS_WORKGROUP: u32 = 64u;

@group(0) @binding(0) var<storage, read_write> cols_logits: array<f32>;
@group(0) @binding(1) var<storage, read> cols_targets: array<u32>;
@group(0) @binding(2) var<storage, read> cols_lse: array<f32>;
@group(0) @binding(3) var<storage, read_write> cols_sums: array<f32>;
@group(0) @binding(4) var<uniform> cols: ColumnsParams;

// One gradient of softmax_xent_backward_columns: (softmax - onehot) * scale.
fn column_grad(logit: f32, lse: f32, is_target: bool) -> f32 {
    let p = exp(logit - lse);
    return (p - select(0.0, 1.0, is_target)) * cols.scale;
}

@compute @workgroup_size(COLUMNS_WORKGROUP)
fn softmax_xent_backward_columns(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let c = gid.x + gid.y * groups.x * COLUMNS_WORKGROUP;
    if c >= cols.classes {
        return;
    }
    let first = gid.z * cols.slice_rows;
    let end = first + min(cols.rows - first, cols.slice_rows);
    // Four rows at a time, loads first, then each row as the plain loop makes it and the
    // sums in row order: the same results, with four rows' loads in flight (see
    // column_sum).
    let w = cols.classes;
    let rows4 = end - (end - first) % 4u;
    var s = 0.0;
    for (var r = first; r < rows4; r += 4u) {
        let at = cols.logits + r * w + c;
        let l0 = cols_logits[at];
        let l1 = cols_logits[at + w];
        let l2 = cols_logits[at + 2u * w];
        let l3 = cols_logits[at + 3u * w];
        let e = cols.lse + r;
        let t = cols.targets + r;
        let d0 = column_grad(l0, cols_lse[e], c == cols_targets[t]);
        let d1 = column_grad(l1, cols_lse[e + 1u], c == cols_targets[t + 1u]);
        let d2 = column_grad(l2, cols_lse[e + 2u], c == cols_targets[t + 2u]);
        let d3 = column_grad(l3, cols_lse[e + 3u], c == cols_targets[t + 3u]);
        cols_logits[at] = d0;
        cols_logits[at + w] = d1;
        cols_logits[at + 2u * w] = d2;
        cols_logits[at + 3u * w] = d3;
        s += d0;
        s += d1;
        s += d2;
        s += d3;
    }
    for (var r = rows4; r < end; r++) {
        let at = cols.logits + r * w + c;
        let d = column_grad(cols_logits[at], cols_lse[cols.lse + r], c == cols_targets[cols.targets + r]);
        cols_logits[at] = d;
        s += d;
    }
    let out = cols.sums + gid.z * w + c;
    if cols.accumulate != 0u {
        s = cols_sums[out] + s;
    }
    cols_sums[out] = s;
}

// ---------------------------------------------------------------------------------------
// acc[0] += scale * sum(loss[0 .. rows]), acc[1] += 1: the running loss of a pass and the
// number of batches in it, so that the trainer reads the loss at log points only. One
// workgroup.

struct AccumulateParams {
    rows: u32,
    loss: u32,
    acc: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> acc_loss: array<f32>;
@group(0) @binding(1) var<storage, read_write> acc_total: array<f32>;
@group(0) @binding(2) var<uniform> acc: AccumulateParams;

@compute @workgroup_size(WORKGROUP)
fn loss_accumulate(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var r = lid; r < acc.rows; r += WORKGROUP) {
        s += acc_loss[acc.loss + r];
    }
    let total = workgroup_sum(lid, s);
    if lid == 0u {
        acc_total[acc.acc] += total * acc.scale;
        acc_total[acc.acc + 1u] += 1.0;
    }
}

// ---------------------------------------------------------------------------------------
// The k largest values of one row with their indices, largest first, ties to the lower
// index: k rounds of a workgroup arg-max over the values ranked below the previous pick.
// NaN is never picked; rounds that find nothing write index NO_INDEX and value -inf.

struct TopkParams {
    len: u32,
    k: u32,
    row: u32,
    indices: u32,
    values: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> topk_row: array<f32>;
@group(0) @binding(1) var<storage, read_write> topk_indices: array<u32>;
@group(0) @binding(2) var<storage, read_write> topk_values: array<f32>;
@group(0) @binding(3) var<uniform> topk_params: TopkParams;

// Whether (value a, index i) ranks before (value b, index j).
fn ranks_before(a: f32, i: u32, b: f32, j: u32) -> bool {
    return a > b || (a == b && i < j);
}

fn workgroup_argmax(lid: u32, value: f32, index: u32) -> vec2<u32> {
    stage1[lid] = value;
    stage1_index[lid] = index;
    workgroupBarrier();
    if lid < FAN {
        var v = stage1[lid];
        var i = stage1_index[lid];
        for (var j = 1u; j < WORKGROUP / FAN; j++) {
            let w = stage1[lid + j * FAN];
            let wi = stage1_index[lid + j * FAN];
            if ranks_before(w, wi, v, i) {
                v = w;
                i = wi;
            }
        }
        stage2[lid] = v;
        stage2_index[lid] = i;
    }
    workgroupBarrier();
    var v = stage2[0];
    var i = stage2_index[0];
    for (var j = 1u; j < FAN; j++) {
        if ranks_before(stage2[j], stage2_index[j], v, i) {
            v = stage2[j];
            i = stage2_index[j];
        }
    }
    return vec2<u32>(bitcast<u32>(v), i);
}

@compute @workgroup_size(WORKGROUP)
fn topk(@builtin(local_invocation_index) lid: u32) {
    let p = topk_params;
    var prev_value = 0.0;
    var prev_index = NO_INDEX;
    for (var rank = 0u; rank < p.k; rank++) {
        var best = neg_inf();
        var best_index = NO_INDEX;
        for (var c = lid; c < p.len; c += WORKGROUP) {
            let v = topk_row[p.row + c];
            let eligible = rank == 0u || ranks_before(prev_value, prev_index, v, c);
            if eligible && ranks_before(v, c, best, best_index) {
                best = v;
                best_index = c;
            }
        }
        let pick = workgroup_argmax(lid, best, best_index);
        prev_value = bitcast<f32>(pick.x);
        prev_index = pick.y;
        if lid == 0u {
            topk_indices[p.indices + rank] = prev_index;
            topk_values[p.values + rank] = prev_value;
        }
    }
}
