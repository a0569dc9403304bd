// StripQuad: Strip's blocks and layout (shaders/matmul.wgsl, which this file follows in one
// module, behind `enable subgroups;`), with the loads of op(A) shared within quads.
//
// Why: Chromium's SwiftShader runs four invocations as the four lanes of a CPU SIMD
// register, and every load whose address is not a compile-time constant is a gather: a
// bounds check and four scalar loads, even when the four addresses are equal, as Strip's
// loads of A are (all lanes of a row of its block read the same rows of A). That is most
// of Strip's time. Here the four lanes of a quad (invocations 4t .. 4t + 3, one row of the
// block: Strip's rows are at least 8 lanes wide) load A for four different steps of p,
// lane q for step p0 + q, and hand the values round with quadBroadcast, which is a
// register shuffle: per 4 steps of p, 8 loads of A and 16 of B for 128 multiply-adds,
// where Strip makes 48 loads. Quads are part of WebGPU's subgroups feature and of every
// adapter wgpu gives SUBGROUP; the kernel assumes the usual layout of a one-dimensional
// workgroup, quads of four consecutive invocations, which the parity tests check.
// Each output sums its products in increasing order of p, like every variant.

@compute @workgroup_size(64)
fn matmul_strip_quad(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
    @builtin(subgroup_invocation_id) sub: u32,
) {
    let block = block_index(wg);
    if block >= params.blocks {
        return;
    }
    let w = params.strip_width;
    let row0 = (block / params.col_blocks) * (ST_ROWS * (64u / w)) + (lane / w) * ST_ROWS;
    let col0 = (block % params.col_blocks) * (4u * w) + lane % w;
    let last = params.m - 1u;
    let a0 = params.a_off + min(row0, last) * params.a_row;
    let a1 = params.a_off + min(row0 + 1u, last) * params.a_row;
    let a2 = params.a_off + min(row0 + 2u, last) * params.a_row;
    let a3 = params.a_off + min(row0 + 3u, last) * params.a_row;
    let a4 = params.a_off + min(row0 + 4u, last) * params.a_row;
    let a5 = params.a_off + min(row0 + 5u, last) * params.a_row;
    let a6 = params.a_off + min(row0 + 6u, last) * params.a_row;
    let a7 = params.a_off + min(row0 + 7u, last) * params.a_row;
    let b0 = params.b_off + min(col0, params.n - 1u) * params.b_col;
    let b1 = params.b_off + min(col0 + w, params.n - 1u) * params.b_col;
    let b2 = params.b_off + min(col0 + 2u * w, params.n - 1u) * params.b_col;
    let b3 = params.b_off + min(col0 + 3u * w, params.n - 1u) * params.b_col;
    var acc0 = vec4<f32>();
    var acc1 = vec4<f32>();
    var acc2 = vec4<f32>();
    var acc3 = vec4<f32>();
    var acc4 = vec4<f32>();
    var acc5 = vec4<f32>();
    var acc6 = vec4<f32>();
    var acc7 = vec4<f32>();
    // This lane's step of p within each group of four.
    let q = sub % 4u;
    let k4 = params.k - params.k % 4u;
    for (var p0 = 0u; p0 < k4; p0 += 4u) {
        let ap = (p0 + q) * params.a_col;
        // Rows 0..3 and 4..7 of the block at step p0 + q.
        let lo = vec4<f32>(a[a0 + ap], a[a1 + ap], a[a2 + ap], a[a3 + ap]);
        let hi = vec4<f32>(a[a4 + ap], a[a5 + ap], a[a6 + ap], a[a7 + ap]);
        {
            let bp = (p0 + 0u) * params.b_row;
            let bv = vec4<f32>(b[b0 + bp], b[b1 + bp], b[b2 + bp], b[b3 + bp]);
            let l = quadBroadcast(lo, 0u);
            let h = quadBroadcast(hi, 0u);
            acc0 = fma(vec4<f32>(l.x), bv, acc0);
            acc1 = fma(vec4<f32>(l.y), bv, acc1);
            acc2 = fma(vec4<f32>(l.z), bv, acc2);
            acc3 = fma(vec4<f32>(l.w), bv, acc3);
            acc4 = fma(vec4<f32>(h.x), bv, acc4);
            acc5 = fma(vec4<f32>(h.y), bv, acc5);
            acc6 = fma(vec4<f32>(h.z), bv, acc6);
            acc7 = fma(vec4<f32>(h.w), bv, acc7);
        }
        {
            let bp = (p0 + 1u) * params.b_row;
            let bv = vec4<f32>(b[b0 + bp], b[b1 + bp], b[b2 + bp], b[b3 + bp]);
            let l = quadBroadcast(lo, 1u);
            let h = quadBroadcast(hi, 1u);
            acc0 = fma(vec4<f32>(l.x), bv, acc0);
            acc1 = fma(vec4<f32>(l.y), bv, acc1);
            acc2 = fma(vec4<f32>(l.z), bv, acc2);
            acc3 = fma(vec4<f32>(l.w), bv, acc3);
            acc4 = fma(vec4<f32>(h.x), bv, acc4);
            acc5 = fma(vec4<f32>(h.y), bv, acc5);
            acc6 = fma(vec4<f32>(h.z), bv, acc6);
            acc7 = fma(vec4<f32>(h.w), bv, acc7);
        }
        {
            let bp = (p0 + 2u) * params.b_row;
            let bv = vec4<f32>(b[b0 + bp], b[b1 + bp], b[b2 + bp], b[b3 + bp]);
            let l = quadBroadcast(lo, 2u);
            let h = quadBroadcast(hi, 2u);
            acc0 = fma(vec4<f32>(l.x), bv, acc0);
            acc1 = fma(vec4<f32>(l.y), bv, acc1);
            acc2 = fma(vec4<f32>(l.z), bv, acc2);
            acc3 = fma(vec4<f32>(l.w), bv, acc3);
            acc4 = fma(vec4<f32>(h.x), bv, acc4);
            acc5 = fma(vec4<f32>(h.y), bv, acc5);
            acc6 = fma(vec4<f32>(h.z), bv, acc6);
            acc7 = fma(vec4<f32>(h.w), bv, acc7);
        }
        {
            let bp = (p0 + 3u) * params.b_row;
            let bv = vec4<f32>(b[b0 + bp], b[b1 + bp], b[b2 + bp], b[b3 + bp]);
            let l = quadBroadcast(lo, 3u);
            let h = quadBroadcast(hi, 3u);
            acc0 = fma(vec4<f32>(l.x), bv, acc0);
            acc1 = fma(vec4<f32>(l.y), bv, acc1);
            acc2 = fma(vec4<f32>(l.z), bv, acc2);
            acc3 = fma(vec4<f32>(l.w), bv, acc3);
            acc4 = fma(vec4<f32>(h.x), bv, acc4);
            acc5 = fma(vec4<f32>(h.y), bv, acc5);
            acc6 = fma(vec4<f32>(h.z), bv, acc6);
            acc7 = fma(vec4<f32>(h.w), bv, acc7);
        }
    }
    // The last k % 4 steps, as Strip makes them.
    for (var p = k4; p < params.k; p++) {
        let bp = p * params.b_row;
        let bv = vec4<f32>(b[b0 + bp], b[b1 + bp], b[b2 + bp], b[b3 + bp]);
        let ap = p * params.a_col;
        acc0 = fma(vec4<f32>(a[a0 + ap]), bv, acc0);
        acc1 = fma(vec4<f32>(a[a1 + ap]), bv, acc1);
        acc2 = fma(vec4<f32>(a[a2 + ap]), bv, acc2);
        acc3 = fma(vec4<f32>(a[a3 + ap]), bv, acc3);
        acc4 = fma(vec4<f32>(a[a4 + ap]), bv, acc4);
        acc5 = fma(vec4<f32>(a[a5 + ap]), bv, acc5);
        acc6 = fma(vec4<f32>(a[a6 + ap]), bv, acc6);
        acc7 = fma(vec4<f32>(a[a7 + ap]), bv, acc7);
    }
    let rows = array<vec4<f32>, 8>(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7);
    for (var r = 0u; r < ST_ROWS; r++) {
        let i = row0 + r;
        if i >= params.m {
            break;
        }
        for (var c = 0u; c < 4u; c++) {
            if col0 + w * c < params.n {
                store(i, col0 + w * c, rows[r][c]);
            }
        }
    }
}
