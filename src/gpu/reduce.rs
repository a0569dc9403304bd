//! Reductions: launcher of `shaders/reduce.wgsl`. The global gradient norm and clip scale
//! (CPU twins [`crate::reference::sum_squares`] and [`crate::reference::clip_scale`]) and
//! column sums for bias gradients.
//!
//! The global norm runs without a host round trip and without atomics:
//! 1. one `sum_squares_partial` dispatch per gradient tensor writes fixed-order partial sums
//!    of squares into its own slots of a partials buffer ([`Reduce::slots`] per tensor);
//!    the embedding gradient enters through `sum_squares_rows_partial`, which counts only
//!    the rows of the batch's distinct ids;
//! 2. `clip_scale` sums every slot in a fixed order and writes a [`ClipStats`] block, whose
//!    scale the SGD kernels ([`super::sgd`]) read.
//!
//! Two guards keep one bad batch from spoiling a run (CPU twins
//! [`crate::reference::step_guard`] and [`crate::reference::state_guard`]): `step_guard`
//! skips a step whose loss or gradient norm is not finite and counts it in a
//! [`TrainAccumulator`], and `state_guard` zeroes the rows of the carried state that are not
//! finite. Both decide on the GPU, so that a training step still needs no readback.

use anyhow::{bail, Result};

use super::embedding::{segments_words, SEGMENTS_COUNT_WORD};
use super::{groups_1d, word_offset, Dispatch, Gpu, View};

// The shared workgroup sum first: WGSL has no includes.
use super::shaders::REDUCE as SHADER;

/// Invocations per workgroup of the norm kernels (`WORKGROUP` in the shader).
const WORKGROUP: usize = 256;
/// Elements one workgroup of `sum_squares_partial` adds up (`CHUNK` in the shader): one
/// partial slot each.
const CHUNK: usize = WORKGROUP * 16;
/// Invocations per workgroup of `column_sum`, one per column.
const COLUMN_WORKGROUP: usize = 64;
/// Column sums in row slices aim at about this many invocations in all (an NVIDIA H200
/// holds 270,336 resident, 2,048 on each of its 132 multiprocessors) ...
const COLUMN_TARGET_INVOCATIONS: usize = 1 << 17;
/// ... with at most this many words of slice sums (4 MiB; the scratch is left out of
/// [`crate::model::fit`] like the split-K matmul's, being below any adapter's limit).
pub const COLUMN_SCRATCH_WORDS: usize = 1 << 20;
/// The environment variable that overrides how column sums add their rows: `serial` or
/// `sliced` (see [`ColumnSums`]), for comparing the two in a benchmark.
pub const COLUMN_SUMS_ENV: &str = "LSTM_GPU_COLUMN_SUMS";

/// How column sums (bias gradients: `column_sum`, and the softmax's in
/// `softmax_xent_backward_columns`) add up their rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnSums {
    /// One invocation per column adds every row in order: what a CPU adapter runs (as many
    /// invocations as columns keep its threads busy), in [`crate::reference::column_sum`]'s
    /// order.
    Serial,
    /// Invocations per column and slice of at least `min_rows` rows, as many slices as it
    /// takes to reach about `COLUMN_TARGET_INVOCATIONS`; a second pass adds the slices'
    /// sums ([`crate::reference::column_sum_sliced`]). On a GPU the serial sum leaves most
    /// of it idle, each invocation waiting on a chain of `rows` loads: on an NVIDIA H200 the
    /// seed step's two serial column passes took 0.95 ms of its 5.6.
    Sliced { min_rows: usize },
}

impl ColumnSums {
    /// The GPU's choice: slices of at least 32 rows (four rounds of `column_sum`'s eight
    /// loads in flight).
    pub const GPU: ColumnSums = ColumnSums::Sliced { min_rows: 32 };

    /// What a device of `device_type` runs, unless [`COLUMN_SUMS_ENV`] says otherwise:
    /// serial on CPU adapters (lavapipe, SwiftShader), sliced on GPUs.
    pub fn for_device(device_type: wgpu::DeviceType) -> Result<ColumnSums> {
        let default = match device_type {
            wgpu::DeviceType::Cpu => ColumnSums::Serial,
            _ => ColumnSums::GPU,
        };
        match std::env::var(COLUMN_SUMS_ENV).as_deref() {
            Err(_) | Ok("") => Ok(default),
            Ok("serial") => Ok(ColumnSums::Serial),
            Ok("sliced") => Ok(ColumnSums::GPU),
            Ok(other) => Err(crate::error::usage(format!(
                "{COLUMN_SUMS_ENV}={other}: choose serial or sliced (the default is serial on \
                 CPU adapters, sliced on GPUs)"
            ))),
        }
    }

