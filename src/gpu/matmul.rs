//! Matrix products `C = op(A) @ op(B) (+ bias) (+ C)`: the launcher of `shaders/matmul*.wgsl`,
//! whose CPU twin is [`crate::reference::matmul`].
//!
//! Several kernels compute the same thing with different blockings, because what is fast
//! differs by adapter: real GPUs reward workgroup-memory tiles, while a CPU rasteriser such as
//! lavapipe (llvmpipe: every invocation a SIMD lane, a whole workgroup run by one thread,
//! barriers expensive, every per-lane load a gather) rewards kernels that make the fewest
//! per-lane loads per multiply-add and no barriers. [`Matmul::new`] compiles the variants the
//! adapter supports and picks one per adapter type; [`bench_matmul`] measures them all.
//!
//! The transposes are strides in the uniform block, so every variant serves NN, NT, TN and
//! TT through one entry point.

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{bail, Result};

use super::{groups_1d, Dispatch, Gpu, View};
use crate::reference::MatmulShape;

const SHADER: &str = include_str!("../../shaders/matmul.wgsl");
const SUBGROUP_SHADER: &str = include_str!("../../shaders/matmul_subgroup.wgsl");

/// The smallest subgroup `shaders/matmul_subgroup.wgsl` works with: its workgroup of 8
/// invocations must be a single subgroup.
const MIN_SUBGROUP_SIZE: u32 = 8;

/// One way of computing the product; all give the same results up to f32 rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulVariant {
    /// Workgroup-memory tiles of A and B shared by 256 invocations, 4x4 outputs each: what
    /// real GPUs reward.
    Tiled,
    /// No workgroup memory and no barriers: every invocation keeps an 8x8 block of C in
    /// registers and loads its own rows of A and columns of B.
    RegisterBlocked,
    /// Register blocks of 8x8 in which one vec4 load per invocation brings in a piece of A
    /// for its whole subgroup, shared with `subgroupBroadcast`: the fewest loads per
    /// multiply-add, lavapipe's fastest. Needs subgroups of at least 8 invocations, and
    /// sizes and offsets that are multiples of 4 words (RegisterBlocked runs otherwise).
    SubgroupBroadcast,
}

impl MatmulVariant {
    /// Every variant, in the order benchmarks list them.
    pub const ALL: [MatmulVariant; 3] = [
        MatmulVariant::Tiled,
        MatmulVariant::RegisterBlocked,
        MatmulVariant::SubgroupBroadcast,
    ];

    /// The WGSL entry point for the transposes of `shape`, also the label of its
    /// dispatches. SubgroupBroadcast has one per transpose form (its loads differ).
    pub fn entry_point(self, shape: MatmulShape) -> &'static str {
        match (self, shape.trans_a, shape.trans_b) {
            (MatmulVariant::Tiled, ..) => "matmul_tiled",
            (MatmulVariant::RegisterBlocked, ..) => "matmul_register_blocked",
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
            MatmulVariant::RegisterBlocked => "register-blocked",
            MatmulVariant::SubgroupBroadcast => "subgroup-broadcast",
        }
    }

    /// Rows and columns of C that one workgroup computes (see the shader's constants).
    fn block(self) -> (usize, usize) {
        match self {
            MatmulVariant::Tiled => (64, 64),
            MatmulVariant::RegisterBlocked => (64, 64),
            MatmulVariant::SubgroupBroadcast => (8, 64),
        }
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

/// The uniform block of `shaders/matmul.wgsl` (`Params`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    k: u32,
    n: u32,
    flags: u32,
    a_off: u32,
    a_row: u32,
    a_col: u32,
    b_off: u32,
    b_row: u32,
    b_col: u32,
    bias_off: u32,
    c_off: u32,
    col_blocks: u32,
    blocks: u32,
    groups_x: u32,
    _pad: u32,
}

const HAS_BIAS: u32 = 1;
const ACCUMULATE: u32 = 2;

