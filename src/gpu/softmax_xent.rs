//! Softmax with cross-entropy: launcher of `shaders/softmax_xent.wgsl`, whose CPU twins are
//! [`crate::reference::softmax_xent_forward`], [`crate::reference::softmax_xent_backward`],
//! [`crate::reference::softmax_xent_backward_columns`] and [`crate::reference::topk`].
//!
//! Training never reads probabilities back: the forward pass keeps the log-sum-exp of every
//! row, the backward pass overwrites the logits with their gradient, and the loss of each
//! batch is added on the GPU to a running accumulator ([`LossAccumulator`]) that the trainer
//! reads at log points only.

use anyhow::{bail, Result};

use super::reduce::Reduce;
use super::{groups_1d, word_offset, Dispatch, Gpu, View};

// The shared workgroup sum first: WGSL has no includes.
use super::shaders::SOFTMAX_XENT as SHADER;

/// The largest `k` of [`SoftmaxXent::prepare_topk`]: each of the k results costs a pass over
/// the row, so top-k is meant for a handful of predictions, not for sorting.
pub const MAX_TOPK: usize = 64;

/// The running loss that `loss_accumulate` adds to, as it lies in its buffer (2 words).
/// Both words are f32; the batch count is exact up to 2^24 batches. The host zeroes the
/// buffer at the start of a pass.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LossAccumulator {
    /// Sum of `scale * sum(loss rows)` over the accumulated batches.
    pub loss_sum: f32,
    /// Number of accumulated batches.
    pub batches: f32,
}

impl LossAccumulator {
    /// Words of the accumulator in its buffer.
    pub const WORDS: usize = 2;

