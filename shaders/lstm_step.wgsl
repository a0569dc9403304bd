// One time step of an LSTM layer in one dispatch: the recurrent product h_{t-1} @ W_h fused
// with the cell update (forward), and d(h_t) = dh_above + dz_{t+1} @ W_h^T fused with the
// cell backward (backward). The unfused path (a matmul, then shaders/lstm_cell.wgsl) is the
// reference these kernels are tested against: each sum runs over p in increasing order
// with fma from zero, as every matmul variant does, and the gates use the same functions
// (shaders/lstm_gates.wgsl, in front of this file), so both paths agree bit for bit where
// the driver compiles fma alike. CPU twins: reference::lstm_step_forward and
// reference::lstm_step_backward.
//
// Layouts (row-major, offsets in words into whole buffers):
//   z, act, dz   [batch, 4 * hidden], gate blocks i, j, f, o of `hidden` columns each
//   w            W_h: [hidden, 4 * hidden] (the lower rows of the layer's weight)
//   c, h, dh, dc [batch, hidden]
// The state buffers are [T + 1, batch, hidden]: the previous and the new state are two
// windows of one binding (read at one offset, written at another), so the bindings that
// both read and write are read_write.
//
// Workgroup tiles in workgroup memory, for GPUs (a CPU adapter such as lavapipe runs the
// unfused path with its subgroup-broadcast matmul faster; `lstm-gpu tune` measures both).

const STEP_ROWS: u32 = 16u; // rows of a workgroup's tile
const STEP_K: u32 = 16u;    // steps of p staged per barrier

// ---------------------------------------------------------------------------------------
// Forward: z_t = zx_t + h_{t-1} @ W_h (zx_t: the input projection and bias, computed for all
// time steps at once), then the cell. A workgroup is 16 rows by 16 units, each of its 64
// invocations 4 rows of one unit, all four gates.

struct ForwardParams {
    batch: u32,
    hidden: u32,
    zx: u32,
    w: u32,
    h_prev: u32,
    c_prev: u32,
    act: u32,
    c: u32,
    h: u32,
    forget_bias: f32,
    unit_blocks: u32,
    _pad: u32,
}

const FWD_UNITS: u32 = 16u;

@group(0) @binding(0) var<storage, read> fwd_zx: array<f32>;
@group(0) @binding(1) var<storage, read> fwd_w: array<f32>;
@group(0) @binding(2) var<storage, read_write> fwd_h: array<f32>;
@group(0) @binding(3) var<storage, read_write> fwd_c: array<f32>;
@group(0) @binding(4) var<storage, read_write> fwd_act: array<f32>;
@group(0) @binding(5) var<uniform> fwd: ForwardParams;

var<workgroup> fwd_h_tile: array<f32, 256>;  // [STEP_K][STEP_ROWS]
var<workgroup> fwd_w_tile: array<f32, 1024>; // [STEP_K][4 gates][FWD_UNITS]

