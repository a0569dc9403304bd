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

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use web_time::Instant;

use anyhow::{bail, Result};
use bytemuck::Zeroable;

use super::ChoiceSource;
use super::{groups_1d, Dispatch, Gpu, View};
use crate::reference::MatmulShape;

use super::shaders::MATMUL as SHADER;

/// The smallest subgroup `shaders/matmul_subgroup.wgsl` works with: its workgroup of 8
/// invocations must be a single subgroup.
const MIN_SUBGROUP_SIZE: u32 = 8;

/// Rows and columns of C in one workgroup of the panel kernel (`PANEL_ROWS`, `PANEL_COLS`
/// in `shaders/matmul_panel.wgsl`).
const PANEL_ROWS: usize = 32;
const PANEL_COLS: usize = 256;

/// One way of computing the product; all give the same results up to f32 rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulVariant {
    /// Workgroup-memory tiles of A and B shared by 256 invocations, 4x4 outputs each, a
    /// 64x64 block with K tiles of 16: what real GPUs reward.
    Tiled,
    /// The tiled kernel with K tiles of 8 (half the workgroup memory, twice the barriers).
    TiledK8,
    /// The tiled kernel on 128x64 blocks, 8x4 outputs per invocation.
    Tiled128x64,
    /// No workgroup memory and no barriers: every invocation keeps an 8x8 block of C in
    /// registers and loads its own rows of A and columns of B.
    RegisterBlocked,
    /// One subgroup of 8 invocations per 64x64 block of C, 64x8 outputs per invocation:
    /// vec4 loads of A shared across the subgroup with `subgroupBroadcast`, each lane
    /// loading its own columns of B; 16 loads per 2048 multiply-adds, lavapipe's fastest.
    /// Its WGSL is generated per transpose form. Needs subgroups of at least 8 invocations,
    /// and sizes and the offsets of A, B and C that are multiples of 4 words
    /// (RegisterBlocked runs otherwise).
    SubgroupBroadcast,
    /// Products with at most [`SKINNY_ROWS`] rows (batch-1 evaluation, prediction and
    /// generation): a 4x256 block of C per workgroup, 4x4 outputs per invocation, where the
    /// 64-row blocks of the others would compute up to 63 rows for nothing.
    /// [`Matmul::prepare`] takes it for such products unless the default is a split-K
    /// variant (GPUs), which serves them faster.
    Skinny,
    /// Skinny's layout on 8-row blocks for products of any height: an 8x256 block of C per
    /// workgroup (16x128 ... 64x32 for narrower products), 8x4 outputs per invocation in
    /// named accumulators, neighbouring lanes on neighbouring columns, no workgroup memory.
    /// What Chromium's SwiftShader (invocations as CPU SIMD lanes, few registers) runs
    /// fastest without subgroups.
    Strip,
    /// Strip with the loads of A shared within quads of four invocations
    /// (`quadBroadcast`): 24 loads per 128 multiply-adds where Strip makes 48. For adapters
    /// that turn every load into a per-lane gather (Chromium's SwiftShader, whose default it
    /// is); needs subgroups.
    StripQuad,
    /// Strip with k split into slices run side by side (the grid's z), their partial sums
    /// added by a second dispatch: for products whose C makes too few blocks to fill a GPU
    /// however long k is (the per-time-step recurrent backward products, the softmax
    /// input gradient). On an NVIDIA H200 a seed step's `[60, 1024] @ [1024, 256]^T`
    /// product took StripQuad 0.21 ms on 8 workgroups, StripSplit 0.04 ms. Runs as Strip
    /// where k is too short to split or C already fills the device ([`split_slices`]).
    StripSplit,
    /// StripQuad's split-K twin (see StripSplit); needs subgroups.
    StripQuadSplit,
    /// The GPU-class kernel (`shaders/matmul_block.wgsl`): 128x128 blocks from K tiles of 8
    /// double-buffered in workgroup memory (16 KiB, WebGPU's default), 256 invocations
    /// each an 8x8 register tile read as vec4s: 4 workgroup-memory loads per 64
    /// multiply-adds. For products whose C fills the device with such blocks.
    Block128,
    /// The block kernel on 128x64 blocks (128 invocations, 12 KiB).
    Block128x64,
    /// The block kernel on 64x64 blocks (64 invocations, 8 KiB): four times the workgroups
    /// of Block128 on the same C.
    Block64,
    /// Block64 with k split into slices run side by side (see StripSplit), for the long-k
    /// products whose C is too small to fill the device.
    Block64Split,
    /// For products of few rows and a wide C (`shaders/matmul_panel.wgsl`): a 32x256
    /// panel of C per workgroup, one column per invocation with its 32 rows in registers,
    /// so that B (a weight matrix) is read once in all where the product has at most 32
    /// rows; A's few rows are read by every invocation at the same address. No workgroup
    /// memory, no barriers. Aimed at the recurrent products of each time step (batch 20 at
    /// the small, medium and large presets), which strip-quad-split ran at 3.5 TFLOP/s on
    /// the H200 (`[20, 6000] @ [6000, 1500]^T`: 0.103 ms) while they only need B's words
    /// once each.
    Panel,
    /// Panel with k split into slices run side by side (see StripSplit): what fills a GPU
    /// with panels, 24 of them at the large preset's `[20, 1500] @ [1500, 6000]`.
    PanelSplit,
    /// The cooperative-matrix kernel (`shaders/matmul_coop.wgsl`) on f32 operands: 8x8 f32
    /// tiles on the adapter's matrix units, 32x32 blocks of four subgroups. Only where the
    /// adapter lists 8x8 f32 tiles (Metal's simdgroup matrices; no Vulkan GPU lists f32
    /// inputs).
    CoopF32,
}

