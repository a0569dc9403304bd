// Reductions: the global gradient norm over many tensors, the clip scale, and column sums
// (bias gradients). CPU twins: reference::sum_squares and reference::clip_scale; a column
// sum is out[j] = sum over rows i of in[i, j].
//
// The norm is two-level and deterministic without atomics: every tensor gets one
// `sum_squares_partial` dispatch that writes one partial sum per workgroup into its own
// range of slots of a partials buffer; `clip_scale` then sums all slots in a fixed order.
// Every workgroup writes its slot, even one with nothing to add, so no slot keeps a value
// from an earlier step.

// WORKGROUP, FAN, stage1, stage2 and workgroup_sum come from workgroup_sum.wgsl.

// Elements each invocation of sum_squares_partial adds; a workgroup covers CHUNK elements.
const ITEMS: u32 = 16u;
const CHUNK: u32 = WORKGROUP * ITEMS;

// ---------------------------------------------------------------------------------------
// partials[first + g] = sum of x^2 over elements [g * CHUNK, (g + 1) * CHUNK) of the tensor.

struct PartialParams {
    // Elements of the tensor (sum_squares_rows_partial: its capacity in elements).
    len: u32,
    input: u32,
    // First slot of this tensor in the partials buffer.
    first: u32,
    // Workgroups with a slot; the grid may hold a few more once split over x and y.
    slots: u32,
    // sum_squares_rows_partial only: elements per row, and the word holding the row count.
    width: u32,
    count: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read_write> output: array<f32>;
@group(0) @binding(2) var<uniform> partial: PartialParams;
@group(0) @binding(3) var<storage, read> row_count: array<u32>;

fn sum_squares_chunk(group: u32, lid: u32, len: u32) {
    var s = 0.0;
    let begin = group * CHUNK + lid;
    for (var j = 0u; j < ITEMS; j++) {
        let i = begin + j * WORKGROUP;
        if i < len {
            let x = input[partial.input + i];
            s += x * x;
        }
    }
    let total = workgroup_sum(lid, s);
    if lid == 0u {
        output[partial.first + group] = total;
    }
}

@compute @workgroup_size(WORKGROUP)
fn sum_squares_partial(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let group = wid.x + wid.y * groups.x;
    if group >= partial.slots {
        return;
    }
    sum_squares_chunk(group, lid, partial.len);
}

// The same over the first U rows of a [capacity, width] tensor, U read from the segments
// buffer of the step (gpu::embedding): the embedding gradient's rows of distinct ids.
@compute @workgroup_size(WORKGROUP)
fn sum_squares_rows_partial(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let group = wid.x + wid.y * groups.x;
    if group >= partial.slots {
        return;
    }
    let rows = min(row_count[partial.count], partial.len / partial.width);
    sum_squares_chunk(group, lid, rows * partial.width);
}

// ---------------------------------------------------------------------------------------
// One workgroup: sum_sq = sum of all partials, norm = sqrt(sum_sq), scale = min(1, max_norm
// / norm). A non-finite sum makes scale 0, which the SGD kernels take as "skip this
// update", and adds one to the count of such steps. The clip block is
// [sum_sq, norm, scale, non-finite steps], all f32.

struct ClipParams {
    count: u32,
    partials: u32,
    clip: u32,
    max_norm: f32,
}

@group(0) @binding(2) var<uniform> clip: ClipParams;

@compute @workgroup_size(WORKGROUP)
fn clip_scale(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var i = lid; i < clip.count; i += WORKGROUP) {
        s += input[clip.partials + i];
    }
    let sum_sq = workgroup_sum(lid, s);
    if lid == 0u {
        let norm = sqrt(sum_sq);
        // Infinity and NaN have an all-ones exponent; testing the bits keeps the check
        // from being optimised away by compilers that assume finite floats.
        let finite = (bitcast<u32>(sum_sq) & 0x7f800000u) != 0x7f800000u;
        var scale = 0.0;
        if finite {
            scale = select(1.0, clip.max_norm / norm, norm > clip.max_norm);
        }
        output[clip.clip] = sum_sq;
        output[clip.clip + 1u] = norm;
        output[clip.clip + 2u] = scale;
        output[clip.clip + 3u] += select(1.0, 0.0, finite);
    }
}

