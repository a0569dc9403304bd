//! Plain SGD with global-norm clipping: launcher of `shaders/sgd.wgsl`, whose CPU twins are
//! [`crate::reference::sgd_dense`] and [`crate::reference::sgd_sparse_rows`].
//!
//! The learning rate and the clip scale are read by the kernels from buffers, so one set of
//! dispatches serves every step: the host writes a [`Hyper`] block before each step, and
//! `clip_scale` ([`super::reduce`]) writes the scale on the GPU within the step.

use anyhow::{bail, Result};

use super::embedding::segments_words;
use super::reduce::ClipStats;
use super::{groups_1d, word_offset, Dispatch, Gpu, View};

use super::shaders::SGD as SHADER;

/// Invocations per workgroup (`WORKGROUP` in the shader).
const WORKGROUP: usize = 256;

/// Most workgroups of a dispatch: the kernels loop over their elements with a grid stride,
/// so 65536 invocations cover any size; more would only add per-workgroup overhead, which
/// CPU adapters such as lavapipe pay dearly (measured: 1.8x faster SGD on 1.28M elements).
const MAX_GROUPS: usize = 256;

pub use super::Hyper;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct DenseParams {
    len: u32,
    param: u32,
    grad: u32,
    hyper: u32,
    clip: u32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SparseParams {
    capacity: u32,
    width: u32,
    table_rows: u32,
    table: u32,
    segments: u32,
    rows: u32,
    hyper: u32,
    clip: u32,
}

/// The compiled SGD pipelines.
pub struct Sgd {
    dense: wgpu::ComputePipeline,
    sparse_rows: wgpu::ComputePipeline,
}

impl Sgd {
    pub fn new(gpu: &Gpu) -> Result<Sgd> {
        let module = gpu.shader("sgd", SHADER)?;
        Ok(Sgd {
            dense: gpu.pipeline("sgd_dense", &module, "sgd_dense")?,
            sparse_rows: gpu.pipeline("sgd_sparse_rows", &module, "sgd_sparse_rows")?,
        })
    }

    /// `sgd_dense`: `param -= lr * scale * grad` over every word of `param`, with `lr` from
    /// the [`Hyper`] block at `hyper` and `scale` from the [`ClipStats`] block at `clip`;
    /// nothing changes when the scale is 0 (a non-finite gradient norm).
    pub fn prepare_dense(
        &self,
        gpu: &Gpu,
        param: View,
        grad: View,
        hyper: View,
        clip: View,
    ) -> Result<Dispatch> {
        let len = param.len;
        let param_at = word_offset("sgd_dense param", param, len)?;
        let grad_at = word_offset("sgd_dense grad", grad, len)?;
        let hyper_at = word_offset("sgd_dense hyper", hyper, Hyper::WORDS)?;
        let clip_at = word_offset("sgd_dense clip", clip, ClipStats::WORDS)?;
        if [grad.buffer, hyper.buffer, clip.buffer].contains(&param.buffer) {
            bail!("sgd_dense: the parameters share a buffer with the gradient, hyper or clip");
        }
        let params = DenseParams {
            len: len as u32,
            param: param_at,
            grad: grad_at,
            hyper: hyper_at,
            clip: clip_at,
            _pad: [0; 3],
        };
        let label = "sgd_dense";
        let uniforms = gpu.uniform_from(label, &params);
        let bind_group = gpu.bind(
            label,
            &self.dense,
            &[
                param.buffer,
                grad.buffer,
                hyper.buffer,
                clip.buffer,
                &uniforms,
            ],
        )?;
        let (gx, gy) = groups_1d(len.min(MAX_GROUPS * WORKGROUP), WORKGROUP);
        Ok(Dispatch {
            label: label.to_string(),
            pipeline: self.dense.clone(),
            bind_group,
            groups: (gx, gy, 1),
            flops: 2.0 * len as f64,
            bytes: 12.0 * len as f64,
            uniforms: Some(uniforms),
            then: None,
        })
    }

    /// `sgd_sparse_rows`: `table[unique[u], :] -= lr * scale * rows[u, :]` for the U
    /// distinct ids of the step's segments buffer ([`super::embedding::pack_segments`] with
    /// `capacity`). `table` is `[table.len / width, width]`, `rows` `[capacity, width]`.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_sparse_rows(
        &self,
        gpu: &Gpu,
        width: usize,
        capacity: usize,
        table: View,
        segments: View,
        rows: View,
        hyper: View,
        clip: View,
    ) -> Result<Dispatch> {
        if width == 0 {
            bail!("sgd_sparse_rows: the row width must be positive");
        }
        let words = capacity * width;
        // The whole table, at least one row.
        let table_rows = (table.len / width).max(1);
        let table_at = word_offset("sgd_sparse_rows table", table, table_rows * width)?;
        let segments_at = word_offset(
            "sgd_sparse_rows segments",
            segments,
            segments_words(capacity),
        )?;
        let rows_at = word_offset("sgd_sparse_rows rows", rows, words)?;
        let hyper_at = word_offset("sgd_sparse_rows hyper", hyper, Hyper::WORDS)?;
        let clip_at = word_offset("sgd_sparse_rows clip", clip, ClipStats::WORDS)?;
        if [segments.buffer, rows.buffer, hyper.buffer, clip.buffer].contains(&table.buffer) {
            bail!("sgd_sparse_rows: the table shares a buffer with an input");
        }
        let params = SparseParams {
            capacity: capacity as u32,
            width: width as u32,
            table_rows: table_rows as u32,
            table: table_at,
            segments: segments_at,
            rows: rows_at,
            hyper: hyper_at,
            clip: clip_at,
        };
        let label = "sgd_sparse_rows";
        let uniforms = gpu.uniform_from(label, &params);
        let bind_group = gpu.bind(
            label,
            &self.sparse_rows,
            &[
                table.buffer,
                segments.buffer,
                rows.buffer,
                hyper.buffer,
                clip.buffer,
                &uniforms,
            ],
        )?;
        let (gx, gy) = groups_1d(words.min(MAX_GROUPS * WORKGROUP), WORKGROUP);
        Ok(Dispatch {
            label: label.to_string(),
            pipeline: self.sparse_rows.clone(),
            bind_group,
            groups: (gx, gy, 1),
            flops: 2.0 * words as f64,
            bytes: 4.0 * (3 * words + capacity) as f64,
            uniforms: Some(uniforms),
            then: None,
        })
    }
}
