// The fused time step of shaders/lstm_step.wgsl, blocked for CPU adapters (lavapipe) as
// shaders/matmul_subgroup.wgsl is: one workgroup is one subgroup of 8 lanes, loads of the
// left operand are shared across lanes with subgroupBroadcast, and each lane keeps a large
// block of outputs in straight-line vec4 accumulators, so that few loads feed many
// multiply-adds (see that file's header for what llvmpipe makes of loads). Sums run over p
// in increasing order with fma from zero and the gates use shaders/lstm_gates.wgsl, so the
// results are those of the unfused path, bit for bit where the driver compiles alike.
//
// This file holds the bindings and helpers; src/gpu/lstm_step.rs appends one generated
// entry point per module (`lstm_step_forward_subgroup` or `lstm_step_backward_subgroup`).
// Needs subgroups of at least 8 invocations, hidden sizes and every offset multiples of 4
// words (the launcher runs the workgroup-tile kernels otherwise).
//
// Forward: lane l of a block owns units u0 + 4l .. + 4 (32 units a block) for all four
// gates and 32 rows: 20 vec4 loads per 4 steps of p for 2048 multiply-adds.
// Backward: d(h) = dh_above + dz_next @ W_h^T is the NT product of the subgroup matmul
// (64 rows by 64 units a block), with the cell backward applied to each lane's outputs.

fn sigmoid4(x: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(sigmoid(x.x), sigmoid(x.y), sigmoid(x.z), sigmoid(x.w));
}

fn tanh4(x: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(tanh_guarded(x.x), tanh_guarded(x.y), tanh_guarded(x.z), tanh_guarded(x.w));
}

// Offsets and sizes as in shaders/lstm_step.wgsl, in words (all multiples of 4).
struct SubgroupForwardParams {
    batch: u32,
    hidden: u32,
    zx: u32,
    w: u32,
    h_prev: u32,
    c_prev: u32,
    act: u32,
    c: u32,
    h: u32,
    forget_bias: f32,
    unit_blocks: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> sf_zx: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> sf_w: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> sf_h: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> sf_c: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> sf_act: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> sf: SubgroupForwardParams;

// The cell on units u .. u + 4 of `row`, from the four gates' sums.
fn sf_cell(row: u32, u: u32, s0: vec4<f32>, s1: vec4<f32>, s2: vec4<f32>, s3: vec4<f32>) {
    let hidden = sf.hidden;
    let z = (sf.zx + row * 4u * hidden + u) / 4u;
    let q = hidden / 4u;
    let i = sigmoid4(sf_zx[z] + s0);
    let j = tanh4(sf_zx[z + q] + s1);
    let f = sigmoid4((sf_zx[z + 2u * q] + s2) + vec4<f32>(sf.forget_bias));
    let o = sigmoid4(sf_zx[z + 3u * q] + s3);
    let idx = row * hidden + u;
    let c = sf_c[(sf.c_prev + idx) / 4u] * f + i * j;
    let a = (sf.act + row * 4u * hidden + u) / 4u;
    sf_act[a] = i;
    sf_act[a + q] = j;
    sf_act[a + 2u * q] = f;
    sf_act[a + 3u * q] = o;
    sf_c[(sf.c + idx) / 4u] = c;
    sf_h[(sf.h + idx) / 4u] = tanh4(c) * o;
}

struct SubgroupBackwardParams {
    batch: u32,
    hidden: u32,
    dz_next: u32,
    w: u32,
    act: u32,
    c_prev: u32,
    c: u32,
    dh: u32,
    dc: u32,
    dz: u32,
    dc_prev: u32,
    unit_blocks: u32,
}

@group(0) @binding(0) var<storage, read_write> sb_dz: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> sb_w: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> sb_act: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> sb_c: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> sb_dh: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> sb_dc: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> sb_dc_prev: array<vec4<f32>>;
@group(0) @binding(7) var<uniform> sb: SubgroupBackwardParams;

// d(h) of units u .. u + 4 of `row` (the old d(h) plus the sum), stored back, then the
// cell backward.
fn sb_cell(row: u32, u: u32, sum: vec4<f32>) {
    let hidden = sb.hidden;
    let q = hidden / 4u;
    let idx = row * hidden + u;
    let dh = sb_dh[(sb.dh + idx) / 4u] + sum;
    sb_dh[(sb.dh + idx) / 4u] = dh;
    let a = (sb.act + row * 4u * hidden + u) / 4u;
    let i = sb_act[a];
    let j = sb_act[a + q];
    let f = sb_act[a + 2u * q];
    let o = sb_act[a + 3u * q];
    let tc = tanh4(sb_c[(sb.c + idx) / 4u]);
    let one = vec4<f32>(1.0);
    let dc = sb_dc[(sb.dc + idx) / 4u] + dh * o * (one - tc * tc);
    let d = (sb.dz + row * 4u * hidden + u) / 4u;
    sb_dz[d] = dc * j * i * (one - i);
    sb_dz[d + q] = dc * i * (one - j * j);
    sb_dz[d + 2u * q] = dc * sb_c[(sb.c_prev + idx) / 4u] * f * (one - f);
    sb_dz[d + 3u * q] = dh * tc * o * (one - o);
    sb_dc_prev[(sb.dc_prev + idx) / 4u] = dc * f;
}
