//! The matmul variants: what each computes per workgroup, its names, which the adapter runs
//! by default, its pipeline constants and how the split-K ones cut k.

use std::fmt;
use std::str::FromStr;

use super::*;

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
    pub(super) fn block(self) -> (usize, usize) {
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
                let block = 4 * crate::gpu::coop::F32_TILE as usize;
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

    /// Whether one launch of it can serve several products
    /// ([`Matmul::prepare_group_deferring_sum`]): the kernels without barriers.
    pub fn has_group_form(self) -> bool {
        matches!(
            self.unsplit(),
            MatmulVariant::Strip | MatmulVariant::StripQuad | MatmulVariant::Panel
        )
    }

    /// The variant that computes a slice of k: the split-K twin's unsplit kernel.
    pub(super) fn unsplit(self) -> MatmulVariant {
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
    // RegisterBlocked, 105-121 with Skinny and about 40 with Tiled (tests/browser/speed.rs,
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
pub(super) const SPLIT_TARGET_GROUPS: usize = 512;
/// ... with slices of at least this many steps of k ...
pub(super) const SPLIT_MIN_CHUNK: usize = 16;
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
    pub(super) fn splits(self) -> bool {
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
