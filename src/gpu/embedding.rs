//! Embedding lookup and its sparse gradient: launcher of `shaders/embedding.wgsl`, whose CPU
//! twins are [`crate::reference::embedding_gather`],
//! [`crate::reference::embedding_grad_rows`] and (tied embeddings)
//! [`crate::reference::embedding_scatter_add_rows`].
//!
//! The gradient is never a dense `[vocab, e]` matrix: the host groups the ids of a batch
//! ([`IdSegments`]) before upload and writes them with [`pack_segments`] into one segments
//! buffer per step; `embedding_grad_rows` then sums the rows of each distinct id without
//! atomics, and the norm ([`super::reduce`]) and the update ([`super::sgd`]) read the same
//! buffer.

use anyhow::{bail, Result};

use super::{groups_1d, word_offset, Dispatch, Gpu, View};
use crate::reference::IdSegments;

use super::shaders::EMBEDDING as SHADER;

/// Invocations per workgroup (`WORKGROUP` in the shader).
const WORKGROUP: usize = 256;

/// Most workgroups of a dispatch: the kernels loop over their elements with a grid stride,
/// so 65536 invocations cover any size; more would only add per-workgroup overhead, which
/// CPU adapters such as lavapipe pay dearly (measured: 1.8x faster SGD on 1.28M elements).
const MAX_GROUPS: usize = 256;

/// Word of the segments buffer holding U, the number of distinct ids of the batch.
pub const SEGMENTS_COUNT_WORD: usize = 0;

/// Words of a segments buffer for batches of at most `capacity` positions:
/// U, `unique[capacity]`, `start[capacity + 1]`, `order[capacity]`.
pub fn segments_words(capacity: usize) -> usize {
    3 * capacity + 2
}

