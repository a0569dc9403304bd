// C = op(A) @ op(B) (+ bias) (+ C), fast on CPU adapters (lavapipe): the SubgroupBroadcast
// variant of shaders/matmul.wgsl, for subgroups of 8 or more invocations and operands whose
// sizes and offsets are multiples of 4 words (the launcher falls back otherwise).
//
// On llvmpipe an invocation is one lane of an 8-wide SIMD batch, and every load from a
// storage buffer whose address differs across lanes is a loop over the lanes, so loads are
// what costs, not multiply-adds. Here a workgroup is one subgroup computing an 8x64 block of
// C, 8x8 per invocation. Every 4 steps of p, one vec4 load per lane brings in a 4x8 piece
// of op(A) for the whole subgroup and subgroupBroadcast hands each value to every lane
// (a register shuffle); each lane then loads its 8 columns of op(B) as vec4s. That is 9
// loads for 256 multiply-adds per lane, against 16 for 64 in RegisterBlocked.
//
// The entry points below are unrolled by hand: broadcast lanes must be constants, and
// llvmpipe keeps straight-line values in registers where indexed arrays go to memory.
// Each output sums its products in increasing order of p, like every variant.

struct Params {
    m: u32,
    k: u32,
    n: u32,
    flags: u32,
    a_off: u32,
    a_row: u32,
    a_col: u32,
    b_off: u32,
    b_row: u32,
    b_col: u32,
    bias_off: u32,
    c_off: u32,
    col_blocks: u32,
    blocks: u32,
    groups_x: u32,
    _pad: u32,
}

const HAS_BIAS: u32 = 1u;
const ACCUMULATE: u32 = 2u;

// The same buffers as shaders/matmul.wgsl binds, read as vec4s (offsets are multiples of 4).
@group(0) @binding(0) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

fn block_index(wg: vec3<u32>) -> u32 {
    return wg.x + wg.y * params.groups_x;
}

fn store(i: u32, j: u32, sum: f32) {
    var out = sum;
    if (params.flags & HAS_BIAS) != 0u {
        out += bias[params.bias_off + j];
    }
    let at = params.c_off + i * params.n + j;
    if (params.flags & ACCUMULATE) != 0u {
        out = c[at] + out;
    }
    c[at] = out;
}

// Store the 8 outputs of row i from column j, those inside C.
fn store_row8(i: u32, j: u32, lo: vec4<f32>, hi: vec4<f32>) {
    if i < params.m {
        for (var q = 0u; q < 4u; q++) {
            if j + q < params.n {
                store(i, j + q, lo[q]);
            }
            if j + 4u + q < params.n {
                store(i, j + 4u + q, hi[q]);
            }
        }
    }
}

