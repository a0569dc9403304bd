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
// kernels share; `launch_slice` (the slice of this workgroup, and with
// shaders/matmul_launch_group.wgsl its product) in the launch prelude.

@compute @workgroup_size(64)
fn matmul_strip(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let slice = launch_slice(wg);
    let block = block_index(wg);
    if block >= params.blocks || slice >= params.k_slices {
        return;
    }
    let s = strip_lane(block, lane);
    let r = split_range(slice);
    strip_store(s, strip_sum(s, r.x, r.y), slice * params.m * params.n);
}