/// Pack `seg` into the segments buffer layout of `shaders/embedding.wgsl` for batches of at
/// most `capacity` positions: word 0 = U, then `unique` at word 1, `start` at word
/// `capacity + 1` and `order` at word `2 * capacity + 2`, each padded with zeros to its full
/// length so that one `queue.write_buffer` replaces the previous step's segments entirely.
///
/// Panics when the batch has more positions than `capacity` (the buffer was sized for
/// smaller batches: a bug in the caller).
pub fn pack_segments(seg: &IdSegments, capacity: usize) -> Vec<u32> {
    let positions = seg.order.len();
    assert!(
        positions <= capacity && seg.unique.len() <= positions,
        "pack_segments: {positions} positions do not fit a capacity of {capacity}"
    );
    assert_eq!(
        seg.start.len(),
        seg.unique.len() + 1,
        "pack_segments: start needs U + 1 entries"
    );
    let mut words = vec![0u32; segments_words(capacity)];
    words[SEGMENTS_COUNT_WORD] = seg.unique.len() as u32;
    let unique_at = 1;
    let start_at = unique_at + capacity;
    let order_at = start_at + capacity + 1;
    words[unique_at..unique_at + seg.unique.len()].copy_from_slice(&seg.unique);
    words[start_at..start_at + seg.start.len()].copy_from_slice(&seg.start);
    words[order_at..order_at + positions].copy_from_slice(&seg.order);
    words
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GatherParams {
    positions: u32,
    width: u32,
    table_rows: u32,
    ids: u32,
    table: u32,
    out: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GradRowsParams {
    capacity: u32,
    width: u32,
    segments: u32,
    dout: u32,
    rows: u32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ScatterParams {
    capacity: u32,
    width: u32,
    segments: u32,
    rows: u32,
    dense: u32,
    dense_rows: u32,
    _pad: [u32; 2],
}

/// The compiled gather and gradient pipelines.
pub struct Embedding {
    gather: wgpu::ComputePipeline,
    grad_rows: wgpu::ComputePipeline,
    scatter_add_rows: wgpu::ComputePipeline,
}

impl Embedding {
    pub fn new(gpu: &Gpu) -> Result<Embedding> {
        let module = gpu.shader("embedding", SHADER)?;
        Ok(Embedding {
            gather: gpu.pipeline("embedding_gather", &module, "embedding_gather")?,
            grad_rows: gpu.pipeline("embedding_grad_rows", &module, "embedding_grad_rows")?,
            scatter_add_rows: gpu.pipeline(
                "embedding_scatter_add_rows",
                &module,
                "embedding_scatter_add_rows",
            )?,
        })
    }

    /// `embedding_gather`: `out[p, :] = table[ids[p], :]` for `positions` ids (u32) and rows
    /// of `width` words. The table has `table.len / width` rows; an id past them yields a
    /// row of NaN.
    pub fn prepare_gather(
        &self,
        gpu: &Gpu,
        positions: usize,
        width: usize,
        ids: View,
        table: View,
        out: View,
    ) -> Result<Dispatch> {
        if width == 0 {
            bail!("embedding_gather: the embedding width must be positive");
        }
        let words = positions * width;
        let ids_at = word_offset("embedding_gather ids", ids, positions)?;
        // The whole table, at least one row.
        let table_rows = (table.len / width).max(1);
        let table_at = word_offset("embedding_gather table", table, table_rows * width)?;
        let out_at = word_offset("embedding_gather out", out, words)?;
        if out.buffer == ids.buffer || out.buffer == table.buffer {
            bail!("embedding_gather: the output shares a buffer with the ids or the table");
        }
        let params = GatherParams {
            positions: positions as u32,
            width: width as u32,
            table_rows: table_rows as u32,
            ids: ids_at,
            table: table_at,
            out: out_at,
            _pad: [0; 2],
        };
        let label = "embedding_gather";
        let uniforms = gpu.uniform_from(label, &params);
        let bind_group = gpu.bind(
            label,
            &self.gather,
            &[ids.buffer, table.buffer, out.buffer, &uniforms],
        )?;
        let (gx, gy) = groups_1d(words.min(MAX_GROUPS * WORKGROUP), WORKGROUP);
        Ok(Dispatch {
            label: label.to_string(),
            pipeline: self.gather.clone(),
            bind_group,
            groups: (gx, gy, 1),
            flops: 0.0,
            bytes: 4.0 * (positions + 2 * words) as f64,
            uniforms: Some(uniforms),
            then: None,
        })
    }

    /// `embedding_grad_rows`: `rows[u, :] = sum of dout[p, :]` over the positions `p` of the
    /// `u`-th distinct id, for the U distinct ids the segments buffer holds (layout of
    /// [`pack_segments`] with `capacity`, rewritten every step). `dout` is
    /// `[capacity, width]`; `rows` must hold `capacity` rows, of which the first U are
    /// written.
    pub fn prepare_grad_rows(
        &self,
        gpu: &Gpu,
        width: usize,
        capacity: usize,
        segments: View,
        dout: View,
        rows: View,
    ) -> Result<Dispatch> {
        if width == 0 {
            bail!("embedding_grad_rows: the embedding width must be positive");
        }
        let words = capacity * width;
        let segments_at = word_offset(
            "embedding_grad_rows segments",
            segments,
            segments_words(capacity),
        )?;
        let dout_at = word_offset("embedding_grad_rows dout", dout, words)?;
        let rows_at = word_offset("embedding_grad_rows rows", rows, words)?;
        if rows.buffer == segments.buffer || rows.buffer == dout.buffer {
            bail!("embedding_grad_rows: the rows share a buffer with the segments or dout");
        }
        let params = GradRowsParams {
            capacity: capacity as u32,
            width: width as u32,
            segments: segments_at,
            dout: dout_at,
            rows: rows_at,
            _pad: [0; 3],
        };
        let label = "embedding_grad_rows";
        let uniforms = gpu.uniform_from(label, &params);
        let bind_group = gpu.bind(
            label,
            &self.grad_rows,
            &[segments.buffer, dout.buffer, rows.buffer, &uniforms],
        )?;
        let (gx, gy) = groups_1d(words.min(MAX_GROUPS * WORKGROUP), WORKGROUP);
        let w = words as f64;
        Ok(Dispatch {
            label: label.to_string(),
            pipeline: self.grad_rows.clone(),
            bind_group,
            groups: (gx, gy, 1),
            // At most one add per element of dout.
            flops: w,
            bytes: 4.0 * (2.0 * w + segments_words(capacity) as f64),
            uniforms: Some(uniforms),
            then: None,
        })
    }

    /// `embedding_scatter_add_rows` (tied embeddings): `dense[unique[u], :] += rows[u, :]`
    /// for the U distinct ids of the segments buffer (layout of [`pack_segments`] with
    /// `capacity`). `rows` holds `capacity` rows of `width` words (the first U are read);
    /// `dense` is the `[vocab, width]` gradient.
    pub fn prepare_scatter_add_rows(
        &self,
        gpu: &Gpu,
        width: usize,
        capacity: usize,
        segments: View,
        rows: View,
        dense: View,
    ) -> Result<Dispatch> {
        if width == 0 {
            bail!("embedding_scatter_add_rows: the embedding width must be positive");
        }
        let words = capacity * width;
        let segments_at = word_offset(
            "embedding_scatter_add_rows segments",
            segments,
            segments_words(capacity),
        )?;
        let rows_at = word_offset("embedding_scatter_add_rows rows", rows, words)?;
        let dense_rows = (dense.len / width).max(1);
        let dense_at = word_offset(
            "embedding_scatter_add_rows dense",
            dense,
            dense_rows * width,
        )?;
        if dense.buffer == segments.buffer || dense.buffer == rows.buffer {
            bail!("embedding_scatter_add_rows: the dense gradient shares a buffer with its inputs");
        }
        let params = ScatterParams {
            capacity: capacity as u32,
            width: width as u32,
            segments: segments_at,
            rows: rows_at,
            dense: dense_at,
            dense_rows: dense_rows as u32,
            _pad: [0; 2],
        };
        let label = "embedding_scatter_add_rows";
        let uniforms = gpu.uniform_from(label, &params);
        let bind_group = gpu.bind(
            label,
            &self.scatter_add_rows,
            &[segments.buffer, rows.buffer, dense.buffer, &uniforms],
        )?;
        let (gx, gy) = groups_1d(words.min(MAX_GROUPS * WORKGROUP), WORKGROUP);
        let w = words as f64;
        Ok(Dispatch {
            label: label.to_string(),
            pipeline: self.scatter_add_rows.clone(),
            bind_group,
            groups: (gx, gy, 1),
            flops: w,
            bytes: 4.0 * (3.0 * w + segments_words(capacity) as f64),
            uniforms: Some(uniforms),
            then: None,
        })
    }
}