/// The compiled matmul kernels of one device and the variant used by default.
pub struct Matmul {
    /// Every available variant with its pipelines by entry point.
    variants: Vec<(MatmulVariant, Vec<(&'static str, wgpu::ComputePipeline)>)>,
    default: MatmulVariant,
}

impl Matmul {
    /// Compile every variant the adapter supports and choose the default for its type:
    /// the fastest register-blocked kernel on a CPU adapter, workgroup-memory tiles on GPUs.
    ///
    /// The choice is a fixed rule rather than a start-up timing: it is reproducible, costs
    /// nothing at start-up (timing on lavapipe would take seconds), and `with_variant` or
    /// `lstm-gpu bench kernels` cover the cases where measuring matters.
    pub fn new(gpu: &Gpu) -> Result<Matmul> {
        let variant = match gpu.info.device_type {
            wgpu::DeviceType::Cpu => MatmulVariant::SubgroupBroadcast,
            _ => MatmulVariant::Tiled,
        };
        Matmul::with_variant(gpu, variant)
    }

    /// Compile every variant the adapter supports, with `default` as the default one.
    pub fn with_variant(gpu: &Gpu, default: MatmulVariant) -> Result<Matmul> {
        let portable = gpu.shader("matmul", SHADER)?;
        let mut variants = Vec::new();
        for v in [MatmulVariant::Tiled, MatmulVariant::RegisterBlocked] {
            let entry = v.entry_point(shape(1, 1, 1, false, false));
            variants.push((v, vec![(entry, gpu.pipeline(entry, &portable, entry)?)]));
        }
        // The adapter's subgroup size range decides, not an assumed width: lavapipe reports
        // 8 (AVX2) or 16 (AVX-512), GPUs 16 to 128; smaller subgroups (WARP's 4) cannot hold
        // the 8 lanes the kernel broadcasts from.
        if gpu.has_subgroups() && gpu.info.subgroup_min_size >= MIN_SUBGROUP_SIZE {
            let module = gpu.shader("matmul_subgroup", SUBGROUP_SHADER)?;
            let mut pipelines = Vec::new();
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let entry = MatmulVariant::SubgroupBroadcast.entry_point(shape(1, 1, 1, ta, tb));
                pipelines.push((entry, gpu.pipeline(entry, &module, entry)?));
            }
            variants.push((MatmulVariant::SubgroupBroadcast, pipelines));
        }
        let m = Matmul { variants, default };
        if !m.variants_available().contains(&default) {
            bail!(
                "matmul variant {default} is not available on adapter {}",
                gpu.info.name
            );
        }
        Ok(m)
    }

    /// The variant [`Matmul::prepare`] uses.
    pub fn variant(&self) -> MatmulVariant {
        self.default
    }

    /// The variants compiled for this adapter.
    pub fn variants_available(&self) -> Vec<MatmulVariant> {
        self.variants.iter().map(|(v, _)| *v).collect()
    }

    /// A dispatch of the default variant; see [`Matmul::prepare_with`].
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
        self.prepare_with(self.default, gpu, shape, a, b, bias, c, accumulate)
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
        let MatmulShape {
            m,
            k,
            n,
            trans_a,
            trans_b,
        } = shape;
        if !self.variants_available().contains(&variant) {
            bail!(
                "matmul variant {variant} is not available on adapter {}",
                gpu.info.name
            );
        }
        // SubgroupBroadcast reads vec4s: sizes and offsets must be multiples of 4 words.
        let vec4_aligned = [m, k, n, a.offset, b.offset].iter().all(|v| v % 4 == 0);
        let variant = match variant {
            MatmulVariant::SubgroupBroadcast if !vec4_aligned => MatmulVariant::RegisterBlocked,
            v => v,
        };
        let label = variant.entry_point(shape);
        let pipeline = self
            .variants
            .iter()
            .filter(|(v, _)| *v == variant)
            .flat_map(|(_, pipelines)| pipelines)
            .find(|(entry, _)| *entry == label)
            .map(|(_, p)| p)
            .expect("every available variant has a pipeline per entry point");
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
        let (rows, cols) = variant.block();
        let row_blocks = m.div_ceil(rows);
        let col_blocks = n.div_ceil(cols);
        let blocks = row_blocks * col_blocks;
        let (gx, gy) = groups_1d(blocks, 1);
        // op(A)[i, p] = a[a_off + i * a_row + p * a_col], op(B)[p, j] likewise.
        let (a_row, a_col) = if trans_a { (1, m) } else { (k, 1) };
        let (b_row, b_col) = if trans_b { (1, k) } else { (n, 1) };
        let params = Params {
            m: m as u32,
            k: k as u32,
            n: n as u32,
            flags: if bias.is_some() { HAS_BIAS } else { 0 }
                | if accumulate { ACCUMULATE } else { 0 },
            a_off: a.offset as u32,
            a_row: a_row as u32,
            a_col: a_col as u32,
            b_off: b.offset as u32,
            b_row: b_row as u32,
            b_col: b_col as u32,
            bias_off: bias.map_or(0, |v| v.offset as u32),
            c_off: c.offset as u32,
            col_blocks: word("column blocks", col_blocks)?,
            blocks: word("blocks", blocks)?,
            groups_x: gx,
            _pad: 0,
        };
        let uniforms = gpu.uniform_from(label, &params);
        // Without a bias the kernel never reads binding 2; A's buffer stands in for it.
        let bias_buffer = bias.map_or(a.buffer, |v| v.buffer);
        let bind_group = gpu.bind(
            label,
            pipeline,
            &[a.buffer, b.buffer, bias_buffer, c.buffer, &uniforms],
        );
        let (mf, kf, nf) = (m as f64, k as f64, n as f64);
        let c_traffic = if accumulate { 2.0 } else { 1.0 } * mf * nf;
        Ok(Dispatch {
            label: label.to_string(),
            pipeline: pipeline.clone(),
            bind_group,
            groups: (gx, gy, 1),
            flops: 2.0 * mf * nf * kf,
            bytes: 4.0 * (mf * kf + kf * nf + c_traffic + bias.map_or(0.0, |_| nf)),
            uniforms: Some(uniforms),
        })
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
    /// How the time was taken: `timestamps` or `wall`.
    pub clock: String,
}

/// The product shapes of one training step of the seed model, with the transposes they
/// are used with: per-step recurrent, logits, softmax weight gradient, d(h2), input
/// projection, a whole-sequence layer-1 product.
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

/// `NN`, `NT`, `TN` or `TT`.
pub fn form_name(s: MatmulShape) -> &'static str {
    match (s.trans_a, s.trans_b) {
        (false, false) => "NN",
        (false, true) => "NT",
        (true, false) => "TN",
        (true, true) => "TT",
    }
}

