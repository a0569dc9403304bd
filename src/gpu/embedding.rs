//! See shaders/embedding.wgsl.
