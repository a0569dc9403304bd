// C[m, n] = op(A)[m, k] @ op(B)[k, n] (+ bias[n] on every row) (+ C when accumulating).
//
// The transposes are strides in the uniform block (shaders/matmul_params.wgsl, which the
// launcher puts in front of this file), so one entry point per variant serves NN, NT, TN
// and TT. Each output element sums its k products in increasing order of p, so results do
// not depend on the variant's blocking beyond f32 rounding of the fused multiply-adds.
//
// This file: RegisterBlocked, Tiled, Skinny and the second pass of the split-K products
// (`matmul_split_sum`); shaders/matmul_store.wgsl (bindings, `store`) and
// shaders/matmul_strip.wgsl come with it in the module.

// ---------------------------------------------------------------------------------------
// RegisterBlocked: 8x8 invocations, each an 8x8 block of C held in registers, a workgroup
// a 64x64 block. Every invocation loads its own 8 values of A and 8 of B per step of p
// (16 loads for 64 multiply-adds) and never waits at a barrier.

const RB_SIDE: u32 = 8u;

@compute @workgroup_size(64)
fn matmul_register_blocked(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let block = block_index(wg);
    if block >= params.blocks {
        return;
    }
    let row0 = (block / params.col_blocks) * 64u + (lane / RB_SIDE) * RB_SIDE;
    let col0 = (block % params.col_blocks) * 64u + (lane % RB_SIDE) * RB_SIDE;
    var a_rows: array<u32, RB_SIDE>;
    var b_cols: array<u32, RB_SIDE>;
    for (var r = 0u; r < RB_SIDE; r++) {
        a_rows[r] = params.a_off + min(row0 + r, params.m - 1u) * params.a_row;
        b_cols[r] = params.b_off + min(col0 + r, params.n - 1u) * params.b_col;
    }
    // Row r of the block is acc[2r] (columns 0..3) and acc[2r + 1] (columns 4..7).
    var acc: array<vec4<f32>, 16>;
    for (var p = 0u; p < params.k; p++) {
        let bp = p * params.b_row;
        let b_lo = vec4<f32>(b[b_cols[0] + bp], b[b_cols[1] + bp], b[b_cols[2] + bp], b[b_cols[3] + bp]);
        let b_hi = vec4<f32>(b[b_cols[4] + bp], b[b_cols[5] + bp], b[b_cols[6] + bp], b[b_cols[7] + bp]);
        let ap = p * params.a_col;
        for (var r = 0u; r < RB_SIDE; r++) {
            let av = vec4<f32>(a[a_rows[r] + ap]);
            acc[2u * r] = fma(av, b_lo, acc[2u * r]);
            acc[2u * r + 1u] = fma(av, b_hi, acc[2u * r + 1u]);
        }
    }
    for (var r = 0u; r < RB_SIDE; r++) {
        let i = row0 + r;
        if i >= params.m {
            break;
        }
        for (var q = 0u; q < RB_SIDE; q++) {
            if col0 + q < params.n {
                store(i, col0 + q, acc[2u * r + q / 4u][q % 4u]);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Tiled: a workgroup shares a TILE_M x TILE_K tile of op(A) and a TILE_K x TILE_N tile of
// op(B) in workgroup memory; each invocation computes TILE_ROWS rows by 4 columns of C.
// Tiles are loaded along whichever dimension is contiguous in memory, so neighbouring
// invocations read neighbouring words. The tile shape is a set of pipeline-overridable
// constants, so one source serves every configuration `lstm-gpu tune` tries (the launcher's
// TileConfig): 64x64 with K tiles of 16 (the default), 64x64 with K tiles of 8, and 128x64
// with 8x4 outputs per invocation. WebGPU's limits hold for each: at most 256 invocations
// and 16 KiB of workgroup memory.

override TILE_M: u32 = 64u;
override TILE_N: u32 = 64u;
override TILE_K: u32 = 16u;
// Rows of C per invocation (at most MAX_TILE_ROWS); columns are always 4 (one vec4).
override TILE_ROWS: u32 = 4u;
override TILE_INVOCATIONS: u32 = 256u;
const MAX_TILE_ROWS: u32 = 8u;

// The tiles' sizes as named overrides: naga 30 cannot process an unnamed override (an array
// length written as an expression) that precedes a named one used elsewhere in the module
// (shaders/matmul_block.wgsl's, in the module that appends it).
override TILE_A_WORDS: u32 = TILE_M * TILE_K;
override TILE_B_WORDS: u32 = TILE_K * TILE_N;
var<workgroup> a_tile: array<f32, TILE_A_WORDS>; // [TILE_K][TILE_M]: a_tile[p * TILE_M + i]
var<workgroup> b_tile: array<f32, TILE_B_WORDS>; // [TILE_K][TILE_N]: b_tile[p * TILE_N + j]

@compute @workgroup_size(TILE_INVOCATIONS)
fn matmul_tiled(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let block = block_index(wg);
    if block >= params.blocks {
        return;
    }
    let row_base = (block / params.col_blocks) * TILE_M;
    let col_base = (block % params.col_blocks) * TILE_N;
    let across = TILE_N / 4u;
    let ty = lane / across;
    let tx = lane % across;
    let a_k_fast = params.a_col == 1u;
    let b_k_fast = params.b_row == 1u;
    var acc: array<vec4<f32>, MAX_TILE_ROWS>;
    for (var p0 = 0u; p0 < params.k; p0 += TILE_K) {
        for (var e = lane; e < TILE_M * TILE_K; e += TILE_INVOCATIONS) {
            // (row in the tile, step of p in the tile)
            var a_at = vec2<u32>(e / TILE_K, e % TILE_K);
            if !a_k_fast {
                a_at = vec2<u32>(e % TILE_M, e / TILE_M);
            }
            let i = row_base + a_at.x;
            let pa = p0 + a_at.y;
            var av = 0.0;
            if i < params.m && pa < params.k {
                av = a[params.a_off + i * params.a_row + pa * params.a_col];
            }
            a_tile[a_at.y * TILE_M + a_at.x] = av;
        }
        for (var e = lane; e < TILE_K * TILE_N; e += TILE_INVOCATIONS) {
            var b_at = vec2<u32>(e % TILE_N, e / TILE_N);
            if b_k_fast {
                b_at = vec2<u32>(e / TILE_K, e % TILE_K);
            }
            let j = col_base + b_at.x;
            let pb = p0 + b_at.y;
            var bv = 0.0;
            if j < params.n && pb < params.k {
                bv = b[params.b_off + pb * params.b_row + j * params.b_col];
            }
            b_tile[b_at.y * TILE_N + b_at.x] = bv;
        }
        workgroupBarrier();
        for (var p = 0u; p < TILE_K; p++) {
            let bv = vec4<f32>(
                b_tile[p * TILE_N + tx * 4u],
                b_tile[p * TILE_N + tx * 4u + 1u],
                b_tile[p * TILE_N + tx * 4u + 2u],
                b_tile[p * TILE_N + tx * 4u + 3u],
            );
            for (var r = 0u; r < TILE_ROWS; r++) {
                acc[r] = fma(vec4<f32>(a_tile[p * TILE_M + ty * TILE_ROWS + r]), bv, acc[r]);
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < TILE_ROWS; r++) {
        let i = row_base + ty * TILE_ROWS + r;
        for (var q = 0u; q < 4u; q++) {
            let j = col_base + tx * 4u + q;
            if i < params.m && j < params.n {
                store(i, j, acc[r][q]);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Skinny: products with a few rows, such as the per-time-step products of batch-1
// evaluation, prediction and generation (m = 1), where a 64-row block would compute 63
// rows for nothing. A workgroup is a 4x256 block of C: each of 64 invocations keeps 4 rows
// by 4 columns in registers, loading 4 values of A (the same on every invocation) and 4 of
// B (its own columns) per step of p. Rows past m repeat row m - 1 and are not stored.
// Unrolled by hand, unlike RegisterBlocked's arrays: llvmpipe keeps named values in
// registers. On llvmpipe the time is that of loading B (each word once), whatever m <= 4.

const SK_ROWS: u32 = 4u;
const SK_COLS: u32 = 256u;

@compute @workgroup_size(64)
fn matmul_skinny(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let block = block_index(wg);
    if block >= params.blocks {
        return;
    }
    let row0 = (block / params.col_blocks) * SK_ROWS;
    let col0 = (block % params.col_blocks) * SK_COLS + lane * 4u;
    let a0 = params.a_off + min(row0, params.m - 1u) * params.a_row;
    let a1 = params.a_off + min(row0 + 1u, params.m - 1u) * params.a_row;
    let a2 = params.a_off + min(row0 + 2u, params.m - 1u) * params.a_row;
    let a3 = params.a_off + min(row0 + 3u, params.m - 1u) * params.a_row;
    let b0 = params.b_off + min(col0, params.n - 1u) * params.b_col;
    let b1 = params.b_off + min(col0 + 1u, params.n - 1u) * params.b_col;
    let b2 = params.b_off + min(col0 + 2u, params.n - 1u) * params.b_col;
    let b3 = params.b_off + min(col0 + 3u, params.n - 1u) * params.b_col;
    var acc0 = vec4<f32>();
    var acc1 = vec4<f32>();
    var acc2 = vec4<f32>();
    var acc3 = vec4<f32>();
    for (var p = 0u; p < params.k; p++) {
        let bp = p * params.b_row;
        let bv = vec4<f32>(b[b0 + bp], b[b1 + bp], b[b2 + bp], b[b3 + bp]);
        let ap = p * params.a_col;
        acc0 = fma(vec4<f32>(a[a0 + ap]), bv, acc0);
        acc1 = fma(vec4<f32>(a[a1 + ap]), bv, acc1);
        acc2 = fma(vec4<f32>(a[a2 + ap]), bv, acc2);
        acc3 = fma(vec4<f32>(a[a3 + ap]), bv, acc3);
    }
    let rows = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var r = 0u; r < SK_ROWS; r++) {
        let i = row0 + r;
        if i >= params.m {
            break;
        }
        for (var q = 0u; q < 4u; q++) {
            if col0 + q < params.n {
                store(i, col0 + q, rows[r][q]);
            }
        }
    }
}

// The second pass: one output per invocation, the slices of the scratch buffer (bound as
// A, at a_off) added in order, then the bias and the old C as `store` adds them.
@compute @workgroup_size(256)
fn matmul_split_sum(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let at = block_index(wg) * 256u + lane;
    let mn = params.m * params.n;
    if at >= mn {
        return;
    }
    // Four slices' loads, then their adds in order (column_sum in shaders/reduce.wgsl
    // says why).
    let slices4 = params.k_slices - params.k_slices % 4u;
    var sum = 0.0;
    var p = params.a_off + at;
    for (var z = 0u; z < slices4; z += 4u) {
        let v0 = a[p];
        let v1 = a[p + mn];
        let v2 = a[p + 2u * mn];
        let v3 = a[p + 3u * mn];
        sum += v0;
        sum += v1;
        sum += v2;
        sum += v3;
        p += 4u * mn;
    }
    for (var z = slices4; z < params.k_slices; z++) {
        sum += a[p];
        p += mn;
    }
    store(at / params.n, at % params.n, sum);
}
