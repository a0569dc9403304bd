//! One wgpu instance over Vulkan, Metal, DX12 and GL; adapter choice; the device with the
//! limits and features the model needs; buffer helpers; wgpu errors turned into errors of
//! the program.

use anyhow::{anyhow, bail, Context, Result};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

use crate::error::usage;
use crate::gpu::lstm_step::Recurrence;
use crate::gpu::matmul::MatmulVariant;
use crate::gpu::matmul_f16::HalfVariant;
use crate::model::fit::Needs;

/// Which adapter to use (`--adapter`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum AdapterChoice {
    /// A discrete GPU if there is one, then an integrated one, then anything else.
    #[default]
    Auto,
    Discrete,
    Integrated,
    /// A software rasteriser such as Mesa's lavapipe (llvmpipe).
    Cpu,
    /// Position in the list `lstm-gpu adapters` prints.
    Index(usize),
    /// A case-insensitive substring of the adapter's name.
    Name(String),
}

impl FromStr for AdapterChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let t = s.trim();
        Ok(match t.to_ascii_lowercase().as_str() {
            "" => {
                return Err(
                    "--adapter needs a value: auto, discrete, integrated, cpu, an index or a name"
                        .into(),
                )
            }
            "auto" => AdapterChoice::Auto,
            "discrete" | "gpu" => AdapterChoice::Discrete,
            "integrated" => AdapterChoice::Integrated,
            "cpu" | "software" => AdapterChoice::Cpu,
            other => match other.parse::<usize>() {
                Ok(i) => AdapterChoice::Index(i),
                Err(_) => AdapterChoice::Name(t.to_string()),
            },
        })
    }
}

impl fmt::Display for AdapterChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdapterChoice::Auto => f.write_str("auto"),
            AdapterChoice::Discrete => f.write_str("discrete"),
            AdapterChoice::Integrated => f.write_str("integrated"),
            AdapterChoice::Cpu => f.write_str("cpu"),
            AdapterChoice::Index(i) => write!(f, "{i}"),
            AdapterChoice::Name(n) => write!(f, "{n:?}"),
        }
    }
}

/// Which graphics API to go through (`--backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BackendChoice {
    #[default]
    Auto,
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl BackendChoice {
    pub fn backends(self) -> wgpu::Backends {
        match self {
            BackendChoice::Auto => {
                wgpu::Backends::VULKAN
                    | wgpu::Backends::METAL
                    | wgpu::Backends::DX12
                    | wgpu::Backends::GL
            }
            BackendChoice::Vulkan => wgpu::Backends::VULKAN,
            BackendChoice::Metal => wgpu::Backends::METAL,
            BackendChoice::Dx12 => wgpu::Backends::DX12,
            BackendChoice::Gl => wgpu::Backends::GL,
        }
    }
}

/// The `--adapter` and `--backend` flags, shared by every command that runs on the GPU.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct GpuArgs {
    /// Adapter: auto, discrete, integrated, cpu, an index from `lstm-gpu adapters`, or a
    /// part of its name.
    #[arg(long, default_value = "auto")]
    pub adapter: AdapterChoice,
    /// Graphics API.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// Matmul kernel for every product: tiled, tiled-k8, tiled-128x64, register-blocked,
    /// subgroup-broadcast, skinny, strip, strip-quad, strip-split, strip-quad-split,
    /// block-128x128, block-128x64, block-64x64, block-64x64-split, panel, panel-split or
    /// coop-f32-8x8, as the
    /// adapter has them; with --precision mixed: f16-scalar, f16-panel or f16-coop (the
    /// matrix units, where offered) (default: the adapter's tuned choice per product, else
    /// one chosen for the adapter type, and skinny for products of at most 4 rows on CPU
    /// adapters; `lstm-gpu bench kernels` compares them).
    #[arg(long)]
    pub matmul: Option<MatmulChoice>,
    /// How each layer's time steps run: fused (one dispatch per time step: the recurrent
    /// product and the cell together), unfused (a matmul, then the cell) or wavefront
    /// (unfused, the layers' time steps interleaved in chunks) [default: the adapter's tuned
    /// choice, else unfused].
    #[arg(long)]
    pub recurrence: Option<Recurrence>,
    /// Limits to run within: `adapter` (what it offers) or `webgpu` (no more than WebGPU's
    /// defaults, what every browser offers: 128 MiB per storage buffer).
    #[arg(long, value_enum, default_value = "adapter")]
    pub limits: LimitsChoice,
    /// Compile the kernels without wgpu's bounds clamp on every storage access (each kernel
    /// guards its own indices, and the fit check bounds every buffer; the parity suite runs
    /// both ways). Not measured to pay yet: no difference on lavapipe, whose driver checks
    /// anyway; reports on other GPUs put the clamps at 17-40% of a matmul.
    #[arg(long)]
    pub unchecked_shaders: bool,
    /// Build the kernels from the WGSL files in DIR where they differ from the built-in ones
    /// (`lstm-gpu shaders export DIR` writes those to start from): change a kernel, then
    /// `check` it against its CPU twin, `profile` it, train with it, without a rebuild.
    #[arg(long, value_name = "DIR", value_parser = super::shader_dir::ShaderDir::parse)]
    pub shaders: Option<super::shader_dir::ShaderDir>,
}