    /// Rows per slice of a `[rows, cols]` column sum: `rows` (one slice) when serial, or
    /// when slicing would not reach more invocations.
    pub fn slice_rows(self, rows: usize, cols: usize) -> usize {
        let ColumnSums::Sliced { min_rows } = self else {
            return rows;
        };
        let by_target = COLUMN_TARGET_INVOCATIONS.div_ceil(cols.max(1));
        let by_rows = rows / min_rows.max(1);
        let by_scratch = COLUMN_SCRATCH_WORDS / cols.max(1);
        let want = by_target.min(by_rows).min(by_scratch).max(1);
        if want == 1 {
            rows
        } else {
            rows.div_ceil(want)
        }
    }
}

/// The block `clip_scale` writes (4 f32 words), read by the SGD kernels and, at log points,
/// by the trainer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ClipStats {
    /// Squared global norm of all gradients.
    pub sum_sq: f32,
    /// Global norm.
    pub norm: f32,
    /// `min(1, max_norm / norm)`; 0 when the norm is not finite, which makes the SGD
    /// kernels skip the update.
    pub scale: f32,
    /// Steps whose norm was infinite or NaN since the host last zeroed this word (a new
    /// buffer starts at zero); exact up to 2^24.
    pub nonfinite_steps: f32,
}

impl ClipStats {
    /// Words of the block.
    pub const WORDS: usize = 4;
    /// Word of [`ClipStats::scale`], which the SGD kernels read.
    pub const SCALE_WORD: usize = 2;

    /// Read the block at `view` (waits for the queue).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(gpu: &Gpu, view: View) -> Result<ClipStats> {
        crate::gpu::block_on(Self::read_async(gpu, view))
    }

    /// [`ClipStats::read`] awaited.
    pub async fn read_async(gpu: &Gpu, view: View<'_>) -> Result<ClipStats> {
        view.check("clip stats", Self::WORDS)?;
        let w: Vec<f32> = gpu
            .read_async(view.buffer, view.offset, Self::WORDS)
            .await?;
        Ok(ClipStats {
            sum_sq: w[0],
            norm: w[1],
            scale: w[2],
            nonfinite_steps: w[3],
        })
    }
}

/// The loss accumulator of a training workspace as `step_guard` keeps it (12 words): the
/// two words of [`super::softmax_xent::LossAccumulator`] over the steps that were not
/// skipped, then the skipped steps, then the gradient norms of the steps that counted and
/// ran their update (all of them but mixed precision's overflowed ones). The
/// host reads it at log points and zeroes the first [`TrainAccumulator::RESET_WORDS`]
/// words; the run of skipped steps carries over.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TrainAccumulator {
    /// Sum of the losses of the steps that were not skipped (f32 bits).
    pub loss_sum_bits: u32,
    /// Steps that were not skipped (f32 bits).
    pub batches_bits: u32,
    /// Steps skipped because their loss or gradient norm was not finite.
    pub skipped: u32,
    /// Of those, the steps whose loss was not finite.
    pub nonfinite_loss: u32,
    /// 1-based global step number of the first skipped step; 0 when none was skipped.
    pub first_skipped: u32,
    /// 1-based global step number of the last skipped step; 0 when none was skipped.
    pub last_skipped: u32,
    /// Sum of the global gradient norms (before clipping) of the steps that counted and ran
    /// their update (f32 bits).
    pub norm_sum_bits: u32,
    /// The largest of those norms (f32 bits).
    pub norm_max_bits: u32,
    /// Of those, the steps whose gradients were clipped (norm above `max_grad_norm`).
    pub clipped: u32,
    /// The steps whose norms the three words above gather: those that counted, less the
    /// mixed-precision steps whose f16 gradients overflowed (their loss counts; they have no
    /// norm, and no update).
    pub norm_steps: u32,
    /// Steps skipped in a row up to the last step (not reset by the host).
    pub skipped_in_a_row: u32,
    pub _pad: [u32; 1],
}

impl TrainAccumulator {
    /// Words of the block.
    pub const WORDS: usize = 12;
    /// Words the host zeroes after each read: all but the run of skipped steps.
    pub const RESET_WORDS: usize = 10;