impl MatmulVariant {
    /// Every variant, in the order benchmarks list them.
    pub const ALL: [MatmulVariant; 17] = [
        MatmulVariant::Tiled,
        MatmulVariant::TiledK8,
        MatmulVariant::Tiled128x64,
        MatmulVariant::RegisterBlocked,
        MatmulVariant::SubgroupBroadcast,
        MatmulVariant::Skinny,
        MatmulVariant::Strip,
        MatmulVariant::StripQuad,
        MatmulVariant::StripSplit,
        MatmulVariant::StripQuadSplit,
        MatmulVariant::Block128,
        MatmulVariant::Block128x64,
        MatmulVariant::Block64,
        MatmulVariant::Block64Split,
        MatmulVariant::Panel,
        MatmulVariant::PanelSplit,
        MatmulVariant::CoopF32,
    ];

    /// The WGSL entry point for the transposes of `shape`, also the label of its
    /// dispatches. SubgroupBroadcast has one per transpose form (its loads differ).
    pub fn entry_point(self, shape: MatmulShape) -> &'static str {
        match (self, shape.trans_a, shape.trans_b) {
            (MatmulVariant::Tiled, ..) => "matmul_tiled",
            (MatmulVariant::TiledK8, ..) => "matmul_tiled_k8",
            (MatmulVariant::Tiled128x64, ..) => "matmul_tiled_128x64",
            (MatmulVariant::RegisterBlocked, ..) => "matmul_register_blocked",
            (MatmulVariant::Skinny, ..) => "matmul_skinny",
            (MatmulVariant::Strip, ..) => "matmul_strip",
            (MatmulVariant::StripQuad, ..) => "matmul_strip_quad",
            (MatmulVariant::StripSplit, ..) => "matmul_strip_split",
            (MatmulVariant::StripQuadSplit, ..) => "matmul_strip_quad_split",
            (MatmulVariant::Block128, ..) => "matmul_block_128x128",
            (MatmulVariant::Block128x64, ..) => "matmul_block_128x64",
            (MatmulVariant::Block64, ..) => "matmul_block_64x64",
            (MatmulVariant::Block64Split, ..) => "matmul_block_64x64_split",
            (MatmulVariant::Panel, ..) => "matmul_panel",
            (MatmulVariant::PanelSplit, ..) => "matmul_panel_split",
            (MatmulVariant::CoopF32, ..) => "matmul_coop_f32_8x8",
            (MatmulVariant::SubgroupBroadcast, false, false) => "matmul_subgroup_nn",
            (MatmulVariant::SubgroupBroadcast, false, true) => "matmul_subgroup_nt",
            (MatmulVariant::SubgroupBroadcast, true, false) => "matmul_subgroup_tn",
            (MatmulVariant::SubgroupBroadcast, true, true) => "matmul_subgroup_tt",
        }
    }

    /// The name used on the command line and in benchmark output.
    pub fn name(self) -> &'static str {
        match self {
            MatmulVariant::Tiled => "tiled",
            MatmulVariant::TiledK8 => "tiled-k8",
            MatmulVariant::Tiled128x64 => "tiled-128x64",
            MatmulVariant::RegisterBlocked => "register-blocked",
            MatmulVariant::SubgroupBroadcast => "subgroup-broadcast",
            MatmulVariant::Skinny => "skinny",
            MatmulVariant::Strip => "strip",
            MatmulVariant::StripQuad => "strip-quad",
            MatmulVariant::StripSplit => "strip-split",
            MatmulVariant::StripQuadSplit => "strip-quad-split",
            MatmulVariant::Block128 => "block-128x128",
            MatmulVariant::Block128x64 => "block-128x64",
            MatmulVariant::Block64 => "block-64x64",
            MatmulVariant::Block64Split => "block-64x64-split",
            MatmulVariant::Panel => "panel",
            MatmulVariant::PanelSplit => "panel-split",
            MatmulVariant::CoopF32 => "coop-f32-8x8",
        }
    }

    /// Rows and columns of C that one workgroup computes (see the shader's constants).
    fn block(self) -> (usize, usize) {
        match self {
            MatmulVariant::Tiled | MatmulVariant::TiledK8 => (64, 64),
            MatmulVariant::Tiled128x64 => (128, 64),
            MatmulVariant::RegisterBlocked => (64, 64),
            MatmulVariant::SubgroupBroadcast => (SUBGROUP_ROWS, SUBGROUP_COLS),
            MatmulVariant::Skinny => (SKINNY_ROWS, 256),
            MatmulVariant::Strip
            | MatmulVariant::StripQuad
            | MatmulVariant::StripSplit
            | MatmulVariant::StripQuadSplit => (8, 256), // the widest; see prepare_with
            MatmulVariant::Block128 => (128, 128),
            MatmulVariant::Block128x64 => (128, 64),
            MatmulVariant::Block64 | MatmulVariant::Block64Split => (64, 64),
            MatmulVariant::Panel | MatmulVariant::PanelSplit => (PANEL_ROWS, PANEL_COLS),
            MatmulVariant::CoopF32 => {
                let block = 4 * super::coop::F32_TILE as usize;
                (block, block)
            }
        }
    }

    /// Whether tuning, and benchmarks without `--variant`, try it on a product of `m` rows:
    /// skinny up to [`SKINNY_ROWS`], the panels up to two panels (64 rows; past that they
    /// read B three times or more, where the blocked kernels read it once per 64-128 rows),
    /// the others on every product.
    pub fn candidate_for_rows(self, m: usize) -> bool {
        match self.unsplit() {
            MatmulVariant::Skinny => m <= SKINNY_ROWS,
            MatmulVariant::Panel => m <= 2 * PANEL_ROWS,
            _ => true,
        }
    }

    /// The variant that computes a slice of k: the split-K twin's unsplit kernel.
    fn unsplit(self) -> MatmulVariant {
        match self {
            MatmulVariant::StripSplit => MatmulVariant::Strip,
            MatmulVariant::StripQuadSplit => MatmulVariant::StripQuad,
            MatmulVariant::Block64Split => MatmulVariant::Block64,
            MatmulVariant::PanelSplit => MatmulVariant::Panel,
            v => v,
        }
    }
}