impl GpuArgs {
    /// The adapter these flags choose, with `--limits` applied; nothing opened or logged.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn pick(&self) -> Result<PickedAdapter> {
        Ok(PickedAdapter::pick(&self.adapter, self.backend)?.with_limits(self.limits))
    }

    /// Pick, check `needs`, and open with `--matmul` applied.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(&self, needs: &Needs) -> Result<Gpu> {
        let mut gpu = self.pick()?.open(needs)?;
        self.apply(&mut gpu);
        Ok(gpu)
    }

    /// Fail (a usage error) where `--matmul` names an f16 kernel for an f32 model
    /// ([`MatmulChoice::check_precision`]).
    pub fn check_precision(&self, precision: crate::config::Precision) -> Result<()> {
        self.matmul.map_or(Ok(()), |m| m.check_precision(precision))
    }

    /// Apply the kernel choices (`--matmul`, `--recurrence`) to an opened device.
    pub fn apply(&self, gpu: &mut Gpu) {
        MatmulChoice::apply(self.matmul, gpu);
        gpu.recurrence = self.recurrence;
        if self.unchecked_shaders {
            gpu.runtime_checks = false;
        }
        if let Some(dir) = &self.shaders {
            dir.announce();
            gpu.shader_dir = Some(dir.clone());
        }
    }
}

/// What `--matmul` names: a kernel of the f32 family, or (`f16-...`) one of the f16 kernels
/// of `--precision mixed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulChoice {
    F32(MatmulVariant),
    F16(HalfVariant),
}

impl MatmulChoice {
    /// Fail (a usage error) where this names an f16 kernel and the model runs in f32. (An
    /// f32 kernel with `--precision mixed` is not an error: the f16 products run on their
    /// own kernels, but split k as the f32 family asked for would, `strip-split` giving a
    /// CPU adapter a GPU's splits.)
    pub fn check_precision(self, precision: crate::config::Precision) -> Result<()> {
        match (self, precision) {
            (MatmulChoice::F16(v), crate::config::Precision::F32) => Err(usage(format!(
                "--matmul {v} is an f16 kernel of --precision mixed; this model runs in f32"
            ))),
            _ => Ok(()),
        }
    }

    /// Set `choice` on an opened device (`None`: neither family forced).
    pub fn apply(choice: Option<MatmulChoice>, gpu: &mut Gpu) {
        (gpu.matmul, gpu.half_matmul) = match choice {
            Some(MatmulChoice::F32(v)) => (Some(v), None),
            Some(MatmulChoice::F16(v)) => (None, Some(v)),
            None => (None, None),
        };
    }
}

impl std::str::FromStr for MatmulChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.trim().to_ascii_lowercase().starts_with("f16") {
            s.parse().map(MatmulChoice::F16)
        } else {
            s.parse().map(MatmulChoice::F32)
        }
    }
}

/// What `lstm-gpu adapters` shows of one adapter.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub index: usize,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
}

