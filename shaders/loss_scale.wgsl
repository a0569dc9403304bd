// Dynamic loss scaling of `--precision mixed` (issue 25). The gradient of the loss enters
// the f16 products multiplied by a power of two S (cast_f32_to_f16_scaled), so that small
// gradients do not underflow f16; every gradient of the step is then S times the true one.
// These kernels keep the block [S (f32), clean steps (u32), overflow steps (u32), growth
// interval (u32)] (gpu::loss_scale::LossScale):
//
// - loss_scale_apply: x[i] *= S, for the one gradient computed without the f16 products
//   (the softmax bias, summed from the unscaled f32 logits' gradient), so that every
//   gradient the norm sees carries the same S.
// - loss_scale_update (one invocation, after clip_scale and before step_guard): a step whose
//   loss is finite but whose scaled gradient is not overflowed f16. While S is above
//   MIN_SCALE it is halved and the update skipped (the clip scale 0), but the step's loss
//   still counts and it is not a skipped step for step_guard (the clip block reads finite,
//   its non-finite count is taken back). Otherwise the true squared norm is sum_sq / S^2,
//   the clip scale min(1, max_norm / norm) / S (the SGD kernels multiply by it, which
//   removes S); a step with a finite loss counts as clean, and after `interval` clean
//   steps in a row S doubles (up to MAX_SCALE).
//
// CPU twins: reference::step::LossScale::update and the scaling in reference::step.

const MIN_SCALE: f32 = 0.0009765625; // 2^-10
const MAX_SCALE: f32 = 16777216.0; // 2^24

struct ApplyParams {
    n: u32,
    off: u32,
    groups_x: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read_write> apply_x: array<f32>;
@group(0) @binding(1) var<storage, read> apply_scale: array<f32>;
@group(0) @binding(2) var<uniform> apply: ApplyParams;

@compute @workgroup_size(64)
fn loss_scale_apply(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let i = (wg.x + wg.y * apply.groups_x) * 64u + lane;
    if i >= apply.n {
        return;
    }
    apply_x[apply.off + i] *= apply_scale[0];
}

struct UpdateParams {
    step_loss: u32,
    clip: u32,
    max_norm: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read_write> update_block: array<u32>;
@group(0) @binding(1) var<storage, read> update_step_loss: array<f32>;
@group(0) @binding(2) var<storage, read_write> update_clip: array<f32>;
@group(0) @binding(3) var<uniform> update: UpdateParams;

fn finite(x: f32) -> bool {
    // Bits, not x == x: compilers may assume finite floats (see reduce.wgsl's clip_scale).
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

@compute @workgroup_size(1)
fn loss_scale_update() {
    let s = bitcast<f32>(update_block[0]);
    let loss_ok = finite(update_step_loss[update.step_loss]);
    let c = update.clip;
    let sum_sq = update_clip[c];
    if !finite(sum_sq) {
        if loss_ok && s > MIN_SCALE {
            update_block[0] = bitcast<u32>(s * 0.5);
            update_block[1] = 0u;
            update_block[2] += 1u;
            update_clip[c] = 0.0;
            update_clip[c + 1u] = 0.0;
            update_clip[c + 2u] = 0.0;
            update_clip[c + 3u] -= 1.0;
        }
        return;
    }
    let true_sum_sq = sum_sq / (s * s);
    let norm = sqrt(true_sum_sq);
    update_clip[c] = true_sum_sq;
    update_clip[c + 1u] = norm;
    update_clip[c + 2u] = select(1.0, update.max_norm / norm, norm > update.max_norm) / s;
    if loss_ok {
        let clean = update_block[1] + 1u;
        if clean >= update_block[3] {
            update_block[0] = bitcast<u32>(min(s * 2.0, MAX_SCALE));
            update_block[1] = 0u;
        } else {
            update_block[1] = clean;
        }
    }
}
