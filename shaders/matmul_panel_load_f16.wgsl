// The panel kernel's loads of f16 operands (`matmul_panel_f16`, `--precision mixed`; the
// bindings shaders/matmul_operands_f16.wgsl come first): the same quads as
// shaders/matmul_panel_load.wgsl, each element widened to f32.

// The quad of op(A)[i, p .. p + 4), zero outside [0, m) x [0, p_end).
fn panel_a(i: u32, p: u32, p_end: u32) -> vec4<f32> {
    if i >= params.m {
        return vec4<f32>(0.0);
    }
    let at = params.a_off + i * params.a_row + p * params.a_col;
    let s = params.a_col;
    if p + 4u <= p_end {
        if (params.flags & A_VEC4) != 0u {
            return vec4<f32>(ah4[at / 4u]);
        }
        let v = vec4<f16>(ah[at], ah[at + s], ah[at + 2u * s], ah[at + 3u * s]);
        return vec4<f32>(v);
    }
    // The last steps of a slice whose length is not a multiple of four (never with
    // A_VEC4: k and the slices are multiples of four then).
    var v = vec4<f32>(0.0);
    for (var q = 0u; q < 4u; q++) {
        if p + q < p_end {
            v[q] = f32(ah[at + q * s]);
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
            return vec4<f32>(bh4[at / 4u]);
        }
        let v = vec4<f16>(bh[at], bh[at + s], bh[at + 2u * s], bh[at + 3u * s]);
        return vec4<f32>(v);
    }
    var v = vec4<f32>(0.0);
    for (var q = 0u; q < 4u; q++) {
        if p + q < p_end {
            v[q] = f32(bh[at + q * s]);
        }
    }
    return v;
}