impl AdapterSummary {
    /// One line: index, name, backend, type and driver.
    pub fn short(&self) -> String {
        format!(
            "[{}] {} ({:?}, {:?})",
            self.index, self.info.name, self.info.backend, self.info.device_type
        )
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn instance(backend: BackendChoice) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backend.backends();
    // Validation layers slow lavapipe down a lot; WGPU_VALIDATION=1 turns them on.
    desc.flags = wgpu::InstanceFlags::from_build_config().with_env();
    wgpu::Instance::new(desc)
}

#[cfg(not(target_arch = "wasm32"))]
fn backend_rank(b: wgpu::Backend) -> u32 {
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn type_rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Every adapter wgpu finds on the chosen backends, in a stable order (the order of
/// `lstm-gpu adapters`, which `--adapter INDEX` refers to).
#[cfg(not(target_arch = "wasm32"))]
pub fn enumerate(backend: BackendChoice) -> Vec<(AdapterSummary, wgpu::Adapter)> {
    let inst = instance(backend);
    let adapters = pollster::block_on(inst.enumerate_adapters(backend.backends()));
    let mut v: Vec<(AdapterSummary, wgpu::Adapter)> = adapters
        .into_iter()
        .map(|a| {
            let s = AdapterSummary {
                index: 0,
                info: a.get_info(),
                limits: a.limits(),
                features: a.features(),
            };
            (s, a)
        })
        .collect();
    v.sort_by(|(a, _), (b, _)| {
        (
            type_rank(a.info.device_type),
            backend_rank(a.info.backend),
            a.info.name.clone(),
        )
            .cmp(&(
                type_rank(b.info.device_type),
                backend_rank(b.info.backend),
                b.info.name.clone(),
            ))
    });
    for (i, (s, _)) in v.iter_mut().enumerate() {
        s.index = i;
    }
    v
}

/// Summaries only.
#[cfg(not(target_arch = "wasm32"))]
pub fn list_adapters(backend: BackendChoice) -> Vec<AdapterSummary> {
    enumerate(backend).into_iter().map(|(s, _)| s).collect()
}

/// How to get an adapter on a machine without one.
pub const NO_ADAPTER_HELP: &str = "install a Vulkan driver (on a machine without a GPU: Mesa's lavapipe, Debian/Ubuntu package mesa-vulkan-drivers)";

/// The adapter `choice` names, and under `auto`, where that is a CPU adapter (wgpu sees no
/// GPU), what wgpu does see, for the warning [`PickedAdapter::open`] gives.
#[cfg(not(target_arch = "wasm32"))]
fn pick(
    choice: &AdapterChoice,
    backend: BackendChoice,
) -> Result<(AdapterSummary, wgpu::Adapter, Option<String>)> {
    let all = enumerate(backend);
    if all.is_empty() {
        bail!(
            "no GPU adapter found on backend {:?}: {NO_ADAPTER_HELP}",
            backend
        );
    }
    let listing = all
        .iter()
        .map(|(s, _)| s.short())
        .collect::<Vec<_>>()
        .join(", ");
    let want = |t: wgpu::DeviceType| all.iter().position(|(s, _)| s.info.device_type == t);
    let found = match choice {
        AdapterChoice::Auto => Some(0),
        AdapterChoice::Discrete => want(wgpu::DeviceType::DiscreteGpu),
        AdapterChoice::Integrated => want(wgpu::DeviceType::IntegratedGpu),
        AdapterChoice::Cpu => want(wgpu::DeviceType::Cpu),
        AdapterChoice::Index(i) => (*i < all.len()).then_some(*i),
        AdapterChoice::Name(n) => {
            let n = n.to_lowercase();
            all.iter()
                .position(|(s, _)| s.info.name.to_lowercase().contains(&n))
        }
    };
    match found {
        Some(i) => {
            let (summary, adapter) = all.into_iter().nth(i).expect("index in range");
            let no_gpu = (matches!(choice, AdapterChoice::Auto)
                && summary.info.device_type == wgpu::DeviceType::Cpu)
                .then_some(listing);
            Ok((summary, adapter, no_gpu))
        }
        None => Err(usage(format!(
            "no {choice} adapter on backend {backend:?}; available: {listing} (choose with --adapter)"
        ))),
    }
}

/// The name of a browser's adapter where the browser does not give one (most do not): what
/// messages call it.
pub const BROWSER_ADAPTER: &str = "the browser's WebGPU adapter";

/// What a page says when its browser gives no WebGPU adapter.
pub const NO_WEBGPU: &str = "this browser gives the page no WebGPU adapter: use Chrome or Edge 113 or later, Safari 26, or Firefox 141 on Windows; elsewhere turn WebGPU on (chrome://flags/#enable-unsafe-webgpu, Firefox's dom.webgpu.enabled)";

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

/// How much of the adapter's limits a program may use (`--limits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LimitsChoice {
    /// What the adapter offers (requested only as far as the model needs it).
    #[default]
    Adapter,
    /// No more than WebGPU's defaults (`wgpu::Limits::default()`: 128 MiB per storage
    /// binding, 8 storage buffers per stage, 16 KiB of workgroup memory, 256 invocations),
    /// what every browser offers: a model that runs so runs in a browser tab.
    Webgpu,
}

/// An adapter chosen but not opened. Its limits decide whether a model fits before anything
/// is allocated ([`PickedAdapter::check`]); [`PickedAdapter::open`] then creates the device
/// with WebGPU's default limits, raised only as far as the model needs.
pub struct PickedAdapter {
    pub summary: AdapterSummary,
    adapter: wgpu::Adapter,
    /// The adapter's limits, or less where capped ([`PickedAdapter::cap_limits`]).
    offered: wgpu::Limits,
    /// `--adapter auto` found no GPU: the adapters wgpu sees, for a warning at opening.
    no_gpu: Option<String>,
}

impl PickedAdapter {
    /// Choose an adapter as `--adapter` and `--backend` say; opens nothing and logs nothing.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn pick(choice: &AdapterChoice, backend: BackendChoice) -> Result<PickedAdapter> {
        let (summary, adapter, no_gpu) = pick(choice, backend)?;
        let offered = adapter.limits();
        Ok(PickedAdapter {
            summary,
            adapter,
            offered,
            no_gpu,
        })
    }

    /// Offer no more than `cap`: the device behaves as on an adapter whose limits are the
    /// lesser of both (for example WebGPU's defaults, what a browser gives).
    pub fn cap_limits(mut self, cap: &wgpu::Limits) -> PickedAdapter {
        self.offered = self.offered.clone().or_worse_values_from(cap);
        self
    }

    /// Apply `--limits`.
    pub fn with_limits(self, choice: LimitsChoice) -> PickedAdapter {
        match choice {
            LimitsChoice::Adapter => self,
            LimitsChoice::Webgpu => self.cap_limits(&wgpu::Limits::default()),
        }
    }

    /// The limits a device opened on it can have at most.
    pub fn offered(&self) -> &wgpu::Limits {
        &self.offered
    }

    /// Fail with one clear line when the largest buffer of `needs` does not fit.
    pub fn check(&self, needs: &Needs) -> Result<()> {
        crate::model::fit::check(needs, &self.offered, &self.summary.info.name)
    }

    /// The adapter a browser tab gives (WebGPU's `requestAdapter`, high performance
    /// preferred); a browser without WebGPU is the error [`NO_WEBGPU`] says.
    pub async fn request_browser() -> Result<PickedAdapter> {
        // Without `navigator.gpu` wgpu's WebGPU instance has nothing to ask.
        #[cfg(target_arch = "wasm32")]
        if !wgpu::util::is_browser_webgpu_supported().await {
            bail!("{NO_WEBGPU}");
        }
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::BROWSER_WEBGPU;
        let inst = wgpu::Instance::new(desc);
        let adapter = inst
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| anyhow!("{NO_WEBGPU} ({e})"))?;
        let mut info = adapter.get_info();
        if info.name.is_empty() {
            // Browsers keep the GPU's name to themselves; messages name the adapter.
            info.name = BROWSER_ADAPTER.to_string();
        }
        let summary = AdapterSummary {
            index: 0,
            info,
            limits: adapter.limits(),
            features: adapter.features(),
        };
        let offered = adapter.limits();
        Ok(PickedAdapter {
            summary,
            adapter,
            offered,
            no_gpu: None,
        })
    }

