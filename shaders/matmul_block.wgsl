// ---------------------------------------------------------------------------------------
// Block: the GPU-class kernel (shaders/matmul.wgsl's bindings, `store_shifted` and
// `split_range` come first in the module). A workgroup computes a BLOCK_M x BLOCK_N block
// of C from K tiles of BLOCK_K steps staged in workgroup memory, double-buffered: while
// the invocations multiply out one tile they hold the next one's loads in registers, then
// store them into the other buffer, one barrier per tile. Each invocation owns an 8x8
// register tile of C, as four 4x4 quadrants half a block apart (rows ty*4.. and
// ty*4 + BLOCK_M/2.., columns likewise), so that at each step of p it reads two vec4s of A
// and two of B from workgroup memory (neighbouring invocations reading neighbouring
// vec4s) for 64 multiply-adds. Tiles are loaded four words at a time along whichever
// dimension of the operand is contiguous, so neighbouring invocations read neighbouring
// words whatever the transpose form. The grid's z cuts k into slices (split-K), as for
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

// Quad `e` of the A tile at p0: four words along the contiguous dimension of op(A) (rows
// when A is stored transposed, steps of p otherwise).
fn block_load_a(e: u32, row_base: u32, p0: u32, p_end: u32) -> vec4<f32> {
    if params.a_row == 1u {
        let p = p0 + e / (BLOCK_M / 4u);
        let i = row_base + (e % (BLOCK_M / 4u)) * 4u;
        return vec4<f32>(
            block_a_at(i, p, p_end),
            block_a_at(i + 1u, p, p_end),
            block_a_at(i + 2u, p, p_end),
            block_a_at(i + 3u, p, p_end),
        );
    }
    let i = row_base + e / (BLOCK_K / 4u);
    let p = p0 + (e % (BLOCK_K / 4u)) * 4u;
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
    if params.b_col == 1u {
        let p = p0 + e / (BLOCK_N / 4u);
        let j = col_base + (e % (BLOCK_N / 4u)) * 4u;
        return vec4<f32>(
            block_b_at(p, j, p_end),
            block_b_at(p, j + 1u, p_end),
            block_b_at(p, j + 2u, p_end),
            block_b_at(p, j + 3u, p_end),
        );
    }
    let j = col_base + e / (BLOCK_K / 4u);
    let p = p0 + (e % (BLOCK_K / 4u)) * 4u;
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

    // acc[2r + h]: row r of the tile (r < 4: ty*4 + r; else BLOCK_M/2 + ty*4 + r - 4),
    // columns tx*4.. (h = 0) or BLOCK_N/2 + tx*4.. (h = 1).
    var acc: array<vec4<f32>, 16>;
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
            for (var r = 0u; r < 4u; r++) {
                acc[2u * r] = fma(vec4<f32>(a0[r]), b0, acc[2u * r]);
                acc[2u * r + 1u] = fma(vec4<f32>(a0[r]), b1, acc[2u * r + 1u]);
                acc[2u * r + 8u] = fma(vec4<f32>(a1[r]), b0, acc[2u * r + 8u]);
                acc[2u * r + 9u] = fma(vec4<f32>(a1[r]), b1, acc[2u * r + 9u]);
            }
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
    for (var r = 0u; r < 8u; r++) {
        let i = row_base + (r / 4u) * (BLOCK_M / 2u) + ty * 4u + r % 4u;
        if i >= params.m {
            continue;
        }
        for (var h = 0u; h < 2u; h++) {
            let v = acc[2u * (r % 4u) + 8u * (r / 4u) + h];
            let j0 = col_base + h * (BLOCK_N / 2u) + tx * 4u;
            for (var q = 0u; q < 4u; q++) {
                if j0 + q < params.n {
                    store_shifted(i, j0 + q, v[q], shift);
                }
            }
        }
    }
}