    /// The mean global gradient norm (before clipping) of the [`TrainAccumulator::norm_steps`];
    /// NaN when there were none.
    pub fn mean_norm(&self) -> f32 {
        f32::from_bits(self.norm_sum_bits) / self.norm_steps as f32
    }

    /// The largest global gradient norm of the steps that counted (0 when none did).
    pub fn max_norm(&self) -> f32 {
        f32::from_bits(self.norm_max_bits)
    }

    /// Sum of the losses of the steps that were not skipped.
    pub fn loss_sum(&self) -> f32 {
        f32::from_bits(self.loss_sum_bits)
    }

    /// Number of steps that were not skipped.
    pub fn batches(&self) -> f32 {
        f32::from_bits(self.batches_bits)
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GuardParams {
    step_loss: u32,
    acc: u32,
    clip: u32,
    hyper: u32,
    max_norm: f32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct StateGuardParams {
    rows: u32,
    width: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PartialParams {
    len: u32,
    input: u32,
    first: u32,
    slots: u32,
    width: u32,
    count: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ClipParams {
    count: u32,
    partials: u32,
    clip: u32,
    max_norm: f32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ColumnSumParams {
    rows: u32,
    cols: u32,
    input: u32,
    out: u32,
    accumulate: u32,
    slice_rows: u32,
    _pad: [u32; 2],
}

/// One launch of `column_sum`: its label, rows, and the slices it cuts them into.
struct ColumnPass {
    label: &'static str,
    rows: usize,
    slice_rows: usize,
    slices: usize,
}

/// The compiled reduction pipelines.
pub struct Reduce {
    sum_squares: wgpu::ComputePipeline,
    sum_squares_rows: wgpu::ComputePipeline,
    clip_scale: wgpu::ComputePipeline,
    column_sum: wgpu::ComputePipeline,
    step_guard: wgpu::ComputePipeline,
    state_guard: wgpu::ComputePipeline,
    /// How column sums add their rows on this device (tests set it to compare the two).
    pub column_sums: ColumnSums,
    /// The slice sums of column sums in row slices, shared by every such sum of the device
    /// (one at a time: each is added up by the pass right after it).
    scratch: std::sync::Mutex<Option<wgpu::Buffer>>,
}

impl Reduce {
    pub fn new(gpu: &Gpu) -> Result<Reduce> {
        let module = gpu.shader("reduce", SHADER)?;
        let p = |entry: &str| gpu.pipeline(entry, &module, entry);
        Ok(Reduce {
            sum_squares: p("sum_squares_partial")?,
            sum_squares_rows: p("sum_squares_rows_partial")?,
            clip_scale: p("clip_scale")?,
            column_sum: p("column_sum")?,
            step_guard: p("step_guard")?,
            state_guard: p("state_guard")?,
            column_sums: ColumnSums::for_device(gpu.info.device_type)?,
            scratch: std::sync::Mutex::new(None),
        })
    }

    /// Partial-sum slots a tensor of `len` elements takes in the partials buffer.
    pub fn slots(len: usize) -> usize {
        len.div_ceil(CHUNK).max(1)
    }

    /// `sum_squares_partial`: the sums of squares of the whole of `tensor` (all `tensor.len`
    /// words), in [`Reduce::slots`]`(tensor.len)` slots of `partials` from `first_slot` on.
    /// Returns the dispatch and the number of slots it writes.
    pub fn prepare_sum_squares(
        &self,
        gpu: &Gpu,
        tensor: View,
        partials: View,
        first_slot: usize,
    ) -> Result<(Dispatch, usize)> {
        let slots = Self::slots(tensor.len);
        let tensor_at = word_offset("sum_squares_partial tensor", tensor, tensor.len)?;
        let first = word_offset("sum_squares_partial partials", partials, first_slot + slots)?
            + first_slot as u32;
        self.partial_dispatch(
            gpu,
            "sum_squares_partial",
            &self.sum_squares,
            PartialParams {
                len: tensor.len as u32,
                input: tensor_at,
                first,
                slots: slots as u32,
                width: 1,
                count: 0,
                _pad: [0; 2],
            },
            tensor,
            partials,
            None,
        )
        .map(|d| (d, slots))
    }

    /// `sum_squares_rows_partial`: the sums of squares of the first U rows of `rows`, a
    /// `[capacity, width]` tensor, with U read at run time from the segments buffer of
    /// [`super::embedding::pack_segments`]. Takes the slots of `capacity * width` elements.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_sum_squares_rows(
        &self,
        gpu: &Gpu,
        width: usize,
        capacity: usize,
        segments: View,
        rows: View,
        partials: View,
        first_slot: usize,
    ) -> Result<(Dispatch, usize)> {
        if width == 0 {
            bail!("sum_squares_rows_partial: the row width must be positive");
        }
        let len = capacity * width;
        let slots = Self::slots(len);
        let segments_at = word_offset(
            "sum_squares_rows_partial segments",
            segments,
            segments_words(capacity),
        )?;
        let rows_at = word_offset("sum_squares_rows_partial rows", rows, len)?;
        let first = word_offset(
            "sum_squares_rows_partial partials",
            partials,
            first_slot + slots,
        )? + first_slot as u32;
        if partials.buffer == segments.buffer {
            bail!("sum_squares_rows_partial: the partials share a buffer with the segments");
        }
        self.partial_dispatch(
            gpu,
            "sum_squares_rows_partial",
            &self.sum_squares_rows,
            PartialParams {
                len: len as u32,
                input: rows_at,
                first,
                slots: slots as u32,
                width: width as u32,
                count: segments_at + SEGMENTS_COUNT_WORD as u32,
                _pad: [0; 2],
            },
            rows,
            partials,
            Some(segments),
        )
        .map(|d| (d, slots))
    }

    /// The dispatch of either partial-sum kernel from its checked uniform block.
    #[allow(clippy::too_many_arguments)]
    fn partial_dispatch(
        &self,
        gpu: &Gpu,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        params: PartialParams,
        input: View,
        partials: View,
        segments: Option<View>,
    ) -> Result<Dispatch> {
        if partials.buffer == input.buffer {
            bail!("{label}: the partials share a buffer with the tensor");
        }
        let uniforms = gpu.uniform_from(label, &params);
        let mut buffers = vec![input.buffer, partials.buffer, &uniforms];
        buffers.extend(segments.map(|s| s.buffer));
        let bind_group = gpu.bind(label, pipeline, &buffers)?;
        let slots = params.slots as usize;
        let (gx, gy) = groups_1d(slots, 1);
        let len = params.len as f64;
        Ok(Dispatch {
            label: label.to_string(),
            pipeline: pipeline.clone(),
            bind_group,
            groups: (gx, gy, 1),
            flops: 2.0 * len,
            bytes: 4.0 * (len + slots as f64),
            uniforms: Some(uniforms),
            then: None,
        })
    }

    /// `clip_scale`: sum the first `count` slots of `partials` in a fixed order and write
    /// the [`ClipStats`] block at `clip`, with `scale = min(1, max_norm / norm)`.
    pub fn prepare_clip_scale(
        &self,
        gpu: &Gpu,
        partials: View,
        count: usize,
        max_norm: f32,
        clip: View,
    ) -> Result<Dispatch> {
        if !(max_norm > 0.0 && max_norm.is_finite()) {
            bail!("clip_scale: the maximum norm must be positive and finite, got {max_norm}");
        }
        let partials_at = word_offset("clip_scale partials", partials, count)?;
        let clip_at = word_offset("clip_scale clip", clip, ClipStats::WORDS)?;
        if clip.buffer == partials.buffer {
            bail!("clip_scale: the clip block shares a buffer with the partials");
        }
        let params = ClipParams {
            count: count as u32,
            partials: partials_at,
            clip: clip_at,
            max_norm,
        };
        let label = "clip_scale";
        let uniforms = gpu.uniform_from(label, &params);
        let bind_group = gpu.bind(
            label,
            &self.clip_scale,
            &[partials.buffer, clip.buffer, &uniforms],
        )?;
        Ok(Dispatch {
            label: label.to_string(),
            pipeline: self.clip_scale.clone(),
            bind_group,
            groups: (1, 1, 1),
            flops: count as f64 + 3.0,
            bytes: 4.0 * (count + 2 * ClipStats::WORDS) as f64,
            uniforms: Some(uniforms),
            then: None,
        })
    }

    /// `column_sum`: `out[j] = sum over i of input[i, j]` for `input` `[rows, cols]`, or
    /// `out[j] += ...` when `accumulate`: in one pass with rows added in increasing order,
    /// or in row slices where [`Reduce::column_sums`] says (two launches in one dispatch).
    pub fn prepare_column_sum(
        &self,
        gpu: &Gpu,
        rows: usize,
        cols: usize,
        input: View,
        out: View,
        accumulate: bool,
    ) -> Result<Dispatch> {
        let slice_rows = self.column_sums.slice_rows(rows, cols);
        self.prepare_column_sum_in_slices(gpu, rows, cols, slice_rows, input, out, accumulate)
    }

    /// [`Reduce::prepare_column_sum`] in slices of `slice_rows` rows (the last one shorter;
    /// `rows` or more: one pass), whatever [`Reduce::column_sums`] says. CPU twin:
    /// [`crate::reference::column_sum_sliced`].
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_column_sum_in_slices(
        &self,
        gpu: &Gpu,
        rows: usize,
        cols: usize,
        slice_rows: usize,
        input: View,
        out: View,
        accumulate: bool,
    ) -> Result<Dispatch> {
        word_offset("column_sum input", input, rows * cols)?;
        word_offset("column_sum out", out, cols)?;
        if out.buffer == input.buffer {
            bail!("column_sum: the output shares a buffer with the input");
        }
        let slice_rows = slice_rows.clamp(1, rows.max(1));
        let slices = rows.div_ceil(slice_rows);
        if slices <= 1 {
            let all = ColumnPass {
                label: "column_sum",
                rows,
                slice_rows: rows,
                slices: 1,
            };
            return self.column_pass(gpu, all, cols, input, out, accumulate);
        }
        let partials = self.slice_scratch(gpu, slices * cols)?;
        let partials = View::at(&partials, 0, slices * cols);
        let first = ColumnPass {
            label: "column_sum_sliced",
            rows,
            slice_rows,
            slices,
        };
        let mut d = self.column_pass(gpu, first, cols, input, partials, false)?;
        d.then = Some(Box::new(
            self.prepare_slice_sum(gpu, slices, cols, partials, out, accumulate)?,
        ));
        Ok(d)
    }

    /// `column_slice_sum`: the sums of `slices` row slices (`partials`, `[slices, cols]`)
    /// added in slice order into `out` (to its old values when `accumulate`): the second
    /// launch of a column sum in row slices, here and in
    /// [`super::softmax_xent::SoftmaxXent::prepare_backward_columns`].
    pub fn prepare_slice_sum(
        &self,
        gpu: &Gpu,
        slices: usize,
        cols: usize,
        partials: View,
        out: View,
        accumulate: bool,
    ) -> Result<Dispatch> {
        let pass = ColumnPass {
            label: "column_slice_sum",
            rows: slices,
            slice_rows: slices,
            slices: 1,
        };
        self.column_pass(gpu, pass, cols, partials, out, accumulate)
    }

    /// The scratch buffer for `words` words of slice sums (at most
    /// [`COLUMN_SCRATCH_WORDS`], which [`ColumnSums::slice_rows`] keeps to).
    pub fn slice_scratch(&self, gpu: &Gpu, words: usize) -> Result<wgpu::Buffer> {
        if words > COLUMN_SCRATCH_WORDS {
            bail!("column sums in row slices: {words} words of slice sums, more than the {COLUMN_SCRATCH_WORDS} of the scratch");
        }
        let mut held = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        Ok(match held.as_ref() {
            Some(buf) if buf.size() >= (words * 4) as u64 => buf.clone(),
            _ => {
                let buf = gpu.storage("column sums' slice sums", words);
                *held = Some(buf.clone());
                buf
            }
        })
    }

    /// One launch of `column_sum`: `pass.slices` slices of `pass.slice_rows` rows of
    /// `input` (`[pass.rows, cols]`), slice z's sums at `out` + z * cols.
    fn column_pass(
        &self,
        gpu: &Gpu,
        pass: ColumnPass,
        cols: usize,
        input: View,
        out: View,
        accumulate: bool,
    ) -> Result<Dispatch> {
        let rows = pass.rows;
        let input_at = word_offset("column_sum input", input, rows * cols)?;
        let out_at = word_offset("column_sum out", out, pass.slices * cols)?;
        let params = ColumnSumParams {
            rows: rows as u32,
            cols: cols as u32,
            input: input_at,
            out: out_at,
            accumulate: accumulate as u32,
            slice_rows: pass.slice_rows as u32,
            _pad: [0; 2],
        };
        let uniforms = gpu.uniform_from(pass.label, &params);
        let bind_group = gpu.bind(
            pass.label,
            &self.column_sum,
            &[input.buffer, out.buffer, &uniforms],
        )?;
        let (gx, gy) = groups_1d(cols, COLUMN_WORKGROUP);
        let elements = (rows * cols) as f64;
        let out_words = (pass.slices * cols) as f64;
        let out_traffic = if accumulate { 2.0 } else { 1.0 } * out_words;
        Ok(Dispatch {
            label: pass.label.to_string(),
            pipeline: self.column_sum.clone(),
            bind_group,
            groups: (gx, gy, pass.slices as u32),
            flops: elements,
            bytes: 4.0 * (elements + out_traffic),
            uniforms: Some(uniforms),
            then: None,
        })
    }

    /// `step_guard`: after `clip_scale`, decide whether the step counts. The step loss
    /// block (2 words at `step_loss`, what `loss_accumulate` added this step) is added to the
    /// [`TrainAccumulator`] at `acc` when it and the squared norm of the [`ClipStats`] at
    /// `clip` are finite; otherwise the clip scale becomes 0 and the step is counted as
    /// skipped, numbered from the step word of the [`super::Hyper`] block at `hyper`. A step
    /// that counts is counted as clipped where its norm is above `max_norm` (the clipping
    /// threshold `clip_scale` and `loss_scale_update` were given). The step loss block is
    /// zeroed either way.
    pub fn prepare_step_guard(
        &self,
        gpu: &Gpu,
        step_loss: View,
        acc: View,
        clip: View,
        hyper: View,
        max_norm: f32,
    ) -> Result<Dispatch> {
        if !(max_norm > 0.0 && max_norm.is_finite()) {
            bail!("step_guard: the maximum norm must be positive and finite, got {max_norm}");
        }
        let params = GuardParams {
            step_loss: word_offset("step_guard step loss", step_loss, 2)?,
            acc: word_offset("step_guard accumulator", acc, TrainAccumulator::WORDS)?,
            clip: word_offset("step_guard clip", clip, ClipStats::WORDS)?,
            hyper: word_offset("step_guard hyper", hyper, super::Hyper::WORDS)?,
            max_norm,
            _pad: [0; 3],
        };
        let written = [step_loss.buffer, acc.buffer, clip.buffer];
        if written[0] == written[1] || written[0] == written[2] || written[1] == written[2] {
            bail!("step_guard: the step loss, accumulator and clip block need their own buffers");
        }
        if written.contains(&hyper.buffer) {
            bail!("step_guard: the hyperparameter block shares a buffer with an output");
        }
        let label = "step_guard";
        let uniforms = gpu.uniform_from(label, &params);
        let bind_group = gpu.bind(
            label,
            &self.step_guard,
            &[
                step_loss.buffer,
                acc.buffer,
                clip.buffer,
                hyper.buffer,
                &uniforms,
            ],
        )?;
        Ok(Dispatch {
            label: label.to_string(),
            pipeline: self.step_guard.clone(),
            bind_group,
            groups: (1, 1, 1),
            flops: 4.0,
            bytes: 4.0 * (2 + TrainAccumulator::WORDS + ClipStats::WORDS + 1) as f64,
            uniforms: Some(uniforms),
            then: None,
        })
    }

    /// `state_guard`: zero every row of the `[rows, width]` carried state `c` and `h` (whole
    /// buffers) whose c or h holds a value that is not finite.
    pub fn prepare_state_guard(
        &self,
        gpu: &Gpu,
        rows: usize,
        width: usize,
        c: &wgpu::Buffer,
        h: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        if rows == 0 || width == 0 {
            bail!("state_guard: the state must have at least one row and one column");
        }
        View::all(c).check("state_guard c", rows * width)?;
        View::all(h).check("state_guard h", rows * width)?;
        if c == h {
            bail!("state_guard: c and h share a buffer");
        }
        let params = StateGuardParams {
            rows: u32::try_from(rows)?,
            width: u32::try_from(width)?,
            _pad: [0; 2],
        };
        let label = "state_guard";
        let uniforms = gpu.uniform_from(label, &params);
        let bind_group = gpu.bind(label, &self.state_guard, &[c, h, &uniforms])?;
        let (gx, gy) = groups_1d(rows, 1);
        let words = (rows * width) as f64;
        Ok(Dispatch {
            label: label.to_string(),
            pipeline: self.state_guard.clone(),
            bind_group,
            groups: (gx, gy, 1),
            flops: 2.0 * words,
            bytes: 8.0 * words,
            uniforms: Some(uniforms),
            then: None,
        })
    }
}
