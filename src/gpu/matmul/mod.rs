//! Matrix products `C = op(A) @ op(B) (+ bias) (+ C)`: the launcher of `shaders/matmul*.wgsl`,
//! whose CPU twin is [`crate::reference::matmul`].
//!
//! Several kernels compute the same thing with different blockings, because what is fast
//! differs by adapter: the textbook GPU kernel shares workgroup-memory tiles (yet on the one
//! real GPU measured, an NVIDIA H200 through Vulkan, the tiled kernels were 2-10x slower
//! than strip-quad on every product of the seed, medium and large models, and the split-K
//! variants won wherever C is small), while a CPU rasteriser such as lavapipe
//! (llvmpipe: every invocation a SIMD lane, a whole workgroup run by one thread,
//! and, in Mesa 22.3, every load from a storage buffer or workgroup memory a loop over the
//! 8 lanes costing ~25 cycles per word) rewards kernels that make the fewest loads per
//! multiply-add, whatever the register spills. [`Matmul::new`] compiles the variants the
//! adapter supports and picks one per adapter type; [`bench_matmul`] measures them all.
//!
//! The transposes are strides in the uniform block, so every variant serves NN, NT, TN and
//! TT through one entry point.

use std::sync::OnceLock;

use anyhow::{bail, Result};
use bytemuck::Zeroable;

use super::ChoiceSource;
use super::{groups_1d, Dispatch, Gpu, View};
use crate::reference::MatmulShape;

use super::shaders::MATMUL as SHADER;

mod bench;
mod group;
mod subgroup;
mod variant;

pub use bench::*;
pub use subgroup::*;
pub use variant::*;

/// The smallest subgroup `shaders/matmul_subgroup.wgsl` works with: its workgroup of 8
/// invocations must be a single subgroup.
const MIN_SUBGROUP_SIZE: u32 = 8;

/// Rows and columns of C in one workgroup of the panel kernel (`PANEL_ROWS`, `PANEL_COLS`
/// in `shaders/matmul_panel.wgsl`).
const PANEL_ROWS: usize = 32;
const PANEL_COLS: usize = 256;

/// The operands of one product: `c = op(a) @ op(b) (+ bias) (+ c when accumulate)`.
struct Operands<'a> {
    a: View<'a>,
    b: View<'a>,
    bias: Option<View<'a>>,
    c: View<'a>,
    accumulate: bool,
}

/// A product's launch: its kernel, uniforms, operand buffers A and B, grid in x and y (z is
/// the slices of k where `params.k_slices` > 1), and the bytes it moves (besides partial
/// sums).
pub(crate) struct ProductLaunch<'a> {
    pub label: &'a str,
    pub pipeline: &'a wgpu::ComputePipeline,
    pub params: Params,
    pub operands: [&'a wgpu::Buffer; 2],
    pub groups: (u32, u32),
    pub bytes: f64,
    /// The block kernels: A and B bound again as vec4 arrays (bindings 5 and 6), read
    /// where the flags say `A_VEC4` / `B_VEC4`.
    pub quads: bool,
}

/// The operand buffers of a launch: A, B, the bias (A's buffer where there is none: the
/// kernel never reads binding 2 then, and two read-only bindings of one buffer are fine in
/// WebGPU; C's, written, could not be), C, the uniforms, and for the block kernels A and B
/// again (as vec4 arrays).
fn operand_bindings<'a>(
    [a, b]: [&'a wgpu::Buffer; 2],
    bias: Option<&'a wgpu::Buffer>,
    c: &'a wgpu::Buffer,
    uniforms: &'a wgpu::Buffer,
    quads: bool,
) -> Vec<&'a wgpu::Buffer> {
    let mut all = vec![a, b, bias.unwrap_or(a), c, uniforms];
    if quads {
        all.extend([a, b]);
    }
    all
}

/// The one dispatch of an unsplit product (any matmul kernel sharing the bindings A, B,
/// bias, C, uniforms of `matmul_params.wgsl`).
pub(crate) fn product_dispatch(
    gpu: &Gpu,
    launch: ProductLaunch,
    bias: Option<View>,
    c: View,
) -> Result<Dispatch> {
    let ProductLaunch {
        label,
        pipeline,
        params,
        operands,
        groups: (gx, gy),
        bytes,
        quads,
    } = launch;
    let uniforms = gpu.uniform_from(label, &params);
    let buffers = operand_bindings(operands, bias.map(|v| v.buffer), c.buffer, &uniforms, quads);
    let bind_group = gpu.bind(label, pipeline, &buffers)?;
    Ok(Dispatch {
        label: label.to_string(),
        pipeline: pipeline.clone(),
        bind_group,
        groups: (gx, gy, 1),
        flops: 2.0 * params.m as f64 * params.n as f64 * params.k as f64,
        bytes,
        uniforms: Some(uniforms),
        then: None,
    })
}

/// Where a split product left its partial sums for the kernel that adds them
/// ([`Matmul::prepare_deferring_sum`]): `slices` slices of `words` words from word
/// `offset` of `buffer` on, each laid out as C (row-major, `n` words a row) without C's
/// offset.
#[derive(Clone, Debug)]
pub struct SplitPartials {
    pub buffer: wgpu::Buffer,
    pub slices: usize,
    pub words: usize,
    /// The word of `buffer` where slice 0 starts.
    pub offset: usize,
}

