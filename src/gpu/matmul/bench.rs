//! Timing the variants: `lstm-gpu bench kernels`, `cargo bench`, and the tuner's clock.

use web_time::Instant;

use super::*;

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

/// Time every available variant (or only `variants`, when given; Skinny only on products
/// of at most [`SKINNY_ROWS`] rows unless named) on `shapes`: the best of
/// `runs` runs after a warm-up, from timestamp queries when the adapter has them, else from
/// the wall clock (enough launches in one submit to last 4 ms). `on_row` sees each measurement as it comes
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
    for &v in &chosen {
        matmul.check_available(gpu, v)?;
    }
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

/// Times single dispatches: GPU timestamps around a pass when the adapter has them (natively;
/// a browser rounds its timestamps to 0.1 ms, coarser than many kernels), else the wall
/// clock around a submit and its wait, of enough launches in one pass to last
/// [`WALL_SPAN`], so that the wait's own cost is a small part of each launch's time.
pub(crate) struct Timer {
    runs: usize,
    queries: Option<(wgpu::QuerySet, wgpu::Buffer)>,
}

/// How long one wall-clock timing of a kernel lasts at least (unless it would take more
/// than [`WALL_LAUNCHES`] launches).
const WALL_SPAN: f64 = 4e-3;
const WALL_LAUNCHES: usize = 256;

impl Timer {
    pub(crate) fn new(gpu: &Gpu, runs: usize) -> Timer {
        let queries = (!cfg!(target_arch = "wasm32")
            && gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY))
        .then(|| gpu.timestamp_queries("matmul bench timestamps", 2 * runs as u32));
        Timer { runs, queries }
    }

    /// Best seconds of one run of `d`, and the clock used; blocks (natively only: a browser
    /// tab awaits [`Timer::best_async`]).
    pub(crate) fn best(&self, gpu: &Gpu, d: &Dispatch) -> Result<(f64, &'static str)> {
        #[cfg(target_arch = "wasm32")]
        {
            let _ = (gpu, d);
            anyhow::bail!("timing a kernel here blocks on the GPU: a browser tab awaits it")
        }
        #[cfg(not(target_arch = "wasm32"))]
        pollster::block_on(self.best_async(gpu, d))
    }

    /// [`Timer::best`], awaiting the GPU (in a browser tab).
    pub(crate) async fn best_async(&self, gpu: &Gpu, d: &Dispatch) -> Result<(f64, &'static str)> {
        let Some((set, resolved)) = &self.queries else {
            // One launch says how many make a timing of WALL_SPAN.
            let t = Instant::now();
            gpu.run_async(&[d]).await?;
            let one = t.elapsed().as_secs_f64().max(1e-7);
            let n = ((WALL_SPAN / one).ceil() as usize).clamp(1, WALL_LAUNCHES);
            let launches = vec![d; n];
            let mut best = if n == 1 { one } else { f64::INFINITY };
            for _ in 0..self.runs {
                let t = Instant::now();
                gpu.run_async(&launches).await?;
                best = best.min(t.elapsed().as_secs_f64() / n as f64);
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
        let ticks = gpu.read_ticks_async(resolved, 2 * self.runs).await?;
        let period = gpu.queue.get_timestamp_period() as f64 * 1e-9;
        let best = ticks
            .chunks(2)
            .map(|t| t[1].saturating_sub(t[0]) as f64 * period)
            .fold(f64::INFINITY, f64::min);
        Ok((best, "timestamps"))
    }
}
