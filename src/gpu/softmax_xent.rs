//! See shaders/softmax_xent.wgsl.
