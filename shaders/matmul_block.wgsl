// ---------------------------------------------------------------------------------------
// Block: the GPU-class kernel (shaders/matmul_store.wgsl's bindings and `store_shifted`,
// `split_range`, then shaders/matmul_vec4.wgsl, come first in the module). A workgroup
// computes a BLOCK_M x BLOCK_N block of C from K tiles of BLOCK_K steps staged in
// workgroup memory, double-buffered: while the invocations multiply out one tile they
// hold the next one's loads in registers, then store them into the other buffer, one
// barrier per tile. Each invocation owns an 8x8
// register tile of C, as four 4x4 quadrants half a block apart (rows ty*4.. and
// ty*4 + BLOCK_M/2.., columns likewise), so that at each step of p it reads two vec4s of A
// and two of B from workgroup memory (neighbouring invocations reading neighbouring
// vec4s) for 64 multiply-adds. Tiles are loaded four words at a time along whichever
// dimension of the operand is contiguous, so neighbouring invocations read neighbouring
// words whatever the transpose form: one vec4 load where the operand is 4-aligned
// (`block_a_quad`), else four guarded words. The grid's z cuts k into slices (split-K), as for
// Strip: unsplit, one slice of all k.
//
// The block shape is a set of pipeline-overridable constants (the launcher's
// `block_constants`): 128x128 with 256 invocations uses 2 x (128 + 128) x 8 words, exactly
// WebGPU's default 16 KiB of workgroup memory; 64x64 with 64 invocations half of that.
// Every output sums its products in increasing order of p.

override BLOCK_M: u32 = 128u;
override BLOCK_N: u32 = 128u;
const BLOCK_K: u32 = 8u;
// Invocations: one per 8x8 register tile.
override BLOCK_INVOCATIONS: u32 = 256u;
// Quads of four words of the A and B tiles each invocation loads per K tile (at most
// BLOCK_MAX_LOADS): BLOCK_M * BLOCK_K / 4 / BLOCK_INVOCATIONS and likewise for B.
override BLOCK_LOADS_A: u32 = 1u;
override BLOCK_LOADS_B: u32 = 1u;
const BLOCK_MAX_LOADS: u32 = 2u;

// The two buffers' vec4s, as named overrides (see TILE_A_WORDS in shaders/matmul.wgsl).
override BLOCK_A_VEC4S: u32 = 2u * BLOCK_K * BLOCK_M / 4u;
override BLOCK_B_VEC4S: u32 = 2u * BLOCK_K * BLOCK_N / 4u;
// [buffer][p][BLOCK_M / 4] vec4s: rows 4i..4i+3 of the tile at step p.
var<workgroup> block_a: array<vec4<f32>, BLOCK_A_VEC4S>;
// [buffer][p][BLOCK_N / 4] vec4s: columns 4j..4j+3 at step p.
var<workgroup> block_b: array<vec4<f32>, BLOCK_B_VEC4S>;

// op(A)[i, p] with zero outside [0, m) x [0, p_end).
fn block_a_at(i: u32, p: u32, p_end: u32) -> f32 {
    if i < params.m && p < p_end {
        return a[params.a_off + i * params.a_row + p * params.a_col];
    }
    return 0.0;
}

// op(B)[p, j] with zero outside [0, p_end) x [0, n).
fn block_b_at(p: u32, j: u32, p_end: u32) -> f32 {
    if j < params.n && p < p_end {
        return b[params.b_off + p * params.b_row + j * params.b_col];
    }
    return 0.0;
}

// `a4`, `b4`, A_VEC4 and B_VEC4 come from shaders/matmul_vec4.wgsl. Here an operand is
// read by quads where its offset and the stride of its non-contiguous dimension are
// multiples of four words: the contiguous dimension's extent is then a multiple of four
// too (k and each slice's end for p, m for i, n for j), so a quad lies wholly inside the
// operand or wholly outside, and is loaded or zero as a whole: the same four words as the
// scalar loads, so the same sums bit for bit.