@compute @workgroup_size(64)
fn lstm_step_forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let hidden = fwd.hidden;
    let r0 = (wg.x / fwd.unit_blocks) * STEP_ROWS;
    let u0 = (wg.x % fwd.unit_blocks) * FWD_UNITS;
    let tx = lane % FWD_UNITS; // unit in the tile
    let ty = lane / FWD_UNITS; // rows ty * 4 .. + 4 of the tile
    // acc[r][g]: row r0 + 4 ty + r, gate g of unit u0 + tx.
    var acc: array<vec4<f32>, 4>;
    for (var p0 = 0u; p0 < hidden; p0 += STEP_K) {
        // h_prev[r0 .. + 16, p0 .. + 16]: 4 words per invocation, p fastest in memory.
        for (var e = lane; e < STEP_ROWS * STEP_K; e += 64u) {
            let r = e / STEP_K;
            let p = e % STEP_K;
            var v = 0.0;
            if r0 + r < fwd.batch && p0 + p < hidden {
                v = fwd_h[fwd.h_prev + (r0 + r) * hidden + p0 + p];
            }
            fwd_h_tile[p * STEP_ROWS + r] = v;
        }
        // W_h[p0 .. + 16, g * hidden + u0 .. + 16] for the 4 gates: 16 words per invocation.
        for (var e = lane; e < STEP_K * 4u * FWD_UNITS; e += 64u) {
            let p = e / (4u * FWD_UNITS);
            let g = (e / FWD_UNITS) % 4u;
            let u = e % FWD_UNITS;
            var v = 0.0;
            if p0 + p < hidden && u0 + u < hidden {
                v = fwd_w[fwd.w + (p0 + p) * 4u * hidden + g * hidden + u0 + u];
            }
            fwd_w_tile[e] = v;
        }
        workgroupBarrier();
        for (var p = 0u; p < STEP_K; p++) {
            let at = p * 4u * FWD_UNITS + tx;
            let wv = vec4<f32>(
                fwd_w_tile[at],
                fwd_w_tile[at + FWD_UNITS],
                fwd_w_tile[at + 2u * FWD_UNITS],
                fwd_w_tile[at + 3u * FWD_UNITS],
            );
            for (var r = 0u; r < 4u; r++) {
                acc[r] = fma(vec4<f32>(fwd_h_tile[p * STEP_ROWS + ty * 4u + r]), wv, acc[r]);
            }
        }
        workgroupBarrier();
    }
    let u = u0 + tx;
    if u >= hidden {
        return;
    }
    for (var r = 0u; r < 4u; r++) {
        let row = r0 + ty * 4u + r;
        if row >= fwd.batch {
            break;
        }
        // The unfused path stores zx + sum (a matmul accumulating into zx), then the cell.
        let z = fwd.zx + row * 4u * hidden + u;
        let i = sigmoid(fwd_zx[z] + acc[r][0]);
        let j = tanh_guarded(fwd_zx[z + hidden] + acc[r][1]);
        let f = sigmoid((fwd_zx[z + 2u * hidden] + acc[r][2]) + fwd.forget_bias);
        let o = sigmoid(fwd_zx[z + 3u * hidden] + acc[r][3]);
        let idx = row * hidden + u;
        let c = fwd_c[fwd.c_prev + idx] * f + i * j;
        let a = fwd.act + row * 4u * hidden + u;
        fwd_act[a] = i;
        fwd_act[a + hidden] = j;
        fwd_act[a + 2u * hidden] = f;
        fwd_act[a + 3u * hidden] = o;
        fwd_c[fwd.c + idx] = c;
        fwd_h[fwd.h + idx] = tanh_guarded(c) * o;
    }
}

// ---------------------------------------------------------------------------------------
// Backward, for every time step but the last (which has no dz_{t+1}: the cell kernel runs
// there): dh_t = dh_above + dz_{t+1} @ W_h^T, stored back into dh as the unfused matmul
// does, then the cell backward, which writes dz_t (the pre-activations' gradient) and
// dc_{t-1}. A workgroup is 16 rows by 64 units, each invocation 4 rows by 4 units.

struct BackwardParams {
    batch: u32,
    hidden: u32,
    dz_next: u32,
    w: u32,
    act: u32,
    c_prev: u32,
    c: u32,
    dh: u32,
    dc: u32,
    dz: u32,
    dc_prev: u32,
    unit_blocks: u32,
}

const BWD_UNITS: u32 = 64u;

@group(0) @binding(0) var<storage, read_write> bwd_dz: array<f32>;
@group(0) @binding(1) var<storage, read> bwd_w: array<f32>;
@group(0) @binding(2) var<storage, read> bwd_act: array<f32>;
@group(0) @binding(3) var<storage, read> bwd_c: array<f32>;
@group(0) @binding(4) var<storage, read_write> bwd_dh: array<f32>;
@group(0) @binding(5) var<storage, read_write> bwd_dc: array<f32>;
@group(0) @binding(6) var<storage, read_write> bwd_dc_prev: array<f32>;
@group(0) @binding(7) var<uniform> bwd: BackwardParams;

