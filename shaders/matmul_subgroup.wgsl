// C = op(A) @ op(B) (+ bias) (+ C), fast on CPU adapters (lavapipe): the SubgroupBroadcast
// variant of shaders/matmul.wgsl, for subgroups of 8 or more invocations and operands whose
// sizes and offsets are multiples of 4 words (the launcher falls back otherwise).
//
// This file holds what the four transpose forms share; src/gpu/matmul/subgroup.rs appends one
// generated entry point per form (`matmul_subgroup_nn`, `_nt`, `_tn`, `_tt`), unrolled by
// hand because broadcast lanes must be constants and llvmpipe keeps straight-line values in
// registers (or cheap stack slots) where indexed arrays go through memory.
//
// Why this shape: on llvmpipe (Mesa 22.3) every load from a storage buffer or from
// workgroup memory whose address is not a compile-time constant is a loop over the 8 SIMD
// lanes, each lane inserting its word into a vector through the stack (a store-forwarding
// stall per lane and component): ~25 cycles per word, against ~1 for a multiply-add. So the
// kernel maximises multiply-adds per loaded word. One workgroup is one subgroup computing a
// 64x64 block of C. Every 4 steps of p each lane makes 8 vec4 loads of op(A), which
// subgroupBroadcast hands to every lane, and 8 vec4 loads of op(B) for its own 8 columns:
// 16 loads for 2048 multiply-adds per lane (the previous 8x64 block: 9 for 256).
// Each output sums its products in increasing order of p, like every variant.
//
// On Mesa 25 (read from llvmpipe's JIT code with GALLIVM_DEBUG=asm and
// MESA_SHADER_CACHE_DISABLE=true) loads are cheaper but keep their shape: a load whose
// address differs between lanes is still unrolled per lane and per component, each word
// with a bounds check against the buffer size reloaded from the descriptor (~12
// instructions a word); `fma` becomes a separate multiply and add (no FP contraction on
// x86); and each accumulator carried around the loop is written back through the
// execution mask (a blend) once per iteration, from the stack, where the 512 accumulators
// of a lane live. That is about 3 instructions per 8-lane multiply-add, which is why
// blocks of 16 to 64 rows all land within ~15% of each other. The price of this block is
// compile time: llvmpipe takes about 2.5 minutes per form on a cold shader cache (Mesa
// keeps the result in ~/.cache/mesa_shader_cache, so once per machine and driver).
// The uniform block and block_index come from shaders/matmul_params.wgsl, in front.

// The same buffers as shaders/matmul.wgsl binds, read as vec4s (offsets are multiples of 4).
@group(0) @binding(0) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c4: array<vec4<f32>>;

// bias[j..j + 4] when the product has a bias (zero otherwise); loaded once per column
// group, not once per row. The caller keeps j + 4 <= n.
fn bias4(j: u32) -> vec4<f32> {
    if (params.flags & HAS_BIAS) == 0u {
        return vec4<f32>();
    }
    let at = params.bias_off + j;
    return vec4<f32>(bias[at], bias[at + 1u], bias[at + 2u], bias[at + 3u]);
}

// Finish C[i, j..j + 4]: add the bias b (from bias4), then the old C when accumulating (the
// order of the CPU twin), and store. The caller keeps i < m and j + 4 <= n.
fn store4(i: u32, j: u32, sum: vec4<f32>, b: vec4<f32>) {
    var out = sum;
    if (params.flags & HAS_BIAS) != 0u {
        out += b;
    }
    let at = (params.c_off + i * params.n + j) / 4u;
    if (params.flags & ACCUMULATE) != 0u {
        out = c4[at] + out;
    }
    c4[at] = out;
}
