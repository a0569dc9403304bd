// The scalar f16 matmul of `--precision mixed` (issue 25's fallback where no cooperative
// matrices are offered): C[m, n] (f32) = op(A) @ op(B) (+ bias) (+ C), A and B read as f16
// (`matmul_params.wgsl` comes first: offsets and strides count f16 elements for A and B),
// every product and sum in f32. A product of two f16 values is exact in f32 (11 + 11
// significant bits), so the rounding points are those of a matrix core's f16 x f16 -> f32
// multiply-accumulate: the operands rounded to f16 once, where they were cast, then f32
// sums in increasing order of p. CPU twin: `reference::matmul` on operands rounded with
// `reference::round_f16`. The launcher puts `enable f16;` in front of the module (it must
// come before the uniform block it shares with the f32 kernels), then a launch prelude
// (shaders/matmul_launch.wgsl, or matmul_launch_group.wgsl to serve the recurrent products
// of several layers in one launch: this kernel has no barriers), the bindings
// (shaders/matmul_operands_f16.wgsl) and `store_shifted` (shaders/matmul_store.wgsl).
// Split-K as the f32 kernels do it (shaders/matmul.wgsl): workgroup z sums slice z of k and
// stores it at slice z of a scratch buffer bound as C, which matmul_split_sum adds up.

// A workgroup of 64 invocations is a 32x32 block of C: 8x8 invocations, each 4 rows by 4
// columns in named accumulators. Rows and columns past the edge repeat the last one and are
// not stored.
const F16_BLOCK: u32 = 32u;

fn f16_a(i: u32, p: u32) -> f32 {
    return f32(ah[params.a_off + min(i, params.m - 1u) * params.a_row + p * params.a_col]);
}

fn f16_b(p: u32, j: u32) -> f32 {
    return f32(bh[params.b_off + p * params.b_row + min(j, params.n - 1u) * params.b_col]);
}

// Store a row of four outputs from column j (those inside C).
fn f16_store_row(i: u32, j: u32, v: vec4<f32>, shift: u32) {
    for (var q = 0u; q < 4u; q++) {
        if i < params.m && j + q < params.n {
            store_shifted(i, j + q, v[q], shift);
        }
    }
}

@compute @workgroup_size(64)
fn matmul_f16(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let slice = launch_slice(wg);
    let block = block_index(wg);
    if block >= params.blocks || slice >= params.k_slices {
        return;
    }
    let i = (block / params.col_blocks) * F16_BLOCK + (lane / 8u) * 4u;
    let j = (block % params.col_blocks) * F16_BLOCK + (lane % 8u) * 4u;
    var r0 = vec4<f32>();
    var r1 = vec4<f32>();
    var r2 = vec4<f32>();
    var r3 = vec4<f32>();
    let range = split_range(slice);
    for (var p = range.x; p < range.y; p++) {
        let bv = vec4<f32>(f16_b(p, j), f16_b(p, j + 1u), f16_b(p, j + 2u), f16_b(p, j + 3u));
        r0 = fma(vec4<f32>(f16_a(i, p)), bv, r0);
        r1 = fma(vec4<f32>(f16_a(i + 1u, p)), bv, r1);
        r2 = fma(vec4<f32>(f16_a(i + 2u, p)), bv, r2);
        r3 = fma(vec4<f32>(f16_a(i + 3u, p)), bv, r3);
    }
    let shift = slice * params.m * params.n;
    f16_store_row(i, j, r0, shift);
    f16_store_row(i + 1u, j, r1, shift);
    f16_store_row(i + 2u, j, r2, shift);
    f16_store_row(i + 3u, j, r3, shift);
}
