// LSTM cell of TensorFlow's BasicLSTMCell: the gate nonlinearities and the cell update fused
// into one dispatch forward and one backward. CPU twins: reference::lstm_cell_forward and
// reference::lstm_cell_backward.
//
// One invocation per (row r, unit u) of a [batch, hidden] step. Row-major layouts, offsets in
// words into whole buffers:
//   pre, act, dpre  [batch, 4 * hidden], gate blocks i, j, f, o of `hidden` columns each
//   c, h, dh, dc    [batch, hidden]
// The training step calls these per time step on windows of [T + 1, batch, hidden] state
// buffers, so every operand has its own offset.
//
// One launch may serve up to GROUPS cells of one shape whose operands lie in the same
// buffers at other offsets (the layers of a wavefront step, gpu::lstm_cell::LstmCell::
// prepare_forward_group): the uniforms are an array of parameter blocks, and the grid's z
// says which one an invocation runs (0 for a single cell). Each entry point first copies
// its block into the private `fwd` / `bwd` that every function below reads. c_prev and c are two windows of one binding
// (the state buffer): WebGPU refuses one buffer in two bindings of a dispatch when either
// is writable, and the launcher binds every buffer once (gpu::Gpu::bind).

const WORKGROUP: u32 = 64u;
// Cells one launch may serve (gpu::lstm_cell::GROUPS).
const GROUPS: u32 = 4u;

// sigmoid and tanh_guarded come from shaders/lstm_gates.wgsl, which the launcher puts in
// front of this file.

// The flat invocation index of a grid split over x and y (see gpu::groups_1d).
fn flat_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * WORKGROUP;
}

// ---------------------------------------------------------------------------------------
// Forward: act = (sigmoid(i), tanh(j), sigmoid(f + forget_bias), sigmoid(o)),
// c = c_prev * f + i * j, h = tanh(c) * o.

struct ForwardParams {
    batch: u32,
    hidden: u32,
    pre: u32,
    c_prev: u32,
    act: u32,
    c: u32,
    h: u32,
    forget_bias: f32,
    // Where lstm_cell_forward_f16 writes the f16 copy of h (f16 elements).
    h16: u32,
    // lstm_cell_forward_split: the slices of the recurrent product's partial sums.
    slices: u32,
    slice_words: u32,
    // ... from this word of `partials` on.
    partials: u32,
}

@group(0) @binding(0) var<storage, read> fwd_pre: array<f32>;
// c_prev (read at fwd.c_prev) and c (written at fwd.c); the same window for an update in
// place, where each invocation reads its word before it writes it.
@group(0) @binding(1) var<storage, read_write> fwd_c: array<f32>;
@group(0) @binding(2) var<storage, read_write> fwd_act: array<f32>;
@group(0) @binding(3) var<storage, read_write> fwd_h: array<f32>;
@group(0) @binding(4) var<uniform> fwd_launch: array<ForwardParams, GROUPS>;
// This invocation's cell: fwd_launch[grid z].
var<private> fwd: ForwardParams;

@compute @workgroup_size(WORKGROUP)
fn lstm_cell_forward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    fwd = fwd_launch[gid.z];
    let idx = flat_index(gid, groups);
    if idx >= fwd.batch * fwd.hidden {
        return;
    }
    cell_forward(idx, forward_pre(idx));
}

// The offset of gate i of state word `idx` in a [batch, 4 * hidden] window.
fn gate_offset(idx: u32, hidden: u32) -> u32 {
    let row = idx / hidden;
    return row * 4u * hidden + (idx - row * hidden);
}

// The four pre-activations (gates i, j, f, o) of state word `idx`.
fn forward_pre(idx: u32) -> vec4<f32> {
    let hidden = fwd.hidden;
    let z = fwd.pre + gate_offset(idx, hidden);
    return vec4<f32>(fwd_pre[z], fwd_pre[z + hidden], fwd_pre[z + 2u * hidden], fwd_pre[z + 3u * hidden]);
}

// The forward step of state word `idx` (row idx / hidden, unit idx % hidden) from its
// pre-activations: writes its four activations, c and h, and returns h (for
// lstm_cell_f16.wgsl's f16 copy).
fn cell_forward(idx: u32, pre: vec4<f32>) -> f32 {
    let hidden = fwd.hidden;
    let gate = gate_offset(idx, hidden);

    let i = sigmoid(pre.x);
    let j = tanh_guarded(pre.y);
    let f = sigmoid(pre.z + fwd.forget_bias);
    let o = sigmoid(pre.w);
    let c = fwd_c[fwd.c_prev + idx] * f + i * j;

    let a = fwd.act + gate;
    fwd_act[a] = i;
    fwd_act[a + hidden] = j;
    fwd_act[a + 2u * hidden] = f;
    fwd_act[a + 3u * hidden] = o;
    fwd_c[fwd.c + idx] = c;
    let h = tanh_guarded(c) * o;
    fwd_h[fwd.h + idx] = h;
    return h;
}

// ---------------------------------------------------------------------------------------
// Backward: from the saved activations, c_prev, c, the gradient dh of h and dc arriving from
// the next time step, the gradient of the pre-activations and of c_prev.

