// The gate nonlinearities of the LSTM cell, shared by shaders/lstm_cell.wgsl and
// shaders/lstm_step.wgsl (the launchers put this file in front of them), so that the fused
// recurrent step computes exactly what the cell kernel computes.

// Logistic function without overflow: exp only ever sees a non-positive argument, so no
// infinity appears even for |x| in the thousands.
fn sigmoid(x: f32) -> f32 {
    let e = exp(-abs(x));
    let s = 1.0 / (1.0 + e);
    return select(e * s, s, x >= 0.0);
}

// Some drivers evaluate tanh as (exp(2x) - 1) / (exp(2x) + 1), which is inf / inf = NaN once
// exp(2x) overflows (|x| > 44). tanh(15) already rounds to 1 in f32, so clamping there
// changes no result and keeps the driver's accurate tanh near zero.
fn tanh_guarded(x: f32) -> f32 {
    return tanh(clamp(x, -15.0, 15.0));
}