// The quad of op(A) from element (i, p) on along its contiguous dimension, or zero where
// it lies outside [0, m) x [0, p_end) (only with A_VEC4).
fn block_a_quad(i: u32, p: u32, p_end: u32) -> vec4<f32> {
    if i < params.m && p < p_end {
        return a4[(params.a_off + i * params.a_row + p * params.a_col) / 4u];
    }
    return vec4<f32>(0.0);
}

// The same for op(B) at (p, j) (only with B_VEC4).
fn block_b_quad(p: u32, j: u32, p_end: u32) -> vec4<f32> {
    if j < params.n && p < p_end {
        return b4[(params.b_off + p * params.b_row + j * params.b_col) / 4u];
    }
    return vec4<f32>(0.0);
}

// Quad `e` of the A tile at p0: four words along the contiguous dimension of op(A) (rows
// when A is stored transposed, steps of p otherwise).
fn block_load_a(e: u32, row_base: u32, p0: u32, p_end: u32) -> vec4<f32> {
    let quads = (params.flags & A_VEC4) != 0u;
    if params.a_row == 1u {
        let p = p0 + e / (BLOCK_M / 4u);
        let i = row_base + (e % (BLOCK_M / 4u)) * 4u;
        if quads {
            return block_a_quad(i, p, p_end);
        }
        return vec4<f32>(
            block_a_at(i, p, p_end),
            block_a_at(i + 1u, p, p_end),
            block_a_at(i + 2u, p, p_end),
            block_a_at(i + 3u, p, p_end),
        );
    }
    let i = row_base + e / (BLOCK_K / 4u);
    let p = p0 + (e % (BLOCK_K / 4u)) * 4u;
    if quads {
        return block_a_quad(i, p, p_end);
    }
    return vec4<f32>(
        block_a_at(i, p, p_end),
        block_a_at(i, p + 1u, p_end),
        block_a_at(i, p + 2u, p_end),
        block_a_at(i, p + 3u, p_end),
    );
}

// Put quad `e` of the A tile into buffer `buf`.
fn block_store_a(e: u32, v: vec4<f32>, buf: u32) {
    let base = buf * BLOCK_K * BLOCK_M / 4u;
    if params.a_row == 1u {
        block_a[base + e] = v;
        return;
    }
    let i = e / (BLOCK_K / 4u);
    let p = (e % (BLOCK_K / 4u)) * 4u;
    let at = base + p * (BLOCK_M / 4u) + i / 4u;
    let lane = i % 4u;
    block_a[at][lane] = v.x;
    block_a[at + BLOCK_M / 4u][lane] = v.y;
    block_a[at + 2u * (BLOCK_M / 4u)][lane] = v.z;
    block_a[at + 3u * (BLOCK_M / 4u)][lane] = v.w;
}

// Quad `e` of the B tile at p0: four words along the contiguous dimension of op(B).
fn block_load_b(e: u32, col_base: u32, p0: u32, p_end: u32) -> vec4<f32> {
    let quads = (params.flags & B_VEC4) != 0u;
    if params.b_col == 1u {
        let p = p0 + e / (BLOCK_N / 4u);
        let j = col_base + (e % (BLOCK_N / 4u)) * 4u;
        if quads {
            return block_b_quad(p, j, p_end);
        }
        return vec4<f32>(
            block_b_at(p, j, p_end),
            block_b_at(p, j + 1u, p_end),
            block_b_at(p, j + 2u, p_end),
            block_b_at(p, j + 3u, p_end),
        );
    }
    let j = col_base + e / (BLOCK_K / 4u);
    let p = p0 + (e % (BLOCK_K / 4u)) * 4u;
    if quads {
        return block_b_quad(p, j, p_end);
    }
    return vec4<f32>(
        block_b_at(p, j, p_end),
        block_b_at(p + 1u, j, p_end),
        block_b_at(p + 2u, j, p_end),
        block_b_at(p + 3u, j, p_end),
    );
}