/// The variant [`Matmul::new`] runs where nothing was tuned or asked for, by adapter type:
/// `subgroups` (SubgroupBroadcast can run), `quads` (StripQuad can) and `in_browser` (a
/// WebGPU page) as the adapter has them.
pub fn default_variant(
    device_type: wgpu::DeviceType,
    subgroups: bool,
    quads: bool,
    in_browser: bool,
) -> MatmulVariant {
    // A browser's CPU adapter (Chromium's SwiftShader) runs StripQuad fastest, and Strip
    // without subgroups: measured in the page at the seed configuration, StripQuad 308
    // words/s against Strip 204 in one run; Strip 179-236 against 54-76 with
    // RegisterBlocked, 105-121 with Skinny and about 40 with Tiled (tests/browser.rs,
    // page_kernel_choices_at_the_seed_configuration).
    match device_type {
        wgpu::DeviceType::Cpu if subgroups => MatmulVariant::SubgroupBroadcast,
        wgpu::DeviceType::Cpu if in_browser && quads => MatmulVariant::StripQuad,
        wgpu::DeviceType::Cpu if in_browser => MatmulVariant::Strip,
        wgpu::DeviceType::Cpu => MatmulVariant::RegisterBlocked,
        // Measured on an NVIDIA H200 (Vulkan, `lstm-gpu tune` at the seed, medium and
        // large presets): strip-quad was the fastest unsplit kernel on every product,
        // tiled 2-10x slower, and wherever strip-quad-split splits a product it was the
        // fastest or within 3% of it (strip-split, 0.039 against 0.040 ms once).
        _ if quads => MatmulVariant::StripQuadSplit,
        _ => MatmulVariant::StripSplit,
    }
}

/// Split-K aims at about this many workgroups in all ...
const SPLIT_TARGET_GROUPS: usize = 512;
/// ... with slices of at least this many steps of k ...
const SPLIT_MIN_CHUNK: usize = 16;
/// ... and at most this many words of partial sums (16 MiB).
pub const SPLIT_SCRATCH_WORDS: usize = 1 << 22;
// The scratch fits every adapter's storage binding (WebGPU's default is the least an adapter
// offers), so whether a model fits (`crate::model::fit`) never depends on it.
const _: () = assert!(SPLIT_SCRATCH_WORDS * 4 <= 128 << 20);

/// How a split-K variant cuts k for a product whose C makes `blocks` workgroups:
/// `(slices, chunk)`, chunk a multiple of 4 steps, `slices * chunk >= k`. One slice means
/// the product runs unsplit.
pub fn split_slices(m: usize, k: usize, n: usize, blocks: usize) -> (usize, usize) {
    let by_groups = SPLIT_TARGET_GROUPS.div_ceil(blocks.max(1));
    let by_k = k / SPLIT_MIN_CHUNK;
    let by_scratch = SPLIT_SCRATCH_WORDS / (m * n).max(1);
    let want = by_groups.min(by_k).min(by_scratch).max(1);
    if want == 1 {
        return (1, k);
    }
    let chunk = k.div_ceil(want).next_multiple_of(4);
    (k.div_ceil(chunk), chunk)
}

/// The pipeline-overridable constants of `matmul_tiled` for each tiled variant: one
/// source, several tile shapes.
pub fn tile_constants(v: MatmulVariant) -> Option<&'static [(&'static str, f64)]> {
    match v {
        MatmulVariant::Tiled => Some(&[]),
        MatmulVariant::TiledK8 => Some(&[("TILE_K", 8.0)]),
        MatmulVariant::Tiled128x64 => Some(&[("TILE_M", 128.0), ("TILE_ROWS", 8.0)]),
        _ => None,
    }
}

/// The block variants compiled for `gpu`: none through wgpu's GL backend, whose GLSL
/// llvmpipe's GL driver took over ten minutes and 2 GB to compile for one of them (lavapipe
/// compiles the same kernel from SPIR-V in seconds). The driver compiles at a kernel's first
/// dispatch, in LLVM's coroutine pass (which it runs for the barriers): measured again,
/// `block-64x64` alone about 25 s, every 128-row block minutes, and the 64x64 ones added
/// 190 s to the GL parity suite on a cold shader cache (34 s without them). GL is the
/// backend of old GPUs, where the other kernels serve.
pub fn block_variants(gpu: &Gpu) -> Vec<MatmulVariant> {
    if gpu.info.backend == wgpu::Backend::Gl {
        return Vec::new();
    }
    vec![
        MatmulVariant::Block128,
        MatmulVariant::Block128x64,
        MatmulVariant::Block64,
        MatmulVariant::Block64Split,
    ]
}

