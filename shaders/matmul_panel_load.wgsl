// The panel kernel's loads of f32 operands (shaders/matmul_panel.wgsl; the bindings
// shaders/matmul_operands.wgsl and shaders/matmul_vec4.wgsl come first).

// The quad of op(A)[i, p .. p + 4), zero outside [0, m) x [0, p_end).
fn panel_a(i: u32, p: u32, p_end: u32) -> vec4<f32> {
    if i >= params.m {
        return vec4<f32>(0.0);
    }
    let at = params.a_off + i * params.a_row + p * params.a_col;
    let s = params.a_col;
    if p + 4u <= p_end {
        if (params.flags & A_VEC4) != 0u {
            return a4[at / 4u];
        }
        return vec4<f32>(a[at], a[at + s], a[at + 2u * s], a[at + 3u * s]);
    }
    // The last steps of a slice whose length is not a multiple of four (never with
    // A_VEC4: k and the slices are multiples of four then).
    var v = vec4<f32>(0.0);
    for (var q = 0u; q < 4u; q++) {
        if p + q < p_end {
            v[q] = a[at + q * s];
        }
    }
    return v;
}

// The quad of op(B)[p .. p + 4, j], zero outside [0, p_end) x [0, n).
fn panel_b(p: u32, j: u32, p_end: u32) -> vec4<f32> {
    if j >= params.n {
        return vec4<f32>(0.0);
    }
    let at = params.b_off + p * params.b_row + j * params.b_col;
    let s = params.b_row;
    if p + 4u <= p_end {
        if (params.flags & B_VEC4) != 0u {
            return b4[at / 4u];
        }
        return vec4<f32>(b[at], b[at + s], b[at + 2u * s], b[at + 3u * s]);
    }
    var v = vec4<f32>(0.0);
    for (var q = 0u; q < 4u; q++) {
        if p + q < p_end {
            v[q] = b[at + q * s];
        }
    }
    return v;
}
