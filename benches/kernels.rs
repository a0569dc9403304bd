//! Kernel benchmark: every matmul variant on the seed model's product shapes, plus the
//! transposed layer-1 products of the training step (TN weight gradient, NT input gradient).
//! `cargo bench --bench kernels`; results also go to target/bench-kernels.json.

use lstm_gpu::gpu::matmul::{bench_matmul, SEED_SHAPES};
use lstm_gpu::gpu::{AdapterChoice, BackendChoice, Gpu};
use lstm_gpu::reference::MatmulShape;

/// Layer 1's weight gradient (TN) and input gradient (NT) over a whole sequence.
const TRAINING_SHAPES: [MatmulShape; 2] = [
    MatmulShape {
        m: 456,
        k: 1200,
        n: 1024,
        trans_a: true,
        trans_b: false,
    },
    MatmulShape {
        m: 1200,
        k: 1024,
        n: 456,
        trans_a: false,
        trans_b: true,
    },
];

fn main() -> anyhow::Result<()> {
    let gpu = Gpu::new(&AdapterChoice::Auto, BackendChoice::Auto)?;
    println!("adapter: {} ({:?})", gpu.info.name, gpu.info.device_type);
    let shapes: Vec<MatmulShape> = SEED_SHAPES
        .iter()
        .chain(&TRAINING_SHAPES)
        .copied()
        .collect();
    // Few runs: the slowest variants take seconds per product on a CPU adapter.
    let rows = bench_matmul(&gpu, &shapes, None, 2, |r| println!("{}", r.line()))?;
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-kernels.json");
    std::fs::write(&out, serde_json::to_string_pretty(&rows)?)?;
    println!("wrote {}", out.display());
    Ok(())
}
