// Inverted dropout: y[i] = x[i] * inv_keep where dropout_uniform(seed, stream, i) < keep,
// else 0. CPU twin: reference::dropout; the generator is ported bit for bit from src/rng.rs
// (32-bit integer arithmetic only, wrapping multiplies, exact float conversion), so the GPU
// and the CPU drop the same elements.
//
// The seed and the step counter are read from the per-step hyperparameter block
// (gpu::sgd::Hyper); stream = step * sites + site numbers the dropout sites of a step. The
// backward pass applies the same kernel with the same counters to the upstream gradient.

const WORKGROUP: u32 = 256u;
const HYPER_STEP: u32 = 1u;
const HYPER_SEED: u32 = 2u;

// "lowbias32" (Chris Wellons), as rng::hash_u32.
fn hash_u32(v: u32) -> u32 {
    var x = v;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

// Uniform in [0, 1) with 24 bits, as rng::dropout_uniform: the 24-bit integer converts to
// f32 exactly and the power-of-two scale is exact.
fn dropout_uniform(seed: u32, stream: u32, index: u32) -> f32 {
    let key = hash_u32(seed ^ hash_u32(stream + 0x9e3779b9u));
    let h = hash_u32(index ^ key);
    return f32(h >> 8u) * (1.0 / 16777216.0);
}

struct Params {
    len: u32,
    x: u32,
    y: u32,
    hyper: u32,
    site: u32,
    sites: u32,
    keep: f32,
    // 1 / keep rounded once to f32 on the host, as the CPU twin does.
    inv_keep: f32,
    // The mask index of element 0: a part of a tensor (a chunk of time steps) is dropped
    // with the same mask as the whole tensor.
    first: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Two entry points, because a dispatch binds each buffer once (WebGPU refuses one buffer in
// two bindings when either is writable): `dropout` reads x from one buffer and writes y to
// another; `dropout_one_buffer` reads and writes two windows of one buffer (or the same
// window, in place: each invocation reads its element before it writes it).
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(0) var<storage, read_write> xy: array<f32>;
@group(0) @binding(2) var<storage, read> hyper: array<u32>;
@group(0) @binding(3) var<uniform> params: Params;

// The stream and seed of this dispatch, from the hyperparameter block.
fn stream_and_seed() -> vec2<u32> {
    return vec2<u32>(
        hyper[params.hyper + HYPER_STEP] * params.sites + params.site,
        hyper[params.hyper + HYPER_SEED],
    );
}

// A grid-stride loop over a grid capped by the launcher (see sgd.wgsl).
fn first_and_stride(gid: vec3<u32>, groups: vec3<u32>) -> vec2<u32> {
    return vec2<u32>(gid.x + gid.y * groups.x * WORKGROUP, groups.x * groups.y * WORKGROUP);
}

@compute @workgroup_size(WORKGROUP)
fn dropout(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let ss = stream_and_seed();
    let fs = first_and_stride(gid, groups);
    for (var i = fs.x; i < params.len; i += fs.y) {
        var out = 0.0;
        if dropout_uniform(ss.y, ss.x, params.first + i) < params.keep {
            out = x[params.x + i] * params.inv_keep;
        }
        y[params.y + i] = out;
    }
}

@compute @workgroup_size(WORKGROUP)
fn dropout_one_buffer(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let ss = stream_and_seed();
    let fs = first_and_stride(gid, groups);
    for (var i = fs.x; i < params.len; i += fs.y) {
        var out = 0.0;
        if dropout_uniform(ss.y, ss.x, params.first + i) < params.keep {
            out = xy[params.x + i] * params.inv_keep;
        }
        xy[params.y + i] = out;
    }
}
