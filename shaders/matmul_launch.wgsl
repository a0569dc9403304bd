// One launch, one product: `params` is the uniform block itself, and the grid's z the
// slice of k a workgroup sums (see Split-K in shaders/matmul_strip.wgsl).

@group(0) @binding(4) var<uniform> params: Params;

// The slice of k workgroup `wg` sums. The kernels that can also serve several products
// (shaders/matmul_launch_group.wgsl) call this first.
fn launch_slice(wg: vec3<u32>) -> u32 {
    return wg.z;
}
