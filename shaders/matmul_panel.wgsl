// ---------------------------------------------------------------------------------------
// Panel: the kernel for products with few rows and a wide C, the recurrent products of
// every time step above all (`[batch, h] @ [h, 4h]` forward, `[batch, 4h] @ [4h, h]^T`
// backward, batch 20 at the small, medium and large presets). The bindings and
// `store_shifted` (shaders/matmul_store.wgsl), `split_range` and the operands' loads
// `panel_a`, `panel_b` come first in the module: shaders/matmul_panel_load.wgsl for f32
// operands, shaders/matmul_panel_load_f16.wgsl for the f16 ones of `--precision mixed`
// (`matmul_panel_f16`: the same kernel on f16 copies, each value widened to f32, whose
// products are exact; so it sums exactly what matmul_f16.wgsl sums, in the same order).
//
// A workgroup computes a panel of C, all PANEL_ROWS rows by PANEL_COLS columns, from one
// slice of k (the grid's z; unsplit, all of k): one invocation per column, its 32 rows as
// eight named vec4 accumulators. So B, the large operand (a weight matrix), is read once
// in all where the product has at most 32 rows, each word by one invocation, neighbouring
// invocations on neighbouring columns; A, a few rows, is read by every invocation of the
// workgroup at the same address (one broadcast load). There is no workgroup memory and no
// barrier. The strip kernels, 8 rows a workgroup, read B once per 8 rows (three times for
// 20 rows) and made 72 workgroups of the large preset's `[20, 1500] @ [1500, 6000]`.
//
// Steps of p go four at a time: the four words of B's column (one vec4 load where op(B) is
// contiguous along p and 4-aligned: `B_VEC4`), then for each quad of rows the four rows'
// words at those steps (a vec4 each where op(A) is contiguous along p: `A_VEC4`), then the
// sixteen multiply-adds in increasing order of p. Every output sums its products in
// increasing order of p, from zero, as the other kernels do.

const PANEL_ROWS: u32 = 32u;
const PANEL_COLS: u32 = 256u;

// Four steps of p for the quad of rows from i: rows' words at the steps, then the
// multiply-adds step by step.
fn panel_quad(acc: vec4<f32>, i: u32, p: u32, p_end: u32, bq: vec4<f32>) -> vec4<f32> {
    let r0 = panel_a(i, p, p_end);
    let r1 = panel_a(i + 1u, p, p_end);
    let r2 = panel_a(i + 2u, p, p_end);
    let r3 = panel_a(i + 3u, p, p_end);
    var s = acc;
    s = fma(vec4<f32>(r0.x, r1.x, r2.x, r3.x), vec4<f32>(bq.x), s);
    s = fma(vec4<f32>(r0.y, r1.y, r2.y, r3.y), vec4<f32>(bq.y), s);
    s = fma(vec4<f32>(r0.z, r1.z, r2.z, r3.z), vec4<f32>(bq.z), s);
    s = fma(vec4<f32>(r0.w, r1.w, r2.w, r3.w), vec4<f32>(bq.w), s);
    return s;
}

// Store the quad of rows from i at column j (the rows inside C).
fn panel_store(i: u32, j: u32, v: vec4<f32>, shift: u32) {
    for (var q = 0u; q < 4u; q++) {
        if i + q < params.m {
            store_shifted(i + q, j, v[q], shift);
        }
    }
}

@compute @workgroup_size(256)
fn matmul_panel(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let slice = launch_slice(wg);
    let block = block_index(wg);
    if block >= params.blocks || slice >= params.k_slices {
        return;
    }
    let i0 = (block / params.col_blocks) * PANEL_ROWS;
    let j = (block % params.col_blocks) * PANEL_COLS + lane;
    let range = split_range(slice);
    let p_end = range.y;
    // Quads of rows with a row inside C (the same in every invocation).
    let quads = min(PANEL_ROWS, params.m - i0 + 3u) / 4u;

    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    var c4 = vec4<f32>(0.0);
    var c5 = vec4<f32>(0.0);
    var c6 = vec4<f32>(0.0);
    var c7 = vec4<f32>(0.0);
    for (var p = range.x; p < p_end; p += 4u) {
        let bq = panel_b(p, j, p_end);
        c0 = panel_quad(c0, i0, p, p_end, bq);
        if quads > 1u {
            c1 = panel_quad(c1, i0 + 4u, p, p_end, bq);
        }
        if quads > 2u {
            c2 = panel_quad(c2, i0 + 8u, p, p_end, bq);
        }
        if quads > 3u {
            c3 = panel_quad(c3, i0 + 12u, p, p_end, bq);
        }
        if quads > 4u {
            c4 = panel_quad(c4, i0 + 16u, p, p_end, bq);
        }
        if quads > 5u {
            c5 = panel_quad(c5, i0 + 20u, p, p_end, bq);
        }
        if quads > 6u {
            c6 = panel_quad(c6, i0 + 24u, p, p_end, bq);
        }
        if quads > 7u {
            c7 = panel_quad(c7, i0 + 28u, p, p_end, bq);
        }
    }

    if j >= params.n {
        return;
    }
    let shift = slice * params.m * params.n;
    panel_store(i0, j, c0, shift);
    panel_store(i0 + 4u, j, c1, shift);
    panel_store(i0 + 8u, j, c2, shift);
    panel_store(i0 + 12u, j, c3, shift);
    panel_store(i0 + 16u, j, c4, shift);
    panel_store(i0 + 20u, j, c5, shift);
    panel_store(i0 + 24u, j, c6, shift);
    panel_store(i0 + 28u, j, c7, shift);
}