@compute @workgroup_size(8)
fn matmul_subgroup_nn(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let block = block_index(wg);
    if block >= params.blocks {
        return;
    }
    let row0 = (block / params.col_blocks) * 8u;
    let col0 = (block % params.col_blocks) * 64u + (lane % 8u) * 8u;
    // This lane loads 4 steps of p of row row0 + lane: A[i, p..p + 4].
    let a_at = params.a_off + min(row0 + lane % 8u, params.m - 1u) * params.k;
    let b_lo = params.b_off + min(col0, params.n - 4u);
    let b_hi = params.b_off + min(col0 + 4u, params.n - 4u);
    var c0_lo = vec4<f32>();
    var c0_hi = vec4<f32>();
    var c1_lo = vec4<f32>();
    var c1_hi = vec4<f32>();
    var c2_lo = vec4<f32>();
    var c2_hi = vec4<f32>();
    var c3_lo = vec4<f32>();
    var c3_hi = vec4<f32>();
    var c4_lo = vec4<f32>();
    var c4_hi = vec4<f32>();
    var c5_lo = vec4<f32>();
    var c5_hi = vec4<f32>();
    var c6_lo = vec4<f32>();
    var c6_hi = vec4<f32>();
    var c7_lo = vec4<f32>();
    var c7_hi = vec4<f32>();
    for (var p = 0u; p < params.k; p += 4u) {
        let a_quad = a4[(a_at + p) / 4u];
        var a0 = subgroupBroadcast(a_quad, 0u);
        var a1 = subgroupBroadcast(a_quad, 1u);
        var a2 = subgroupBroadcast(a_quad, 2u);
        var a3 = subgroupBroadcast(a_quad, 3u);
        var a4 = subgroupBroadcast(a_quad, 4u);
        var a5 = subgroupBroadcast(a_quad, 5u);
        var a6 = subgroupBroadcast(a_quad, 6u);
        var a7 = subgroupBroadcast(a_quad, 7u);
        let b0_lo = b4[(b_lo + (p + 0u) * params.n) / 4u];
        let b0_hi = b4[(b_hi + (p + 0u) * params.n) / 4u];
        let b1_lo = b4[(b_lo + (p + 1u) * params.n) / 4u];
        let b1_hi = b4[(b_hi + (p + 1u) * params.n) / 4u];
        let b2_lo = b4[(b_lo + (p + 2u) * params.n) / 4u];
        let b2_hi = b4[(b_hi + (p + 2u) * params.n) / 4u];
        let b3_lo = b4[(b_lo + (p + 3u) * params.n) / 4u];
        let b3_hi = b4[(b_hi + (p + 3u) * params.n) / 4u];
        c0_lo = fma(vec4<f32>(a0.x), b0_lo, c0_lo);
        c0_hi = fma(vec4<f32>(a0.x), b0_hi, c0_hi);
        c1_lo = fma(vec4<f32>(a1.x), b0_lo, c1_lo);
        c1_hi = fma(vec4<f32>(a1.x), b0_hi, c1_hi);
        c2_lo = fma(vec4<f32>(a2.x), b0_lo, c2_lo);
        c2_hi = fma(vec4<f32>(a2.x), b0_hi, c2_hi);
        c3_lo = fma(vec4<f32>(a3.x), b0_lo, c3_lo);
        c3_hi = fma(vec4<f32>(a3.x), b0_hi, c3_hi);
        c4_lo = fma(vec4<f32>(a4.x), b0_lo, c4_lo);
        c4_hi = fma(vec4<f32>(a4.x), b0_hi, c4_hi);
        c5_lo = fma(vec4<f32>(a5.x), b0_lo, c5_lo);
        c5_hi = fma(vec4<f32>(a5.x), b0_hi, c5_hi);
        c6_lo = fma(vec4<f32>(a6.x), b0_lo, c6_lo);
        c6_hi = fma(vec4<f32>(a6.x), b0_hi, c6_hi);
        c7_lo = fma(vec4<f32>(a7.x), b0_lo, c7_lo);
        c7_hi = fma(vec4<f32>(a7.x), b0_hi, c7_hi);
        c0_lo = fma(vec4<f32>(a0.y), b1_lo, c0_lo);
        c0_hi = fma(vec4<f32>(a0.y), b1_hi, c0_hi);
        c1_lo = fma(vec4<f32>(a1.y), b1_lo, c1_lo);
        c1_hi = fma(vec4<f32>(a1.y), b1_hi, c1_hi);
        c2_lo = fma(vec4<f32>(a2.y), b1_lo, c2_lo);
        c2_hi = fma(vec4<f32>(a2.y), b1_hi, c2_hi);
        c3_lo = fma(vec4<f32>(a3.y), b1_lo, c3_lo);
        c3_hi = fma(vec4<f32>(a3.y), b1_hi, c3_hi);
        c4_lo = fma(vec4<f32>(a4.y), b1_lo, c4_lo);
        c4_hi = fma(vec4<f32>(a4.y), b1_hi, c4_hi);
        c5_lo = fma(vec4<f32>(a5.y), b1_lo, c5_lo);
        c5_hi = fma(vec4<f32>(a5.y), b1_hi, c5_hi);
        c6_lo = fma(vec4<f32>(a6.y), b1_lo, c6_lo);
        c6_hi = fma(vec4<f32>(a6.y), b1_hi, c6_hi);
        c7_lo = fma(vec4<f32>(a7.y), b1_lo, c7_lo);
        c7_hi = fma(vec4<f32>(a7.y), b1_hi, c7_hi);
        c0_lo = fma(vec4<f32>(a0.z), b2_lo, c0_lo);
        c0_hi = fma(vec4<f32>(a0.z), b2_hi, c0_hi);
        c1_lo = fma(vec4<f32>(a1.z), b2_lo, c1_lo);
        c1_hi = fma(vec4<f32>(a1.z), b2_hi, c1_hi);
        c2_lo = fma(vec4<f32>(a2.z), b2_lo, c2_lo);
        c2_hi = fma(vec4<f32>(a2.z), b2_hi, c2_hi);
        c3_lo = fma(vec4<f32>(a3.z), b2_lo, c3_lo);
        c3_hi = fma(vec4<f32>(a3.z), b2_hi, c3_hi);
        c4_lo = fma(vec4<f32>(a4.z), b2_lo, c4_lo);
        c4_hi = fma(vec4<f32>(a4.z), b2_hi, c4_hi);
        c5_lo = fma(vec4<f32>(a5.z), b2_lo, c5_lo);
        c5_hi = fma(vec4<f32>(a5.z), b2_hi, c5_hi);
        c6_lo = fma(vec4<f32>(a6.z), b2_lo, c6_lo);
        c6_hi = fma(vec4<f32>(a6.z), b2_hi, c6_hi);
        c7_lo = fma(vec4<f32>(a7.z), b2_lo, c7_lo);
        c7_hi = fma(vec4<f32>(a7.z), b2_hi, c7_hi);
        c0_lo = fma(vec4<f32>(a0.w), b3_lo, c0_lo);
        c0_hi = fma(vec4<f32>(a0.w), b3_hi, c0_hi);
        c1_lo = fma(vec4<f32>(a1.w), b3_lo, c1_lo);
        c1_hi = fma(vec4<f32>(a1.w), b3_hi, c1_hi);
        c2_lo = fma(vec4<f32>(a2.w), b3_lo, c2_lo);
        c2_hi = fma(vec4<f32>(a2.w), b3_hi, c2_hi);
        c3_lo = fma(vec4<f32>(a3.w), b3_lo, c3_lo);
        c3_hi = fma(vec4<f32>(a3.w), b3_hi, c3_hi);
        c4_lo = fma(vec4<f32>(a4.w), b3_lo, c4_lo);
        c4_hi = fma(vec4<f32>(a4.w), b3_hi, c4_hi);
        c5_lo = fma(vec4<f32>(a5.w), b3_lo, c5_lo);
        c5_hi = fma(vec4<f32>(a5.w), b3_hi, c5_hi);
        c6_lo = fma(vec4<f32>(a6.w), b3_lo, c6_lo);
        c6_hi = fma(vec4<f32>(a6.w), b3_hi, c6_hi);
        c7_lo = fma(vec4<f32>(a7.w), b3_lo, c7_lo);
        c7_hi = fma(vec4<f32>(a7.w), b3_hi, c7_hi);
    }
    store_row8(row0 + 0u, col0, c0_lo, c0_hi);
    store_row8(row0 + 1u, col0, c1_lo, c1_hi);
    store_row8(row0 + 2u, col0, c2_lo, c2_hi);
    store_row8(row0 + 3u, col0, c3_lo, c3_hi);
    store_row8(row0 + 4u, col0, c4_lo, c4_hi);
    store_row8(row0 + 5u, col0, c5_lo, c5_hi);
    store_row8(row0 + 6u, col0, c6_lo, c6_hi);
    store_row8(row0 + 7u, col0, c7_lo, c7_hi);
}