    /// Read the accumulator from `view` (waits for the queue).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(gpu: &Gpu, view: View) -> Result<LossAccumulator> {
        crate::gpu::block_on(Self::read_async(gpu, view))
    }

    /// [`LossAccumulator::read`] awaited.
    pub async fn read_async(gpu: &Gpu, view: View<'_>) -> Result<LossAccumulator> {
        view.check("loss accumulator", Self::WORDS)?;
        let words: Vec<f32> = gpu
            .read_async(view.buffer, view.offset, Self::WORDS)
            .await?;
        Ok(LossAccumulator {
            loss_sum: words[0],
            batches: words[1],
        })
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ForwardParams {
    rows: u32,
    classes: u32,
    logits: u32,
    targets: u32,
    lse: u32,
    loss: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct BackwardParams {
    rows: u32,
    classes: u32,
    logits: u32,
    targets: u32,
    lse: u32,
    scale: f32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ColumnsParams {
    rows: u32,
    classes: u32,
    logits: u32,
    targets: u32,
    lse: u32,
    scale: f32,
    sums: u32,
    accumulate: u32,
    slice_rows: u32,
    _pad: [u32; 3],
}

/// The buffers of `softmax_xent_backward_columns`: the logits (their gradient in place),
/// the targets and log-sum-exps of the rows, and the column sums.
#[derive(Clone, Copy)]
pub struct ColumnsViews<'a> {
    pub logits: View<'a>,
    pub targets: View<'a>,
    pub lse: View<'a>,
    pub sums: View<'a>,
}

/// Invocations per workgroup of `softmax_xent_backward_columns` (one per class).
const COLUMNS_WORKGROUP: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AccumulateParams {
    rows: u32,
    loss: u32,
    acc: u32,
    scale: f32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct TopkParams {
    len: u32,
    k: u32,
    row: u32,
    indices: u32,
    values: u32,
    _pad: [u32; 3],
}

/// The compiled pipelines of `shaders/softmax_xent.wgsl`.
pub struct SoftmaxXent {
    forward: wgpu::ComputePipeline,
    backward: wgpu::ComputePipeline,
    backward_columns: wgpu::ComputePipeline,
    accumulate: wgpu::ComputePipeline,
    topk: wgpu::ComputePipeline,
}

impl SoftmaxXent {
    pub fn new(gpu: &Gpu) -> Result<SoftmaxXent> {
        let module = gpu.shader("softmax_xent", SHADER)?;
        Ok(SoftmaxXent {
            forward: gpu.pipeline("softmax_xent_forward", &module, "softmax_xent_forward")?,
            backward: gpu.pipeline("softmax_xent_backward", &module, "softmax_xent_backward")?,
            backward_columns: gpu.pipeline(
                "softmax_xent_backward_columns",
                &module,
                "softmax_xent_backward_columns",
            )?,
            accumulate: gpu.pipeline("loss_accumulate", &module, "loss_accumulate")?,
            topk: gpu.pipeline("topk", &module, "topk")?,
        })
    }

    /// `softmax_xent_forward`: per row of `[rows, classes]` logits, `lse = log sum exp` and
    /// `loss = lse - logits[target]` (NaN for a target outside the classes).
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_forward(
        &self,
        gpu: &Gpu,
        rows: usize,
        classes: usize,
        logits: View,
        targets: View,
        lse: View,
        loss: View,
    ) -> Result<Dispatch> {
        if classes == 0 {
            bail!("softmax_xent_forward: needs at least one class");
        }
        let logits_at = word_offset("softmax_xent_forward logits", logits, rows * classes)?;
        let targets_at = word_offset("softmax_xent_forward targets", targets, rows)?;
        let lse_at = word_offset("softmax_xent_forward lse", lse, rows)?;
        let loss_at = word_offset("softmax_xent_forward loss", loss, rows)?;
        for out in [lse, loss] {
            if out.buffer == logits.buffer || out.buffer == targets.buffer {
                bail!("softmax_xent_forward: lse or loss shares a buffer with an input");
            }
        }
        if lse.buffer == loss.buffer
            && lse.offset < loss.offset + rows
            && loss.offset < lse.offset + rows
        {
            bail!("softmax_xent_forward: lse and loss overlap");
        }
        let params = ForwardParams {
            rows: rows as u32,
            classes: classes as u32,
            logits: logits_at,
            targets: targets_at,
            lse: lse_at,
            loss: loss_at,
            _pad: [0; 2],
        };
        let label = "softmax_xent_forward";
        let uniforms = gpu.uniform_from(label, &params);
        let bind_group = gpu.bind(
            label,
            &self.forward,
            &[
                logits.buffer,
                targets.buffer,
                lse.buffer,
                loss.buffer,
                &uniforms,
            ],
        )?;
        // One workgroup per row.
        let (gx, gy) = groups_1d(rows, 1);
        let elements = (rows * classes) as f64;
        Ok(Dispatch {
            label: label.to_string(),
            pipeline: self.forward.clone(),
            bind_group,
            groups: (gx, gy, 1),
            // max, subtract, exp, add per element.
            flops: 4.0 * elements,
            bytes: 4.0 * (elements + 3.0 * rows as f64),
            uniforms: Some(uniforms),
            then: None,
        })
    }

    /// `softmax_xent_backward`: overwrite the logits with `(softmax - onehot(target)) *
    /// scale`, the gradient of `scale * sum(loss)`, from the forward pass's `lse`. `scale`
    /// is fixed here (1 / batch for a mean over the batch).
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_backward(
        &self,
        gpu: &Gpu,
        rows: usize,
        classes: usize,
        logits: View,
        targets: View,
        lse: View,
        scale: f32,
    ) -> Result<Dispatch> {
        let logits_at = word_offset("softmax_xent_backward logits", logits, rows * classes)?;
        let targets_at = word_offset("softmax_xent_backward targets", targets, rows)?;
        let lse_at = word_offset("softmax_xent_backward lse", lse, rows)?;
        if logits.buffer == targets.buffer || logits.buffer == lse.buffer {
            bail!("softmax_xent_backward: the logits share a buffer with the targets or lse");
        }
        let params = BackwardParams {
            rows: rows as u32,
            classes: classes as u32,
            logits: logits_at,
            targets: targets_at,
            lse: lse_at,
            scale,
            _pad: [0; 2],
        };
        let label = "softmax_xent_backward";
        let uniforms = gpu.uniform_from(label, &params);
        let bind_group = gpu.bind(
            label,
            &self.backward,
            &[logits.buffer, targets.buffer, lse.buffer, &uniforms],
        )?;
        // One workgroup per row.
        let (gx, gy) = groups_1d(rows, 1);
        let elements = (rows * classes) as f64;
        Ok(Dispatch {
            label: label.to_string(),
            pipeline: self.backward.clone(),
            bind_group,
            groups: (gx, gy, 1),
            flops: 4.0 * elements,
            bytes: 4.0 * (2.0 * elements + 2.0 * rows as f64),
            uniforms: Some(uniforms),
            then: None,
        })
    }

    /// `softmax_xent_backward_columns`: what [`SoftmaxXent::prepare_backward`] computes,
    /// and the sum of each column of the result into `sums` (added to it when
    /// `accumulate`): the softmax bias gradient without a second pass over the logits. The
    /// sums run in row slices where `reduce`'s [`ColumnSums`](super::reduce::ColumnSums)
    /// says, finished by its `column_slice_sum`.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_backward_columns(
        &self,
        gpu: &Gpu,
        rows: usize,
        classes: usize,
        logits: View,
        targets: View,
        lse: View,
        scale: f32,
        sums: View,
        accumulate: bool,
        reduce: &Reduce,
    ) -> Result<Dispatch> {
        let views = ColumnsViews {
            logits,
            targets,
            lse,
            sums,
        };
        let slice_rows = reduce.column_sums.slice_rows(rows, classes);
        let shape = (rows, classes, slice_rows);
        self.prepare_backward_columns_in_slices(gpu, shape, &views, scale, accumulate, reduce)
    }

    /// [`SoftmaxXent::prepare_backward_columns`] with the sums in slices of `slice_rows`
    /// rows (`(rows, classes, slice_rows)`; `slice_rows >= rows`: one pass), whatever
    /// `reduce` says. CPU twin:
    /// [`crate::reference::softmax_xent_backward_columns_sliced`].
    pub fn prepare_backward_columns_in_slices(
        &self,
        gpu: &Gpu,
        (rows, classes, slice_rows): (usize, usize, usize),
        views: &ColumnsViews,
        scale: f32,
        accumulate: bool,
        reduce: &Reduce,
    ) -> Result<Dispatch> {
        let what = "softmax_xent_backward_columns";
        let ColumnsViews {
            logits,
            targets,
            lse,
            sums,
        } = *views;
        let logits_at = word_offset(&format!("{what} logits"), logits, rows * classes)?;
        let targets_at = word_offset(&format!("{what} targets"), targets, rows)?;
        let lse_at = word_offset(&format!("{what} lse"), lse, rows)?;
        word_offset(&format!("{what} sums"), sums, classes)?;
        let inputs = [targets.buffer, lse.buffer];
        if inputs.contains(&logits.buffer) || inputs.contains(&sums.buffer) {
            bail!("{what}: the logits or the sums share a buffer with the targets or lse");
        }
        if logits.buffer == sums.buffer {
            bail!("{what}: the sums share a buffer with the logits");
        }
        let slice_rows = slice_rows.clamp(1, rows.max(1));
        let slices = rows.div_ceil(slice_rows).max(1);
        let scratch = match slices {
            1 => None,
            _ => Some(reduce.slice_scratch(gpu, slices * classes)?),
        };
        // Sliced: the slices' sums go to the scratch, never accumulated there.
        let (first_sums, first_accumulate) = match &scratch {
            Some(buf) => (View::at(buf, 0, slices * classes), false),
            None => (sums, accumulate),
        };
        let params = ColumnsParams {
            rows: rows as u32,
            classes: classes as u32,
            logits: logits_at,
            targets: targets_at,
            lse: lse_at,
            scale,
            sums: word_offset(&format!("{what} sums"), first_sums, slices * classes)?,
            accumulate: first_accumulate as u32,
            slice_rows: if slices == 1 { rows } else { slice_rows } as u32,
            _pad: [0; 3],
        };
        let label = if slices == 1 {
            what
        } else {
            "softmax_xent_backward_columns_sliced"
        };
        let uniforms = gpu.uniform_from(label, &params);
        let bind_group = gpu.bind(
            label,
            &self.backward_columns,
            &[
                logits.buffer,
                targets.buffer,
                lse.buffer,
                first_sums.buffer,
                &uniforms,
            ],
        )?;
        let (gx, gy) = groups_1d(classes, COLUMNS_WORKGROUP);
        let elements = (rows * classes) as f64;
        let sums_traffic = if first_accumulate { 2.0 } else { 1.0 } * (slices * classes) as f64;
        let then = match scratch {
            Some(_) => Some(Box::new(reduce.prepare_slice_sum(
                gpu, slices, classes, first_sums, sums, accumulate,
            )?)),
            None => None,
        };
        Ok(Dispatch {
            label: label.to_string(),
            pipeline: self.backward_columns.clone(),
            bind_group,
            groups: (gx, gy, slices as u32),
            flops: 5.0 * elements,
            bytes: 4.0 * (2.0 * elements + 2.0 * rows as f64 + sums_traffic),
            uniforms: Some(uniforms),
            then,
        })
    }

    /// `loss_accumulate`: add `scale * sum(loss[0 .. rows])` and one batch to the
    /// [`LossAccumulator`] at `acc`. With `scale` = 1 / batch and rows = steps * batch this
    /// adds TensorFlow's sequence loss of one batch.
    pub fn prepare_loss_accumulate(
        &self,
        gpu: &Gpu,
        rows: usize,
        loss: View,
        acc: View,
        scale: f32,
    ) -> Result<Dispatch> {
        let loss_at = word_offset("loss_accumulate loss", loss, rows)?;
        let acc_at = word_offset("loss_accumulate accumulator", acc, LossAccumulator::WORDS)?;
        if acc.buffer == loss.buffer {
            bail!("loss_accumulate: the accumulator shares a buffer with the loss rows");
        }
        let params = AccumulateParams {
            rows: rows as u32,
            loss: loss_at,
            acc: acc_at,
            scale,
        };
        let label = "loss_accumulate";
        let uniforms = gpu.uniform_from(label, &params);
        let bind_group = gpu.bind(
            label,
            &self.accumulate,
            &[loss.buffer, acc.buffer, &uniforms],
        )?;
        Ok(Dispatch {
            label: label.to_string(),
            pipeline: self.accumulate.clone(),
            bind_group,
            groups: (1, 1, 1),
            flops: rows as f64 + 2.0,
            bytes: 4.0 * (rows + 2 * LossAccumulator::WORDS) as f64,
            uniforms: Some(uniforms),
            then: None,
        })
    }

    /// `topk`: the `k` largest of the `len` values of `row` (probabilities or logits), largest
    /// first with ties to the lower index: their indices (u32) into `indices` and their
    /// values into `values`. NaN is never picked; when fewer than `k` values are not NaN the
    /// remaining entries are index `u32::MAX`, value `-inf`. `row`, `indices` and `values` are
    /// three buffers (a buffer in two bindings, one writable, is refused: [`Gpu::bind`]).
    pub fn prepare_topk(
        &self,
        gpu: &Gpu,
        len: usize,
        k: usize,
        row: View,
        indices: View,
        values: View,
    ) -> Result<Dispatch> {
        if k == 0 || k > MAX_TOPK || k > len {
            bail!("topk: k = {k} must be between 1 and min({MAX_TOPK}, {len})");
        }
        let row_at = word_offset("topk row", row, len)?;
        let indices_at = word_offset("topk indices", indices, k)?;
        let values_at = word_offset("topk values", values, k)?;
        if indices.buffer == row.buffer || values.buffer == row.buffer {
            bail!("topk: an output shares a buffer with the row");
        }
        let params = TopkParams {
            len: len as u32,
            k: k as u32,
            row: row_at,
            indices: indices_at,
            values: values_at,
            _pad: [0; 3],
        };
        let label = "topk";
        let uniforms = gpu.uniform_from(label, &params);
        let bind_group = gpu.bind(
            label,
            &self.topk,
            &[row.buffer, indices.buffer, values.buffer, &uniforms],
        )?;
        Ok(Dispatch {
            label: label.to_string(),
            pipeline: self.topk.clone(),
            bind_group,
            groups: (1, 1, 1),
            flops: (k * len) as f64,
            bytes: 4.0 * (k * len + 2 * k) as f64,
            uniforms: Some(uniforms),
            then: None,
        })
    }
}
