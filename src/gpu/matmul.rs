//! See shaders/matmul.wgsl.
