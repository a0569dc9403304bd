// The operands of the f32 matmul kernels, A and B (binding 2 onwards: shaders/matmul_store.wgsl).

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