/// The strides of the operands of `shape` as the kernels read them (row-major storage,
/// transposes as strides): `[a_row, a_col, b_row, b_col]`, with
/// `op(A)[i, p] = a[a_off + i * a_row + p * a_col]` and `op(B)[p, j]` likewise.
pub fn strides(shape: MatmulShape) -> [u32; 4] {
    let MatmulShape {
        m,
        k,
        n,
        trans_a,
        trans_b,
    } = shape;
    let (a_row, a_col) = if trans_a { (1, m) } else { (k, 1) };
    let (b_row, b_col) = if trans_b { (1, k) } else { (n, 1) };
    [a_row as u32, a_col as u32, b_row as u32, b_col as u32]
}

/// The uniform block of `shaders/matmul_params.wgsl` (`Params`); public for kernels
/// tried outside the crate (`examples/matmul_lab.rs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub m: u32,
    pub k: u32,
    pub n: u32,
    pub flags: u32,
    pub a_off: u32,
    pub a_row: u32,
    pub a_col: u32,
    pub b_off: u32,
    pub b_row: u32,
    pub b_col: u32,
    pub bias_off: u32,
    pub c_off: u32,
    pub col_blocks: u32,
    pub blocks: u32,
    pub groups_x: u32,
    /// Strip only: lanes along a row of its block (8, 16, 32 or 64).
    pub strip_width: u32,
    /// Split-K only: steps of k per slice (a multiple of 4), and the number of slices.
    pub k_chunk: u32,
    pub k_slices: u32,
    /// Grouped launches: the grid's z per product (see `matmul_launch_group.wgsl`).
    pub member_slices: u32,
    pub pad1: u32,
}

/// Products one grouped launch may serve (`GROUPS` in shaders/matmul_launch_group.wgsl):
/// the uniforms are an array of this many parameter blocks.
pub const GROUPS: usize = 4;

const HAS_BIAS: u32 = 1;
const ACCUMULATE: u32 = 2;
/// The block kernels' flags: A, or B, read a quad (vec4) at a time.
pub(crate) const A_VEC4: u32 = 4;
pub(crate) const B_VEC4: u32 = 8;

/// `flag` where the block kernel can read an operand at word `offset` as aligned vec4s.
/// `tested` is the stride the kernel tests for 1 (A's `a_row`, B's `b_col`): where it is
/// 1 the kernel reads four words along that dimension, else along the other, whose
/// stride (`other`) must then be 1. Aligned: the offset and the stride across the
/// quads multiples of four words.
fn quad_flags(offset: usize, tested: u32, other: u32, flag: u32) -> u32 {
    let (unit, across) = if tested == 1 {
        (tested, other)
    } else {
        (other, tested)
    };
    if unit == 1 && offset % 4 == 0 && across % 4 == 0 {
        flag
    } else {
        0
    }
}

/// `flag` where the panel kernel can read an operand at word `offset` as aligned vec4s
/// along p: the stride along p (`along_p`: A's `a_col`, B's `b_row`) is 1, and the offset
/// and the other stride (`across`) are multiples of four words.
pub(crate) fn panel_quad_flags(offset: usize, across: u32, along_p: u32, flag: u32) -> u32 {
    if along_p == 1 && offset % 4 == 0 && across % 4 == 0 {
        flag
    } else {
        0
    }
}

/// The compiled matmul kernels of one device and the variant used by default.
pub struct Matmul {
    /// Tiled, RegisterBlocked and Skinny: one entry point each, serving every transpose form.
    portable: Vec<(MatmulVariant, wgpu::ComputePipeline)>,
    /// SubgroupBroadcast, when the adapter can run it: one pipeline per transpose form
    /// (NN, NT, TN, TT), created on first use: most programs use one to three forms, and
    /// llvmpipe spends about 2.5 CPU-minutes on each (at its first dispatch) when its
    /// shader cache is cold.
    subgroup: Option<[OnceLock<wgpu::ComputePipeline>; 4]>,
    default: MatmulVariant,
    /// Whether [`Matmul::prepare`] gives products of at most [`SKINNY_ROWS`] rows to
    /// Skinny (unless the default is a split-K one): yes when the default was chosen for the
    /// adapter ([`Matmul::new`]), no when it was asked for ([`Matmul::with_variant`],
    /// `--matmul`), which then runs every product.
    skinny_for_few_rows: bool,
    /// Per product ([`shape_key`]): the variant measured fastest on this adapter
    /// ([`crate::gpu::tune`]), used instead of the rule unless a variant was asked for.
    tuned: std::collections::HashMap<String, MatmulVariant>,
    tuned_source: ChoiceSource,
    /// Every product prepared so far, in order (for tuning and the logs).
    seen: std::sync::Mutex<Vec<MatmulShape>>,
    /// The second pass of the split-K variants: the slices' partial sums added.
    split_sum: wgpu::ComputePipeline,
    /// The kernels serving several products a launch (strip, strip-quad, panel), compiled
    /// on first use ([`Matmul::prepare_group_deferring_sum`]); `None` where the driver
    /// refused one (the products then run one launch each).
    grouped: [OnceLock<Option<wgpu::ComputePipeline>>; 3],
    /// The split-K partial sums, by slot: slot 0 shared by every split product of this
    /// device (its dispatches run one after another), more where products wait side by
    /// side (see [`Matmul::scratch_for`]); grown when a product needs more, dispatches
    /// prepared earlier keeping the buffer they were bound to.
    scratch: std::sync::Mutex<Vec<Option<wgpu::Buffer>>>,
}

