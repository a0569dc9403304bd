// What every matmul kernel shares: the uniform block (the launcher's `Params` in
// src/gpu/matmul/), its flags, and the workgroup numbering. src/gpu/matmul/ puts this
// file and a launch prelude in front of every matmul module: shaders/matmul_launch.wgsl
// (`params` the uniform block of one product) or, for the kernels that can serve several
// products in one launch, shaders/matmul_launch_group.wgsl.
//
// Operands are whole storage buffers read at word offsets; the transposes are strides:
//   op(A)[i, p] = a[a_off + i * a_row + p * a_col]
//   op(B)[p, j] = b[b_off + p * b_row + j * b_col]

struct Params {
    m: u32,
    k: u32,
    n: u32,
    flags: u32,
    a_off: u32,
    a_row: u32,
    a_col: u32,
    b_off: u32,
    b_row: u32,
    b_col: u32,
    bias_off: u32,
    c_off: u32,
    // Workgroups along n; blocks are numbered row-block-major.
    col_blocks: u32,
    // Workgroups that have work; the grid may hold a few more once split over x and y.
    blocks: u32,
    // Width of the grid in x, to flatten (x, y) workgroup ids.
    groups_x: u32,
    // Strip only: lanes along a row of its block (8, 16, 32 or 64); others ignore it.
    strip_width: u32,
    // Split-K only: the steps of p each slice of k sums (a multiple of 4), and the number
    // of slices (the grid's z); the partial sums go to slice z of C, m * n words apart.
    k_chunk: u32,
    k_slices: u32,
    // A launch serving several products (shaders/matmul_launch_group.wgsl): the grid's z
    // per product, the most slices of any of them (a product with fewer leaves the rest
    // idle). One product per launch: unused.
    member_slices: u32,
    pad1: u32,
}

const HAS_BIAS: u32 = 1u;
const ACCUMULATE: u32 = 2u;
// The kernels that read an operand a quad of four elements at a time where the launcher
// found it aligned (shaders/matmul_vec4.wgsl, shaders/matmul_operands_f16.wgsl).
const A_VEC4: u32 = 4u;
const B_VEC4: u32 = 8u;

// The block of C this workgroup computes.
fn block_index(wg: vec3<u32>) -> u32 {
    return wg.x + wg.y * params.groups_x;
}

// Split-K: steps [begin, end) of p in slice `slice` (the grid's z; see shaders/matmul.wgsl).
// Unsplit, slice 0 of all k.
fn split_range(slice: u32) -> vec2<u32> {
    let begin = slice * params.k_chunk;
    return vec2<u32>(begin, min(params.k, begin + params.k_chunk));
}