@compute @workgroup_size(8)
fn matmul_subgroup_nt(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let block = block_index(wg);
    if block >= params.blocks {
        return;
    }
    let row0 = (block / params.col_blocks) * 8u;
    let col0 = (block % params.col_blocks) * 64u + (lane % 8u) * 8u;
    // This lane loads 4 steps of p of row row0 + lane: A[i, p..p + 4].
    let a_at = params.a_off + min(row0 + lane % 8u, params.m - 1u) * params.k;
    let b_at0 = params.b_off + min(col0 + 0u, params.n - 1u) * params.k;
    let b_at1 = params.b_off + min(col0 + 1u, params.n - 1u) * params.k;
    let b_at2 = params.b_off + min(col0 + 2u, params.n - 1u) * params.k;
    let b_at3 = params.b_off + min(col0 + 3u, params.n - 1u) * params.k;
    let b_at4 = params.b_off + min(col0 + 4u, params.n - 1u) * params.k;
    let b_at5 = params.b_off + min(col0 + 5u, params.n - 1u) * params.k;
    let b_at6 = params.b_off + min(col0 + 6u, params.n - 1u) * params.k;
    let b_at7 = params.b_off + min(col0 + 7u, params.n - 1u) * params.k;
    var c0_lo = vec4<f32>();
    var c0_hi = vec4<f32>();
    var c1_lo = vec4<f32>();
    var c1_hi = vec4<f32>();
    var c2_lo = vec4<f32>();
    var c2_hi = vec4<f32>();
    var c3_lo = vec4<f32>();
    var c3_hi = vec4<f32>();
    var c4_lo = vec4<f32>();
    var c4_hi = vec4<f32>();
    var c5_lo = vec4<f32>();
    var c5_hi = vec4<f32>();
    var c6_lo = vec4<f32>();
    var c6_hi = vec4<f32>();
    var c7_lo = vec4<f32>();
    var c7_hi = vec4<f32>();
    for (var p = 0u; p < params.k; p += 4u) {
        let a_quad = a4[(a_at + p) / 4u];
        var a0 = subgroupBroadcast(a_quad, 0u);
        var a1 = subgroupBroadcast(a_quad, 1u);
        var a2 = subgroupBroadcast(a_quad, 2u);
        var a3 = subgroupBroadcast(a_quad, 3u);
        var a4 = subgroupBroadcast(a_quad, 4u);
        var a5 = subgroupBroadcast(a_quad, 5u);
        var a6 = subgroupBroadcast(a_quad, 6u);
        var a7 = subgroupBroadcast(a_quad, 7u);
        let b_col0 = b4[(b_at0 + p) / 4u];
        let b_col1 = b4[(b_at1 + p) / 4u];
        let b_col2 = b4[(b_at2 + p) / 4u];
        let b_col3 = b4[(b_at3 + p) / 4u];
        let b_col4 = b4[(b_at4 + p) / 4u];
        let b_col5 = b4[(b_at5 + p) / 4u];
        let b_col6 = b4[(b_at6 + p) / 4u];
        let b_col7 = b4[(b_at7 + p) / 4u];
        let b0_lo = vec4<f32>(b_col0[0], b_col1[0], b_col2[0], b_col3[0]);
        let b0_hi = vec4<f32>(b_col4[0], b_col5[0], b_col6[0], b_col7[0]);
        let b1_lo = vec4<f32>(b_col0[1], b_col1[1], b_col2[1], b_col3[1]);
        let b1_hi = vec4<f32>(b_col4[1], b_col5[1], b_col6[1], b_col7[1]);
        let b2_lo = vec4<f32>(b_col0[2], b_col1[2], b_col2[2], b_col3[2]);
        let b2_hi = vec4<f32>(b_col4[2], b_col5[2], b_col6[2], b_col7[2]);
        let b3_lo = vec4<f32>(b_col0[3], b_col1[3], b_col2[3], b_col3[3]);
        let b3_hi = vec4<f32>(b_col4[3], b_col5[3], b_col6[3], b_col7[3]);
        c0_lo = fma(vec4<f32>(a0.x), b0_lo, c0_lo);
        c0_hi = fma(vec4<f32>(a0.x), b0_hi, c0_hi);
        c1_lo = fma(vec4<f32>(a1.x), b0_lo, c1_lo);
        c1_hi = fma(vec4<f32>(a1.x), b0_hi, c1_hi);
        c2_lo = fma(vec4<f32>(a2.x), b0_lo, c2_lo);
        c2_hi = fma(vec4<f32>(a2.x), b0_hi, c2_hi);
        c3_lo = fma(vec4<f32>(a3.x), b0_lo, c3_lo);
        c3_hi = fma(vec4<f32>(a3.x), b0_hi, c3_hi);
        c4_lo = fma(vec4<f32>(a4.x), b0_lo, c4_lo);
        c4_hi = fma(vec4<f32>(a4.x), b0_hi, c4_hi);
        c5_lo = fma(vec4<f32>(a5.x), b0_lo, c5_lo);
        c5_hi = fma(vec4<f32>(a5.x), b0_hi, c5_hi);
        c6_lo = fma(vec4<f32>(a6.x), b0_lo, c6_lo);
        c6_hi = fma(vec4<f32>(a6.x), b0_hi, c6_hi);
        c7_lo = fma(vec4<f32>(a7.x), b0_lo, c7_lo);
        c7_hi = fma(vec4<f32>(a7.x), b0_hi, c7_hi);
        c0_lo = fma(vec4<f32>(a0.y), b1_lo, c0_lo);
        c0_hi = fma(vec4<f32>(a0.y), b1_hi, c0_hi);
        c1_lo = fma(vec4<f32>(a1.y), b1_lo, c1_lo);
        c1_hi = fma(vec4<f32>(a1.y), b1_hi, c1_hi);
        c2_lo = fma(vec4<f32>(a2.y), b1_lo, c2_lo);
        c2_hi = fma(vec4<f32>(a2.y), b1_hi, c2_hi);
        c3_lo = fma(vec4<f32>(a3.y), b1_lo, c3_lo);
        c3_hi = fma(vec4<f32>(a3.y), b1_hi, c3_hi);
        c4_lo = fma(vec4<f32>(a4.y), b1_lo, c4_lo);
        c4_hi = fma(vec4<f32>(a4.y), b1_hi, c4_hi);
        c5_lo = fma(vec4<f32>(a5.y), b1_lo, c5_lo);
        c5_hi = fma(vec4<f32>(a5.y), b1_hi, c5_hi);
        c6_lo = fma(vec4<f32>(a6.y), b1_lo, c6_lo);
        c6_hi = fma(vec4<f32>(a6.y), b1_hi, c6_hi);
        c7_lo = fma(vec4<f32>(a7.y), b1_lo, c7_lo);
        c7_hi = fma(vec4<f32>(a7.y), b1_hi, c7_hi);
        c0_lo = fma(vec4<f32>(a0.z), b2_lo, c0_lo);
        c0_hi = fma(vec4<f32>(a0.z), b2_hi, c0_hi);
        c1_lo = fma(vec4<f32>(a1.z), b2_lo, c1_lo);
        c1_hi = fma(vec4<f32>(a1.z), b2_hi, c1_hi);
        c2_lo = fma(vec4<f32>(a2.z), b2_lo, c2_lo);
        c2_hi = fma(vec4<f32>(a2.z), b2_hi, c2_hi);
        c3_lo = fma(vec4<f32>(a3.z), b2_lo, c3_lo);
        c3_hi = fma(vec4<f32>(a3.z), b2_hi, c3_hi);
        c4_lo = fma(vec4<f32>(a4.z), b2_lo, c4_lo);
        c4_hi = fma(vec4<f32>(a4.z), b2_hi, c4_hi);
        c5_lo = fma(vec4<f32>(a5.z), b2_lo, c5_lo);
        c5_hi = fma(vec4<f32>(a5.z), b2_hi, c5_hi);
        c6_lo = fma(vec4<f32>(a6.z), b2_lo, c6_lo);
        c6_hi = fma(vec4<f32>(a6.z), b2_hi, c6_hi);
        c7_lo = fma(vec4<f32>(a7.z), b2_lo, c7_lo);
        c7_hi = fma(vec4<f32>(a7.z), b2_hi, c7_hi);
        c0_lo = fma(vec4<f32>(a0.w), b3_lo, c0_lo);
        c0_hi = fma(vec4<f32>(a0.w), b3_hi, c0_hi);
        c1_lo = fma(vec4<f32>(a1.w), b3_lo, c1_lo);
        c1_hi = fma(vec4<f32>(a1.w), b3_hi, c1_hi);
        c2_lo = fma(vec4<f32>(a2.w), b3_lo, c2_lo);
        c2_hi = fma(vec4<f32>(a2.w), b3_hi, c2_hi);
        c3_lo = fma(vec4<f32>(a3.w), b3_lo, c3_lo);
        c3_hi = fma(vec4<f32>(a3.w), b3_hi, c3_hi);
        c4_lo = fma(vec4<f32>(a4.w), b3_lo, c4_lo);
        c4_hi = fma(vec4<f32>(a4.w), b3_hi, c4_hi);
        c5_lo = fma(vec4<f32>(a5.w), b3_lo, c5_lo);
        c5_hi = fma(vec4<f32>(a5.w), b3_hi, c5_hi);
        c6_lo = fma(vec4<f32>(a6.w), b3_lo, c6_lo);
        c6_hi = fma(vec4<f32>(a6.w), b3_hi, c6_hi);
        c7_lo = fma(vec4<f32>(a7.w), b3_lo, c7_lo);
        c7_hi = fma(vec4<f32>(a7.w), b3_hi, c7_hi);
    }
    store_row8(row0 + 0u, col0, c0_lo, c0_hi);
    store_row8(row0 + 1u, col0, c1_lo, c1_hi);
    store_row8(row0 + 2u, col0, c2_lo, c2_hi);
    store_row8(row0 + 3u, col0, c3_lo, c3_hi);
    store_row8(row0 + 4u, col0, c4_lo, c4_hi);
    store_row8(row0 + 5u, col0, c5_lo, c5_hi);
    store_row8(row0 + 6u, col0, c6_lo, c6_hi);
    store_row8(row0 + 7u, col0, c7_lo, c7_hi);
}

