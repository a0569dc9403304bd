//! The flags every command that runs on the GPU shares (`--adapter`, `--backend`,
//! `--matmul`, `--recurrence`, `--limits`, `--unchecked-shaders`, `--shaders`) and what
//! they set on an opened device.

use anyhow::Result;

#[cfg(not(target_arch = "wasm32"))]
use super::PickedAdapter;
use super::{AdapterChoice, BackendChoice, Gpu, LimitsChoice};
use crate::error::usage;
use crate::gpu::lstm_step::Recurrence;
use crate::gpu::matmul::MatmulVariant;
use crate::gpu::matmul_f16::HalfVariant;
#[cfg(not(target_arch = "wasm32"))]
use crate::model::fit::Needs;

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
    #[arg(long, value_name = "DIR", value_parser = crate::gpu::shader_dir::ShaderDir::parse)]
    pub shaders: Option<crate::gpu::shader_dir::ShaderDir>,
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
