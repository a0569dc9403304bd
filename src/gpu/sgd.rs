//! See shaders/sgd.wgsl.
