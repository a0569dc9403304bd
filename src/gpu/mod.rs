//! GPU side: instance and adapter choice, device, pipelines, buffers and kernel launchers.
//!
//! Every kernel family has a launcher module here, a WGSL file in `shaders/` and a CPU twin
//! in `crate::reference`. A launcher compiles its pipelines once (`new`) and turns a
//! shape plus buffer views into a [`Dispatch`] (`prepare_*`): the bind group, the small
//! uniform block of shapes and offsets, and the workgroup counts are all made once, so that
//! a training step only records ready dispatches into one compute pass.
//!
//! Shapes are checked when a dispatch is prepared, never inside a step.

pub mod aliasing;
pub mod context;
pub mod coop;

/// Natively, block on a future of the program's GPU work ([`Gpu::read_async`] and what is
/// built on it); a browser tab awaits the same futures instead.
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

use serde::{Deserialize, Serialize};

pub use context::{
    groups_1d, AdapterChoice, BackendChoice, Gpu, GpuArgs, LimitsChoice, MatmulChoice,
    PickedAdapter,
};

/// A window into a storage buffer, in 4-byte words. Kernels bind whole buffers and take
/// offsets through their uniform block, so any word offset works (no 256-byte alignment).
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub buffer: &'a wgpu::Buffer,
    /// First word.
    pub offset: usize,
    /// Words available from `offset` (checked against what the kernel will touch).
    pub len: usize,
}

impl<'a> View<'a> {
    /// The whole buffer.
    pub fn all(buffer: &'a wgpu::Buffer) -> View<'a> {
        View {
            buffer,
            offset: 0,
            len: (buffer.size() / 4) as usize,
        }
    }

    /// `len` words from `offset`.
    pub fn at(buffer: &'a wgpu::Buffer, offset: usize, len: usize) -> View<'a> {
        View {
            buffer,
            offset,
            len,
        }
    }

    /// A sub-window of this view.
    pub fn slice(&self, offset: usize, len: usize) -> View<'a> {
        View {
            buffer: self.buffer,
            offset: self.offset + offset,
            len,
        }
    }

    /// Fail unless the view holds at least `words` words and lies inside its buffer.
    pub fn check(&self, what: &str, words: usize) -> anyhow::Result<()> {
        let end = (self.offset + words) as u64 * 4;
        if words > self.len || end > self.buffer.size() {
            anyhow::bail!(
                "{what}: needs {words} words at offset {} but the view has {} (buffer {} words)",
                self.offset,
                self.len,
                self.buffer.size() / 4
            );
        }
        Ok(())
    }
}

/// The first word of `view` as the kernels' 32-bit offset, after checking that the view
/// holds `words` words and that its end is addressable with 32-bit offsets.
pub fn word_offset(what: &str, view: View, words: usize) -> anyhow::Result<u32> {
    view.check(what, words)?;
    match u32::try_from(view.offset + words) {
        Ok(_) => Ok(view.offset as u32),
        Err(_) => anyhow::bail!(
            "{what}: word {} is past the 32-bit offsets of the kernels",
            view.offset + words
        ),
    }
}

/// One compute dispatch, prepared once and recorded into any number of passes.
pub struct Dispatch {
    /// Kernel name, as the profiler reports it (the WGSL entry point, e.g. `matmul_nn`).
    pub label: String,
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    pub groups: (u32, u32, u32),
    /// Floating-point operations of one run (multiply-add = 2), for GFLOP/s.
    pub flops: f64,
    /// Bytes read plus written by one run (a lower bound), for GB/s.
    pub bytes: f64,
    /// Keeps the dispatch's uniform block alive with it.
    pub uniforms: Option<wgpu::Buffer>,
    /// A second launch recorded right after this one, as part of the same operation (the
    /// sum of a split-K product's slices): profiled, timed and counted with it.
    pub then: Option<Box<Dispatch>>,
}

impl Dispatch {
    /// Record into a compute pass (with the launch that follows it, if any).
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.groups.0, self.groups.1, self.groups.2);
        if let Some(next) = &self.then {
            next.record(pass);
        }
    }

    /// Kernel launches it records: 1, or 2 with a second pass.
    pub fn launches(&self) -> usize {
        1 + self.then.as_ref().map_or(0, |d| d.launches())
    }
}

impl Gpu {
    /// Record `dispatches` in order into one pass, submit, wait, and check for errors.
    /// For tests and one-off work; the training step records its own passes.
    pub fn run(&self, dispatches: &[&Dispatch]) -> anyhow::Result<()> {
        self.submit_pass(dispatches);
        self.wait()
    }

    /// [`Gpu::run`], awaiting the GPU (in a browser tab).
    pub async fn run_async(&self, dispatches: &[&Dispatch]) -> anyhow::Result<()> {
        self.submit_pass(dispatches);
        self.wait_async().await
    }

    fn submit_pass(&self, dispatches: &[&Dispatch]) {
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for d in dispatches {
                d.record(&mut pass);
            }
        }
        self.submit(enc);
    }
}

/// The per-step hyperparameter block (3 words), written by the host with
/// `queue.write_buffer` before each step and read by the SGD, dropout and step-guard kernels.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Hyper {
    /// Word 0 (f32): the learning rate of this step.
    pub learning_rate: f32,
    /// Word 1 (u32): the global step counter, which numbers the dropout streams.
    pub step: u32,
    /// Word 2 (u32): the dropout seed of the run.
    pub seed: u32,
}

impl Hyper {
    /// Words of the block.
    pub const WORDS: usize = 3;
    /// Word of [`Hyper::step`].
    pub const STEP_WORD: usize = 1;
    /// Word of [`Hyper::seed`].
    pub const SEED_WORD: usize = 2;
}

pub mod dropout;
pub mod embedding;
pub mod half;
pub mod loss_scale;
pub mod lstm_cell;
pub mod lstm_step;
pub mod matmul;
pub mod matmul_coop;
pub mod matmul_f16;
pub mod modules;
pub mod reduce;
pub mod sgd;
pub mod shader_dir;
pub mod shaders;
pub mod softmax_xent;
pub mod tune;

/// Where a kernel choice came from, as the logs and `profile` say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChoiceSource {
    /// Measured in this run.
    Tuned,
    /// Measured by an earlier run, read from the cache.
    Cached,
    /// The fixed rule for the adapter type (nothing measured).
    Default,
    /// Asked for with `--matmul` or `--recurrence`.
    Forced,
}

impl ChoiceSource {
    pub fn name(self) -> &'static str {
        match self {
            ChoiceSource::Tuned => "tuned",
            ChoiceSource::Cached => "cached",
            ChoiceSource::Default => "default",
            ChoiceSource::Forced => "forced",
        }
    }
}