    /// Open a device on which buffers as large as the adapter allows can be made (tests,
    /// benchmarks: programs that do not know their largest buffer in advance).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open_all(self) -> Result<Gpu> {
        let limit = self
            .offered
            .max_storage_buffer_binding_size
            .min(self.offered.max_buffer_size);
        self.open(&Needs::at_most("any buffer", limit as u128))
    }

    /// Check `needs`, then open the device with the features the kernels can use
    /// (subgroups and timestamp queries when present) and WebGPU's default limits (or the
    /// adapter's, where they are lower), the storage binding and buffer sizes raised to what
    /// `needs` asks.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(self, needs: &Needs) -> Result<Gpu> {
        pollster::block_on(self.open_async(needs))
    }

    /// [`PickedAdapter::open`] awaited: what a browser tab calls.
    pub async fn open_async(self, needs: &Needs) -> Result<Gpu> {
        self.check(needs)?;
        let PickedAdapter {
            summary,
            adapter,
            offered,
            no_gpu,
        } = self;
        let wanted = wgpu::Features::SUBGROUP
            | wgpu::Features::SHADER_F16
            | wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        let features = (adapter.features() & wanted) - features_withheld()?;
        let coop = features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);
        // The tiles the adapter lists: the cooperative kernels use only these (a tile it
        // does not list is undefined behaviour).
        let coop_tiles = if coop {
            adapter.cooperative_matrix_properties()
        } else {
            Vec::new()
        };
        #[cfg(target_arch = "wasm32")]
        web_subgroups::ask();
        let mut limits = wgpu::Limits::default().or_worse_values_from(&offered);
        // Fits: `check` compared it with the offered binding and buffer sizes.
        let need = u64::try_from(needs.largest_bytes()).unwrap_or(u64::MAX);
        limits.max_buffer_size = limits.max_buffer_size.max(need);
        limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.max(need);
        let desc = wgpu::DeviceDescriptor {
            label: Some("lstm-gpu"),
            required_features: features,
            required_limits: limits.clone(),
            // SAFETY: the one experimental feature requested is cooperative matrices, used
            // only by `matmul_coop` (f16, and f32 as the `coop-f32-8x8` variant), on tiles
            // the adapter lists, in uniform control flow.
            experimental_features: if coop {
                unsafe { wgpu::ExperimentalFeatures::enabled() }
            } else {
                wgpu::ExperimentalFeatures::disabled()
            },
            ..Default::default()
        };
        let (device, queue) = adapter
            .request_device(&desc)
            .await
            .with_context(|| format!("could not open adapter {}", summary.short()))?;
        #[cfg(target_arch = "wasm32")]
        let features = match web_subgroups::granted(&device) {
            true => features | wgpu::Features::SUBGROUP,
            false => features,
        };
        // `auto` prefers GPUs: a CPU adapter under it means that wgpu sees none, which a
        // newcomer with a GPU should hear at once (its driver is missing), not after an hour;
        // said once the checks that need no device have passed, so their errors stand alone.
        if let Some(seen) = no_gpu {
            log::warn!(
                "no GPU adapter found, only {seen}: {} runs on the CPU, tens of times slower than a GPU (a GPU needs its Vulkan, Metal or DX12 driver; `lstm-gpu adapters` lists what wgpu sees)",
                summary.info.name
            );
        }
        let mut gpu = Gpu::from_device(summary, device, queue, limits, features)?;
        gpu.coop_tiles = coop_tiles;
        Ok(gpu)
    }
}

