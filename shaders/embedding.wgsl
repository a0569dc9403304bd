// Embedding lookup and its gradient. CPU twins: reference::embedding_gather and
// reference::embedding_grad_rows.
//
// The gradient needs no atomics: the host sorts the ids of a batch before upload
// (reference::IdSegments) and packs the segments into one u32 buffer, laid out for a batch
// of at most `capacity` positions as (see gpu::embedding::pack_segments):
//   word 0                                 U, the number of distinct ids
//   words 1 ..= capacity                   unique[u], the distinct ids in increasing order
//   words capacity + 1 ..= 2 capacity + 1  start[u], where segment u begins in `order`
//   words 2 capacity + 2 ..                order[k], positions grouped by id, increasing
// Only the first U entries of unique (U + 1 of start) are meaningful. The dispatch is sized
// for `capacity` segments when it is prepared; the loops stop at U.

const WORKGROUP: u32 = 256u;

// Grid-stride loops over a grid capped by the launcher (see sgd.wgsl).
fn flat_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * WORKGROUP;
}

fn grid_stride(groups: vec3<u32>) -> u32 {
    return groups.x * groups.y * WORKGROUP;
}

// ---------------------------------------------------------------------------------------
// out[p, :] = table[ids[p], :]. An id outside the table gives a row of NaN, so that a corrupt
// batch shows up in the loss instead of silently reading another row.

struct GatherParams {
    positions: u32,
    width: u32,
    table_rows: u32,
    ids: u32,
    table: u32,
    out: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> gather_ids: array<u32>;
@group(0) @binding(1) var<storage, read> gather_table: array<f32>;
@group(0) @binding(2) var<storage, read_write> gather_out: array<f32>;
@group(0) @binding(3) var<uniform> gather: GatherParams;

@compute @workgroup_size(WORKGROUP)
fn embedding_gather(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let words = gather.positions * gather.width;
    for (var idx = flat_index(gid, groups); idx < words; idx += grid_stride(groups)) {
        let p = idx / gather.width;
        let col = idx - p * gather.width;
        let id = gather_ids[gather.ids + p];
        // NaN through a `var`: as a constant expression it is an error in Tint.
        var nan_bits = 0x7fc00000u;
        var value = bitcast<f32>(nan_bits);
        if id < gather.table_rows {
            value = gather_table[gather.table + id * gather.width + col];
        }
        gather_out[gather.out + idx] = value;
    }
}

// ---------------------------------------------------------------------------------------
// rows[u, :] = sum of dout[order[k], :] for k in start[u] .. start[u + 1], in that order,
// starting from zero: the CPU twin's summation order, so results agree bit for bit.

struct GradRowsParams {
    capacity: u32,
    width: u32,
    segments: u32,
    dout: u32,
    rows: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> grad_segments: array<u32>;
@group(0) @binding(1) var<storage, read> grad_dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad_rows: array<f32>;
@group(0) @binding(3) var<uniform> grad: GradRowsParams;

@compute @workgroup_size(WORKGROUP)
fn embedding_grad_rows(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let unique = min(grad_segments[grad.segments], grad.capacity);
    let words = unique * grad.width;
    let starts = grad.segments + 1u + grad.capacity;
    let order = starts + grad.capacity + 1u;
    for (var idx = flat_index(gid, groups); idx < words; idx += grid_stride(groups)) {
        let u = idx / grad.width;
        let col = idx - u * grad.width;
        let end = grad_segments[starts + u + 1u];
        var sum = 0.0;
        for (var k = grad_segments[starts + u]; k < end; k++) {
            let p = grad_segments[order + k];
            sum += grad_dout[grad.dout + p * grad.width + col];
        }
        grad_rows[grad.rows + idx] = sum;
    }
}

// ---------------------------------------------------------------------------------------
// Tied embeddings: dense[unique[u], :] += rows[u, :] for the U distinct ids of the batch,
// adding the lookup's gradient rows into the dense gradient of the embedding's use as the
// softmax weight. The ids are distinct, so every element has one writer.

struct ScatterParams {
    capacity: u32,
    width: u32,
    segments: u32,
    rows: u32,
    dense: u32,
    dense_rows: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> scatter_segments: array<u32>;
@group(0) @binding(1) var<storage, read> scatter_rows: array<f32>;
@group(0) @binding(2) var<storage, read_write> scatter_dense: array<f32>;
@group(0) @binding(3) var<uniform> scatter: ScatterParams;

@compute @workgroup_size(WORKGROUP)
fn embedding_scatter_add_rows(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let unique = min(scatter_segments[scatter.segments], scatter.capacity);
    let words = unique * scatter.width;
    for (var idx = flat_index(gid, groups); idx < words; idx += grid_stride(groups)) {
        let u = idx / scatter.width;
        let col = idx - u * scatter.width;
        let id = scatter_segments[scatter.segments + 1u + u];
        if id < scatter.dense_rows {
            let at = scatter.dense + id * scatter.width + col;
            scatter_dense[at] = scatter_dense[at] + scatter_rows[scatter.rows + idx];
        }
    }
}
