//! See shaders/reduce.wgsl.