/// WebGPU's `subgroups` feature in a browser. wgpu 30's WebGPU backend maps neither the
/// adapter's `subgroups` to [`wgpu::Features::SUBGROUP`] nor the reverse when it requests a
/// device, so the shaders that use subgroup or quad operations (the strip-quad matmul,
/// Chromium's fastest) would never run there. [`ask`] wraps `GPUAdapter.requestDevice` so
/// that a device is asked for `subgroups` whenever its adapter has it; [`granted`] reads the
/// device's own feature set. WGSL goes to the browser as written, so nothing in wgpu needs
/// to know. Remove when wgpu maps the feature.
#[cfg(target_arch = "wasm32")]
mod web_subgroups {
    /// Wrap `GPUAdapter.prototype.requestDevice` (once per page).
    pub fn ask() {
        let wrap = js_sys::Function::new_no_args(
            "const proto = globalThis.GPUAdapter && globalThis.GPUAdapter.prototype;
             if (!proto || proto.__lstmGpuAsksSubgroups) return;
             const request = proto.requestDevice;
             proto.requestDevice = function (desc) {
                 const d = Object.assign({}, desc || {});
                 const wanted = Array.from(d.requiredFeatures || []);
                 if (this.features.has('subgroups') && !wanted.includes('subgroups')) {
                     wanted.push('subgroups');
                 }
                 d.requiredFeatures = wanted;
                 return request.call(this, d);
             };
             proto.__lstmGpuAsksSubgroups = true;",
        );
        if let Err(e) = wrap.call0(&js_sys::wasm_bindgen::JsValue::NULL) {
            log::warn!("could not ask the browser for subgroups: {e:?}");
        }
    }

    /// Whether the browser gave `device` the `subgroups` feature.
    pub fn granted(device: &wgpu::Device) -> bool {
        let Some(d) = device.as_webgpu() else {
            return false;
        };
        let has = || -> Option<bool> {
            let features = js_sys::Reflect::get(d, &"features".into()).ok()?;
            let has: js_sys::Function = js_sys::Reflect::get(&features, &"has".into()).ok()?.into();
            has.call1(&features, &"subgroups".into()).ok()?.as_bool()
        };
        has().unwrap_or(false)
    }
}

/// The test hook `LSTM_GPU_WITHOUT` (comma-separated `subgroups`, `f16`, `coop`, `timestamps`): optional
/// features left unrequested even where the adapter has them, so that the fallbacks of
/// adapters without them (wgpu's GL backend, browsers) run on any machine.
pub const WITHOUT_ENV: &str = "LSTM_GPU_WITHOUT";

fn features_withheld() -> Result<wgpu::Features> {
    let mut f = wgpu::Features::empty();
    let value = std::env::var(WITHOUT_ENV).unwrap_or_default();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        f |= match item {
            "subgroups" => wgpu::Features::SUBGROUP,
            "f16" => wgpu::Features::SHADER_F16,
            "coop" => wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX,
            "timestamps" => {
                wgpu::Features::TIMESTAMP_QUERY
                    | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
                    | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            }
            other => {
                return Err(usage(format!(
                    "{WITHOUT_ENV}: unknown feature `{other}` (subgroups, f16, coop, timestamps)"
                )))
            }
        };
    }
    Ok(f)
}

/// The test hook `LSTM_GPU_REFUSE` (comma-separated kernel names as `--matmul`,
/// `bench kernels` and `--recurrence` spell them: `block-128x128`, `panel`,
/// `strip-quad-split`, `f16-coop`, `fused`, ...): those optional kernels' pipelines are made with an override constant their shader
/// does not declare, so that wgpu refuses them as a driver refuses a kernel it cannot
/// build, and what the program does then runs on any machine.
pub const REFUSE_ENV: &str = "LSTM_GPU_REFUSE";

