//! The f16 building blocks of `--precision mixed` (issue 25), on adapters with
//! `Features::SHADER_F16`: the launchers of `shaders/cast_f16.wgsl` (f32 -> f16 copies) and
//! `shaders/matmul_f16.wgsl` (the scalar f16-operand matmul with f32 products and sums, the
//! fallback with a matrix core's rounding points). CPU twins: [`crate::reference::round_f16`]
//! and [`crate::reference::matmul`] on rounded operands.
//!
//! f16 buffers are ordinary storage buffers; a [`HalfView`] counts f16 elements (two per
//! 32-bit word).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use anyhow::{bail, Result};

pub use super::half::HalfView;
use super::half::{half_matmul_dispatch, half_plan, HalfKernel, HalfOperands, Split};
use super::matmul::{shape_key, Matmul, SplitPartials, GROUPS};
use super::{groups_1d, ChoiceSource, Dispatch, Gpu, View};
use crate::reference::MatmulShape;
/// Rows and columns of C per workgroup of `matmul_f16`.
const BLOCK: usize = 32;
/// Rows and columns of C per workgroup of `matmul_panel_f16` (`PANEL_ROWS`, `PANEL_COLS` in
/// `shaders/matmul_panel.wgsl`).
const PANEL: (usize, usize) = (32, 256);

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CastParams {
    n: u32,
    src_off: u32,
    dst_off: u32,
    groups_x: u32,
}

/// The f16-operand matmul kernels a mixed step's product may run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HalfVariant {
    /// `matmul_f16`: 32x32 blocks of C, 4x4 outputs an invocation (every adapter with
    /// `SHADER_F16`).
    Scalar,
    /// `matmul_panel_f16`: the panel kernel (`shaders/matmul_panel.wgsl`) on f16 operands,
    /// for products of few rows (the recurrent products of every time step): B read once
    /// for up to 32 rows.
    Panel,
    /// `matmul_coop`: the matrix units, where WGSL reaches them.
    Coop,
}

impl HalfVariant {
    pub const ALL: [HalfVariant; 3] = [HalfVariant::Scalar, HalfVariant::Panel, HalfVariant::Coop];

    /// The name the tuning cache, `bench kernels` and the logs use.
    pub fn name(self) -> &'static str {
        match self {
            HalfVariant::Scalar => "f16-scalar",
            HalfVariant::Panel => "f16-panel",
            HalfVariant::Coop => "f16-coop",
        }
    }

    /// Whether a launch can serve several products (`shaders/matmul_launch_group.wgsl`):
    /// the kernels without barriers.
    pub fn has_group_form(self) -> bool {
        self != HalfVariant::Coop
    }

    /// Whether it is worth timing on a product of `m` rows: the panel only where a few of
    /// its 32-row panels cover the rows (as the f32 panel, [`super::matmul::MatmulVariant::candidate_for_rows`]).
    pub fn candidate_for_rows(self, m: usize) -> bool {
        self != HalfVariant::Panel || m <= 2 * PANEL.0
    }
}

impl std::fmt::Display for HalfVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for HalfVariant {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<HalfVariant, String> {
        let t = s.trim().to_ascii_lowercase().replace('_', "-");
        HalfVariant::ALL
            .into_iter()
            .find(|v| v.name() == t)
            .ok_or_else(|| {
                format!(
                    "unknown f16 matmul {s:?}; choose one of {}",
                    HalfVariant::ALL.map(|v| v.name()).join(", ")
                )
            })
    }
}

/// Fail where `variant` is the matrix units' kernel and the adapter has none
/// (`has_coop`); every other f16 kernel runs wherever `SHADER_F16` does.
fn check_available(has_coop: bool, variant: HalfVariant) -> Result<()> {
    if variant == HalfVariant::Coop && !has_coop {
        bail!(
            "the f16 matmul {variant} needs cooperative matrices this adapter does not offer (it has f16-scalar, f16-panel)"
        );
    }
    Ok(())
}

/// Fail, before anything is built, where the f16 kernel asked for (`--matmul f16-...`) cannot
/// run on `gpu`.
pub fn check_asked(gpu: &Gpu) -> Result<()> {
    match gpu.half_matmul {
        Some(v) => check_available(super::coop::coop_tile(gpu).is_some(), v),
        None => Ok(()),
    }
}

