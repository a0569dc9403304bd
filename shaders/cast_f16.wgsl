// f32 -> f16 copies of `--precision mixed`: the weights once per update, activations and
// gradients where they are written. Each value rounded to the nearest f16 (ties to even, as
// the CPU twin `reference::round_f16` rounds). Values beyond f16's range become infinite,
// which the mixed step's loss scaling sees as an overflow.

enable f16;

struct CastParams {
    n: u32,
    src_off: u32,
    dst_off: u32,
    groups_x: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f16>;
@group(0) @binding(2) var<uniform> cast_params: CastParams;

// v rounded to the nearest f16. WGSL leaves the conversion of an out-of-range value
// undefined: past the largest f16 (where ties to even rounds to infinity) it is made
// infinite here, with v's sign.
fn to_f16(v: f32) -> f16 {
    var h: f16;
    if abs(v) < 65520.0 {
        h = f16(v);
    } else if v == v {
        // 65504 computed from v, so that the doubling overflows at run time, not in the
        // compiler's constant folding.
        let top = f16(min(abs(v), 65504.0));
        h = select(-top, top, v > 0.0) * 2.0h;
    } else {
        h = f16(v); // NaN
    }
    return h;
}

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