fn refused(what: &str) -> bool {
    std::env::var(REFUSE_ENV).is_ok_and(|v| v.split(',').any(|s| s.trim() == what))
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
    /// Commands that build a model use [`PickedAdapter::open`] with its [`Needs`] instead.
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

    /// A storage buffer of `len` f32/u32 words, also usable as copy source and destination.
    pub fn storage(&self, label: &str, words: usize) -> wgpu::Buffer {
        self.count_buffer(words.max(1) * 4);
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (words.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A storage buffer initialised from `data` (never empty: zero-length gets one word).
    pub fn storage_from<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> wgpu::Buffer {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let padded;
        let contents = if bytes.is_empty() {
            padded = [0u8; 4];
            &padded[..]
        } else {
            bytes
        };
        self.count_buffer(contents.len());
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// A uniform buffer initialised from `data`, also a copy destination for updates.
    pub fn uniform_from<T: bytemuck::Pod>(&self, label: &str, data: &T) -> wgpu::Buffer {
        self.count_buffer(std::mem::size_of::<T>());
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::bytes_of(data),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// Write host data into a buffer at a word offset.
    pub fn write<T: bytemuck::Pod>(&self, buffer: &wgpu::Buffer, word_offset: usize, data: &[T]) {
        if !data.is_empty() {
            self.queue
                .write_buffer(buffer, (word_offset * 4) as u64, bytemuck::cast_slice(data));
        }
    }

    /// Read `words` 4-byte words of a buffer back to the host (waits for the queue).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        word_offset: usize,
        words: usize,
    ) -> Result<Vec<T>> {
        pollster::block_on(self.read_async(buffer, word_offset, words))
    }

    /// A set of `count` timestamp queries and the buffer they resolve into (8 bytes each),
    /// for [`Gpu::read_ticks_async`].
    pub fn timestamp_queries(&self, label: &str, count: u32) -> (wgpu::QuerySet, wgpu::Buffer) {
        let set = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some(label),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let resolved = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: count as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        (set, resolved)
    }

    /// [`Gpu::read_ticks_async`], blocking (natively).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_ticks(&self, resolved: &wgpu::Buffer, count: usize) -> Result<Vec<u64>> {
        pollster::block_on(self.read_ticks_async(resolved, count))
    }

    /// The first `count` timestamps resolved into `resolved` (by
    /// `CommandEncoder::resolve_query_set`), in ticks of `Queue::get_timestamp_period` ns.
    pub async fn read_ticks_async(
        &self,
        resolved: &wgpu::Buffer,
        count: usize,
    ) -> Result<Vec<u64>> {
        let words: Vec<u32> = self.read_async(resolved, 0, 2 * count).await?;
        Ok(words
            .chunks_exact(2)
            .map(|w| w[0] as u64 | (w[1] as u64) << 32)
            .collect())
    }

    /// Read `words` 4-byte words of a buffer back to the host once the queue has run: the
    /// one place the program waits for the GPU. Natively the wait is a `poll` and
    /// [`Gpu::read`] blocks on this future; in a browser tab it is awaited (the page's event
    /// loop maps the buffer), and the errors wgpu reported meanwhile are checked after.
    pub async fn read_async<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        word_offset: usize,
        words: usize,
    ) -> Result<Vec<T>> {
        assert_eq!(std::mem::size_of::<T>(), 4);
        if words == 0 {
            return Ok(Vec::new());
        }
        let size = (words * 4) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buffer, (word_offset * 4) as u64, &staging, 0, size);
        self.submit(enc);
        self.readbacks.fetch_add(1, Ordering::Relaxed);
        let slice = staging.slice(..);
        let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        // Natively nothing maps until the device is polled; a browser maps by itself.
        #[cfg(not(target_arch = "wasm32"))]
        self.wait()?;
        let mapped = rx
            .receive()
            .await
            .ok_or_else(|| anyhow!("GPU readback channel closed"));
        self.check()?;
        mapped?.map_err(|e| anyhow!("could not map a GPU buffer for reading: {e}"))?;
        let out = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| anyhow!("could not read a mapped GPU buffer: {e}"))?;
            bytemuck::pod_collect_to_vec::<u8, T>(&view)
        };
        staging.unmap();
        Ok(out)
    }

    /// Compile a WGSL module; compile errors become errors of the program.
    pub fn shader(&self, label: &str, source: &str) -> Result<wgpu::ShaderModule> {
        let source = self.resolve(source);
        let source: &str = &source;
        let scope = ErrorScope::push(&self.device);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(label),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        };
        let module = if self.runtime_checks || cfg!(target_arch = "wasm32") {
            self.device.create_shader_module(desc)
        } else {
            // SAFETY: every kernel guards its own indices against the sizes in its uniforms,
            // the launchers check each view against its buffer before binding it
            // (`View::check`) and the fit check bounds every buffer; the parity suite runs
            // with the checks off too (LSTM_GPU_SHADER_CHECKS=off in CI).
            unsafe {
                self.device
                    .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        };
        if let Some(e) = scope.pop() {
            // A module holding files of `--shaders DIR`: where they are in it.
            let place = self
                .shader_dir
                .as_ref()
                .map(|d| d.place(source, shader_error_place(&e).map(|p| p.0)))
                .unwrap_or_default();
            bail!(
                "shader {label} does not compile on {}: {}{place}",
                self.info.name,
                one_line_chain(&e)
            );
        }
        self.bindings.add_module(&module, source);
        Ok(module)
    }

    /// `source` (whole files of `shaders/`, as built in) with the files of `--shaders DIR`
    /// in place of the built-in ones; `source` itself without that flag.
    pub fn resolve<'a>(&self, source: &'a str) -> std::borrow::Cow<'a, str> {
        match &self.shader_dir {
            Some(dir) => dir.apply(source),
            None => std::borrow::Cow::Borrowed(source),
        }
    }

    /// Compile every module that holds a file `--shaders` changes (those this adapter can
    /// build), awaiting each one's compilation messages: the first error, with its place in
    /// the user's file. Natively [`Gpu::shader`] reports a module's error at once; a browser
    /// reports it only at the next readback, without a place, so the page runs this before
    /// it builds anything from the user's files. The scratch modules' errors are caught
    /// here, never reaching the device's error handler.
    pub async fn check_changed_shaders(&self) -> Result<()> {
        let Some(dir) = &self.shader_dir else {
            return Ok(());
        };
        let mut seen = std::collections::HashSet::new();
        for m in super::modules::all() {
            let can = (!m.f16 || self.features.contains(wgpu::Features::SHADER_F16))
                && (!m.subgroups || self.has_subgroups())
                && m.cooperative.is_none();
            let std::borrow::Cow::Owned(source) = dir.apply(&m.source) else {
                continue;
            };
            if !can || !seen.insert(source.clone()) {
                continue;
            }
            let guard = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
            let module = self
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(&m.label),
                    source: wgpu::ShaderSource::Wgsl(source.as_str().into()),
                });
            let info = module.get_compilation_info().await;
            let scope = guard.pop().await;
            let error = info
                .messages
                .iter()
                .find(|msg| msg.message_type == wgpu::CompilationMessageType::Error);
            let (message, line) = match (error, scope) {
                (Some(msg), _) => (
                    msg.message
                        .lines()
                        .map(str::trim)
                        .find(|l| !l.is_empty())
                        .unwrap_or("")
                        .to_string(),
                    msg.location.map(|l| l.line_number as usize),
                ),
                (None, Some(e)) => (one_line_chain(&e), shader_error_place(&e).map(|p| p.0)),
                (None, None) => continue,
            };
            let place = dir.place(&source, line);
            bail!(
                "shader {} does not compile on {}: {message}{place}",
                m.label,
                self.info.name
            );
        }
        Ok(())
    }

    /// A kernel the program can do without (an optional variant, named `what` as the
    /// flags name it): its pipeline, or `None` where the adapter refuses to build it (a
    /// driver's compiler that cannot take one kernel must not keep the others from
    /// running), with one warning that gives the reason. [`REFUSE_ENV`] refuses it on
    /// purpose, through wgpu's own error path.
    pub fn optional_pipeline(
        &self,
        what: &str,
        label: &str,
        module: &wgpu::ShaderModule,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Option<wgpu::ComputePipeline> {
        let mut constants = constants.to_vec();
        if refused(what) {
            // An override the shader does not declare: wgpu refuses the pipeline.
            constants.push(("lstm_gpu_refused", 0.0));
        }
        let built = self.pipeline_with_constants(label, module, entry, &constants);
        self.optional(what, built)
    }

    /// `built`, or `None` with a warning that kernel `what` is left out (see
    /// [`Gpu::optional_pipeline`]).
    pub fn optional<T>(&self, what: &str, built: Result<T>) -> Option<T> {
        match built {
            Ok(t) => Some(t),
            Err(e) => {
                // Once per kernel and adapter: a process builds its kernels more than once
                // (tuning builds every recurrence's).
                static WARNED: std::sync::Mutex<Vec<(String, String)>> =
                    std::sync::Mutex::new(Vec::new());
                let key = (self.info.name.clone(), what.to_string());
                let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
                if !warned.contains(&key) {
                    warned.push(key);
                    log::warn!("kernel {what} left out: {}", crate::error::one_line(&e));
                }
                None
            }
        }
    }

    /// A compute pipeline with a layout derived from the shader.
    pub fn pipeline(
        &self,
        label: &str,
        module: &wgpu::ShaderModule,
        entry: &str,
    ) -> Result<wgpu::ComputePipeline> {
        self.pipeline_with_constants(label, module, entry, &[])
    }

    /// A compute pipeline with the module's overridable constants set to `constants`.
    pub fn pipeline_with_constants(
        &self,
        label: &str,
        module: &wgpu::ShaderModule,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Result<wgpu::ComputePipeline> {
        let scope = ErrorScope::push(&self.device);
        let p = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: None,
                module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    ..Default::default()
                },
                cache: None,
            });
        if let Some(e) = scope.pop() {
            bail!(
                "pipeline {label} cannot be created on {}: {}",
                self.info.name,
                one_line_chain(&e)
            );
        }
        self.bindings.add_pipeline(&p, module, entry);
        Ok(p)
    }

    /// A bind group of whole buffers at bindings 0, 1, 2, ... of group 0.
    ///
    /// Fails where a browser's WebGPU would refuse it: one buffer at two bindings, one of
    /// them writable storage (see [`super::aliasing`]). Native wgpu does not check that, so
    /// this is what lets native tests catch a kernel that would fail only in a tab; a kernel
    /// that reads and writes two windows of one buffer takes it through one binding and two
    /// offsets.
    pub fn bind(
        &self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
    ) -> Result<wgpu::BindGroup> {
        let entries: Vec<(u32, &wgpu::Buffer)> = (0u32..).zip(buffers.iter().copied()).collect();
        self.bind_at(label, pipeline, &entries)
    }

    /// A bind group of whole buffers at the given bindings of group 0, for a kernel whose
    /// bindings are not numbered 0, 1, 2, ..., checked as [`Gpu::bind`] checks.
    pub fn bind_at(
        &self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        entries: &[(u32, &wgpu::Buffer)],
    ) -> Result<wgpu::BindGroup> {
        self.bindings.check(label, pipeline, entries)?;
        let entries: Vec<wgpu::BindGroupEntry> = entries
            .iter()
            .map(|&(binding, b)| wgpu::BindGroupEntry {
                binding,
                resource: b.as_entire_binding(),
            })
            .collect();
        Ok(self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        }))
    }
}

