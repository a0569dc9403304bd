//! See shaders/lstm_cell.wgsl.