/// The pipeline-overridable constants of `matmul_block` for each block variant: the block
/// shape, its invocations (one per 8x8 register tile) and the quads of four words each
/// invocation loads per K tile of 8.
pub fn block_constants(v: MatmulVariant) -> Option<&'static [(&'static str, f64)]> {
    match v.unsplit() {
        MatmulVariant::Block128 => Some(&[]),
        MatmulVariant::Block128x64 => Some(&[
            ("BLOCK_N", 64.0),
            ("BLOCK_INVOCATIONS", 128.0),
            ("BLOCK_LOADS_A", 2.0),
        ]),
        MatmulVariant::Block64 => Some(&[
            ("BLOCK_M", 64.0),
            ("BLOCK_N", 64.0),
            ("BLOCK_INVOCATIONS", 64.0),
            ("BLOCK_LOADS_A", 2.0),
            ("BLOCK_LOADS_B", 2.0),
        ]),
        _ => None,
    }
}

impl MatmulVariant {
    /// The WGSL function that runs it (the tiled variants share `matmul_tiled`, the block
    /// variants `matmul_block`, and the split-K variants their unsplit twin's function,
    /// given more than one slice).
    pub fn function(self, shape: MatmulShape) -> &'static str {
        if tile_constants(self).is_some() {
            "matmul_tiled"
        } else if self == MatmulVariant::CoopF32 {
            "matmul_coop"
        } else if block_constants(self).is_some() {
            "matmul_block"
        } else {
            self.unsplit().entry_point(shape)
        }
    }

    /// Whether it runs k in slices side by side where a product is long and small.
    fn splits(self) -> bool {
        matches!(
            self,
            MatmulVariant::StripSplit
                | MatmulVariant::StripQuadSplit
                | MatmulVariant::Block64Split
                | MatmulVariant::PanelSplit
        )
    }
}