@compute @workgroup_size(8)
fn matmul_subgroup_tn(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let block = block_index(wg);
    if block >= params.blocks {
        return;
    }
    let row0 = (block / params.col_blocks) * 8u;
    let col0 = (block % params.col_blocks) * 64u + (lane % 8u) * 8u;
    // This lane loads rows row0 + 4 * (lane / 4) .. + 4 at step p + lane % 4.
    let a_at = params.a_off + min(row0 + (lane % 8u) / 4u * 4u, params.m - 4u) + (lane % 4u) * params.m;
    let b_lo = params.b_off + min(col0, params.n - 4u);
    let b_hi = params.b_off + min(col0 + 4u, params.n - 4u);
    var c0_lo = vec4<f32>();
    var c0_hi = vec4<f32>();
    var c1_lo = vec4<f32>();
    var c1_hi = vec4<f32>();
    var c2_lo = vec4<f32>();
    var c2_hi = vec4<f32>();
    var c3_lo = vec4<f32>();
    var c3_hi = vec4<f32>();
    var c4_lo = vec4<f32>();
    var c4_hi = vec4<f32>();
    var c5_lo = vec4<f32>();
    var c5_hi = vec4<f32>();
    var c6_lo = vec4<f32>();
    var c6_hi = vec4<f32>();
    var c7_lo = vec4<f32>();
    var c7_hi = vec4<f32>();
    for (var p = 0u; p < params.k; p += 4u) {
        let a_quad = a4[(a_at + p * params.m) / 4u];
        var a_lane0 = subgroupBroadcast(a_quad, 0u);
        var a_lane1 = subgroupBroadcast(a_quad, 1u);
        var a_lane2 = subgroupBroadcast(a_quad, 2u);
        var a_lane3 = subgroupBroadcast(a_quad, 3u);
        var a_lane4 = subgroupBroadcast(a_quad, 4u);
        var a_lane5 = subgroupBroadcast(a_quad, 5u);
        var a_lane6 = subgroupBroadcast(a_quad, 6u);
        var a_lane7 = subgroupBroadcast(a_quad, 7u);
        let a0 = vec4<f32>(a_lane0.x, a_lane1.x, a_lane2.x, a_lane3.x);
        let a1 = vec4<f32>(a_lane0.y, a_lane1.y, a_lane2.y, a_lane3.y);
        let a2 = vec4<f32>(a_lane0.z, a_lane1.z, a_lane2.z, a_lane3.z);
        let a3 = vec4<f32>(a_lane0.w, a_lane1.w, a_lane2.w, a_lane3.w);
        let a4 = vec4<f32>(a_lane4.x, a_lane5.x, a_lane6.x, a_lane7.x);
        let a5 = vec4<f32>(a_lane4.y, a_lane5.y, a_lane6.y, a_lane7.y);
        let a6 = vec4<f32>(a_lane4.z, a_lane5.z, a_lane6.z, a_lane7.z);
        let a7 = vec4<f32>(a_lane4.w, a_lane5.w, a_lane6.w, a_lane7.w);
        let b0_lo = b4[(b_lo + (p + 0u) * params.n) / 4u];
        let b0_hi = b4[(b_hi + (p + 0u) * params.n) / 4u];
        let b1_lo = b4[(b_lo + (p + 1u) * params.n) / 4u];
        let b1_hi = b4[(b_hi + (p + 1u) * params.n) / 4u];
        let b2_lo = b4[(b_lo + (p + 2u) * params.n) / 4u];
        let b2_hi = b4[(b_hi + (p + 2u) * params.n) / 4u];
        let b3_lo = b4[(b_lo + (p + 3u) * params.n) / 4u];
        let b3_hi = b4[(b_hi + (p + 3u) * params.n) / 4u];
        c0_lo = fma(vec4<f32>(a0.x), b0_lo, c0_lo);
        c0_hi = fma(vec4<f32>(a0.x), b0_hi, c0_hi);
        c1_lo = fma(vec4<f32>(a1.x), b0_lo, c1_lo);
        c1_hi = fma(vec4<f32>(a1.x), b0_hi, c1_hi);
        c2_lo = fma(vec4<f32>(a2.x), b0_lo, c2_lo);
        c2_hi = fma(vec4<f32>(a2.x), b0_hi, c2_hi);
        c3_lo = fma(vec4<f32>(a3.x), b0_lo, c3_lo);
        c3_hi = fma(vec4<f32>(a3.x), b0_hi, c3_hi);
        c4_lo = fma(vec4<f32>(a4.x), b0_lo, c4_lo);
        c4_hi = fma(vec4<f32>(a4.x), b0_hi, c4_hi);
        c5_lo = fma(vec4<f32>(a5.x), b0_lo, c5_lo);
        c5_hi = fma(vec4<f32>(a5.x), b0_hi, c5_hi);
        c6_lo = fma(vec4<f32>(a6.x), b0_lo, c6_lo);
        c6_hi = fma(vec4<f32>(a6.x), b0_hi, c6_hi);
        c7_lo = fma(vec4<f32>(a7.x), b0_lo, c7_lo);
        c7_hi = fma(vec4<f32>(a7.x), b0_hi, c7_hi);
        c0_lo = fma(vec4<f32>(a0.y), b1_lo, c0_lo);
        c0_hi = fma(vec4<f32>(a0.y), b1_hi, c0_hi);
        c1_lo = fma(vec4<f32>(a1.y), b1_lo, c1_lo);
        c1_hi = fma(vec4<f32>(a1.y), b1_hi, c1_hi);
        c2_lo = fma(vec4<f32>(a2.y), b1_lo, c2_lo);
        c2_hi = fma(vec4<f32>(a2.y), b1_hi, c2_hi);
        c3_lo = fma(vec4<f32>(a3.y), b1_lo, c3_lo);
        c3_hi = fma(vec4<f32>(a3.y), b1_hi, c3_hi);
        c4_lo = fma(vec4<f32>(a4.y), b1_lo, c4_lo);
        c4_hi = fma(vec4<f32>(a4.y), b1_hi, c4_hi);
        c5_lo = fma(vec4<f32>(a5.y), b1_lo, c5_lo);
        c5_hi = fma(vec4<f32>(a5.y), b1_hi, c5_hi);
        c6_lo = fma(vec4<f32>(a6.y), b1_lo, c6_lo);
        c6_hi = fma(vec4<f32>(a6.y), b1_hi, c6_hi);
        c7_lo = fma(vec4<f32>(a7.y), b1_lo, c7_lo);
        c7_hi = fma(vec4<f32>(a7.y), b1_hi, c7_hi);
        c0_lo = fma(vec4<f32>(a0.z), b2_lo, c0_lo);
        c0_hi = fma(vec4<f32>(a0.z), b2_hi, c0_hi);
        c1_lo = fma(vec4<f32>(a1.z), b2_lo, c1_lo);
        c1_hi = fma(vec4<f32>(a1.z), b2_hi, c1_hi);
        c2_lo = fma(vec4<f32>(a2.z), b2_lo, c2_lo);
        c2_hi = fma(vec4<f32>(a2.z), b2_hi, c2_hi);
        c3_lo = fma(vec4<f32>(a3.z), b2_lo, c3_lo);
        c3_hi = fma(vec4<f32>(a3.z), b2_hi, c3_hi);
        c4_lo = fma(vec4<f32>(a4.z), b2_lo, c4_lo);
        c4_hi = fma(vec4<f32>(a4.z), b2_hi, c4_hi);
        c5_lo = fma(vec4<f32>(a5.z), b2_lo, c5_lo);
        c5_hi = fma(vec4<f32>(a5.z), b2_hi, c5_hi);
        c6_lo = fma(vec4<f32>(a6.z), b2_lo, c6_lo);
        c6_hi = fma(vec4<f32>(a6.z), b2_hi, c6_hi);
        c7_lo = fma(vec4<f32>(a7.z), b2_lo, c7_lo);
        c7_hi = fma(vec4<f32>(a7.z), b2_hi, c7_hi);
        c0_lo = fma(vec4<f32>(a0.w), b3_lo, c0_lo);
        c0_hi = fma(vec4<f32>(a0.w), b3_hi, c0_hi);
        c1_lo = fma(vec4<f32>(a1.w), b3_lo, c1_lo);
        c1_hi = fma(vec4<f32>(a1.w), b3_hi, c1_hi);
        c2_lo = fma(vec4<f32>(a2.w), b3_lo, c2_lo);
        c2_hi = fma(vec4<f32>(a2.w), b3_hi, c2_hi);
        c3_lo = fma(vec4<f32>(a3.w), b3_lo, c3_lo);
        c3_hi = fma(vec4<f32>(a3.w), b3_hi, c3_hi);
        c4_lo = fma(vec4<f32>(a4.w), b3_lo, c4_lo);
        c4_hi = fma(vec4<f32>(a4.w), b3_hi, c4_hi);
        c5_lo = fma(vec4<f32>(a5.w), b3_lo, c5_lo);
        c5_hi = fma(vec4<f32>(a5.w), b3_hi, c5_hi);
        c6_lo = fma(vec4<f32>(a6.w), b3_lo, c6_lo);
        c6_hi = fma(vec4<f32>(a6.w), b3_hi, c6_hi);
        c7_lo = fma(vec4<f32>(a7.w), b3_lo, c7_lo);
        c7_hi = fma(vec4<f32>(a7.w), b3_hi, c7_hi);
    }
    store_row8(row0 + 0u, col0, c0_lo, c0_hi);
    store_row8(row0 + 1u, col0, c1_lo, c1_hi);
    store_row8(row0 + 2u, col0, c2_lo, c2_hi);
    store_row8(row0 + 3u, col0, c3_lo, c3_hi);
    store_row8(row0 + 4u, col0, c4_lo, c4_hi);
    store_row8(row0 + 5u, col0, c5_lo, c5_hi);
    store_row8(row0 + 6u, col0, c6_lo, c6_hi);
    store_row8(row0 + 7u, col0, c7_lo, c7_hi);
}

