// ---------------------------------------------------------------------------------------
// A and B again, as vec4s (the launcher binds the same buffers at 5 and 6), for the kernels
// that read an operand a quad of four words at a time where the launcher found it aligned
// (`A_VEC4`, `B_VEC4` in the flags; which dimension a quad runs along is the kernel's:
// shaders/matmul_block.wgsl, shaders/matmul_panel.wgsl). A quad is read only where all of
// its four words lie inside the operand, so the arrays' last partial vec4 is never needed.

@group(0) @binding(5) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> b4: array<vec4<f32>>;