fn block_store_b(e: u32, v: vec4<f32>, buf: u32) {
    let base = buf * BLOCK_K * BLOCK_N / 4u;
    if params.b_col == 1u {
        block_b[base + e] = v;
        return;
    }
    let j = e / (BLOCK_K / 4u);
    let p = (e % (BLOCK_K / 4u)) * 4u;
    let at = base + p * (BLOCK_N / 4u) + j / 4u;
    let lane = j % 4u;
    block_b[at][lane] = v.x;
    block_b[at + BLOCK_N / 4u][lane] = v.y;
    block_b[at + 2u * (BLOCK_N / 4u)][lane] = v.z;
    block_b[at + 3u * (BLOCK_N / 4u)][lane] = v.w;
}

// An invocation's 8x8 outputs: rXY holds row X * BLOCK_M/2 + Y of its tile at the first
// four columns, rXYb at the four columns half a block on.
struct BlockTile {
    r00: vec4<f32>, r00b: vec4<f32>,
    r01: vec4<f32>, r01b: vec4<f32>,
    r02: vec4<f32>, r02b: vec4<f32>,
    r03: vec4<f32>, r03b: vec4<f32>,
    r10: vec4<f32>, r10b: vec4<f32>,
    r11: vec4<f32>, r11b: vec4<f32>,
    r12: vec4<f32>, r12b: vec4<f32>,
    r13: vec4<f32>, r13b: vec4<f32>,
}

// One step of p: rows from a0 (first half) and a1 (second), columns from b0 and b1.
fn block_rank1(t: ptr<function, BlockTile>, a0: vec4<f32>, a1: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>) {
    (*t).r00 = fma(vec4<f32>(a0.x), b0, (*t).r00);
    (*t).r00b = fma(vec4<f32>(a0.x), b1, (*t).r00b);
    (*t).r01 = fma(vec4<f32>(a0.y), b0, (*t).r01);
    (*t).r01b = fma(vec4<f32>(a0.y), b1, (*t).r01b);
    (*t).r02 = fma(vec4<f32>(a0.z), b0, (*t).r02);
    (*t).r02b = fma(vec4<f32>(a0.z), b1, (*t).r02b);
    (*t).r03 = fma(vec4<f32>(a0.w), b0, (*t).r03);
    (*t).r03b = fma(vec4<f32>(a0.w), b1, (*t).r03b);
    (*t).r10 = fma(vec4<f32>(a1.x), b0, (*t).r10);
    (*t).r10b = fma(vec4<f32>(a1.x), b1, (*t).r10b);
    (*t).r11 = fma(vec4<f32>(a1.y), b0, (*t).r11);
    (*t).r11b = fma(vec4<f32>(a1.y), b1, (*t).r11b);
    (*t).r12 = fma(vec4<f32>(a1.z), b0, (*t).r12);
    (*t).r12b = fma(vec4<f32>(a1.z), b1, (*t).r12b);
    (*t).r13 = fma(vec4<f32>(a1.w), b0, (*t).r13);
    (*t).r13b = fma(vec4<f32>(a1.w), b1, (*t).r13b);
}

// Store row i's outputs that lie inside C: v0 at columns j0.., v1 at j1...
fn block_store_row(i: u32, j0: u32, j1: u32, v0: vec4<f32>, v1: vec4<f32>, shift: u32) {
    if i >= params.m {
        return;
    }
    for (var q = 0u; q < 4u; q++) {
        if j0 + q < params.n {
            store_shifted(i, j0 + q, v0[q], shift);
        }
        if j1 + q < params.n {
            store_shifted(i, j1 + q, v1[q], shift);
        }
    }
}

