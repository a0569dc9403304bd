// The LSTM cell of `--precision mixed`: lstm_cell.wgsl's kernels that also write the f16
// copy of what the next products read, so that no separate cast runs per time step: h
// forward (read by the next step's recurrent product, and by the layer above's and the
// weight gradients' products), the pre-activation gradients backward (read by the previous
// step's recurrent product and the weight gradients). Each copy is `to_f16` of the f32 value
// the same invocation wrote, the rounding cast_f16.wgsl would give it (CPU twin:
// reference::round_f16 at the products' operands).
//
// The split forms (`_split_f16`) first add the partial sums a split recurrent product left,
// as lstm_cell_*_split do.
//
// The launcher builds this module as `enable f16;`, f16_round.wgsl, lstm_gates.wgsl,
// lstm_cell.wgsl and this file.

@group(0) @binding(5) var<storage, read_write> fwd_h16: array<f16>;

@compute @workgroup_size(WORKGROUP)
fn lstm_cell_forward_f16(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    fwd = fwd_launch[gid.z];
    let idx = flat_index(gid, groups);
    if idx >= fwd.batch * fwd.hidden {
        return;
    }
    fwd_h16[fwd.h16 + idx] = to_f16(cell_forward(idx, forward_pre(idx)));
}

// The gradients carry the loss scale, so they may exceed f16's range: to_f16 makes those
// infinite, which the loss scaling sees as an overflow.
@group(0) @binding(7) var<storage, read_write> bwd_dpre16: array<f16>;

// The f16 copy of state word idx's four gate gradients `g`.
fn write_dpre16(idx: u32, g: vec4<f32>) {
    let d = bwd.dpre16 + gate_offset(idx, bwd.hidden);
    bwd_dpre16[d] = to_f16(g.x);
    bwd_dpre16[d + bwd.hidden] = to_f16(g.y);
    bwd_dpre16[d + 2u * bwd.hidden] = to_f16(g.z);
    bwd_dpre16[d + 3u * bwd.hidden] = to_f16(g.w);
}

@compute @workgroup_size(WORKGROUP)
fn lstm_cell_backward_f16(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    bwd = bwd_launch[gid.z];
    let idx = flat_index(gid, groups);
    if idx >= bwd.batch * bwd.hidden {
        return;
    }
    write_dpre16(idx, cell_backward(idx, bwd_dh[bwd.dh + idx]));
}

@compute @workgroup_size(WORKGROUP)
fn lstm_cell_forward_split_f16(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    fwd = fwd_launch[gid.z];
    let idx = flat_index(gid, groups);
    if idx >= fwd.batch * fwd.hidden {
        return;
    }
    fwd_h16[fwd.h16 + idx] = to_f16(cell_forward(idx, forward_pre(idx) + forward_partials(idx)));
}

@compute @workgroup_size(WORKGROUP)
fn lstm_cell_backward_split_f16(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    bwd = bwd_launch[gid.z];
    let idx = flat_index(gid, groups);
    if idx >= bwd.batch * bwd.hidden {
        return;
    }
    let dh = bwd_dh[bwd.dh + idx] + partial_sum(bwd.partials + idx, bwd.slices, bwd.slice_words);
    write_dpre16(idx, cell_backward(idx, dh));
}