var<workgroup> bwd_dz_tile: array<f32, 256>;  // [STEP_K][STEP_ROWS]
var<workgroup> bwd_w_tile: array<f32, 1024>;  // [STEP_K][BWD_UNITS]

@compute @workgroup_size(64)
fn lstm_step_backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let hidden = bwd.hidden;
    let gates = 4u * hidden;
    let r0 = (wg.x / bwd.unit_blocks) * STEP_ROWS;
    let u0 = (wg.x % bwd.unit_blocks) * BWD_UNITS;
    let tx = lane % 16u; // units u0 + 4 tx .. + 4
    let ty = lane / 16u; // rows r0 + 4 ty .. + 4
    // acc[r][q]: row r0 + 4 ty + r, unit u0 + 4 tx + q.
    var acc: array<vec4<f32>, 4>;
    for (var p0 = 0u; p0 < gates; p0 += STEP_K) {
        for (var e = lane; e < STEP_ROWS * STEP_K; e += 64u) {
            let r = e / STEP_K;
            let p = e % STEP_K;
            var v = 0.0;
            if r0 + r < bwd.batch && p0 + p < gates {
                v = bwd_dz[bwd.dz_next + (r0 + r) * gates + p0 + p];
            }
            bwd_dz_tile[p * STEP_ROWS + r] = v;
        }
        // W_h^T[p, u] = W_h[u, p]: p fastest in memory.
        for (var e = lane; e < STEP_K * BWD_UNITS; e += 64u) {
            let u = e / STEP_K;
            let p = e % STEP_K;
            var v = 0.0;
            if p0 + p < gates && u0 + u < hidden {
                v = bwd_w[bwd.w + (u0 + u) * gates + p0 + p];
            }
            bwd_w_tile[p * BWD_UNITS + u] = v;
        }
        workgroupBarrier();
        for (var p = 0u; p < STEP_K; p++) {
            let at = p * BWD_UNITS + tx * 4u;
            let wv = vec4<f32>(
                bwd_w_tile[at],
                bwd_w_tile[at + 1u],
                bwd_w_tile[at + 2u],
                bwd_w_tile[at + 3u],
            );
            for (var r = 0u; r < 4u; r++) {
                acc[r] = fma(vec4<f32>(bwd_dz_tile[p * STEP_ROWS + ty * 4u + r]), wv, acc[r]);
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < 4u; r++) {
        let row = r0 + ty * 4u + r;
        if row >= bwd.batch {
            break;
        }
        for (var q = 0u; q < 4u; q++) {
            let u = u0 + tx * 4u + q;
            if u >= hidden {
                break;
            }
            let idx = row * hidden + u;
            // As the unfused matmul accumulates into dh: the old value plus the sum.
            let dh = bwd_dh[bwd.dh + idx] + acc[r][q];
            bwd_dh[bwd.dh + idx] = dh;
            let a = bwd.act + row * gates + u;
            let i = bwd_act[a];
            let j = bwd_act[a + hidden];
            let f = bwd_act[a + 2u * hidden];
            let o = bwd_act[a + 3u * hidden];
            let tc = tanh_guarded(bwd_c[bwd.c + idx]);
            let dc = bwd_dc[bwd.dc + idx] + dh * o * (1.0 - tc * tc);
            let d = bwd.dz + row * gates + u;
            bwd_dz[d] = dc * j * i * (1.0 - i);
            bwd_dz[d + hidden] = dc * i * (1.0 - j * j);
            bwd_dz[d + 2u * hidden] = dc * bwd_c[bwd.c_prev + idx] * f * (1.0 - f);
            bwd_dz[d + 3u * hidden] = dh * tc * o * (1.0 - o);
            bwd_dc_prev[bwd.dc_prev + idx] = dc * f;
        }
    }
}
