// The operands of the f16-operand matmul kernels of `--precision mixed` (the module starts
// with `enable f16;`): A and B as f16 elements (offsets and strides in the uniform block
// count f16 elements), and again as vec4<f16> quads at bindings 5 and 6 for the kernels that
// read aligned quads (`A_VEC4`, `B_VEC4`: the panel's f16 loads). Every value read is
// widened to f32 before it is multiplied: a product of two f16 values is exact in f32.

@group(0) @binding(0) var<storage, read> ah: array<f16>;
@group(0) @binding(1) var<storage, read> bh: array<f16>;
@group(0) @binding(5) var<storage, read> ah4: array<vec4<f16>>;
@group(0) @binding(6) var<storage, read> bh4: array<vec4<f16>>;
