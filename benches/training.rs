//! Training and evaluation throughput (words/s) at the seed configuration and the `small`
//! preset on the chosen adapter, on PTB batches. Reports; never fails for being slow.
//! `cargo bench --bench training`; results also go to target/bench-training.json.
//! The corpus comes from `LSTM_GPU_PTB_DIR` (default `../shared/data/ptb`); the number of
//! timed steps from `LSTM_GPU_BENCH_STEPS` (default 5).

use lstm_gpu::config::{Config, Preset};
use lstm_gpu::data::{Batches, Corpus};
use lstm_gpu::gpu::sgd::Hyper;
use lstm_gpu::gpu::{AdapterChoice, BackendChoice, Gpu};
use lstm_gpu::model::schedule::{Kernels, Mode, ParamBuffers, Workspace};
use lstm_gpu::model::Params;
use std::time::Instant;

#[derive(serde::Serialize)]
struct Row {
    preset: String,
    mode: String,
    batch_size: usize,
    num_steps: usize,
    steps: usize,
    ms_per_step: f64,
    words_per_second: f64,
}

fn time_steps(
    gpu: &Gpu,
    ws: &mut Workspace,
    batches: &Batches,
    steps: usize,
) -> anyhow::Result<f64> {
    let hyper = |i: usize| Hyper {
        learning_rate: 1.0,
        step: i as u32,
        seed: 1,
    };
    let (x, y) = batches.batch(0);
    ws.step(gpu, &x, &y, hyper(0))?;
    gpu.wait()?;
    let t0 = Instant::now();
    for i in 0..steps {
        let (x, y) = batches.batch((i + 1) % batches.len());
        ws.step(gpu, &x, &y, hyper(i + 1))?;
    }
    gpu.wait()?;
    Ok(t0.elapsed().as_secs_f64() / steps as f64)
}

fn main() -> anyhow::Result<()> {
    std::env::set_var(
        "XDG_RUNTIME_DIR",
        std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into()),
    );
    let dir = std::env::var("LSTM_GPU_PTB_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/ptb").into());
    let steps: usize = std::env::var("LSTM_GPU_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let gpu = Gpu::new(&AdapterChoice::Auto, BackendChoice::Auto)?;
    println!(
        "adapter: {} ({:?}, {:?})",
        gpu.info.name, gpu.info.backend, gpu.info.device_type
    );
    let corpus = Corpus::load(std::path::Path::new(&dir), 10_000)?;
    let kernels = Kernels::new(&gpu)?;
    let mut rows = Vec::new();
    println!(
        "{:<6} {:<6} {:>10} {:>12} {:>10}",
        "preset", "mode", "batch", "ms/step", "words/s"
    );
    for (name, preset) in [("seed", Preset::Seed), ("small", Preset::Small)] {
        let cfg = Config::preset(preset);
        let batches = Batches::new(&corpus.train, cfg.batch_size, cfg.num_steps)?;
        let params = ParamBuffers::upload(&gpu, &cfg, &Params::<f32>::init(&cfg, 1))?;
        for mode in [Mode::Train, Mode::Eval] {
            let mut ws = Workspace::new(
                &gpu,
                &kernels,
                &cfg,
                &params,
                cfg.batch_size,
                cfg.num_steps,
                mode,
            )?;
            ws.zero_state(&gpu);
            let secs = time_steps(&gpu, &mut ws, &batches, steps)?;
            let row = Row {
                preset: name.into(),
                mode: format!("{mode:?}").to_lowercase(),
                batch_size: cfg.batch_size,
                num_steps: cfg.num_steps,
                steps,
                ms_per_step: secs * 1e3,
                words_per_second: (cfg.batch_size * cfg.num_steps) as f64 / secs,
            };
            println!(
                "{:<6} {:<6} {:>7}x{:<2} {:>12.1} {:>10.0}",
                row.preset,
                row.mode,
                row.batch_size,
                row.num_steps,
                row.ms_per_step,
                row.words_per_second
            );
            rows.push(row);
        }
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-training.json");
    std::fs::write(&out, serde_json::to_string_pretty(&rows)?)?;
    println!("wrote {}", out.display());
    Ok(())
}
