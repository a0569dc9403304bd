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

struct ColumnSumParams {
    rows: u32,
    cols: u32,
    input: u32,
    out: u32,
    accumulate: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
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
    var s = 0.0;
    for (var i = 0u; i < colsum.rows; i++) {
        s += input[colsum.input + i * colsum.cols + j];
    }
    let at = colsum.out + j;
    if colsum.accumulate != 0u {
        s = output[at] + s;
    }
    output[at] = s;
}
