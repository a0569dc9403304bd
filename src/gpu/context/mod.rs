//! One wgpu instance over Vulkan, Metal, DX12 and GL; adapter choice; the device with the
//! limits and features the model needs; buffer helpers; wgpu errors turned into errors of
//! the program.
//!
//! The device is [`Gpu`] (here: opening it on a picked adapter, submissions, waits and
//! wgpu's errors); `adapter` chooses and opens adapters, `flags` holds the command-line
//! flags every GPU command shares, `buffers` and `pipelines` the rest of `Gpu`'s methods.

mod adapter;
mod buffers;
mod flags;
mod pipelines;

#[cfg(not(target_arch = "wasm32"))]
pub use adapter::{enumerate, list_adapters};
pub use adapter::{
    AdapterChoice, AdapterSummary, BackendChoice, LimitsChoice, PickedAdapter, BROWSER_ADAPTER,
    NO_ADAPTER_HELP, NO_WEBGPU, WITHOUT_ENV,
};
pub use flags::{GpuArgs, MatmulChoice};
pub use pipelines::REFUSE_ENV;

use anyhow::{anyhow, bail, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::gpu::lstm_step::Recurrence;
use crate::gpu::matmul::MatmulVariant;
use crate::gpu::matmul_f16::HalfVariant;
use pipelines::one_line_chain;

/// Errors wgpu reported outside of an error scope, and whether the device was lost.
#[derive(Default)]
struct Faults {
    errors: Vec<String>,
    lost: Option<String>,
}

/// The device and queue with what the program knows about them.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    /// The matmul kernel asked for (`--matmul`); `None`: the rule of [`Matmul::new`].
    ///
    /// [`Matmul::new`]: crate::gpu::matmul::Matmul::new
    pub matmul: Option<MatmulVariant>,
    /// The f16 matmul asked for (`--matmul f16-...`, `--precision mixed`); `None`: tuned or
    /// the adapter's default ([`crate::gpu::matmul_f16::HalfKernels::choice`]).
    pub half_matmul: Option<HalfVariant>,
    /// The recurrence asked for (`--recurrence`); `None`: tuned or the adapter's default.
    pub recurrence: Option<Recurrence>,
    /// Kernel choices measured on this adapter (`crate::gpu::tune::choose`), if any.
    pub tuning: Option<crate::gpu::tune::Tuned>,
    /// Whether wgpu clamps every storage access of the kernels compiled from now on
    /// (`--unchecked-shaders` or `LSTM_GPU_SHADER_CHECKS=off` turn it off natively; a
    /// browser always checks).
    pub runtime_checks: bool,
    /// `--shaders DIR`: the kernels built from the files there that differ from the built-in
    /// ones ([`Gpu::shader`] applies them to every module made from now on).
    pub shader_dir: Option<super::shader_dir::ShaderDir>,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The cooperative-matrix configurations the adapter lists (empty without the feature).
    pub coop_tiles: Vec<wgpu::CooperativeMatrixProperties>,
    faults: Arc<Mutex<Faults>>,
    /// What wgpu calls with an error outside an error scope.
    error_sink: Arc<dyn Fn(wgpu::Error) + Send + Sync>,
    submits: AtomicU64,
    readbacks: AtomicU64,
    /// Bytes of the buffers made through [`Gpu::storage`], [`Gpu::storage_from`] and
    /// [`Gpu::uniform_from`].
    buffer_bytes: AtomicU64,
    /// What each pipeline's bindings write, for the aliasing check of [`Gpu::bind`].
    bindings: super::aliasing::Bindings,
}