struct BackwardParams {
    batch: u32,
    hidden: u32,
    act: u32,
    c_prev: u32,
    c: u32,
    dh: u32,
    dc: u32,
    dpre: u32,
    dc_prev: u32,
    // Where lstm_cell_backward_f16 writes the f16 copy of dpre (f16 elements).
    dpre16: u32,
    // lstm_cell_backward_split: the slices of the recurrent product's partial sums.
    slices: u32,
    slice_words: u32,
    // ... from this word of `partials` on.
    partials: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> bwd_act: array<f32>;
// c_prev (at bwd.c_prev) and c (at bwd.c), windows of the state buffer.
@group(0) @binding(1) var<storage, read> bwd_c: array<f32>;
@group(0) @binding(2) var<storage, read> bwd_dh: array<f32>;
// dc arrives in one buffer and dc_prev leaves in another (the training step's ping-pong
// pair): two writable bindings of one buffer are refused by WebGPU.
@group(0) @binding(3) var<storage, read> bwd_dc: array<f32>;
@group(0) @binding(4) var<storage, read_write> bwd_dpre: array<f32>;
@group(0) @binding(5) var<storage, read_write> bwd_dc_prev: array<f32>;
@group(0) @binding(6) var<uniform> bwd_launch: array<BackwardParams, GROUPS>;
// This invocation's cell: bwd_launch[grid z].
var<private> bwd: BackwardParams;

@compute @workgroup_size(WORKGROUP)
fn lstm_cell_backward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    bwd = bwd_launch[gid.z];
    let idx = flat_index(gid, groups);
    if idx >= bwd.batch * bwd.hidden {
        return;
    }
    cell_backward(idx, bwd_dh[bwd.dh + idx]);
}

// The backward step of state word `idx` given the gradient dh of its h: writes its four
// pre-activation gradients (gates i, j, f, o, returned in that order for
// lstm_cell_f16.wgsl's f16 copy) and d(c_prev).
fn cell_backward(idx: u32, dh: f32) -> vec4<f32> {
    let hidden = bwd.hidden;
    let gate = gate_offset(idx, hidden);

    let a = bwd.act + gate;
    let i = bwd_act[a];
    let j = bwd_act[a + hidden];
    let f = bwd_act[a + 2u * hidden];
    let o = bwd_act[a + 3u * hidden];
    let tc = tanh_guarded(bwd_c[bwd.c + idx]);
    let dc = bwd_dc[bwd.dc + idx] + dh * o * (1.0 - tc * tc);

    let g = vec4<f32>(
        dc * j * i * (1.0 - i),
        dc * i * (1.0 - j * j),
        dc * bwd_c[bwd.c_prev + idx] * f * (1.0 - f),
        dh * tc * o * (1.0 - o),
    );
    let d = bwd.dpre + gate;
    bwd_dpre[d] = g.x;
    bwd_dpre[d + hidden] = g.y;
    bwd_dpre[d + 2u * hidden] = g.z;
    bwd_dpre[d + 3u * hidden] = g.w;
    bwd_dc_prev[bwd.dc_prev + idx] = dc * f;
    return g;
}

// ---------------------------------------------------------------------------------------
// The split forms: where the step's recurrent product (h_{t-1} @ W_h forward, dz_{t+1} @
// W_h^T backward) split k into slices, its partial sums are added here rather than by a
// pass of their own (gpu::matmul::Matmul::prepare_deferring_sum): the slices in order,
// then the sum added to the old value, exactly as matmul_split_sum would have stored it.
// `slices` slices of `slice_words` words from word `partials` on, each laid out as the product's
// output: the [batch, 4 * hidden] pre-activations forward, the [batch, hidden] dh backward.

@group(0) @binding(8) var<storage, read> partials: array<f32>;

// Word `at` of the product's output summed over the slices, in matmul_split_sum's order
// (four loads, then their adds).
fn partial_sum(at: u32, slices: u32, words: u32) -> f32 {
    let slices4 = slices - slices % 4u;
    var sum = 0.0;
    var p = at;
    for (var z = 0u; z < slices4; z += 4u) {
        let v0 = partials[p];
        let v1 = partials[p + words];
        let v2 = partials[p + 2u * words];
        let v3 = partials[p + 3u * words];
        sum += v0;
        sum += v1;
        sum += v2;
        sum += v3;
        p += 4u * words;
    }
    for (var z = slices4; z < slices; z++) {
        sum += partials[p];
        p += words;
    }
    return sum;
}

@compute @workgroup_size(WORKGROUP)
fn lstm_cell_forward_split(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    fwd = fwd_launch[gid.z];
    let idx = flat_index(gid, groups);
    if idx >= fwd.batch * fwd.hidden {
        return;
    }
    cell_forward(idx, forward_pre(idx) + forward_partials(idx));
}

// The four gates' partial sums of state word `idx`.
fn forward_partials(idx: u32) -> vec4<f32> {
    let hidden = fwd.hidden;
    let g = fwd.partials + gate_offset(idx, hidden);
    return vec4<f32>(
        partial_sum(g, fwd.slices, fwd.slice_words),
        partial_sum(g + hidden, fwd.slices, fwd.slice_words),
        partial_sum(g + 2u * hidden, fwd.slices, fwd.slice_words),
        partial_sum(g + 3u * hidden, fwd.slices, fwd.slice_words),
    );
}

@compute @workgroup_size(WORKGROUP)
fn lstm_cell_backward_split(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    bwd = bwd_launch[gid.z];
    let idx = flat_index(gid, groups);
    if idx >= bwd.batch * bwd.hidden {
        return;
    }
    cell_backward(idx, bwd_dh[bwd.dh + idx] + partial_sum(bwd.partials + idx, bwd.slices, bwd.slice_words));
}
