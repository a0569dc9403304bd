// Rounding to f16 for `--precision mixed`, shared by every kernel that writes an f16 copy
// (cast_f16.wgsl, lstm_cell_f16.wgsl). The module that includes this file starts with
// `enable f16;`.

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