/// The tuning cache's key of a mixed step's product: `f16 ` and the product's
/// [`shape_key`] (the f32 family's keys have no prefix).
pub fn half_key(shape: MatmulShape) -> String {
    format!("f16 {}", shape_key(shape))
}

/// The compiled f16 kernels of a device.
pub struct HalfKernels {
    cast: wgpu::ComputePipeline,
    cast_scaled: wgpu::ComputePipeline,
    matmul: wgpu::ComputePipeline,
    /// `matmul_panel_f16`, compiled on first use (f32 runs never need it); `None` where
    /// the adapter refused to build it.
    panel: OnceLock<Option<wgpu::ComputePipeline>>,
    /// The scalar and panel kernels serving several products a launch, compiled on first
    /// use ([`HalfKernels::product_group_deferring_sum`]).
    grouped: [OnceLock<Option<wgpu::ComputePipeline>>; 2],
    /// The cooperative-matrix matmul where the adapter has matrix units WGSL can reach;
    /// the default choice for every product there.
    pub coop: Option<super::matmul_coop::CoopMatmul>,
    /// Per product ([`half_key`]): the kernel `tune --precision mixed` measured fastest.
    tuned: HashMap<String, HalfVariant>,
    tuned_source: ChoiceSource,
    /// The kernel every product runs, where one was asked for ([`HalfKernels::force`]).
    forced: Option<HalfVariant>,
    /// Every product prepared so far, in order (for tuning and the logs).
    seen: Mutex<Vec<MatmulShape>>,
}

impl HalfKernels {
    /// Compile them, or `None` where the device lacks `SHADER_F16`. The choices tuned for
    /// this adapter (`gpu.tuning`) and a kernel asked for (`gpu.half_matmul`) apply.
    pub fn new(gpu: &Gpu) -> Result<Option<HalfKernels>> {
        if !gpu.features.contains(wgpu::Features::SHADER_F16) {
            return Ok(None);
        }
        let cast = gpu.shader("cast_f16", super::shaders::CAST_F16)?;
        let matmul = gpu.shader("matmul_f16", super::shaders::MATMUL_F16)?;
        let mut hk = HalfKernels {
            cast: gpu.pipeline("cast_f32_to_f16", &cast, "cast_f32_to_f16")?,
            cast_scaled: gpu.pipeline("cast_f32_to_f16_scaled", &cast, "cast_f32_to_f16_scaled")?,
            matmul: gpu.pipeline("matmul_f16", &matmul, "matmul_f16")?,
            panel: OnceLock::new(),
            grouped: [OnceLock::new(), OnceLock::new()],
            coop: super::matmul_coop::CoopMatmul::new(gpu, HalfVariant::Coop.name())?,
            tuned: HashMap::new(),
            tuned_source: ChoiceSource::Default,
            forced: None,
            seen: Mutex::new(Vec::new()),
        };
        if let Some(t) = &gpu.tuning {
            hk.tuned = t.half.clone();
            hk.tuned_source = t.source;
            // A tuned kernel that is compiled on first use is built now, so that one the
            // driver refuses (the cache may be older than the driver) leaves the choices.
            if hk.tuned.values().any(|&v| v == HalfVariant::Panel) {
                let _ = hk.panel_pipeline(gpu);
            }
            let available = hk.variants_available();
            hk.tuned.retain(|_, v| available.contains(v));
        }
        if let Some(v) = gpu.half_matmul {
            hk.force(v)?;
        }
        Ok(Some(hk))
    }

    /// The kernels this adapter has.
    pub fn variants_available(&self) -> Vec<HalfVariant> {
        let mut v = vec![HalfVariant::Scalar];
        // Unless an earlier use found that the driver refuses it.
        if !matches!(self.panel.get(), Some(None)) {
            v.push(HalfVariant::Panel);
        }
        v.extend(self.coop.as_ref().map(|_| HalfVariant::Coop));
        v
    }