// ---------------------------------------------------------------------------------------
// out[j] (+)= sum over i of in[i, j], for in [rows, cols]: one invocation per column, rows
// added in increasing order from zero (then to the old value when accumulating).
//
// In row slices (a GPU, where one invocation per column leaves most of it idle and each
// waits on a long chain of loads): the grid's z cuts the rows into slices of `slice_rows`,
// and invocation (j, z) writes the sum of its slice's rows of column j to
// out[out + z * cols + j], never accumulating. The slices' sums, a [slices, cols] matrix,
// are then added by this same kernel over their rows (slices in increasing order, then
// to the old value): reference::column_sum_sliced. Unsliced, z is 0 and `slice_rows` is
// `rows`: the one-pass sum above.

struct ColumnSumParams {
    rows: u32,
    cols: u32,
    input: u32,
    out: u32,
    accumulate: u32,
    slice_rows: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(2) var<uniform> colsum: ColumnSumParams;

const COLUMN_WORKGROUP: u32 = 64u;

@compute @workgroup_size(COLUMN_WORKGROUP)
fn column_sum(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let j = gid.x + gid.y * groups.x * COLUMN_WORKGROUP;
    if j >= colsum.cols {
        return;
    }
    let first = gid.z * colsum.slice_rows;
    let count = min(colsum.rows - first, colsum.slice_rows);
    // Eight rows' loads, then their eight adds in order: the same sum, bit for bit, with
    // eight loads in flight instead of one (a GPU waits on each load of the plain loop:
    // on an NVIDIA H200, 0.22 ms for [1200, 1024]).
    let w = colsum.cols;
    let rows8 = count - count % 8u;
    var s = 0.0;
    var p = colsum.input + first * w + j;
    for (var i = 0u; i < rows8; i += 8u) {
        let v0 = input[p];
        let v1 = input[p + w];
        let v2 = input[p + 2u * w];
        let v3 = input[p + 3u * w];
        let v4 = input[p + 4u * w];
        let v5 = input[p + 5u * w];
        let v6 = input[p + 6u * w];
        let v7 = input[p + 7u * w];
        s += v0;
        s += v1;
        s += v2;
        s += v3;
        s += v4;
        s += v5;
        s += v6;
        s += v7;
        p += 8u * w;
    }
    for (var i = rows8; i < count; i++) {
        s += input[p];
        p += w;
    }
    let at = colsum.out + gid.z * w + j;
    if colsum.accumulate != 0u {
        s = output[at] + s;
    }
    output[at] = s;
}

// ---------------------------------------------------------------------------------------
// The step guard of a training step (one invocation, after clip_scale and before SGD): a
// step whose loss or squared gradient norm is not finite is skipped. Its loss does not enter
// the accumulator, the clip scale becomes 0 (the SGD kernels skip the update), and the
// accumulator counts it: steps skipped, of those with a non-finite loss, the first and last
// skipped step (1-based global step numbers, 0 for none) and the steps skipped in a row. A
// step that counts and runs its update (clip scale above 0) adds its global gradient norm
// (clip_scale's, before clipping; with loss scaling, loss_scale_update's true norm) to their
// sum, to their maximum and to their count, and counts as clipped where that norm is above
// max_norm. (Not where the clip scale is below 1: with loss scaling the scale also divides
// out S.) A mixed step whose f16 gradients overflowed counts its loss but has no norm: its
// clip scale is 0 and its update skipped.
// The step loss [sum, batches] that loss_accumulate added to is zeroed for the next step.
// CPU twin: reference::step_guard. The accumulator's words are in gpu::reduce::TrainAccumulator.

struct GuardParams {
    step_loss: u32,
    acc: u32,
    clip: u32,
    hyper: u32,
    max_norm: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> guard_step_loss: array<f32>;
@group(0) @binding(1) var<storage, read_write> guard_acc: array<u32>;
@group(0) @binding(2) var<storage, read_write> guard_clip: array<f32>;
@group(0) @binding(3) var<storage, read> guard_hyper: array<u32>;
@group(0) @binding(4) var<uniform> guard: GuardParams;

// Word of the global step counter in the hyperparameter block (gpu::sgd::Hyper).
const HYPER_STEP: u32 = 1u;

fn is_finite_f32(x: f32) -> bool {
    // Bits, not x == x: see clip_scale.
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

@compute @workgroup_size(1)
fn step_guard() {
    let loss = guard_step_loss[guard.step_loss];
    let batches = guard_step_loss[guard.step_loss + 1u];
    guard_step_loss[guard.step_loss] = 0.0;
    guard_step_loss[guard.step_loss + 1u] = 0.0;
    let loss_ok = is_finite_f32(loss);
    let norm_ok = is_finite_f32(guard_clip[guard.clip]);
    let a = guard.acc;
    if loss_ok && norm_ok {
        guard_acc[a] = bitcast<u32>(bitcast<f32>(guard_acc[a]) + loss);
        guard_acc[a + 1u] = bitcast<u32>(bitcast<f32>(guard_acc[a + 1u]) + batches);
        if guard_clip[guard.clip + 2u] > 0.0 {
            let norm = guard_clip[guard.clip + 1u];
            guard_acc[a + 6u] = bitcast<u32>(bitcast<f32>(guard_acc[a + 6u]) + norm);
            guard_acc[a + 7u] = bitcast<u32>(max(bitcast<f32>(guard_acc[a + 7u]), norm));
            if norm > guard.max_norm {
                guard_acc[a + 8u] += 1u;
            }
            guard_acc[a + 9u] += 1u;
        }
        guard_acc[a + 10u] = 0u;
    } else {
        guard_clip[guard.clip + 2u] = 0.0;
        let step = guard_hyper[guard.hyper + HYPER_STEP] + 1u;
        guard_acc[a + 2u] += 1u;
        if !loss_ok {
            guard_acc[a + 3u] += 1u;
        }
        if guard_acc[a + 4u] == 0u {
            guard_acc[a + 4u] = step;
        }
        guard_acc[a + 5u] = step;
        guard_acc[a + 10u] += 1u;
    }
}

// ---------------------------------------------------------------------------------------
// The carried state guard (after the state is copied out of a training step): every row
// (one of the batch's streams) of a layer's carried [batch, hidden] c and h that holds a
// non-finite value is zeroed, c and h together, as at an epoch start. Otherwise one bad
// step would make every later step of the epoch NaN. One workgroup per row.
// CPU twin: reference::state_guard.

struct StateGuardParams {
    rows: u32,
    width: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read_write> state_c: array<f32>;
@group(0) @binding(1) var<storage, read_write> state_h: array<f32>;
@group(0) @binding(2) var<uniform> state_guard_params: StateGuardParams;

@compute @workgroup_size(WORKGROUP)
fn state_guard(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.x + wid.y * groups.x;
    if row >= state_guard_params.rows {
        return;
    }
    let width = state_guard_params.width;
    let first = row * width;
    var bad = 0.0;
    for (var j = lid; j < width; j += WORKGROUP) {
        if !is_finite_f32(state_c[first + j]) || !is_finite_f32(state_h[first + j]) {
            bad = 1.0;
        }
    }
    if workgroup_sum(lid, bad) > 0.0 {
        for (var j = lid; j < width; j += WORKGROUP) {
            state_c[first + j] = 0.0;
            state_h[first + j] = 0.0;
        }
    }
}
