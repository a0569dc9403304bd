// C[m, n] = op(A)[m, k] @ op(B)[k, n] (+ bias[n] on every row) (+ C when accumulating).
//
// The transposes are strides in the uniform block (shaders/matmul_params.wgsl, which the
// launcher puts in front of this file), so one entry point per variant serves NN, NT, TN
// and TT. Each output element sums its k products in increasing order of p, so results do
// not depend on the variant's blocking beyond f32 rounding of the fused multiply-adds.

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// Finish one output element: add the bias, then the old C when accumulating (the order of
// the CPU twin), and store. The caller keeps (i, j) inside [m, n).
fn store(i: u32, j: u32, sum: f32) {
    store_shifted(i, j, sum, 0u);
}

// `store` into C shifted by `shift` words (a split-K slice's partial sums).
fn store_shifted(i: u32, j: u32, sum: f32, shift: u32) {
    var out = sum;
    if (params.flags & HAS_BIAS) != 0u {
        out += bias[params.bias_off + j];
    }
    let at = params.c_off + shift + i * params.n + j;
    if (params.flags & ACCUMULATE) != 0u {
        out = c[at] + out;
    }
    c[at] = out;
}

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

// ---------------------------------------------------------------------------------------
// Strip: Skinny's layout with 8 rows, for products of any height on adapters that run
// invocations as CPU SIMD lanes without registers to spare (Chromium's SwiftShader): a
// workgroup of 64 a block of C of 8 to 64 rows by 256 to 32 columns (as wide as the product
// needs), each invocation 8 rows by 4 columns in eight named vec4 accumulators (no array
// indexed at run time, which such compilers keep in memory), 12 loads for 32 multiply-adds,
// no workgroup memory and no barriers. StripQuad (shaders/matmul_quad.wgsl) shares the
// helpers below.

const ST_ROWS: u32 = 8u;

// Where one lane of a Strip block reads: its first row and column of C, the distance w
// between its columns, and where its 8 rows of op(A) and 4 columns of op(B) start.
// The block is 64 / w rows of w lanes (w = params.strip_width), 8 rows by 4w columns each.
// Lane l owns columns col0 + wq: neighbouring lanes read neighbouring words of B and write
// neighbouring words of C. Rows and columns past the edge repeat the last one and are not
// stored.
struct StripLane {
    row0: u32,
    col0: u32,
    w: u32,
    a0: u32,
    a1: u32,
    a2: u32,
    a3: u32,
    a4: u32,
    a5: u32,
    a6: u32,
    a7: u32,
    b0: u32,
    b1: u32,
    b2: u32,
    b3: u32,
}

fn strip_lane(block: u32, lane: u32) -> StripLane {
    let w = params.strip_width;
    let row0 = (block / params.col_blocks) * (ST_ROWS * (64u / w)) + (lane / w) * ST_ROWS;
    let col0 = (block % params.col_blocks) * (4u * w) + lane % w;
    let last = params.m - 1u;
    let a = params.a_off;
    let r = params.a_row;
    let b = params.b_off;
    let c = params.b_col;
    let n = params.n - 1u;
    return StripLane(
        row0, col0, w,
        a + min(row0, last) * r, a + min(row0 + 1u, last) * r,
        a + min(row0 + 2u, last) * r, a + min(row0 + 3u, last) * r,
        a + min(row0 + 4u, last) * r, a + min(row0 + 5u, last) * r,
        a + min(row0 + 6u, last) * r, a + min(row0 + 7u, last) * r,
        b + min(col0, n) * c, b + min(col0 + w, n) * c,
        b + min(col0 + 2u * w, n) * c, b + min(col0 + 3u * w, n) * c,
    );
}

// op(A) at step p (ap = p * params.a_col) on the lane's rows 0..3 and 4..7.
fn strip_a_lo(s: StripLane, ap: u32) -> vec4<f32> {
    return vec4<f32>(a[s.a0 + ap], a[s.a1 + ap], a[s.a2 + ap], a[s.a3 + ap]);
}

fn strip_a_hi(s: StripLane, ap: u32) -> vec4<f32> {
    return vec4<f32>(a[s.a4 + ap], a[s.a5 + ap], a[s.a6 + ap], a[s.a7 + ap]);
}