impl fmt::Display for MatmulVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MatmulVariant {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let t = s.trim().to_ascii_lowercase().replace('_', "-");
        MatmulVariant::ALL
            .into_iter()
            .find(|v| v.name() == t)
            .ok_or_else(|| {
                let names: Vec<&str> = MatmulVariant::ALL.iter().map(|v| v.name()).collect();
                format!(
                    "unknown matmul variant {s:?}; choose one of {}",
                    names.join(", ")
                )
            })
    }
}

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
const A_VEC4: u32 = 4;
const B_VEC4: u32 = 8;

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
fn panel_quad_flags(offset: usize, across: u32, along_p: u32, flag: u32) -> u32 {
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
    /// The slow-compile notice is given once per device.
    slow_compile_said: std::sync::Once,
    /// Per product ([`shape_key`]): the variant measured fastest on this adapter
    /// ([`crate::gpu::tune`]), used instead of the rule unless a variant was asked for.
    tuned: std::collections::HashMap<String, MatmulVariant>,
    tuned_source: ChoiceSource,
    /// Every product prepared so far, in order (for tuning and the logs).
    seen: std::sync::Mutex<Vec<MatmulShape>>,
    /// The second pass of the split-K variants: the slices' partial sums added.
    split_sum: wgpu::ComputePipeline,
    /// The kernels serving several products a launch (strip, strip-quad, panel), compiled
    /// on first use ([`Matmul::prepare_group_deferring_sum`]).
    grouped: [OnceLock<wgpu::ComputePipeline>; 3],
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
    pub fn new(gpu: &Gpu) -> Result<Matmul> {
        if let Some(v) = gpu.matmul {
            return Matmul::with_variant(gpu, v);
        }
        let variant = default_variant(
            gpu.info.device_type,
            subgroup_capable(gpu),
            quad_capable(gpu),
            cfg!(target_arch = "wasm32"),
        );
        let mut m = Matmul::with_variant(gpu, variant)?;
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
        let portable_module = gpu.shader("matmul", SHADER)?;
        let mut portable = Vec::new();
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
                let s = shape(1, 1, 1, false, false);
                let constants = block_constants(v).unwrap_or(&[]);
                portable.push((
                    v,
                    gpu.pipeline_with_constants(
                        v.entry_point(s),
                        &module,
                        v.function(s),
                        constants,
                    )?,
                ));
            }
        }
        // No barriers and no workgroup memory: quick to compile on every backend.
        let module = gpu.shader("matmul_panel", super::shaders::MATMUL_PANEL)?;
        for v in [MatmulVariant::Panel, MatmulVariant::PanelSplit] {
            let s = shape(1, 1, 1, false, false);
            portable.push((v, gpu.pipeline(v.entry_point(s), &module, v.function(s))?));
        }
        if super::coop::has_f32_tile(gpu) {
            let v = MatmulVariant::CoopF32;
            let s = shape(1, 1, 1, false, false);
            let tile = super::coop::F32_TILE;
            let source = super::coop::coop_source(
                tile,
                gpu.info.subgroup_min_size,
                wgpu::CooperativeScalarType::F32,
            );
            let module = gpu.shader(v.entry_point(s), &source)?;
            portable.push((v, gpu.pipeline(v.entry_point(s), &module, v.function(s))?));
        }
        if quad_capable(gpu) {
            let module = gpu.shader("matmul_quad", &super::shaders::matmul_quad())?;
            for v in [MatmulVariant::StripQuad, MatmulVariant::StripQuadSplit] {
                let s = shape(1, 1, 1, false, false);
                portable.push((v, gpu.pipeline(v.entry_point(s), &module, v.function(s))?));
            }
        }
        let split_sum = gpu.pipeline("matmul_split_sum", &portable_module, "matmul_split_sum")?;
        let subgroup = subgroup_capable(gpu).then(|| std::array::from_fn(|_| OnceLock::new()));
        let m = Matmul {
            portable,
            subgroup,
            default,
            skinny_for_few_rows: false,
            slow_compile_said: std::sync::Once::new(),
            tuned: Default::default(),
            tuned_source: ChoiceSource::Default,
            seen: Default::default(),
            split_sum,
            grouped: Default::default(),
            scratch: Default::default(),
        };
        if !m.variants_available().contains(&default) {
            return Err(crate::error::usage(format!(
                "matmul variant {default} is not available on adapter {} (subgroup-broadcast needs subgroups of at least {MIN_SUBGROUP_SIZE} invocations, strip-quad subgroups); choose one of: {}",
                gpu.info.name,
                m.variants_available()
                    .iter()
                    .map(|v| v.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(m)
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
                // a cold shader cache: say so once, before that wait.
                if gpu.info.device_type == wgpu::DeviceType::Cpu {
                    self.slow_compile_said.call_once(|| {
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

    /// Up to [`GROUPS`] products `c += op(a) @ op(b)` in one launch, each computed exactly
    /// as [`Matmul::prepare_deferring_sum_in`] computes it alone (the variant chosen for its
    /// shape, the same slices of k, the same order of sums): the recurrent products of a
    /// wavefront step's layers, which may differ in width. Their operands lie at their own
    /// offsets in the same three buffers (A, B and C each one buffer for all). Where the
    /// products split k, the partial sums are left for the cells, all products' in scratch
    /// buffer `slot` one after the other, one [`SplitPartials`] each. `Ok(None)` where the
    /// products cannot share a launch, and the caller launches them one by one: where a
    /// chosen variant has no grouped form (only the kernels without barriers have one:
    /// strip, strip-quad, panel and their split twins), where the products' variants
    /// differ, or where some split k and others do not (their cells could not share a
    /// launch).
    #[allow(clippy::type_complexity)]
    pub fn prepare_group_deferring_sum(
        &self,
        gpu: &Gpu,
        members: &[(MatmulShape, View, View, View)],
        slot: usize,
    ) -> Result<Option<(Dispatch, Option<Vec<SplitPartials>>)>> {
        if !(1..=GROUPS).contains(&members.len()) {
            bail!(
                "a grouped matmul serves 1 to {GROUPS} products, not {}",
                members.len()
            );
        }
        let mut plans = Vec::new();
        for &(shape, a, b, c) in members {
            let (variant, _) = self.choice(shape);
            let operands = Operands {
                a,
                b,
                bias: None,
                c,
                accumulate: true,
            };
            plans.push(self.plan(variant, gpu, shape, operands)?);
        }
        let (variant, first) = (plans[0].0, &plans[0].1);
        let split = first.params.k_slices > 1;
        let alike = plans
            .iter()
            .all(|(v, launch)| *v == variant && (launch.params.k_slices > 1) == split);
        if !alike {
            return Ok(None);
        }
        let Some(pipeline) = self.group_pipeline(gpu, variant)? else {
            return Ok(None);
        };
        if let Ok(mut seen) = self.seen.lock() {
            for &(shape, ..) in members {
                if !seen.contains(&shape) {
                    seen.push(shape);
                }
            }
        }
        let c_buffer = members[0].3.buffer;
        for ((_, launch), &(.., c)) in plans.iter().zip(members) {
            if launch.operands != first.operands || c.buffer != c_buffer {
                bail!(
                    "{}: the products of one launch must lie in the same buffers",
                    first.label
                );
            }
        }
        // The grid of the largest product, in x and y and in slices.
        let blocks = plans
            .iter()
            .map(|(_, l)| l.params.blocks)
            .max()
            .unwrap_or(0);
        let (gx, gy) = groups_1d(blocks as usize, 1);
        let member_slices = plans
            .iter()
            .map(|(_, l)| l.params.k_slices)
            .max()
            .unwrap_or(1);
        // Split: product g's slices after those of the products before it, without the
        // bias or the accumulation (the cells add them to C).
        let words: Vec<usize> = plans
            .iter()
            .map(|(_, l)| (l.params.k_slices * l.params.m * l.params.n) as usize)
            .collect();
        let scratch = split.then(|| self.scratch_for(gpu, words.iter().sum(), slot));
        let mut blocks = [Params::zeroed(); GROUPS];
        let mut at = 0;
        for (block, ((_, launch), words)) in blocks.iter_mut().zip(plans.iter().zip(&words)) {
            *block = Params {
                groups_x: gx,
                member_slices,
                ..launch.params
            };
            if split {
                block.flags &= A_VEC4 | B_VEC4;
                block.c_off = u32::try_from(at)?;
                at += words;
            }
        }
        let label = format!("{}_group", first.label);
        let uniforms = gpu.uniform_from(&label, &blocks);
        let c_bound = scratch.as_ref().unwrap_or(c_buffer);
        let buffers = operand_bindings(first.operands, None, c_bound, &uniforms, first.quads);
        let bind_group = gpu.bind(&label, pipeline, &buffers)?;
        let partial_bytes = if split { 8.0 * at as f64 } else { 0.0 };
        let dispatch = Dispatch {
            label,
            pipeline: pipeline.clone(),
            bind_group,
            groups: (gx, gy, member_slices * members.len() as u32),
            flops: plans
                .iter()
                .map(|(_, l)| 2.0 * (l.params.m * l.params.n) as f64 * l.params.k as f64)
                .sum(),
            bytes: plans.iter().map(|(_, l)| l.bytes).sum::<f64>() + partial_bytes,
            uniforms: Some(uniforms),
            then: None,
        };
        let partials = scratch.map(|buffer| {
            let mut at = 0;
            plans
                .iter()
                .zip(&words)
                .map(|((_, l), &words)| {
                    let p = SplitPartials {
                        buffer: buffer.clone(),
                        slices: l.params.k_slices as usize,
                        words: (l.params.m * l.params.n) as usize,
                        offset: at,
                    };
                    at += words;
                    p
                })
                .collect()
        });
        Ok(Some((dispatch, partials)))
    }

    /// The grouped form of `variant` (compiled on first use); `None` where it has none.
    fn group_pipeline(
        &self,
        gpu: &Gpu,
        variant: MatmulVariant,
    ) -> Result<Option<&wgpu::ComputePipeline>> {
        let (at, label, entry) = match variant.unsplit() {
            MatmulVariant::Strip => (0, "matmul_strip_group", "matmul_strip"),
            MatmulVariant::StripQuad => (1, "matmul_quad_group", "matmul_strip_quad"),
            MatmulVariant::Panel => (2, "matmul_panel_group", "matmul_panel"),
            _ => return Ok(None),
        };
        let cell = &self.grouped[at];
        if let Some(p) = cell.get() {
            return Ok(Some(p));
        }
        let source = match at {
            0 => std::borrow::Cow::Borrowed(super::shaders::MATMUL_STRIP_GROUP),
            1 => super::shaders::matmul_quad_group(),
            _ => std::borrow::Cow::Borrowed(super::shaders::MATMUL_PANEL_GROUP),
        };
        let module = gpu.shader(label, &source)?;
        let pipeline = gpu.pipeline(label, &module, entry)?;
        // Two threads may race to compile it; either result serves.
        let _ = cell.set(pipeline);
        Ok(cell.get())
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

impl BenchRow {
    /// A row for `variant` on `shape` timed at `seconds` by `clock`: `flops` floating-point
    /// operations, operands of `operand_bytes` bytes a word (4 for f32, 2 for the f16 copies
    /// of mixed precision) and C in f32.
    pub fn new(
        variant: String,
        shape: MatmulShape,
        (seconds, clock): (f64, &str),
        flops: f64,
        operand_bytes: usize,
    ) -> BenchRow {
        let (m, k, n) = (shape.m, shape.k, shape.n);
        let bytes = (operand_bytes * (m * k + k * n) + 4 * m * n) as f64;
        BenchRow {
            variant,
            form: form_name(shape).to_string(),
            m,
            k,
            n,
            ms: seconds * 1e3,
            gflops: flops / seconds / 1e9,
            gb_per_second: bytes / seconds / 1e9,
            clock: clock.to_string(),
        }
    }

    /// The row as one line of the benchmark table.
    pub fn line(&self) -> String {
        format!(
            "matmul {:>18} {} {:>5}x{:<5}x{:>5} {:>9.3} ms {:>7.1} GFLOP/s {:>7.1} GB/s",
            self.variant,
            self.form,
            self.m,
            self.k,
            self.n,
            self.ms,
            self.gflops,
            self.gb_per_second
        )
    }
}

/// One line of [`bench_matmul`]: a variant on a shape.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchRow {
    pub variant: String,
    /// `NN`, `NT`, `TN` or `TT`.
    pub form: String,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// Best time of one run.
    pub ms: f64,
    pub gflops: f64,
    /// The product's own traffic (A and B read once, C written once) per second: what a
    /// product of few rows, bound by reading B, is held to (the adapter's memory
    /// bandwidth); kernels that read an operand more than once move more.
    pub gb_per_second: f64,
    /// How the time was taken: `timestamps` or `wall`.
    pub clock: String,
}

/// A product as the tuning cache and the logs name it: `MxKxN:NN` (NN, NT, TN or TT).
pub fn shape_key(s: MatmulShape) -> String {
    format!("{}x{}x{}:{}", s.m, s.k, s.n, form_name(s))
}

/// A fixed set of large products of the seed model's size, with the transposes they are
/// used with (the logits, the softmax weight gradient, d(h2), input projections), for
/// `cargo bench --bench kernels`. `lstm-gpu bench kernels` times the products a seed step
/// really prepares instead (`gpu::tune::training_products`).
pub const SEED_SHAPES: [MatmulShape; 6] = [
    shape(60, 456, 1024, false, false),
    shape(1200, 128, 10000, false, false),
    shape(128, 1200, 10000, true, false),
    shape(1200, 10000, 128, false, true),
    shape(1200, 200, 1024, false, false),
    shape(1200, 456, 1024, false, false),
];

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

/// The subgroup-broadcast matmul module for one transpose form, as [`Matmul`] compiles it:
/// the uniform block, `shaders/matmul_subgroup.wgsl` and the form's generated entry point.
pub fn subgroup_source(trans_a: bool, trans_b: bool) -> String {
    use super::shaders::{subgroup_module, MATMUL_LAUNCH, MATMUL_PARAMS, MATMUL_SUBGROUP};
    let source = format!(
        "{MATMUL_PARAMS}\n{MATMUL_LAUNCH}\n{MATMUL_SUBGROUP}\n{}",
        subgroup_entry_point(trans_a, trans_b)
    );
    subgroup_module(std::borrow::Cow::Owned(source)).into_owned()
}

/// The WGSL entry point of SubgroupBroadcast for one transpose form, appended to
/// `shaders/matmul_subgroup.wgsl` (see its header for the scheme). Lane `l` owns columns
/// `c0 + 4l + 32h + e` (h < 2, e < 4) of a 64x64 block and all its 64 rows; its
/// accumulators are `acc{r}_{h}`, vec4s over e.
pub(crate) fn subgroup_entry_point(trans_a: bool, trans_b: bool) -> String {
    let form = match (trans_a, trans_b) {
        (false, false) => "nn",
        (false, true) => "nt",
        (true, false) => "tn",
        (true, true) => "tt",
    };
    let mut s = String::new();
    let mut line = |text: String| {
        s.push_str(&text);
        s.push('\n');
    };
    line("@compute @workgroup_size(8)".into());
    line(format!("fn matmul_subgroup_{form}("));
    line("    @builtin(workgroup_id) wg: vec3<u32>,".into());
    line("    @builtin(subgroup_invocation_id) lane: u32,".into());
    line(") {".into());
    line("    let block = block_index(wg);".into());
    line("    if block >= params.blocks {".into());
    line("        return;".into());
    line("    }".into());
    line(format!(
        "    let r0 = (block / params.col_blocks) * {SUBGROUP_ROWS}u;"
    ));
    line(format!(
        "    let c0 = (block % params.col_blocks) * {SUBGROUP_COLS}u;"
    ));
    // Where this lane's loads start, in vec4s. Rows and columns past the edge are clamped
    // to the last whole vec4 inside it: what they load is never stored.
    if trans_a {
        line(
            "    // op(A)[i, p] = a[p * m + i]: lane l loads rows r0 + 32h + 4l .. + 4 of one p."
                .into(),
        );
        for h in 0..SUBGROUP_ROWS / 32 {
            line(format!(
                "    let a_at{h} = (params.a_off + min(r0 + {}u + 4u * lane, params.m - 4u)) / 4u;",
                32 * h
            ));
        }
    } else {
        line(
            "    // op(A)[i, p] = a[i * k + p]: lane l loads p .. p + 4 of rows r0 + 8g + l."
                .into(),
        );
        for g in 0..SUBGROUP_ROWS / 8 {
            line(format!(
                "    let a_at{g} = (params.a_off + min(r0 + {}u + lane, params.m - 1u) * params.k) / 4u;",
                8 * g
            ));
        }
    }
    if trans_b {
        line(
            "    // op(B)[p, j] = b[j * k + p]: lane l loads p .. p + 4 of each of its columns."
                .into(),
        );
        for h in 0..2 {
            for e in 0..4 {
                line(format!(
                    "    let b_at{h}_{e} = (params.b_off + min(c0 + 4u * lane + {}u, params.n - 1u) * params.k) / 4u;",
                    32 * h + e
                ));
            }
        }
    } else {
        line(
            "    // op(B)[p, j] = b[p * n + j]: lane l loads its columns c0 + 4l + 32h .. + 4."
                .into(),
        );
        for h in 0..2 {
            line(format!(
                "    let b_at{h} = (params.b_off + min(c0 + 4u * lane + {}u, params.n - 4u)) / 4u;",
                32 * h
            ));
        }
    }
    for r in 0..SUBGROUP_ROWS {
        line(format!("    var acc{r}_0 = vec4<f32>();"));
        line(format!("    var acc{r}_1 = vec4<f32>();"));
    }
    line("    for (var p = 0u; p < params.k; p += 4u) {".into());
    if trans_a {
        for q in 0..4 {
            for h in 0..SUBGROUP_ROWS / 32 {
                line(format!(
                    "        let al{q}_{h} = a4[a_at{h} + (p + {q}u) * (params.m / 4u)];"
                ));
            }
        }
    } else {
        for g in 0..SUBGROUP_ROWS / 8 {
            line(format!("        let al{g} = a4[a_at{g} + p / 4u];"));
        }
    }
    // b{q}_{h}: op(B)[p + q, this lane's columns 32h + 0..4].
    if trans_b {
        for h in 0..2 {
            for e in 0..4 {
                line(format!("        let bt{h}_{e} = b4[b_at{h}_{e} + p / 4u];"));
            }
        }
        for q in 0..4 {
            for h in 0..2 {
                line(format!(
                    "        let b{q}_{h} = vec4<f32>(bt{h}_0[{q}], bt{h}_1[{q}], bt{h}_2[{q}], bt{h}_3[{q}]);"
                ));
            }
        }
    } else {
        for q in 0..4 {
            for h in 0..2 {
                line(format!(
                    "        let b{q}_{h} = b4[b_at{h} + (p + {q}u) * (params.n / 4u)];"
                ));
            }
        }
    }
    for r in 0..SUBGROUP_ROWS {
        for q in 0..4 {
            // op(A)[r0 + r, p + q], the same on every lane.
            let a = if trans_a {
                format!(
                    "subgroupBroadcast(al{q}_{}[{}], {}u)",
                    r / 32,
                    r % 4,
                    (r % 32) / 4
                )
            } else {
                format!("subgroupBroadcast(al{}[{q}], {}u)", r / 8, r % 8)
            };
            line(format!("        let s{r}_{q} = vec4<f32>({a});"));
            for h in 0..2 {
                line(format!(
                    "        acc{r}_{h} = fma(s{r}_{q}, b{q}_{h}, acc{r}_{h});"
                ));
            }
        }
    }
    line("    }".into());
    for h in 0..2 {
        line(format!(
            "    let bias{h} = bias4(min(c0 + 4u * lane + {}u, params.n - 4u));",
            32 * h
        ));
    }
    for r in 0..SUBGROUP_ROWS {
        line(format!("    if r0 + {r}u < params.m {{"));
        for h in 0..2 {
            line(format!(
                "        if c0 + 4u * lane + {}u < params.n {{ store4(r0 + {r}u, c0 + 4u * lane + {}u, acc{r}_{h}, bias{h}); }}",
                32 * h,
                32 * h
            ));
        }
        line("    }".into());
    }
    line("}".into());
    s
}

/// `NN`, `NT`, `TN` or `TT`.
pub fn form_name(s: MatmulShape) -> &'static str {
    match (s.trans_a, s.trans_b) {
        (false, false) => "NN",
        (false, true) => "NT",
        (true, false) => "TN",
        (true, true) => "TT",
    }
}

/// Time every available variant (or only `variants`, when given; Skinny only on products
/// of at most [`SKINNY_ROWS`] rows unless named) on `shapes`: the best of
/// `runs` runs after a warm-up, from timestamp queries when the adapter has them, else from
/// the wall time of one submit and wait per run. `on_row` sees each measurement as it comes
/// (the slow variants take seconds per product on a CPU adapter).
pub fn bench_matmul(
    gpu: &Gpu,
    shapes: &[MatmulShape],
    variants: Option<&[MatmulVariant]>,
    runs: usize,
    mut on_row: impl FnMut(&BenchRow),
) -> Result<Vec<BenchRow>> {
    let matmul = Matmul::new(gpu)?;
    let chosen = variants.map_or_else(|| matmul.variants_available(), |v| v.to_vec());
    let timer = Timer::new(gpu, runs.max(1));
    let mut rows = Vec::new();
    for &s in shapes {
        let a = gpu.storage_from("bench A", &bench_values(s.m * s.k, 1));
        let b = gpu.storage_from("bench B", &bench_values(s.k * s.n, 2));
        let c = gpu.storage("bench C", s.m * s.n);
        for &v in &chosen {
            if variants.is_none() && !v.candidate_for_rows(s.m) {
                continue;
            }
            let d = matmul.prepare_with(
                v,
                gpu,
                s,
                View::all(&a),
                View::all(&b),
                None,
                View::all(&c),
                false,
            )?;
            gpu.run(&[&d])?;
            let (seconds, clock) = timer.best(gpu, &d)?;
            let row = BenchRow::new(v.name().to_string(), s, (seconds, clock), d.flops, 4);
            on_row(&row);
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Deterministic non-zero values in [-0.5, 0.5] for benchmark operands.
fn bench_values(len: usize, seed: u64) -> Vec<f32> {
    let mut r = crate::rng::SplitMix64::new(seed);
    (0..len).map(|_| r.uniform(-0.5, 0.5) as f32).collect()
}

/// Timing waits for its readback; a browser tab cannot block (it never tunes).
fn read_blocking(gpu: &Gpu, buffer: &wgpu::Buffer, words: usize) -> Result<Vec<u32>> {
    #[cfg(not(target_arch = "wasm32"))]
    return gpu.read::<u32>(buffer, 0, words);
    #[cfg(target_arch = "wasm32")]
    {
        let _ = (gpu, buffer, words);
        anyhow::bail!("timing kernels blocks on a readback: only the native program does it")
    }
}

/// Times single dispatches: GPU timestamps around a pass when the adapter has them.
pub(crate) struct Timer {
    runs: usize,
    queries: Option<(wgpu::QuerySet, wgpu::Buffer)>,
}

impl Timer {
    pub(crate) fn new(gpu: &Gpu, runs: usize) -> Timer {
        let queries = gpu
            .features
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then(|| {
                let count = 2 * runs as u32;
                let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("matmul bench timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count,
                });
                let resolved = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("matmul bench timestamps"),
                    size: count as u64 * 8,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                (set, resolved)
            });
        Timer { runs, queries }
    }

    /// Best seconds of one run of `d`, and the clock used.
    pub(crate) fn best(&self, gpu: &Gpu, d: &Dispatch) -> Result<(f64, &'static str)> {
        let Some((set, resolved)) = &self.queries else {
            let mut best = f64::INFINITY;
            for _ in 0..self.runs {
                let t = Instant::now();
                gpu.run(&[d])?;
                best = best.min(t.elapsed().as_secs_f64());
            }
            return Ok((best, "wall"));
        };
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for r in 0..self.runs as u32 {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("matmul bench"),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: set,
                    beginning_of_pass_write_index: Some(2 * r),
                    end_of_pass_write_index: Some(2 * r + 1),
                }),
            });
            d.record(&mut pass);
        }
        enc.resolve_query_set(set, 0..2 * self.runs as u32, resolved, 0);
        gpu.queue.submit([enc.finish()]);
        let ticks: Vec<u64> = read_blocking(gpu, resolved, 4 * self.runs)?
            .chunks(2)
            .map(|w| w[0] as u64 | (w[1] as u64) << 32)
            .collect();
        let period = gpu.queue.get_timestamp_period() as f64 * 1e-9;
        let best = ticks
            .chunks(2)
            .map(|t| t[1].saturating_sub(t[0]) as f64 * period)
            .fold(f64::INFINITY, f64::min);
        Ok((best, "timestamps"))
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
