//! Choosing an adapter and opening its device: `--adapter`, `--backend` and `--limits`,
//! the adapters wgpu sees in a stable order, the browser's adapter, and the features and
//! limits a device is opened with.

use anyhow::{anyhow, bail, Context, Result};
use std::fmt;
use std::str::FromStr;

use super::Gpu;
use crate::error::usage;
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
