//! The sources and tiles of the cooperative-matrix kernels (`shaders/matmul_coop.wgsl`):
//! which tiles an adapter lists that the kernels can name, and the module text for a tile,
//! subgroup size and operand type. The f16 kernel of `--precision mixed` is launched by
//! [`super::matmul_coop`], the f32 one as the `coop-f32-8x8` variant of
//! [`super::matmul`]; both build their modules from here.

use super::Gpu;

/// The tile sizes the kernel can be built for, the preferred first.
pub const TILES: [u32; 2] = [16, 8];

/// The tile size of the f32-operand kernel (the f32 matmul variant `coop-f32-8x8`): Metal's
/// simdgroup matrices offer 8x8 f32 tiles; Vulkan GPUs list f16 inputs only.
pub const F32_TILE: u32 = 8;

/// `shaders/matmul_coop.wgsl` (its text `coop`: the built-in
/// [`super::shaders::MATMUL_COOP`], or `--shaders`' through [`Gpu::resolve`]) as a module:
/// for `tile` x `tile` tiles with operands of type `ab` (f16 or f32) into f32 sums, in
/// workgroups of four subgroups of `subgroup` invocations.
pub fn coop_source(
    coop: &str,
    tile: u32,
    subgroup: u32,
    ab: wgpu::CooperativeScalarType,
) -> String {
    let (enable, elem) = match ab {
        wgpu::CooperativeScalarType::F16 => ("enable f16;\n", "f16"),
        _ => ("", "f32"),
    };
    let ty = format!("coop_mat{tile}x{tile}");
    format!(
        "{enable}enable wgpu_cooperative_matrix;\nconst TILE: u32 = {tile}u;\nconst SG: u32 = {subgroup}u;\n{}{}{}",
        super::shaders::MATMUL_PARAMS,
        super::shaders::MATMUL_LAUNCH,
        coop.replace("COOP_A", &format!("{ty}<{elem}, A>"))
            .replace("COOP_B", &format!("{ty}<{elem}, B>"))
            .replace("COOP_C", &format!("{ty}<f32, C>"))
            .replace("ELEM", elem)
    )
}

/// The tile the adapter offers for the f16 kernel: the first of [`TILES`] it lists as
/// `tile x tile x tile`, f16 inputs, f32 accumulator; `None` without one, without
/// `SHADER_F16`, or where subgroups do not have one fixed size (the kernel's workgroup is
/// four subgroups).
pub fn coop_tile(gpu: &Gpu) -> Option<u32> {
    if !gpu.features.contains(wgpu::Features::SHADER_F16) {
        return None;
    }
    listed_tile(gpu, wgpu::CooperativeScalarType::F16, &TILES)
}

/// Whether the f32 matmul family gains `coop-f32-8x8`: on Metal, where the adapter lists
/// the [`F32_TILE`] tile with f32 inputs and accumulator (and subgroups of one fixed size).
/// Metal's simdgroup matrices multiply in full f32; a Vulkan driver listing f32 inputs
/// might round them to a narrower format (TF32) inside, which `--precision f32` must not.
pub fn has_f32_tile(gpu: &Gpu) -> bool {
    gpu.info.backend == wgpu::Backend::Metal
        && listed_tile(gpu, wgpu::CooperativeScalarType::F32, &[F32_TILE]).is_some()
}

/// The first of `tiles` the adapter lists as `tile x tile x tile` with `ab` inputs and an
/// f32 accumulator, where subgroups have one fixed size (the kernels' workgroups are four
/// subgroups).
fn listed_tile(gpu: &Gpu, ab: wgpu::CooperativeScalarType, tiles: &[u32]) -> Option<u32> {
    if !gpu.features.contains(wgpu::Features::SUBGROUP)
        || gpu.info.subgroup_min_size != gpu.info.subgroup_max_size
        || gpu.info.subgroup_min_size == 0
    {
        return None;
    }
    tiles.iter().copied().find(|&t| {
        gpu.coop_tiles.iter().any(|p| {
            (p.m_size, p.n_size, p.k_size) == (t, t, t)
                && p.ab_type == ab
                && p.cr_type == wgpu::CooperativeScalarType::F32
        })
    })
}
