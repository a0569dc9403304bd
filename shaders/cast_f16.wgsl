// f32 -> f16 copies of `--precision mixed` for what no kernel writes in f16 itself: the
// weights once per step, the embedding output, the carried h, the logits' gradient (the
// cell writes its own copies, lstm_cell_f16.wgsl). Each value is rounded to the nearest
// f16 (ties to even, as the CPU twin `reference::round_f16` rounds); values beyond f16's
// range become infinite, which the mixed step's loss scaling sees as an overflow. `to_f16`
// comes from shaders/f16_round.wgsl, which the launcher puts in front of this file.

struct CastParams {
    n: u32,
    src_off: u32,
    dst_off: u32,
    groups_x: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f16>;
@group(0) @binding(2) var<uniform> cast_params: CastParams;

fn cast_index(wg: vec3<u32>, lane: u32) -> u32 {
    return (wg.x + wg.y * cast_params.groups_x) * 256u + lane;
}

@compute @workgroup_size(256)
fn cast_f32_to_f16(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let i = cast_index(wg, lane);
    if i >= cast_params.n {
        return;
    }
    dst[cast_params.dst_off + i] = to_f16(src[cast_params.src_off + i]);
}

// The gradient of the logits on its way into the mixed step's f16 products:
// dst[i] = f16(src[i] * S), S the loss scale (word 0 of the loss-scale block,
// loss_scale.wgsl). S is a power of two, so the product is exact in f32 and only the
// rounding to f16 (or its overflow) differs from the unscaled value.
@group(0) @binding(3) var<storage, read> cast_scale: array<f32>;

@compute @workgroup_size(256)
fn cast_f32_to_f16_scaled(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let i = cast_index(wg, lane);
    if i >= cast_params.n {
        return;
    }
    dst[cast_params.dst_off + i] = to_f16(src[cast_params.src_off + i] * cast_scale[0]);
}
