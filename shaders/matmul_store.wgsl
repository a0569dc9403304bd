// The output bindings every matmul kernel shares, and how an output element is finished.
// C[m, n] = op(A)[m, k] @ op(B)[k, n] (+ bias[n] on every row) (+ C when accumulating).
//
// The launchers (src/gpu/matmul/, src/gpu/half.rs) put shaders/matmul_params.wgsl (the
// uniform block), one of the launch preludes (shaders/matmul_launch.wgsl, or
// matmul_launch_group.wgsl for a launch serving several products), the operands' bindings
// (shaders/matmul_operands.wgsl in f32, matmul_operands_f16.wgsl in f16) and this file in
// front of each family's kernels.

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
