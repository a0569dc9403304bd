// Plain SGD with the global-norm clip: dense tensors and the embedding rows of a batch.
// CPU twins: reference::sgd_dense and reference::sgd_sparse_rows.
//
// Nothing that changes from step to step is in the uniform block: the learning rate comes
// from the per-step hyperparameter block (gpu::sgd::Hyper, written by the host before each
// step) and the clip scale from the block clip_scale writes (gpu::reduce::ClipStats). A
// scale of 0 marks a step whose gradient norm was not finite: the update is skipped, so one
// bad batch cannot turn the parameters into NaN.

const WORKGROUP: u32 = 256u;
// Word of the learning rate in the hyperparameter block, of the scale in the clip block.
const HYPER_LEARNING_RATE: u32 = 0u;
const CLIP_SCALE: u32 = 2u;

// Grid-stride loops: the launchers cap the grid at 256 workgroups, so each invocation
// handles every `stride`-th element from its flat index. Fewer, longer-lived invocations
// cost nothing on a GPU and save per-workgroup overhead on CPU adapters.
fn flat_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * WORKGROUP;
}

fn grid_stride(groups: vec3<u32>) -> u32 {
    return groups.x * groups.y * WORKGROUP;
}

// ---------------------------------------------------------------------------------------
// param[i] -= lr * scale * grad[i].

struct DenseParams {
    len: u32,
    param: u32,
    grad: u32,
    hyper: u32,
    clip: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> dense_param: array<f32>;
@group(0) @binding(1) var<storage, read> dense_grad: array<f32>;
@group(0) @binding(2) var<storage, read> dense_hyper: array<u32>;
@group(0) @binding(3) var<storage, read> dense_clip: array<f32>;
@group(0) @binding(4) var<uniform> dense: DenseParams;

@compute @workgroup_size(WORKGROUP)
fn sgd_dense(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let scale = dense_clip[dense.clip + CLIP_SCALE];
    if !(scale > 0.0) {
        return;
    }
    let step = bitcast<f32>(dense_hyper[dense.hyper + HYPER_LEARNING_RATE]) * scale;
    for (var i = flat_index(gid, groups); i < dense.len; i += grid_stride(groups)) {
        dense_param[dense.param + i] -= step * dense_grad[dense.grad + i];
    }
}

// ---------------------------------------------------------------------------------------
// table[unique[u], :] -= lr * scale * rows[u, :] for the U distinct ids of the batch, from the
// segments buffer (layout in embedding.wgsl). The ids are distinct, so no two invocations
// write the same word.

struct SparseParams {
    capacity: u32,
    width: u32,
    table_rows: u32,
    table: u32,
    segments: u32,
    rows: u32,
    hyper: u32,
    clip: u32,
}

@group(0) @binding(0) var<storage, read_write> sparse_table: array<f32>;
@group(0) @binding(1) var<storage, read> sparse_segments: array<u32>;
@group(0) @binding(2) var<storage, read> sparse_rows: array<f32>;
@group(0) @binding(3) var<storage, read> sparse_hyper: array<u32>;
@group(0) @binding(4) var<storage, read> sparse_clip: array<f32>;
@group(0) @binding(5) var<uniform> sparse: SparseParams;

@compute @workgroup_size(WORKGROUP)
fn sgd_sparse_rows(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let scale = sparse_clip[sparse.clip + CLIP_SCALE];
    if !(scale > 0.0) {
        return;
    }
    let step = bitcast<f32>(sparse_hyper[sparse.hyper + HYPER_LEARNING_RATE]) * scale;
    let unique = min(sparse_segments[sparse.segments], sparse.capacity);
    let words = unique * sparse.width;
    for (var idx = flat_index(gid, groups); idx < words; idx += grid_stride(groups)) {
        let u = idx / sparse.width;
        let id = sparse_segments[sparse.segments + 1u + u];
        if id < sparse.table_rows {
            let col = idx - u * sparse.width;
            let at = sparse.table + id * sparse.width + col;
            sparse_table[at] -= step * sparse_rows[sparse.rows + idx];
        }
    }
}