@compute @workgroup_size(8)
fn matmul_subgroup_tt(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let block = block_index(wg);
    if block >= params.blocks {
        return;
    }
    let row0 = (block / params.col_blocks) * 8u;
    let col0 = (block % params.col_blocks) * 64u + (lane % 8u) * 8u;
    // This lane loads rows row0 + 4 * (lane / 4) .. + 4 at step p + lane % 4.
    let a_at = params.a_off + min(row0 + (lane % 8u) / 4u * 4u, params.m - 4u) + (lane % 4u) * params.m;
    let b_at0 = params.b_off + min(col0 + 0u, params.n - 1u) * params.k;
    let b_at1 = params.b_off + min(col0 + 1u, params.n - 1u) * params.k;
    let b_at2 = params.b_off + min(col0 + 2u, params.n - 1u) * params.k;
    let b_at3 = params.b_off + min(col0 + 3u, params.n - 1u) * params.k;
    let b_at4 = params.b_off + min(col0 + 4u, params.n - 1u) * params.k;
    let b_at5 = params.b_off + min(col0 + 5u, params.n - 1u) * params.k;
    let b_at6 = params.b_off + min(col0 + 6u, params.n - 1u) * params.k;
    let b_at7 = params.b_off + min(col0 + 7u, params.n - 1u) * params.k;
    var c0_lo = vec4<f32>();
    var c0_hi = vec4<f32>();
    var c1_lo = vec4<f32>();
    var c1_hi = vec4<f32>();
    var c2_lo = vec4<f32>();
    var c2_hi = vec4<f32>();
    var c3_lo = vec4<f32>();
    var c3_hi = vec4<f32>();
    var c4_lo = vec4<f32>();
    var c4_hi = vec4<f32>();
    var c5_lo = vec4<f32>();
    var c5_hi = vec4<f32>();
    var c6_lo = vec4<f32>();
    var c6_hi = vec4<f32>();
    var c7_lo = vec4<f32>();
    var c7_hi = vec4<f32>();
    for (var p = 0u; p < params.k; p += 4u) {
        let a_quad = a4[(a_at + p * params.m) / 4u];
        var a_lane0 = subgroupBroadcast(a_quad, 0u);
        var a_lane1 = subgroupBroadcast(a_quad, 1u);
        var a_lane2 = subgroupBroadcast(a_quad, 2u);
        var a_lane3 = subgroupBroadcast(a_quad, 3u);
        var a_lane4 = subgroupBroadcast(a_quad, 4u);
        var a_lane5 = subgroupBroadcast(a_quad, 5u);
        var a_lane6 = subgroupBroadcast(a_quad, 6u);
        var a_lane7 = subgroupBroadcast(a_quad, 7u);
        let a0 = vec4<f32>(a_lane0.x, a_lane1.x, a_lane2.x, a_lane3.x);
        let a1 = vec4<f32>(a_lane0.y, a_lane1.y, a_lane2.y, a_lane3.y);
        let a2 = vec4<f32>(a_lane0.z, a_lane1.z, a_lane2.z, a_lane3.z);
        let a3 = vec4<f32>(a_lane0.w, a_lane1.w, a_lane2.w, a_lane3.w);
        let a4 = vec4<f32>(a_lane4.x, a_lane5.x, a_lane6.x, a_lane7.x);
        let a5 = vec4<f32>(a_lane4.y, a_lane5.y, a_lane6.y, a_lane7.y);
        let a6 = vec4<f32>(a_lane4.z, a_lane5.z, a_lane6.z, a_lane7.z);
        let a7 = vec4<f32>(a_lane4.w, a_lane5.w, a_lane6.w, a_lane7.w);
        let b_col0 = b4[(b_at0 + p) / 4u];
        let b_col1 = b4[(b_at1 + p) / 4u];
        let b_col2 = b4[(b_at2 + p) / 4u];
        let b_col3 = b4[(b_at3 + p) / 4u];
        let b_col4 = b4[(b_at4 + p) / 4u];
        let b_col5 = b4[(b_at5 + p) / 4u];
        let b_col6 = b4[(b_at6 + p) / 4u];
        let b_col7 = b4[(b_at7 + p) / 4u];
        let b0_lo = vec4<f32>(b_col0[0], b_col1[0], b_col2[0], b_col3[0]);
        let b0_hi = vec4<f32>(b_col4[0], b_col5[0], b_col6[0], b_col7[0]);
        let b1_lo = vec4<f32>(b_col0[1], b_col1[1], b_col2[1], b_col3[1]);
        let b1_hi = vec4<f32>(b_col4[1], b_col5[1], b_col6[1], b_col7[1]);
        let b2_lo = vec4<f32>(b_col0[2], b_col1[2], b_col2[2], b_col3[2]);
        let b2_hi = vec4<f32>(b_col4[2], b_col5[2], b_col6[2], b_col7[2]);
        let b3_lo = vec4<f32>(b_col0[3], b_col1[3], b_col2[3], b_col3[3]);
        let b3_hi = vec4<f32>(b_col4[3], b_col5[3], b_col6[3], b_col7[3]);
        c0_lo = fma(vec4<f32>(a0.x), b0_lo, c0_lo);
        c0_hi = fma(vec4<f32>(a0.x), b0_hi, c0_hi);
        c1_lo = fma(vec4<f32>(a1.x), b0_lo, c1_lo);
        c1_hi = fma(vec4<f32>(a1.x), b0_hi, c1_hi);
        c2_lo = fma(vec4<f32>(a2.x), b0_lo, c2_lo);
        c2_hi = fma(vec4<f32>(a2.x), b0_hi, c2_hi);
        c3_lo = fma(vec4<f32>(a3.x), b0_lo, c3_lo);
        c3_hi = fma(vec4<f32>(a3.x), b0_hi, c3_hi);
        c4_lo = fma(vec4<f32>(a4.x), b0_lo, c4_lo);
        c4_hi = fma(vec4<f32>(a4.x), b0_hi, c4_hi);
        c5_lo = fma(vec4<f32>(a5.x), b0_lo, c5_lo);
        c5_hi = fma(vec4<f32>(a5.x), b0_hi, c5_hi);
        c6_lo = fma(vec4<f32>(a6.x), b0_lo, c6_lo);
        c6_hi = fma(vec4<f32>(a6.x), b0_hi, c6_hi);
        c7_lo = fma(vec4<f32>(a7.x), b0_lo, c7_lo);
        c7_hi = fma(vec4<f32>(a7.x), b0_hi, c7_hi);
        c0_lo = fma(vec4<f32>(a0.y), b1_lo, c0_lo);
        c0_hi = fma(vec4<f32>(a0.y), b1_hi, c0_hi);
        c1_lo = fma(vec4<f32>(a1.y), b1_lo, c1_lo);
        c1_hi = fma(vec4<f32>(a1.y), b1_hi, c1_hi);
        c2_lo = fma(vec4<f32>(a2.y), b1_lo, c2_lo);
        c2_hi = fma(vec4<f32>(a2.y), b1_hi, c2_hi);
        c3_lo = fma(vec4<f32>(a3.y), b1_lo, c3_lo);
        c3_hi = fma(vec4<f32>(a3.y), b1_hi, c3_hi);
        c4_lo = fma(vec4<f32>(a4.y), b1_lo, c4_lo);
        c4_hi = fma(vec4<f32>(a4.y), b1_hi, c4_hi);
        c5_lo = fma(vec4<f32>(a5.y), b1_lo, c5_lo);
        c5_hi = fma(vec4<f32>(a5.y), b1_hi, c5_hi);
        c6_lo = fma(vec4<f32>(a6.y), b1_lo, c6_lo);
        c6_hi = fma(vec4<f32>(a6.y), b1_hi, c6_hi);
        c7_lo = fma(vec4<f32>(a7.y), b1_lo, c7_lo);
        c7_hi = fma(vec4<f32>(a7.y), b1_hi, c7_hi);
        c0_lo = fma(vec4<f32>(a0.z), b2_lo, c0_lo);
        c0_hi = fma(vec4<f32>(a0.z), b2_hi, c0_hi);
        c1_lo = fma(vec4<f32>(a1.z), b2_lo, c1_lo);
        c1_hi = fma(vec4<f32>(a1.z), b2_hi, c1_hi);
        c2_lo = fma(vec4<f32>(a2.z), b2_lo, c2_lo);
        c2_hi = fma(vec4<f32>(a2.z), b2_hi, c2_hi);
        c3_lo = fma(vec4<f32>(a3.z), b2_lo, c3_lo);
        c3_hi = fma(vec4<f32>(a3.z), b2_hi, c3_hi);
        c4_lo = fma(vec4<f32>(a4.z), b2_lo, c4_lo);
        c4_hi = fma(vec4<f32>(a4.z), b2_hi, c4_hi);
        c5_lo = fma(vec4<f32>(a5.z), b2_lo, c5_lo);
        c5_hi = fma(vec4<f32>(a5.z), b2_hi, c5_hi);
        c6_lo = fma(vec4<f32>(a6.z), b2_lo, c6_lo);
        c6_hi = fma(vec4<f32>(a6.z), b2_hi, c6_hi);
        c7_lo = fma(vec4<f32>(a7.z), b2_lo, c7_lo);
        c7_hi = fma(vec4<f32>(a7.z), b2_hi, c7_hi);
        c0_lo = fma(vec4<f32>(a0.w), b3_lo, c0_lo);
        c0_hi = fma(vec4<f32>(a0.w), b3_hi, c0_hi);
        c1_lo = fma(vec4<f32>(a1.w), b3_lo, c1_lo);
        c1_hi = fma(vec4<f32>(a1.w), b3_hi, c1_hi);
        c2_lo = fma(vec4<f32>(a2.w), b3_lo, c2_lo);
        c2_hi = fma(vec4<f32>(a2.w), b3_hi, c2_hi);
        c3_lo = fma(vec4<f32>(a3.w), b3_lo, c3_lo);
        c3_hi = fma(vec4<f32>(a3.w), b3_hi, c3_hi);
        c4_lo = fma(vec4<f32>(a4.w), b3_lo, c4_lo);
        c4_hi = fma(vec4<f32>(a4.w), b3_hi, c4_hi);
        c5_lo = fma(vec4<f32>(a5.w), b3_lo, c5_lo);
        c5_hi = fma(vec4<f32>(a5.w), b3_hi, c5_hi);
        c6_lo = fma(vec4<f32>(a6.w), b3_lo, c6_lo);
        c6_hi = fma(vec4<f32>(a6.w), b3_hi, c6_hi);
        c7_lo = fma(vec4<f32>(a7.w), b3_lo, c7_lo);
        c7_hi = fma(vec4<f32>(a7.w), b3_hi, c7_hi);
    }
    store_row8(row0 + 0u, col0, c0_lo, c0_hi);
    store_row8(row0 + 1u, col0, c1_lo, c1_hi);
    store_row8(row0 + 2u, col0, c2_lo, c2_hi);
    store_row8(row0 + 3u, col0, c3_lo, c3_hi);
    store_row8(row0 + 4u, col0, c4_lo, c4_hi);
    store_row8(row0 + 5u, col0, c5_lo, c5_hi);
    store_row8(row0 + 6u, col0, c6_lo, c6_hi);
    store_row8(row0 + 7u, col0, c7_lo, c7_hi);
}