impl Matmul {
    /// Compile every variant the adapter supports and choose the default for its type:
    /// SubgroupBroadcast on a CPU adapter (RegisterBlocked where subgroups are missing),
    /// StripQuadSplit on GPUs (StripSplit where quads are missing), which runs unsplit where
    /// a product's C fills the device. The tuned choice per product, when there is one,
    /// wins over the default.
    ///
    /// The choice is a fixed rule rather than a start-up timing: it is reproducible, costs
    /// nothing at start-up (timing on lavapipe would take seconds), and `with_variant` or
    /// `lstm-gpu bench kernels` cover the cases where measuring matters.
    ///
    /// Where the driver refused to build the rule's choice (an optional variant, left out
    /// with a warning), the rule's choice without it runs instead.
    pub fn new(gpu: &Gpu) -> Result<Matmul> {
        if let Some(v) = gpu.matmul {
            return Matmul::with_variant(gpu, v);
        }
        let rule = |quads| {
            default_variant(
                gpu.info.device_type,
                subgroup_capable(gpu),
                quads,
                cfg!(target_arch = "wasm32"),
            )
        };
        let mut m = Matmul::compile(gpu)?;
        let available = m.variants_available();
        m.default = [rule(quad_capable(gpu)), rule(false)]
            .into_iter()
            .find(|v| available.contains(v))
            .expect("the variants without quads are never optional");
        m.skinny_for_few_rows = true;
        if let Some(t) = &gpu.tuning {
            let available = m.variants_available();
            m.tuned = t.matmul.clone();
            m.tuned.retain(|_, v| available.contains(v));
            m.tuned_source = t.source;
        }
        Ok(m)
    }

    /// Compile every variant the adapter supports, with `default` as the variant that
    /// [`Matmul::prepare`] runs for every product.
    pub fn with_variant(gpu: &Gpu, default: MatmulVariant) -> Result<Matmul> {
        let mut m = Matmul::compile(gpu)?;
        m.check_available(gpu, default)?;
        m.default = default;
        Ok(m)
    }