    /// Run every product on `variant` (fails where the adapter lacks it).
    pub fn force(&mut self, variant: HalfVariant) -> Result<()> {
        check_available(self.coop.is_some(), variant)?;
        self.forced = Some(variant);
        Ok(())
    }

    /// The kernel a product of `shape` runs on: the one asked for, else the one tuned for
    /// it, else the matrix units where the adapter has them and the scalar kernel elsewhere.
    pub fn choice(&self, shape: MatmulShape) -> HalfVariant {
        self.choice_with_source(shape).0
    }

    /// [`HalfKernels::choice`] and where it came from.
    pub fn choice_with_source(&self, shape: MatmulShape) -> (HalfVariant, ChoiceSource) {
        if let Some(v) = self.forced {
            return (v, ChoiceSource::Forced);
        }
        if let Some(&v) = self.tuned.get(&half_key(shape)) {
            return (v, self.tuned_source);
        }
        let v = if self.coop.is_some() {
            HalfVariant::Coop
        } else {
            HalfVariant::Scalar
        };
        (v, ChoiceSource::Default)
    }

    /// Every distinct product prepared so far, in the order first seen.
    pub fn products(&self) -> Vec<MatmulShape> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Each product prepared so far with its kernel and where that came from, for the logs
    /// and `profile`.
    pub fn report(&self) -> Vec<String> {
        self.products()
            .into_iter()
            .map(|s| {
                let (v, source) = self.choice_with_source(s);
                format!("{} {} ({})", half_key(s), v.name(), source.name())
            })
            .collect()
    }

    fn note(&self, shape: MatmulShape) {
        if let Ok(mut seen) = self.seen.lock() {
            if !seen.contains(&shape) {
                seen.push(shape);
            }
        }
    }

    /// A dispatch writing `dst[i] = f16(src[i])` for the `n` elements of the views.
    pub fn cast(&self, gpu: &Gpu, src: View, dst: HalfView, n: usize) -> Result<Dispatch> {
        self.cast_dispatch(gpu, src, dst, n, None)
    }

    /// A dispatch writing `dst[i] = f16(src[i] * S)`, S the loss scale (word 0 of
    /// `scale`, the block of [`super::loss_scale::LossScale`]).
    pub fn cast_scaled(
        &self,
        gpu: &Gpu,
        src: View,
        dst: HalfView,
        n: usize,
        scale: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        self.cast_dispatch(gpu, src, dst, n, Some(scale))
    }

    fn cast_dispatch(
        &self,
        gpu: &Gpu,
        src: View,
        dst: HalfView,
        n: usize,
        scale: Option<&wgpu::Buffer>,
    ) -> Result<Dispatch> {
        let src_off = super::word_offset("cast source", src, n)?;
        let dst_off = dst.check("cast destination", n)?;
        if src.buffer == dst.buffer || scale == Some(dst.buffer) {
            bail!("cast to f16: the destination shares a buffer with an input");
        }
        let (gx, gy) = groups_1d(n, 256);
        let (label, pipeline) = match scale {
            None => ("cast_f32_to_f16", &self.cast),
            Some(_) => ("cast_f32_to_f16_scaled", &self.cast_scaled),
        };
        let uniforms = gpu.uniform_from(
            label,
            &CastParams {
                n: n as u32,
                src_off,
                dst_off,
                groups_x: gx,
            },
        );
        let mut buffers = vec![src.buffer, dst.buffer, &uniforms];
        buffers.extend(scale);
        let bind_group = gpu.bind(label, pipeline, &buffers)?;
        Ok(Dispatch {
            label: label.to_string(),
            pipeline: pipeline.clone(),
            bind_group,
            groups: (gx, gy, 1),
            flops: if scale.is_some() { n as f64 } else { 0.0 },
            bytes: 6.0 * n as f64,
            uniforms: Some(uniforms),
            then: None,
        })
    }

    /// The mixed step's product `c = op(a) @ op(b) (+ bias) (+ c when accumulate)` on the
    /// kernel [`HalfKernels::choice`] gives it; k split as `split`'s family splits it.
    #[allow(clippy::too_many_arguments)]
    pub fn product(
        &self,
        gpu: &Gpu,
        shape: MatmulShape,
        a: HalfView,
        b: HalfView,
        bias: Option<View>,
        c: View,
        accumulate: bool,
        split: Option<&Matmul>,
    ) -> Result<Dispatch> {
        self.note(shape);
        let variant = self.choice(shape);
        self.matmul_with(variant, gpu, shape, a, b, bias, c, accumulate, split)
    }