/// What runs differently without the optional features `features` lacks, one line or none.
fn fallback_note(features: wgpu::Features) -> Option<String> {
    let mut missing = Vec::new();
    if !features.contains(wgpu::Features::SUBGROUP) {
        missing.push("subgroups (the subgroup-broadcast matmul is not available; the others run)");
    }
    if !features.contains(wgpu::Features::TIMESTAMP_QUERY) {
        missing.push("timestamp queries (`profile` times each kernel by the wall clock)");
    } else if !features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES) {
        missing.push("timestamps inside passes (`profile` times one pass per kernel)");
    }
    (!missing.is_empty()).then(|| format!("without {}", missing.join(", ")))
}

impl Gpu {
    /// Open the chosen adapter with buffers as large as it allows ([`PickedAdapter::open_all`]).
    /// Commands that build a model use [`PickedAdapter::open`] with its [`Needs`](crate::model::fit::Needs) instead.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(choice: &AdapterChoice, backend: BackendChoice) -> Result<Gpu> {
        PickedAdapter::pick(choice, backend)?.open_all()
    }

    fn from_device(
        summary: AdapterSummary,
        device: wgpu::Device,
        queue: wgpu::Queue,
        limits: wgpu::Limits,
        features: wgpu::Features,
    ) -> Result<Gpu> {
        let faults = Arc::new(Mutex::new(Faults::default()));
        let f = faults.clone();
        let error_sink: Arc<dyn Fn(wgpu::Error) + Send + Sync> = Arc::new(move |e: wgpu::Error| {
            let msg = match &e {
                    wgpu::Error::OutOfMemory { .. } => "the GPU ran out of memory: use a smaller model or batch (--hidden, --vocab-size, --batch-size, --num-steps) or an adapter with more memory".to_string(),
                    other => one_line_chain(other),
                };
            log::debug!("wgpu error: {e}");
            if let Ok(mut f) = f.lock() {
                f.errors.push(msg);
            }
        });
        {
            let sink = error_sink.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| sink(e)));
            let f = faults.clone();
            device.set_device_lost_callback(move |reason, msg| {
                // The program destroys its device only to test this path (`train`'s fault
                // hook): that is a loss like any other.
                let msg = match (reason, msg.trim()) {
                    (wgpu::DeviceLostReason::Destroyed, "") => "the device was destroyed".into(),
                    (_, "") => "no reason given".into(),
                    (_, m) => m.lines().next().unwrap_or(m).to_string(),
                };
                if let Ok(mut f) = f.lock() {
                    f.lost.get_or_insert(msg);
                }
            });
        }
        log::info!(
            "adapter: {} ({:?}, {:?}, driver {} {})",
            summary.info.name,
            summary.info.backend,
            summary.info.device_type,
            summary.info.driver,
            summary.info.driver_info
        );
        if let Some(note) = fallback_note(features) {
            log::info!(
                "{} on {:?}: {note}",
                summary.info.name,
                summary.info.backend
            );
        }
        Ok(Gpu {
            device,
            queue,
            matmul: None,
            half_matmul: None,
            recurrence: None,
            tuning: None,
            // The tests' switch for running every suite without the checks.
            runtime_checks: std::env::var("LSTM_GPU_SHADER_CHECKS").map_or(true, |v| v != "off"),
            shader_dir: None,
            info: summary.info,
            limits,
            features,
            coop_tiles: Vec::new(),
            faults,
            error_sink,
            submits: AtomicU64::new(0),
            readbacks: AtomicU64::new(0),
            buffer_bytes: AtomicU64::new(0),
            bindings: Default::default(),
        })
    }

    /// Finish and submit an encoder (counted: see [`Gpu::counters`]).
    pub fn submit(&self, enc: wgpu::CommandEncoder) -> wgpu::SubmissionIndex {
        self.submits.fetch_add(1, Ordering::Relaxed);
        self.queue.submit([enc.finish()])
    }

    /// Bytes of every buffer made through [`Gpu::storage`], [`Gpu::storage_from`] and
    /// [`Gpu::uniform_from`] since the device was opened: the program makes its buffers
    /// once per run and keeps them to its end, so this is the device memory the run holds
    /// (readback staging buffers, made and dropped per read, are not counted).
    pub fn buffer_bytes(&self) -> u64 {
        self.buffer_bytes.load(Ordering::Relaxed)
    }

    fn count_buffer(&self, bytes: usize) {
        self.buffer_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Queue submissions and host readbacks since the device was opened.
    pub fn counters(&self) -> (u64, u64) {
        (
            self.submits.load(Ordering::Relaxed),
            self.readbacks.load(Ordering::Relaxed),
        )
    }

    /// Whether subgroup operations can be used in shaders.
    pub fn has_subgroups(&self) -> bool {
        self.features.contains(wgpu::Features::SUBGROUP)
    }

    /// Whether timestamps can be written between dispatches inside a compute pass.
    pub fn has_timestamps_in_passes(&self) -> bool {
        self.features.contains(
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES,
        )
    }

    /// The out-of-memory fault of `train`'s test-only hook (`LSTM_GPU_INJECT_FAULT`): wgpu's
    /// own `OutOfMemory` error, delivered where wgpu delivers one when the driver refuses an
    /// allocation. A real one cannot be provoked portably: drivers overcommit memory, and
    /// wgpu caps a buffer at 2 GiB on Mesa, well within what a machine has.
    pub fn inject_out_of_memory(&self) {
        (self.error_sink)(wgpu::Error::OutOfMemory {
            source: "out-of-memory fault injected for a test".into(),
        });
    }

    /// Fail with the first error wgpu reported since the last check (validation,
    /// out of memory) or with the device loss.
    pub fn check(&self) -> Result<()> {
        let mut f = self
            .faults
            .lock()
            .map_err(|_| anyhow!("the GPU error handler failed"))?;
        if let Some(lost) = &f.lost {
            bail!("the GPU device was lost ({lost}): the driver reset, crashed or was removed; nothing more can run on it");
        }
        if !f.errors.is_empty() {
            let first = f.errors.remove(0);
            f.errors.clear();
            bail!("GPU error: {first}");
        }
        Ok(())
    }

    /// Wait until the queue is idle, then [`Gpu::check`].
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| anyhow!("waiting for the GPU failed: {e}"))?;
        self.check()
    }

    /// [`Gpu::wait`], awaited: in a browser tab, until the queue has run the work submitted
    /// so far (the tab's event loop goes on meanwhile); natively the same blocking wait.
    pub async fn wait_async(&self) -> Result<()> {
        #[cfg(target_arch = "wasm32")]
        {
            let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
            self.queue.on_submitted_work_done(move || {
                let _ = tx.send(());
            });
            rx.receive()
                .await
                .ok_or_else(|| anyhow!("the GPU's work-done channel closed"))?;
            self.check()
        }
        #[cfg(not(target_arch = "wasm32"))]
        self.wait()
    }

    /// Fail early, before allocating, when a buffer of `bytes` cannot exist on this adapter.
    pub fn check_buffer_fits(&self, what: &str, bytes: u64) -> Result<()> {
        let max_binding = self.limits.max_storage_buffer_binding_size;
        let max_buffer = self.limits.max_buffer_size;
        let limit = max_binding.min(max_buffer);
        if bytes > limit {
            bail!(
                "{what} needs a {} MiB buffer but adapter {} allows at most {} MiB per storage buffer; use a smaller model or batch",
                bytes.div_ceil(1 << 20),
                self.info.name,
                limit >> 20
            );
        }
        Ok(())
    }
}

/// Workgroups needed to cover `n` items with `per_group` items each, split over x and y
/// when x alone would pass the per-dimension limit (65535). Returns (x, y).
pub fn groups_1d(n: usize, per_group: usize) -> (u32, u32) {
    let g = n.div_ceil(per_group).max(1);
    if g <= 65_535 {
        (g as u32, 1)
    } else {
        let y = g.div_ceil(65_535);
        (g.div_ceil(y) as u32, y as u32)
    }
}