    /// A usage error that lists the variants there are, where `variant` is not one of them.
    pub fn check_available(&self, gpu: &Gpu, variant: MatmulVariant) -> Result<()> {
        let available = self.variants_available();
        if available.contains(&variant) {
            return Ok(());
        }
        Err(crate::error::usage(format!(
            "matmul variant {variant} is not available on adapter {} (subgroup-broadcast needs subgroups of at least {MIN_SUBGROUP_SIZE} invocations, strip-quad subgroups; a variant the driver refused was named in a warning above); choose one of: {}",
            gpu.info.name,
            available
                .iter()
                .map(|v| v.name())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    /// Compile every variant the adapter supports (the portable ones, which every adapter
    /// must build, and those it may refuse: the block, panel, quad and cooperative-matrix
    /// kernels, each left out with a warning where the driver refuses it), with the
    /// portable Strip as the default.
    fn compile(gpu: &Gpu) -> Result<Matmul> {
        let portable_module = gpu.shader("matmul", SHADER)?;
        let mut portable = Vec::new();
        // A variant the adapter may refuse to build: kept where it builds.
        let optional = |portable: &mut Vec<(MatmulVariant, wgpu::ComputePipeline)>,
                        v: MatmulVariant,
                        module: &wgpu::ShaderModule,
                        constants: &[(&str, f64)]| {
            let s = shape(1, 1, 1, false, false);
            let (label, function) = (v.entry_point(s), v.function(s));
            if let Some(p) = gpu.optional_pipeline(v.name(), label, module, function, constants) {
                portable.push((v, p));
            }
        };
        for v in [
            MatmulVariant::Tiled,
            MatmulVariant::TiledK8,
            MatmulVariant::Tiled128x64,
            MatmulVariant::RegisterBlocked,
            MatmulVariant::Skinny,
            MatmulVariant::Strip,
            MatmulVariant::StripSplit,
        ] {
            let s = shape(1, 1, 1, false, false);
            let (label, function) = (v.entry_point(s), v.function(s));
            let constants = tile_constants(v).unwrap_or(&[]);
            portable.push((
                v,
                gpu.pipeline_with_constants(label, &portable_module, function, constants)?,
            ));
        }
        let blocks = block_variants(gpu);
        if !blocks.is_empty() {
            let module = gpu.shader("matmul_block", super::shaders::MATMUL_BLOCK)?;
            for v in blocks {
                let constants = block_constants(v).unwrap_or(&[]);
                optional(&mut portable, v, &module, constants);
            }
        }
        // No barriers and no workgroup memory: quick to compile on every backend.
        let module = gpu.shader("matmul_panel", super::shaders::MATMUL_PANEL)?;
        for v in [MatmulVariant::Panel, MatmulVariant::PanelSplit] {
            optional(&mut portable, v, &module, &[]);
        }
        if super::coop::has_f32_tile(gpu) {
            let v = MatmulVariant::CoopF32;
            let s = shape(1, 1, 1, false, false);
            let tile = super::coop::F32_TILE;
            let source = super::coop::coop_source(
                &gpu.resolve(super::shaders::MATMUL_COOP),
                tile,
                gpu.info.subgroup_min_size,
                wgpu::CooperativeScalarType::F32,
            );
            if let Some(module) = gpu.optional(v.name(), gpu.shader(v.entry_point(s), &source)) {
                optional(&mut portable, v, &module, &[]);
            }
        }
        if quad_capable(gpu) {
            let module = gpu.shader("matmul_quad", &super::shaders::matmul_quad())?;
            for v in [MatmulVariant::StripQuad, MatmulVariant::StripQuadSplit] {
                optional(&mut portable, v, &module, &[]);
            }
        }
        // A split variant runs its unsplit twin on products too short to split: it stays
        // only where the twin was built too.
        let built: Vec<MatmulVariant> = portable.iter().map(|(v, _)| *v).collect();
        portable.retain(|(v, _)| {
            let twin = v.unsplit();
            let needs =
                anyhow::anyhow!("it runs {twin} on short products, and {twin} was left out");
            built.contains(&twin) || gpu.optional(v.name(), Err::<(), _>(needs)).is_some()
        });
        let split_sum = gpu.pipeline("matmul_split_sum", &portable_module, "matmul_split_sum")?;
        let subgroup = subgroup_capable(gpu).then(|| std::array::from_fn(|_| OnceLock::new()));
        Ok(Matmul {
            portable,
            subgroup,
            default: MatmulVariant::Strip,
            skinny_for_few_rows: false,
            tuned: Default::default(),
            tuned_source: ChoiceSource::Default,
            seen: Default::default(),
            split_sum,
            grouped: Default::default(),
            scratch: Default::default(),
        })
    }

    /// The variant [`Matmul::prepare`] uses.
    pub fn variant(&self) -> MatmulVariant {
        self.default
    }

    /// The variants compiled for this adapter.
    pub fn variants_available(&self) -> Vec<MatmulVariant> {
        let mut v: Vec<MatmulVariant> = self.portable.iter().map(|(v, _)| *v).collect();
        if self.subgroup.is_some() {
            v.push(MatmulVariant::SubgroupBroadcast);
        }
        v
    }

    /// The pipeline of `variant` for the transposes of `shape`, compiling it on first use.
    fn pipeline(
        &self,
        gpu: &Gpu,
        variant: MatmulVariant,
        shape: MatmulShape,
    ) -> Result<&wgpu::ComputePipeline> {
        if let Some(forms) = self.subgroup.as_ref() {
            if variant == MatmulVariant::SubgroupBroadcast {
                let cell = &forms[usize::from(shape.trans_a) * 2 + usize::from(shape.trans_b)];
                if let Some(p) = cell.get() {
                    return Ok(p);
                }
                let entry = variant.entry_point(shape);
                let source = subgroup_source(shape.trans_a, shape.trans_b);
                // llvmpipe compiles this kernel at its first dispatch, which takes minutes on
                // a cold shader cache: say so once a process, before that wait.
                static SAID: std::sync::Once = std::sync::Once::new();
                if gpu.info.device_type == wgpu::DeviceType::Cpu {
                    SAID.call_once(|| {
                        log::info!(
                            "{} compiles the matmul kernels at their first dispatch: minutes on the first run on this machine, seconds later (Mesa's shader cache)",
                            gpu.info.name
                        )
                    });
                }
                let module = gpu.shader(entry, &source)?;
                let pipeline = gpu.pipeline(entry, &module, entry)?;
                // Two threads may race to compile the same form; either result serves.
                let _ = cell.set(pipeline);
                return Ok(cell.get().expect("set just above"));
            }
        }
        match self.portable.iter().find(|(v, _)| *v == variant) {
            Some((_, p)) => Ok(p),
            None => bail!(
                "matmul variant {variant} is not available on adapter {}",
                gpu.info.name
            ),
        }
    }

    /// A dispatch of the default variant, or of Skinny for a product of at most
    /// [`SKINNY_ROWS`] rows when the default was chosen for the adapter; see
    /// [`Matmul::prepare_with`].
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        &self,
        gpu: &Gpu,
        shape: MatmulShape,
        a: View,
        b: View,
        bias: Option<View>,
        c: View,
        accumulate: bool,
    ) -> Result<Dispatch> {
        let (variant, _) = self.choice(shape);
        if let Ok(mut seen) = self.seen.lock() {
            if !seen.contains(&shape) {
                seen.push(shape);
            }
        }
        self.prepare_with(variant, gpu, shape, a, b, bias, c, accumulate)
    }

    /// The variant [`Matmul::prepare`] runs on `shape`, and why: the tuned one, else the
    /// rule (Skinny for a few rows where the default was chosen for the adapter), or the
    /// variant asked for.
    pub fn choice(&self, shape: MatmulShape) -> (MatmulVariant, ChoiceSource) {
        if !self.skinny_for_few_rows {
            return (self.default, ChoiceSource::Forced);
        }
        if let Some(&v) = self.tuned.get(&shape_key(shape)) {
            return (v, self.tuned_source);
        }
        // Not on GPUs, whose split default outruns Skinny there too (on the H200, 1x650x2600:
        // strip-quad-split 0.018 ms, skinny 0.135).
        let split_default = matches!(
            self.default,
            MatmulVariant::StripSplit | MatmulVariant::StripQuadSplit
        );
        if shape.m <= SKINNY_ROWS && !split_default {
            (MatmulVariant::Skinny, ChoiceSource::Default)
        } else {
            (self.default, ChoiceSource::Default)
        }
    }

    /// Every distinct product prepared so far, in the order first seen.
    pub fn products(&self) -> Vec<MatmulShape> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// A dispatch computing `c = op(a) @ op(b) (+ bias) (+ c when accumulate)` with
    /// `variant`. Fails when a view is too short, when `c` shares a buffer with an input
    /// (a kernel cannot read and write one buffer), or when the variant is not available.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_with(
        &self,
        variant: MatmulVariant,
        gpu: &Gpu,
        shape: MatmulShape,
        a: View,
        b: View,
        bias: Option<View>,
        c: View,
        accumulate: bool,
    ) -> Result<Dispatch> {
        let operands = Operands {
            a,
            b,
            bias,
            c,
            accumulate,
        };
        Ok(self.dispatch(variant, gpu, shape, operands, None)?.0)
    }

    /// `c += op(a) @ op(b)` as [`Matmul::prepare`] would run it, except that where the
    /// chosen variant splits k the slices' sum is left to the kernel that reads `c` next:
    /// the dispatch then writes only the partial sums, and the [`SplitPartials`] returned
    /// say where. That kernel must add them to `c` as `matmul_split_sum` does (in order
    /// of the slices, then to the old `c`) and read them before any other split product
    /// runs (they share one scratch buffer). Unsplit, `c` is updated and `None` returned.
    /// The training step's recurrent products leave their sums to the LSTM cell this way:
    /// one launch fewer per layer and time step, in each direction.
    pub fn prepare_deferring_sum(
        &self,
        gpu: &Gpu,
        shape: MatmulShape,
        a: View,
        b: View,
        c: View,
    ) -> Result<(Dispatch, Option<SplitPartials>)> {
        self.prepare_deferring_sum_in(gpu, shape, a, b, c, 0)
    }

    /// [`Matmul::prepare_deferring_sum`] with the partial sums in scratch buffer `slot`
    /// (slot 0 is the one every other split product uses): products whose sums wait side by
    /// side for their kernels (the layers of a wavefront step, one slot each) must not
    /// share one.
    pub fn prepare_deferring_sum_in(
        &self,
        gpu: &Gpu,
        shape: MatmulShape,
        a: View,
        b: View,
        c: View,
        slot: usize,
    ) -> Result<(Dispatch, Option<SplitPartials>)> {
        let (variant, _) = self.choice(shape);
        if let Ok(mut seen) = self.seen.lock() {
            if !seen.contains(&shape) {
                seen.push(shape);
            }
        }
        let operands = Operands {
            a,
            b,
            bias: None,
            c,
            accumulate: true,
        };
        self.dispatch(variant, gpu, shape, operands, Some(slot))
    }

    /// The dispatch of [`Matmul::prepare_with`]; with `defer` (a scratch slot), a split
    /// product's partial sums without the pass that adds them (see
    /// [`Matmul::prepare_deferring_sum_in`]).
    fn dispatch(
        &self,
        variant: MatmulVariant,
        gpu: &Gpu,
        shape: MatmulShape,
        operands: Operands,
        defer: Option<usize>,
    ) -> Result<(Dispatch, Option<SplitPartials>)> {
        let (bias, c) = (operands.bias, operands.c);
        let (_, launch) = self.plan(variant, gpu, shape, operands)?;
        if launch.params.k_slices == 1 {
            return Ok((product_dispatch(gpu, launch, bias, c)?, None));
        }
        self.split_dispatch(gpu, launch, bias, c, defer)
    }

    /// How `variant` computes a product: the variant that runs (SubgroupBroadcast falls back
    /// where operands are not vec4-aligned, a split variant that would not split is its
    /// unsplit twin) and its launch. Fails as [`Matmul::prepare_with`] says.
    fn plan<'s>(
        &'s self,
        variant: MatmulVariant,
        gpu: &Gpu,
        shape: MatmulShape,
        operands: Operands<'s>,
    ) -> Result<(MatmulVariant, ProductLaunch<'s>)> {
        let Operands {
            a,
            b,
            bias,
            c,
            accumulate,
        } = operands;
        let MatmulShape { m, k, n, .. } = shape;
        if !self.variants_available().contains(&variant) {
            bail!(
                "matmul variant {variant} is not available on adapter {}",
                gpu.info.name
            );
        }
        // SubgroupBroadcast reads and writes vec4s: sizes and the offsets of A, B and C
        // must be multiples of 4 words (the bias is read word by word).
        let vec4_aligned = [m, k, n, a.offset, b.offset, c.offset]
            .iter()
            .all(|v| v % 4 == 0);
        let variant = match variant {
            MatmulVariant::SubgroupBroadcast if !vec4_aligned => MatmulVariant::RegisterBlocked,
            v => v,
        };
        a.check("matmul A", m * k)?;
        b.check("matmul B", k * n)?;
        c.check("matmul C", m * n)?;
        if let Some(bias) = &bias {
            bias.check("matmul bias", n)?;
        }
        let inputs = [Some(a.buffer), Some(b.buffer), bias.map(|v| v.buffer)];
        if inputs.iter().flatten().any(|&buf| buf == c.buffer) {
            bail!("matmul {m}x{k}x{n}: the output C shares a buffer with an input");
        }
        let word = |what: &str, v: usize| -> Result<u32> {
            u32::try_from(v).map_err(|_| {
                anyhow::anyhow!("matmul {m}x{k}x{n}: {what} ({v}) does not fit in 32 bits")
            })
        };
        for (what, end) in [
            ("end of A", a.offset + m * k),
            ("end of B", b.offset + k * n),
            ("end of C", c.offset + m * n),
            ("end of bias", bias.map_or(0, |v| v.offset + n)),
        ] {
            word(what, end)?;
        }
        // Strip narrows its block to the product: 64 lanes as 64 / w rows of w lanes, each
        // lane 8 rows by 4 columns w apart, with w the smallest of 8, 16, 32, 64 that
        // covers n in four columns a lane (n = 128: 16x128 blocks, where 8x256 ones would
        // compute half their columns for nothing).
        let strip_width = (n.div_ceil(4)).next_power_of_two().clamp(8, 64);
        let (rows, cols) = match variant.unsplit() {
            MatmulVariant::Strip | MatmulVariant::StripQuad => {
                (8 * (64 / strip_width), 4 * strip_width)
            }
            v => v.block(),
        };
        let row_blocks = m.div_ceil(rows);
        let col_blocks = n.div_ceil(cols);
        let blocks = row_blocks * col_blocks;
        // A split-K variant on a product it would not split is its unsplit twin.
        let (slices, chunk) = if variant.splits() {
            split_slices(m, k, n, blocks)
        } else {
            (1, k)
        };
        let variant = if slices == 1 {
            variant.unsplit()
        } else {
            variant
        };
        let label = variant.entry_point(shape);
        let pipeline = self.pipeline(gpu, variant, shape)?;
        let (gx, gy) = groups_1d(blocks, 1);
        let [a_row, a_col, b_row, b_col] = strides(shape);
        let mut flags =
            if bias.is_some() { HAS_BIAS } else { 0 } | if accumulate { ACCUMULATE } else { 0 };
        // The kernels that read aligned operands by quads, each along its own dimensions.
        let (block, panel) = (
            block_constants(variant).is_some(),
            variant.unsplit() == MatmulVariant::Panel,
        );
        if block {
            flags |= quad_flags(a.offset, a_row, a_col, A_VEC4)
                | quad_flags(b.offset, b_col, b_row, B_VEC4);
        }
        if panel {
            flags |= panel_quad_flags(a.offset, a_row, a_col, A_VEC4)
                | panel_quad_flags(b.offset, b_col, b_row, B_VEC4);
        }
        let quads = block || panel;
        let params = Params {
            m: m as u32,
            k: k as u32,
            n: n as u32,
            flags,
            a_off: a.offset as u32,
            a_row,
            a_col,
            b_off: b.offset as u32,
            b_row,
            b_col,
            bias_off: bias.map_or(0, |v| v.offset as u32),
            c_off: c.offset as u32,
            col_blocks: word("column blocks", col_blocks)?,
            blocks: word("blocks", blocks)?,
            groups_x: gx,
            strip_width: strip_width as u32,
            k_chunk: chunk as u32,
            k_slices: slices as u32,
            member_slices: 0,
            pad1: 0,
        };
        let (mf, kf, nf) = (m as f64, k as f64, n as f64);
        let c_traffic = if accumulate { 2.0 } else { 1.0 } * mf * nf;
        let bytes = 4.0 * (mf * kf + kf * nf + c_traffic + bias.map_or(0.0, |_| nf));
        let launch = ProductLaunch {
            label,
            pipeline,
            params,
            operands: [a.buffer, b.buffer],
            groups: (gx, gy),
            bytes,
            quads,
        };
        Ok((variant, launch))
    }

    /// The dispatch of a split product (this family's or the f16 matmuls'): its kernel
    /// computes the slices into the scratch buffer (no bias, no accumulation, C at word 0),
    /// then `matmul_split_sum` adds them into `c` and finishes as `store` does, its second
    /// launch; or, with `defer` (a scratch slot), the slices are left in that slot's
    /// scratch buffer for the kernel that reads `c` next
    /// ([`Matmul::prepare_deferring_sum_in`]).
    pub(crate) fn split_dispatch(
        &self,
        gpu: &Gpu,
        split: ProductLaunch,
        bias: Option<View>,
        c: View,
        defer: Option<usize>,
    ) -> Result<(Dispatch, Option<SplitPartials>)> {
        let ProductLaunch {
            label,
            pipeline,
            params,
            operands,
            groups: (gx, gy),
            bytes,
            quads,
        } = split;
        let (m, n, slices) = (
            params.m as usize,
            params.n as usize,
            params.k_slices as usize,
        );
        let scratch = self.scratch_for(gpu, slices * m * n, defer.unwrap_or(0));
        // The slices: no bias, no accumulation (the sum pass finishes them), the operands
        // read as before.
        let partial = Params {
            flags: params.flags & (A_VEC4 | B_VEC4),
            c_off: 0,
            ..params
        };
        let uniforms = gpu.uniform_from(label, &partial);
        let buffers = operand_bindings(operands, None, &scratch, &uniforms, quads);
        let bind_group = gpu.bind(label, pipeline, &buffers)?;
        // The partial sums written, and read back by the pass that adds them.
        let partial_bytes = 4.0 * (slices * m * n) as f64;
        let mut d = Dispatch {
            label: label.to_string(),
            pipeline: pipeline.clone(),
            bind_group,
            groups: (gx, gy, u32::try_from(slices)?),
            flops: 2.0 * m as f64 * n as f64 * params.k as f64,
            bytes: bytes + partial_bytes,
            uniforms: Some(uniforms),
            then: None,
        };
        if defer.is_some() {
            let partials = SplitPartials {
                buffer: scratch,
                slices,
                words: m * n,
                offset: 0,
            };
            return Ok((d, Some(partials)));
        }
        d.bytes += partial_bytes;
        d.then = Some(Box::new(
            self.split_sum_dispatch(gpu, &params, &scratch, bias, c)?,
        ));
        Ok((d, None))
    }

    /// The second pass of a split product whose slices (`params.k_slices` of them, laid out
    /// as C from word 0 of `scratch`) were computed with `params`: `matmul_split_sum` adds
    /// them in order into `c`, with the bias and accumulation `params.flags` ask for. The
    /// f16 matmuls split the same way and share it.
    pub(crate) fn split_sum_dispatch(
        &self,
        gpu: &Gpu,
        params: &Params,
        scratch: &wgpu::Buffer,
        bias: Option<View>,
        c: View,
    ) -> Result<Dispatch> {
        let sum_blocks = (params.m as usize * params.n as usize).div_ceil(256);
        let (sx, sy) = groups_1d(sum_blocks, 1);
        let sum = Params {
            a_off: 0,
            blocks: u32::try_from(sum_blocks)?,
            groups_x: sx,
            ..*params
        };
        let sum_uniforms = gpu.uniform_from("matmul_split_sum", &sum);
        let sum_bias = bias.map_or(scratch, |v| v.buffer);
        // The sum never reads B: binding 1 is not in its layout.
        let sum_group = gpu.bind_at(
            "matmul_split_sum",
            &self.split_sum,
            &[
                (0, scratch),
                (2, sum_bias),
                (3, c.buffer),
                (4, &sum_uniforms),
            ],
        )?;
        Ok(Dispatch {
            label: "matmul_split_sum".to_string(),
            pipeline: self.split_sum.clone(),
            bind_group: sum_group,
            groups: (sx, sy, 1),
            flops: 0.0,
            bytes: 0.0,
            uniforms: Some(sum_uniforms),
            then: None,
        })
    }

    /// How a product of another kernel family (the f16 matmuls) whose C makes `blocks`
    /// workgroups splits k: as [`split_slices`] says where this device's default variant
    /// splits (GPUs), else one slice of all of k.
    pub(crate) fn split_plan(&self, m: usize, k: usize, n: usize, blocks: usize) -> (usize, usize) {
        if self.default.splits() {
            split_slices(m, k, n, blocks)
        } else {
            (1, k)
        }
    }

    /// The split-K scratch buffer of `slot` (0 for every product but those that wait
    /// side by side: [`Matmul::prepare_deferring_sum_in`]), at least `words` long.
    pub(crate) fn scratch_for(&self, gpu: &Gpu, words: usize, slot: usize) -> wgpu::Buffer {
        let mut held = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        if held.len() <= slot {
            held.resize(slot + 1, None);
        }
        match held[slot].as_ref() {
            Some(buf) if buf.size() >= (words * 4) as u64 => buf.clone(),
            _ => {
                let buf = gpu.storage("matmul split-K partials", words);
                held[slot] = Some(buf.clone());
                buf
            }
        }
    }
}

/// A product as the tuning cache and the logs name it: `MxKxN:NN` (NN, NT, TN or TT).
pub fn shape_key(s: MatmulShape) -> String {
    format!("{}x{}x{}:{}", s.m, s.k, s.n, form_name(s))
}

/// A product's shape (for the constants and the tests).
const fn shape(m: usize, k: usize, n: usize, trans_a: bool, trans_b: bool) -> MatmulShape {
    MatmulShape {
        m,
        k,
        n,
        trans_a,
        trans_b,
    }
}

/// Whether SubgroupBroadcast can run: its workgroup of 8 invocations must be a single
/// subgroup. The adapter's subgroup size range decides, not an assumed width: lavapipe
/// reports 8 (AVX2) or 16 (AVX-512), GPUs 16 to 128; smaller subgroups (WARP's 4) cannot
/// hold the 8 lanes the kernel broadcasts from.
fn subgroup_capable(gpu: &Gpu) -> bool {
    gpu.has_subgroups() && gpu.info.subgroup_min_size >= MIN_SUBGROUP_SIZE
}

/// Whether StripQuad can run: it needs quad operations (part of wgpu's SUBGROUP) and
/// subgroups of at least the 4 invocations of a quad.
fn quad_capable(gpu: &Gpu) -> bool {
    gpu.has_subgroups() && gpu.info.subgroup_min_size >= 4
}

/// Products of at most this many rows take the Skinny kernel (its `SK_ROWS`).
pub const SKINNY_ROWS: usize = 4;

/// Rows and columns of C that one subgroup of `shaders/matmul_subgroup.wgsl` computes.
const SUBGROUP_ROWS: usize = 64;
const SUBGROUP_COLS: usize = 64;
const _: () = assert!(SUBGROUP_ROWS % 32 == 0 && SUBGROUP_COLS == 64);

/// `NN`, `NT`, `TN` or `TT`.
pub fn form_name(s: MatmulShape) -> &'static str {
    match (s.trans_a, s.trans_b) {
        (false, false) => "NN",
        (false, true) => "NT",
        (true, false) => "TN",
        (true, true) => "TT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The block kernels read a quad at a time exactly where the operand's offset and its
    /// stride across quads are multiples of four, in every transpose form.
    #[test]
    fn quads_where_the_operand_is_aligned() {
        let flags = |s: MatmulShape, a_off: usize, b_off: usize| {
            let [a_row, a_col, b_row, b_col] = strides(s);
            quad_flags(a_off, a_row, a_col, A_VEC4) | quad_flags(b_off, b_col, b_row, B_VEC4)
        };
        let sh = |m, k, n, trans_a, trans_b| MatmulShape {
            m,
            k,
            n,
            trans_a,
            trans_b,
        };
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            assert_eq!(flags(sh(8, 12, 16, ta, tb), 4, 100), A_VEC4 | B_VEC4);
            assert_eq!(flags(sh(8, 12, 16, ta, tb), 5, 100), B_VEC4);
            assert_eq!(flags(sh(8, 12, 16, ta, tb), 4, 101), A_VEC4);
        }
        // A reads along p unless transposed (then along i): k, or m, must be a multiple of
        // four; B along j unless transposed (then along p): n, or k.
        assert_eq!(flags(sh(6, 12, 10, false, false), 0, 0), A_VEC4);
        assert_eq!(flags(sh(6, 12, 10, true, false), 0, 0), 0);
        assert_eq!(flags(sh(6, 12, 10, false, true), 0, 0), A_VEC4 | B_VEC4);
        assert_eq!(flags(sh(8, 6, 8, false, false), 0, 0), B_VEC4);
        assert_eq!(flags(sh(8, 6, 8, true, true), 0, 0), A_VEC4);
        // One row or one step of k: nothing contiguous to read four of.
        assert_eq!(flags(sh(1, 1, 8, false, false), 0, 0), B_VEC4);
    }