    /// [`HalfKernels::product`] of `c += op(a) @ op(b)` where a split product leaves its
    /// slices, in scratch `slot`, for the kernel that reads `c` next, as
    /// [`Matmul::prepare_deferring_sum_in`] does for the f32 family (`family`, whose split
    /// rule and scratch it uses).
    pub fn product_deferring_sum(
        &self,
        gpu: &Gpu,
        shape: MatmulShape,
        a: HalfView,
        b: HalfView,
        c: View,
        (family, slot): (&Matmul, usize),
    ) -> Result<(Dispatch, Option<SplitPartials>)> {
        let operands = HalfOperands {
            a,
            b,
            bias: None,
            c,
            accumulate: true,
        };
        let split = Some(Split {
            family,
            defer: Some(slot),
        });
        self.note(shape);
        self.dispatch(self.choice(shape), gpu, shape, operands, split)
    }

    /// Up to [`GROUPS`] products `c += op(a) @ op(b)` in one launch, each computed exactly
    /// as [`HalfKernels::product_deferring_sum`] computes it alone: the recurrent products
    /// of a mixed wavefront step's layers, as [`Matmul::prepare_group_deferring_sum`] does
    /// for the f32 family (whose split rule and scratch slot `slot` it uses). `Ok(None)`
    /// where they cannot share a launch: their kernels differ or have no grouped form (the
    /// matrix units' kernel has barriers), or some split k and others do not.
    #[allow(clippy::type_complexity)]
    pub fn product_group_deferring_sum(
        &self,
        gpu: &Gpu,
        members: &[(MatmulShape, HalfView, HalfView, View)],
        (family, slot): (&Matmul, usize),
    ) -> Result<Option<(Dispatch, Option<Vec<SplitPartials>>)>> {
        if !(1..=GROUPS).contains(&members.len()) {
            bail!(
                "a grouped matmul serves 1 to {GROUPS} products, not {}",
                members.len()
            );
        }
        for m in members {
            self.note(m.0);
        }
        let variant = self.choice(members[0].0);
        if members.iter().any(|m| self.choice(m.0) != variant) {
            return Ok(None);
        }
        let Some(pipeline) = self.group_pipeline(gpu, variant)? else {
            return Ok(None);
        };
        let kernel = self.kernel(gpu, variant)?;
        let split = Some(Split {
            family,
            defer: Some(slot),
        });
        let mut launches = Vec::new();
        for &(shape, a, b, c) in members {
            let operands = HalfOperands {
                a,
                b,
                bias: None,
                c,
                accumulate: true,
            };
            launches.push(half_plan(kernel, shape, &operands, split)?);
        }
        let first_split = launches[0].params.k_slices > 1;
        if launches
            .iter()
            .any(|l| (l.params.k_slices > 1) != first_split)
        {
            return Ok(None);
        }
        let outputs: Vec<(MatmulShape, View)> = members.iter().map(|&(s, .., c)| (s, c)).collect();
        family
            .group_dispatch(gpu, pipeline, &launches, &outputs, slot)
            .map(Some)
    }