// op(B) at step p on the lane's 4 columns.
fn strip_b(s: StripLane, p: u32) -> vec4<f32> {
    let bp = p * params.b_row;
    return vec4<f32>(b[s.b0 + bp], b[s.b1 + bp], b[s.b2 + bp], b[s.b3 + bp]);
}

// A lane's 8x4 outputs, row r in member r (named members: no array indexed at run time).
struct Strip8x4 {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
    r4: vec4<f32>,
    r5: vec4<f32>,
    r6: vec4<f32>,
    r7: vec4<f32>,
}

// One step of p: row r += op(A)[r] * bv, rows 0..3 from lo's components, 4..7 from hi's.
fn strip_rank1(acc: ptr<function, Strip8x4>, lo: vec4<f32>, hi: vec4<f32>, bv: vec4<f32>) {
    (*acc).r0 = fma(vec4<f32>(lo.x), bv, (*acc).r0);
    (*acc).r1 = fma(vec4<f32>(lo.y), bv, (*acc).r1);
    (*acc).r2 = fma(vec4<f32>(lo.z), bv, (*acc).r2);
    (*acc).r3 = fma(vec4<f32>(lo.w), bv, (*acc).r3);
    (*acc).r4 = fma(vec4<f32>(hi.x), bv, (*acc).r4);
    (*acc).r5 = fma(vec4<f32>(hi.y), bv, (*acc).r5);
    (*acc).r6 = fma(vec4<f32>(hi.z), bv, (*acc).r6);
    (*acc).r7 = fma(vec4<f32>(hi.w), bv, (*acc).r7);
}

// Store the rows and columns of the lane's outputs that lie inside C, `shift` words on.
fn strip_store(s: StripLane, acc: Strip8x4, shift: u32) {
    let rows = array<vec4<f32>, 8>(acc.r0, acc.r1, acc.r2, acc.r3, acc.r4, acc.r5, acc.r6, acc.r7);
    for (var r = 0u; r < ST_ROWS; r++) {
        let i = s.row0 + r;
        if i >= params.m {
            break;
        }
        for (var q = 0u; q < 4u; q++) {
            if s.col0 + s.w * q < params.n {
                store_shifted(i, s.col0 + s.w * q, rows[r][q], shift);
            }
        }
    }
}

// The lane's 8x4 sums over the steps p of [p_begin, p_end), in increasing order of p.
fn strip_sum(s: StripLane, p_begin: u32, p_end: u32) -> Strip8x4 {
    var acc = Strip8x4();
    for (var p = p_begin; p < p_end; p++) {
        let ap = p * params.a_col;
        strip_rank1(&acc, strip_a_lo(s, ap), strip_a_hi(s, ap), strip_b(s, p));
    }
    return acc;
}

// ---------------------------------------------------------------------------------------
// Split-K: products whose C is too small to keep a GPU busy, however long k is (the
// recurrent backward products [60, 4h] @ [4h, h]^T of each time step make 4 to 8 strip
// blocks, where a GPU runs hundreds of workgroups at once). The grid's z splits k into
// params.k_slices slices of params.k_chunk steps; workgroup (x, y, z) computes its strip
// block's sums over slice z alone and stores them, without bias or accumulation, to slice
// z of a scratch buffer bound as C (m * n words a slice). matmul_split_sum then adds the
// slices in order for each output and finishes it as `store` does. Each slice sums in
// increasing order of p, so the result differs from the unsplit sum by f32 rounding only.
// Unsplit, the launcher gives one slice of all k (k_chunk = k, a grid one deep): the same
// entry points serve both, slice 0 at shift 0.

// `split_range` (the steps of p in a slice) is in shaders/matmul_params.wgsl, which the f16
// kernels share.

@compute @workgroup_size(64)
fn matmul_strip(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let block = block_index(wg);
    if block >= params.blocks {
        return;
    }
    let s = strip_lane(block, lane);
    let r = split_range(wg.z);
    strip_store(s, strip_sum(s, r.x, r.y), wg.z * params.m * params.n);
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
