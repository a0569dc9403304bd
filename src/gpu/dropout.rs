//! See shaders/dropout.wgsl.