    /// `matmul_panel_f16` (compiled on first use; an adapter may refuse it, as any
    /// optional kernel: [`Gpu::optional_pipeline`]).
    fn panel_pipeline(&self, gpu: &Gpu) -> Result<&wgpu::ComputePipeline> {
        // Two threads may race to compile it; either result serves.
        let built = self.panel.get_or_init(|| {
            let module = gpu.shader("matmul_panel_f16", super::shaders::MATMUL_PANEL_F16);
            let module = gpu.optional(HalfVariant::Panel.name(), module)?;
            gpu.optional_pipeline(
                HalfVariant::Panel.name(),
                "matmul_panel_f16",
                &module,
                "matmul_panel",
                &[],
            )
        });
        built.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "the f16 matmul {} is not available on {}: the driver refused to build it",
                HalfVariant::Panel.name(),
                gpu.info.name
            )
        })
    }

    /// The grouped form of `variant` (compiled on first use); `None` where it has none or
    /// the driver refused it ([`Gpu::optional_pipeline`]: `{variant}-grouped`).
    fn group_pipeline(
        &self,
        gpu: &Gpu,
        variant: HalfVariant,
    ) -> Result<Option<&wgpu::ComputePipeline>> {
        let (at, label, entry, source) = match variant {
            HalfVariant::Scalar => (
                0,
                "matmul_f16_group",
                "matmul_f16",
                super::shaders::MATMUL_F16_GROUP,
            ),
            HalfVariant::Panel => (
                1,
                "matmul_panel_f16_group",
                "matmul_panel",
                super::shaders::MATMUL_PANEL_F16_GROUP,
            ),
            HalfVariant::Coop => return Ok(None),
        };
        // Two threads may race to compile it; either result serves.
        let built = self.grouped[at].get_or_init(|| {
            let what = format!("{}-grouped", variant.name());
            let module = gpu.optional(&what, gpu.shader(label, source))?;
            gpu.optional_pipeline(&what, label, &module, entry, &[])
        });
        Ok(built.as_ref())
    }

    /// What the mixed step's products run on, for the logs: the one kernel, or each
    /// kernel with the products it runs (of those prepared so far by `family`'s
    /// workspaces; every product of a mixed step is prepared there too).
    pub fn product_name(&self) -> String {
        match (self.forced, self.tuned.is_empty()) {
            (Some(v), _) => format!("{} (asked for)", self.describe(v)),
            (None, true) => self.describe(self.choice(MatmulShape {
                m: 1,
                k: 1,
                n: 1,
                trans_a: false,
                trans_b: false,
            })),
            (None, false) => {
                let mut used: Vec<HalfVariant> = self.tuned.values().copied().collect();
                used.sort_by_key(|v| v.name());
                used.dedup();
                format!(
                    "the kernels tuned per product ({})",
                    used.iter()
                        .map(|&v| self.describe(v))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        }
    }

    /// A kernel's name in `bench kernels` (the matrix units' with their tile).
    pub fn bench_name(&self, v: HalfVariant) -> String {
        match (v, &self.coop) {
            (HalfVariant::Coop, Some(coop)) => format!("f16-coop-{0}x{0}", coop.tile()),
            _ => v.name().to_string(),
        }
    }

    /// A kernel's name in the logs.
    fn describe(&self, v: HalfVariant) -> String {
        match (v, &self.coop) {
            (HalfVariant::Coop, Some(coop)) => {
                format!("matmul_coop {0}x{0} (cooperative matrices)", coop.tile())
            }
            (HalfVariant::Panel, _) => "matmul_panel_f16".to_string(),
            _ => "matmul_f16 (scalar)".to_string(),
        }
    }

    /// A dispatch computing `c = op(a) @ op(b) (+ bias) (+ c when accumulate)` with f16
    /// operands and f32 products, sums, bias and output: the scalar kernel (k split as
    /// `split`'s family splits it, when given).
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &self,
        gpu: &Gpu,
        shape: MatmulShape,
        a: HalfView,
        b: HalfView,
        bias: Option<View>,
        c: View,
        accumulate: bool,
        split: Option<&Matmul>,
    ) -> Result<Dispatch> {
        self.matmul_with(
            HalfVariant::Scalar,
            gpu,
            shape,
            a,
            b,
            bias,
            c,
            accumulate,
            split,
        )
    }

    /// [`HalfKernels::matmul`] on `variant` (fails where the adapter lacks it).
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_with(
        &self,
        variant: HalfVariant,
        gpu: &Gpu,
        shape: MatmulShape,
        a: HalfView,
        b: HalfView,
        bias: Option<View>,
        c: View,
        accumulate: bool,
        split: Option<&Matmul>,
    ) -> Result<Dispatch> {
        let operands = HalfOperands {
            a,
            b,
            bias,
            c,
            accumulate,
        };
        let split = split.map(|family| Split {
            family,
            defer: None,
        });
        Ok(self.dispatch(variant, gpu, shape, operands, split)?.0)
    }

    /// The kernel of `variant` as its launches need it.
    fn kernel(&self, gpu: &Gpu, variant: HalfVariant) -> Result<HalfKernel<'_>> {
        Ok(match variant {
            HalfVariant::Scalar => HalfKernel {
                label: "matmul_f16",
                pipeline: &self.matmul,
                block: (BLOCK, BLOCK),
                quads: false,
            },
            HalfVariant::Panel => HalfKernel {
                label: "matmul_panel_f16",
                pipeline: self.panel_pipeline(gpu)?,
                block: PANEL,
                quads: true,
            },
            HalfVariant::Coop => match &self.coop {
                Some(coop) => coop.kernel(),
                None => bail!("the f16 matmul f16-coop needs cooperative matrices this adapter does not offer"),
            },
        })
    }

    /// The dispatch of `operands` on `variant` (see [`half_matmul_dispatch`]).
    fn dispatch(
        &self,
        variant: HalfVariant,
        gpu: &Gpu,
        shape: MatmulShape,
        operands: HalfOperands,
        split: Option<Split>,
    ) -> Result<(Dispatch, Option<SplitPartials>)> {
        half_matmul_dispatch(gpu, self.kernel(gpu, variant)?, shape, operands, split)
    }
}