    #[test]
    fn defaults_follow_the_adapter_type() {
        use wgpu::DeviceType::{Cpu, DiscreteGpu, IntegratedGpu, Other, VirtualGpu};
        use MatmulVariant::*;
        // (type, subgroups of 8+, quads, in a browser) -> the default.
        for (t, sub, quad, web, want) in [
            (Cpu, true, true, false, SubgroupBroadcast),
            (Cpu, false, false, false, RegisterBlocked),
            (Cpu, false, true, true, StripQuad),
            (Cpu, false, false, true, Strip),
            (DiscreteGpu, true, true, false, StripQuadSplit),
            (IntegratedGpu, true, true, true, StripQuadSplit),
            (DiscreteGpu, false, false, false, StripSplit),
            (Other, false, false, false, StripSplit),
            (VirtualGpu, false, true, false, StripQuadSplit),
        ] {
            assert_eq!(
                default_variant(t, sub, quad, web),
                want,
                "{t:?} {sub} {quad} {web}"
            );
        }
    }

    #[test]
    fn split_slices_cover_k_in_chunks_of_four_within_the_scratch() {
        for (m, k, n, blocks) in [
            (60, 1024, 256, 8),
            (60, 512, 128, 4),
            (1200, 10000, 128, 75),
            (7, 130, 9, 1),
            (20, 6000, 1500, 15),
            (4000, 4000, 4000, 2000),
            (60, 20, 128, 4),
        ] {
            let (slices, chunk) = split_slices(m, k, n, blocks);
            assert!(
                slices * chunk >= k && (slices - 1) * chunk < k,
                "{m}x{k}x{n}"
            );
            if slices > 1 {
                assert_eq!(chunk % 4, 0);
                assert!(chunk >= SPLIT_MIN_CHUNK);
                assert!(slices * m * n <= SPLIT_SCRATCH_WORDS);
                assert!(blocks * slices <= 2 * SPLIT_TARGET_GROUPS);
            }
        }
        // C that fills the device, or a k too short to cut, runs unsplit.
        assert_eq!(split_slices(4000, 4000, 4000, 2000).0, 1);
        assert_eq!(split_slices(60, 20, 128, 4).0, 1);
        assert!(split_slices(60, 1024, 256, 8).0 >= 16);
    }
}
