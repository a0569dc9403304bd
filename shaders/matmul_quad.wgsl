// StripQuad: Strip's blocks and layout (shaders/matmul_strip.wgsl, which this file follows in
// one module, behind `enable subgroups;`), with the loads of op(A) shared within quads.
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

// The lane's 8x4 sums over the steps p of [p_begin, p_end), in increasing order of p:
// groups of four steps with the loads of A shared in the quad, then the last few as Strip
// makes them. `q` is the lane's index in its quad; every lane of a quad has the same range.
fn strip_quad_sum(s: StripLane, q: u32, p_begin: u32, p_end: u32) -> Strip8x4 {
    var acc = Strip8x4();
    let p4 = p_end - (p_end - p_begin) % 4u;
    for (var p0 = p_begin; p0 < p4; p0 += 4u) {
        // Rows 0..3 and 4..7 of the lane's block at step p0 + q; lane t of the quad has
        // them at step p0 + t.
        let ap = (p0 + q) * params.a_col;
        let lo = strip_a_lo(s, ap);
        let hi = strip_a_hi(s, ap);
        strip_rank1(&acc, quadBroadcast(lo, 0u), quadBroadcast(hi, 0u), strip_b(s, p0));
        strip_rank1(&acc, quadBroadcast(lo, 1u), quadBroadcast(hi, 1u), strip_b(s, p0 + 1u));
        strip_rank1(&acc, quadBroadcast(lo, 2u), quadBroadcast(hi, 2u), strip_b(s, p0 + 2u));
        strip_rank1(&acc, quadBroadcast(lo, 3u), quadBroadcast(hi, 3u), strip_b(s, p0 + 3u));
    }
    for (var p = p4; p < p_end; p++) {
        let ap = p * params.a_col;
        strip_rank1(&acc, strip_a_lo(s, ap), strip_a_hi(s, ap), strip_b(s, p));
    }
    return acc;
}

@compute @workgroup_size(64)
fn matmul_strip_quad(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
    @builtin(subgroup_invocation_id) sub: u32,
) {
    let slice = launch_slice(wg);
    let block = block_index(wg);
    if block >= params.blocks || slice >= params.k_slices {
        return;
    }
    let s = strip_lane(block, lane);
    // Slice `slice` of k: all of it unsplit (see Split-K in shaders/matmul_strip.wgsl).
    let r = split_range(slice);
    strip_store(s, strip_quad_sum(s, sub % 4u, r.x, r.y), slice * params.m * params.n);
}