/// Time every available variant (or only `variants`, when given) on `shapes`: the best of
/// `runs` runs after a warm-up, from timestamp queries when the adapter has them, else from
/// the wall time of one submit and wait per run. Prints one line per measurement.
pub fn bench_matmul(
    gpu: &Gpu,
    shapes: &[MatmulShape],
    variants: Option<&[MatmulVariant]>,
    runs: usize,
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
            let row = BenchRow {
                variant: v.name().to_string(),
                form: form_name(s).to_string(),
                m: s.m,
                k: s.k,
                n: s.n,
                ms: seconds * 1e3,
                gflops: d.flops / seconds / 1e9,
                clock: clock.to_string(),
            };
            println!(
                "matmul {:>16} {} {:>5}x{:<5}x{:>5} {:>9.3} ms {:>7.1} GFLOP/s",
                row.variant, row.form, row.m, row.k, row.n, row.ms, row.gflops
            );
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

/// Times single dispatches: GPU timestamps around a pass when the adapter has them.
struct Timer {
    runs: usize,
    queries: Option<(wgpu::QuerySet, wgpu::Buffer)>,
}

impl Timer {
    fn new(gpu: &Gpu, runs: usize) -> Timer {
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
    fn best(&self, gpu: &Gpu, d: &Dispatch) -> Result<(f64, &'static str)> {
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
        let ticks: Vec<u64> = gpu
            .read::<u32>(resolved, 0, 4 * self.runs)?
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
