//! Kernel benchmark: every matmul variant on the seed model's product shapes.
//! `cargo bench --bench kernels`; results also go to target/bench-kernels.json.

use lstm_gpu::gpu::matmul::{bench_matmul, SEED_SHAPES};
use lstm_gpu::gpu::{AdapterChoice, BackendChoice, Gpu};

fn main() -> anyhow::Result<()> {
    let gpu = Gpu::new(&AdapterChoice::Auto, BackendChoice::Auto)?;
    println!("adapter: {} ({:?})", gpu.info.name, gpu.info.device_type);
    let rows = bench_matmul(&gpu, &SEED_SHAPES, None, 5)?;
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-kernels.json");
    std::fs::write(&out, serde_json::to_string_pretty(&rows)?)?;
    println!("wrote {}", out.display());
    Ok(())
}