/// A validation error scope around the creation of one shader module or pipeline, so that a
/// failure names it. Natively its result is waited for; a browser cannot wait, so there the
/// error reaches the device's uncaptured-error handler and the next [`Gpu::check`] (every
/// readback makes one) reports it.
struct ErrorScope {
    #[cfg(not(target_arch = "wasm32"))]
    guard: wgpu::ErrorScopeGuard,
}

impl ErrorScope {
    #[cfg(not(target_arch = "wasm32"))]
    fn push(device: &wgpu::Device) -> ErrorScope {
        ErrorScope {
            guard: device.push_error_scope(wgpu::ErrorFilter::Validation),
        }
    }

    #[cfg(target_arch = "wasm32")]
    fn push(_device: &wgpu::Device) -> ErrorScope {
        ErrorScope {}
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn pop(self) -> Option<wgpu::Error> {
        pollster::block_on(self.guard.pop())
    }

    #[cfg(target_arch = "wasm32")]
    fn pop(self) -> Option<wgpu::Error> {
        None
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

/// A wgpu error on one line: the first line that says something of each error of its
/// source chain, joined with ": " ("Validation Error" alone names nothing), and where a
/// shader error points into its module, the place ("at line 20, column 3 of the module").
fn one_line_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut at = Some(e);
    while let Some(err) = at {
        let text = err.to_string();
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
            .to_string();
        if !line.is_empty() && !parts.contains(&line) {
            parts.push(line);
        }
        at = err.source();
    }
    let mut out = parts.join(": ");
    if let Some((line, column)) = shader_error_place(e) {
        out.push_str(&format!(" (at line {line}, column {column} of the module)"));
    }
    out
}

/// Where a shader error of naga points in the module it was given: the line and column of
/// its first label (`┌─ wgsl:20:3`), from anywhere in the error's source chain.
fn shader_error_place(e: &(dyn std::error::Error + 'static)) -> Option<(usize, usize)> {
    let mut at = Some(e);
    while let Some(err) = at {
        let text = err.to_string();
        if let Some(i) = text.find("wgsl:") {
            let mut numbers = text[i + 5..]
                .split(|c: char| !c.is_ascii_digit())
                .map(|s| s.parse::<usize>());
            if let (Some(Ok(line)), Some(Ok(column))) = (numbers.next(), numbers.next()) {
                return Some((line, column));
            }
        }
        at = err.source();
    }
    None
}