@compute @workgroup_size(BLOCK_INVOCATIONS)
fn matmul_block(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let block = block_index(wg);
    if block >= params.blocks {
        return;
    }
    let row_base = (block / params.col_blocks) * BLOCK_M;
    let col_base = (block % params.col_blocks) * BLOCK_N;
    let across = BLOCK_N / 8u;
    let ty = lane / across;
    let tx = lane % across;
    let range = split_range(wg.z);
    let p_end = range.y;

    var next_a: array<vec4<f32>, BLOCK_MAX_LOADS>;
    var next_b: array<vec4<f32>, BLOCK_MAX_LOADS>;
    for (var t = 0u; t < BLOCK_LOADS_A; t++) {
        next_a[t] = block_load_a(lane + t * BLOCK_INVOCATIONS, row_base, range.x, p_end);
    }
    for (var t = 0u; t < BLOCK_LOADS_B; t++) {
        next_b[t] = block_load_b(lane + t * BLOCK_INVOCATIONS, col_base, range.x, p_end);
    }
    for (var t = 0u; t < BLOCK_LOADS_A; t++) {
        block_store_a(lane + t * BLOCK_INVOCATIONS, next_a[t], 0u);
    }
    for (var t = 0u; t < BLOCK_LOADS_B; t++) {
        block_store_b(lane + t * BLOCK_INVOCATIONS, next_b[t], 0u);
    }
    workgroupBarrier();

    // The 8x8 register tile as sixteen named vec4s (no array indexed in a loop, which a
    // compiler would have to unroll to keep in registers).
    var tile = BlockTile();
    var buf = 0u;
    for (var p0 = range.x; p0 < p_end; p0 += BLOCK_K) {
        let more = p0 + BLOCK_K < p_end;
        if more {
            for (var t = 0u; t < BLOCK_LOADS_A; t++) {
                next_a[t] = block_load_a(lane + t * BLOCK_INVOCATIONS, row_base, p0 + BLOCK_K, p_end);
            }
            for (var t = 0u; t < BLOCK_LOADS_B; t++) {
                next_b[t] = block_load_b(lane + t * BLOCK_INVOCATIONS, col_base, p0 + BLOCK_K, p_end);
            }
        }
        let abase = buf * BLOCK_K * BLOCK_M / 4u;
        let bbase = buf * BLOCK_K * BLOCK_N / 4u;
        for (var p = 0u; p < BLOCK_K; p++) {
            let a0 = block_a[abase + p * (BLOCK_M / 4u) + ty];
            let a1 = block_a[abase + p * (BLOCK_M / 4u) + ty + BLOCK_M / 8u];
            let b0 = block_b[bbase + p * (BLOCK_N / 4u) + tx];
            let b1 = block_b[bbase + p * (BLOCK_N / 4u) + tx + BLOCK_N / 8u];
            block_rank1(&tile, a0, a1, b0, b1);
        }
        if more {
            for (var t = 0u; t < BLOCK_LOADS_A; t++) {
                block_store_a(lane + t * BLOCK_INVOCATIONS, next_a[t], 1u - buf);
            }
            for (var t = 0u; t < BLOCK_LOADS_B; t++) {
                block_store_b(lane + t * BLOCK_INVOCATIONS, next_b[t], 1u - buf);
            }
        }
        workgroupBarrier();
        buf = 1u - buf;
    }

    let shift = wg.z * params.m * params.n;
    let i0 = row_base + ty * 4u;
    let i1 = i0 + BLOCK_M / 2u;
    let j0 = col_base + tx * 4u;
    let j1 = j0 + BLOCK_N / 2u;
    block_store_row(i0, j0, j1, tile.r00, tile.r00b, shift);
    block_store_row(i0 + 1u, j0, j1, tile.r01, tile.r01b, shift);
    block_store_row(i0 + 2u, j0, j1, tile.r02, tile.r02b, shift);
    block_store_row(i0 + 3u, j0, j1, tile.r03, tile.r03b, shift);
    block_store_row(i1, j0, j1, tile.r10, tile.r10b, shift);
    block_store_row(i1 + 1u, j0, j1, tile.r11, tile.r11b, shift);
    block_store_row(i1 + 2u, j0, j1, tile.r12, tile.r12b, shift);
    block_store_row(i1 + 3u, j0, j1, tile.r13, tile.r13b, shift);
}