/// `bench kernels --precision mixed`: the best of `runs` runs of the f16 matmul on each of
/// `shapes` (its operands cast to f16 beforehand, untimed), timed as
/// [`super::matmul::bench_matmul`] times the f32 variants.
pub fn bench_matmul_f16(
    gpu: &Gpu,
    shapes: &[MatmulShape],
    runs: usize,
    mut on_row: impl FnMut(&super::matmul::BenchRow),
) -> Result<Vec<super::matmul::BenchRow>> {
    let Some(hk) = HalfKernels::new(gpu)? else {
        bail!(
            "--precision mixed needs 16-bit floats in shaders (shader-f16), which {} does not offer here",
            gpu.info.name
        );
    };
    let timer = super::matmul::Timer::new(gpu, runs.max(1));
    // The f32 family: how the step splits k on this adapter, and the pass that adds slices.
    let mm = Matmul::new(gpu)?;
    let mut rows = Vec::new();
    for &s in shapes {
        let (na, nb) = (s.m * s.k, s.k * s.n);
        let mut r = crate::rng::SplitMix64::new(1);
        let values: Vec<f32> = (0..na.max(nb))
            .map(|_| r.uniform(-0.5, 0.5) as f32)
            .collect();
        let src = gpu.storage_from("bench f32 operand", &values);
        let a = gpu.storage("bench A (f16)", na.div_ceil(2));
        let b = gpu.storage("bench B (f16)", nb.div_ceil(2));
        let c = gpu.storage("bench C", s.m * s.n);
        let cast_a = hk.cast(gpu, View::all(&src), HalfView::at(&a, 0, na), na)?;
        let cast_b = hk.cast(gpu, View::all(&src), HalfView::at(&b, 0, nb), nb)?;
        gpu.run(&[&cast_a, &cast_b])?;
        let (a, b, c) = (
            HalfView::at(&a, 0, na),
            HalfView::at(&b, 0, nb),
            View::all(&c),
        );
        // Each kernel unsplit, and split where the step splits it (GPUs: `split_plan`).
        let mut kernels = Vec::new();
        for split in [None, Some(&mm)] {
            let suffix = if split.is_some() { "-split" } else { "" };
            for v in hk.variants_available() {
                if !v.candidate_for_rows(s.m) {
                    continue;
                }
                let d = hk.matmul_with(v, gpu, s, a, b, None, c, false, split)?;
                if split.is_none() || d.then.is_some() {
                    kernels.push((format!("{}{suffix}", hk.bench_name(v)), d));
                }
            }
        }
        for (variant, d) in kernels {
            gpu.run(&[&d])?;
            let (seconds, clock) = timer.best(gpu, &d)?;
            let row = super::matmul::BenchRow::new(variant, s, (seconds, clock), d.flops, 2);
            on_row(&row);
            rows.push(row);
        }
    }
    Ok(rows)
}
