// The cooperative-matrix matmul: C[m, n] (f32) = op(A) @ op(B) (+ bias) (+ C) on the matrix
// units a GPU offers (NVIDIA's tensor cores, AMD's WMMA, Intel's XMX through Vulkan;
// Apple's simdgroup matrices through Metal), A and B of element type ELEM:
// - f16, for `--precision mixed` (issue 25). The rounding points are those of
//   matmul_f16.wgsl, its scalar twin: the operands rounded to f16 once, where they were
//   cast; products exact, sums in f32 (the order of the sums within a tile is the
//   hardware's).
// - f32, the `coop-f32-8x8` variant of the f32 matmul family, where the adapter lists f32
//   tiles (Metal's 8x8 simdgroup matrices). CPU twin: reference::matmul, as for every f32
//   variant.
//
// The launcher (src/gpu/matmul_coop.rs, `coop_source`) puts in front of this file `enable
// f16;` (for f16), `enable wgpu_cooperative_matrix;`, the tile size TILE (16 on Vulkan GPUs,
// 8 on Metal: a size the adapter lists for ELEM x ELEM -> f32, never guessed) and the
// subgroup size SG, then matmul_params.wgsl (offsets and strides count ELEM elements for A
// and B), and writes the element type in place of ELEM and the tile types' names in place of
// COOP_A, COOP_B and COOP_C.
//
// A workgroup is 4 subgroups computing a BLOCK x BLOCK block of C (BLOCK = 4 TILE), each
// subgroup a 2 x 2 square of tiles. Per step of TILE values of k every invocation copies
// its share of the block's [BLOCK, TILE] slice of op(A) and [TILE, BLOCK] slice of op(B)
// into workgroup memory, row-major, zero past the edges of m, n and k: so every transpose
// form reads its operands in place, and the cooperative loads see full tiles. Cooperative
// operations run in uniform control flow: every invocation of a workgroup takes the same
// trip counts. Each finished tile
// goes through its subgroup's slot of workgroup memory, from which the subgroup's
// invocations add the bias (and C when accumulating) and store what lies inside C.

@group(0) @binding(0) var<storage, read> ah: array<ELEM>;
@group(0) @binding(1) var<storage, read> bh: array<ELEM>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

const SUBGROUPS: u32 = 4u;
const BLOCK: u32 = 4u * TILE;
const WG: u32 = SUBGROUPS * SG;

var<workgroup> slice_a: array<ELEM, 4u * TILE * TILE>;
var<workgroup> slice_b: array<ELEM, 4u * TILE * TILE>;
var<workgroup> staged: array<f32, 4u * TILE * TILE>;

fn coop_a(i: u32, p: u32, p_end: u32) -> ELEM {
    if i >= params.m || p >= p_end {
        return ELEM();
    }
    return ah[params.a_off + i * params.a_row + p * params.a_col];
}

fn coop_b(p: u32, j: u32, p_end: u32) -> ELEM {
    if p >= p_end || j >= params.n {
        return ELEM();
    }
    return bh[params.b_off + p * params.b_row + j * params.b_col];
}

// Subgroup `sg`'s tile in its slot of `staged` -> C rows row0.., columns col0.., its
// invocation `lane` storing every SG-th element.
fn coop_store_staged(stores: bool, sg: u32, lane: u32, row0: u32, col0: u32, shift: u32) {
    if !stores {
        return;
    }
    for (var e = lane; e < TILE * TILE; e += SG) {
        let i = row0 + e / TILE;
        let j = col0 + e % TILE;
        if i < params.m && j < params.n {
            var out = staged[sg * TILE * TILE + e];
            if (params.flags & HAS_BIAS) != 0u {
                out += bias[params.bias_off + j];
            }
            let at = params.c_off + shift + i * params.n + j;
            if (params.flags & ACCUMULATE) != 0u {
                out = c[at] + out;
            }
            c[at] = out;
        }
    }
}

@compute @workgroup_size(WG)
fn matmul_coop(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) index: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    // A workgroup past the last block (the grid is split over x and y) computes the last
    // block again and stores nothing: no early return, which would leave the cooperative
    // operations below outside uniform control flow.
    let block = min(block_index(wg), params.blocks - 1u);
    let stores = block_index(wg) < params.blocks;
    let row0 = (block / params.col_blocks) * BLOCK;
    let col0 = (block % params.col_blocks) * BLOCK;
    // This subgroup's 2 x 2 tiles within the block.
    let sub_row = (sg / 2u) * 2u * TILE;
    let sub_col = (sg % 2u) * 2u * TILE;
    var acc00 = COOP_C();
    var acc01 = COOP_C();
    var acc10 = COOP_C();
    var acc11 = COOP_C();
    let row_stride = TILE;
    let col_stride = BLOCK;
    // Slice wg.z of k (split-K as in shaders/matmul.wgsl; unsplit, all of k): the same
    // trip count for every invocation of the workgroup.
    let range = split_range(wg.z);
    for (var k0 = range.x; k0 < range.y; k0 += TILE) {
        for (var e = index; e < BLOCK * TILE; e += WG) {
            slice_a[e] = coop_a(row0 + e / TILE, k0 + e % TILE, range.y);
            slice_b[e] = coop_b(k0 + e / BLOCK, col0 + e % BLOCK, range.y);
        }
        workgroupBarrier();
        let a0_at = sub_row * TILE;
        let a1_at = (sub_row + TILE) * TILE;
        let b0_at = sub_col;
        let b1_at = sub_col + TILE;
        let a0 = coopLoadT<COOP_A>(&slice_a[a0_at], row_stride);
        let a1 = coopLoadT<COOP_A>(&slice_a[a1_at], row_stride);
        let b0 = coopLoadT<COOP_B>(&slice_b[b0_at], col_stride);
        let b1 = coopLoadT<COOP_B>(&slice_b[b1_at], col_stride);
        acc00 = coopMultiplyAdd(a0, b0, acc00);
        acc01 = coopMultiplyAdd(a0, b1, acc01);
        acc10 = coopMultiplyAdd(a1, b0, acc10);
        acc11 = coopMultiplyAdd(a1, b1, acc11);
        workgroupBarrier();
    }
    // naga 30's SPIR-V writer needs the pointer's index and the stride of coopStoreT bound
    // to names (inline expressions panic it).
    let slot = sg * TILE * TILE;
    let stride = TILE;
    let shift = wg.z * params.m * params.n;
    coopStoreT(acc00, &staged[slot], stride);
    workgroupBarrier();
    coop_store_staged(stores, sg, lane, row0 + sub_row, col0 + sub_col, shift);
    workgroupBarrier();
    coopStoreT(acc01, &staged[slot], stride);
    workgroupBarrier();
    coop_store_staged(stores, sg, lane, row0 + sub_row, col0 + sub_col + TILE, shift);
    workgroupBarrier();
    coopStoreT(acc10, &staged[slot], stride);
    workgroupBarrier();
    coop_store_staged(stores, sg, lane, row0 + sub_row + TILE, col0 + sub_col, shift);
    workgroupBarrier();
    coopStoreT(acc11, &staged[slot], stride);
    workgroupBarrier();
    coop_store_staged(stores, sg, lane, row0 + sub_row + TILE, col0 + sub_col + TILE, shift);
}
