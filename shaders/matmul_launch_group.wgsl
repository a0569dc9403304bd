// One launch, up to GROUPS products (the recurrent products of a wavefront step's layers,
// gpu::matmul::Matmul::prepare_group_deferring_sum): the uniforms are an array of parameter
// blocks, one per product, and the grid's z counts the products' slices of k, product by
// product, `member_slices` each. The grid is as large as the largest product needs; a
// workgroup past its own product's blocks or slices does nothing. `launch_slice` copies
// the workgroup's block into the private `params` that every function reads, so the kernels
// are the same source as with shaders/matmul_launch.wgsl, and each product is computed
// exactly as its own launch would compute it.
//
// A private variable is not uniform to WGSL's analysis, so only kernels without barriers
// can be built this way (strip, strip-quad, panel).

const GROUPS: u32 = 4u;

@group(0) @binding(4) var<uniform> launch: array<Params, GROUPS>;
var<private> params: Params;

fn launch_slice(wg: vec3<u32>) -> u32 {
    let slices = launch[0].member_slices;
    params = launch[wg.z / slices];
    return wg.z % slices;
}
