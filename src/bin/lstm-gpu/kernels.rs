//! The commands about the kernels themselves: `adapters`, `check` (each against its CPU
//! twin), `tune`, `profile`, `bench kernels` and `shaders`.

use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::PathBuf;

use lstm_gpu::config::ConfigArgs;
use lstm_gpu::error::usage;
use lstm_gpu::gpu::context::list_adapters;
use lstm_gpu::gpu::{tune, BackendChoice, GpuArgs};
use lstm_gpu::model::fit::Needs;
use lstm_gpu::model::schedule::Mode;
use lstm_gpu::train;

use crate::corpus::{read_corpus, CorpusArgs};
use crate::train::{check_writable, test_shape};

#[derive(Subcommand)]
pub(crate) enum ShadersCommand {
    /// Write every WGSL file the kernels are built from into DIR (created if missing); a
    /// file there that differs from the built-in one is kept, and an error, unless --force.
    Export {
        dir: PathBuf,
        /// Overwrite files that differ from the built-in ones.
        #[arg(long)]
        force: bool,
    },
    /// The WGSL files the kernels are built from, with their lines; with --shaders DIR,
    /// which of them the files there change.
    List {
        /// A folder as `--shaders` takes it.
        #[arg(long, value_name = "DIR", value_parser = lstm_gpu::gpu::shader_dir::ShaderDir::parse)]
        shaders: Option<lstm_gpu::gpu::shader_dir::ShaderDir>,
    },
}

#[derive(Subcommand)]
pub(crate) enum BenchCommand {
    /// GFLOP/s of every matmul variant on the model's shapes.
    Kernels {
        #[command(flatten)]
        gpu: GpuArgs,
        /// Only this variant (any name `--matmul` takes); repeatable. Without it, every
        /// variant the adapter has, skinny only on products of at most 4 rows, panel and
        /// panel-split on those of at most 64.
        #[arg(long = "variant")]
        variants: Vec<lstm_gpu::gpu::matmul::MatmulVariant>,
        /// Timed runs per product; the best counts.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
        runs: u32,
        /// Time this product instead of the seed model's: MxKxN, optionally with :NN, :NT,
        /// :TN or :TT for the transposes of A and B (e.g. 60x1024x256:NT); repeatable.
        #[arg(long = "shape")]
        shapes: Vec<lstm_gpu::reference::MatmulShape>,
        /// Print one JSON object (every row, and the tuned choices) instead of the table.
        #[arg(long)]
        json: bool,
        /// f32: every f32 variant; mixed: the f16-operand matmul of `--precision mixed`.
        #[arg(long, value_enum, default_value = "f32")]
        precision: lstm_gpu::config::Precision,
    },
}

#[derive(clap::Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    gpu: GpuArgs,
    /// Print one JSON object (every check, and the adapter) instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub(crate) struct ProfileArgs {
    #[command(flatten)]
    corpus: CorpusArgs,
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    gpu: GpuArgs,
    /// Training steps to time (each measurement).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Skip measuring the adapter's best matmul rate.
    #[arg(long)]
    no_matmul_peak: bool,
    /// Time on a generated id stream the size of PTB's training split instead of a corpus
    /// (for a machine without the corpus; the kernels' times do not depend on the words).
    #[arg(long, conflicts_with = "data")]
    synthetic: bool,
    /// Profile the adapter's default kernels rather than the tuned ones (tuned: read from
    /// the cache, or measured now when there are none).
    #[arg(long)]
    no_tune: bool,
    /// Also write the last timed step as a Chrome trace-event JSON file (open it in
    /// ui.perfetto.dev or chrome://tracing): the host's upload, recording, submit and wait
    /// on one track, each dispatch's GPU time on another.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct TuneArgs {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    gpu: GpuArgs,
    /// Batch size of the test pass to tune for too [default: 1, as `train` tests].
    #[arg(long)]
    test_batch_size: Option<usize>,
    /// Time steps per batch of the test pass to tune for [default: 1, as `train` tests].
    #[arg(long)]
    test_num_steps: Option<usize>,
    /// Print the tuned entry as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn adapters(backend: BackendChoice, json: bool) -> Result<()> {
    let list = list_adapters(backend);
    if list.is_empty() {
        anyhow::bail!(
            "no GPU adapter found: {}",
            lstm_gpu::gpu::context::NO_ADAPTER_HELP
        );
    }
    if json {
        let v: Vec<_> = list
            .iter()
            .map(|a| {
                serde_json::json!({"index": a.index, "name": a.info.name, "backend": format!("{:?}", a.info.backend),
                    "type": format!("{:?}", a.info.device_type), "driver": a.info.driver, "driver_info": a.info.driver_info,
                    "max_buffer_size": a.limits.max_buffer_size, "max_storage_buffer_binding_size": a.limits.max_storage_buffer_binding_size,
                    "subgroups": a.features.contains(wgpu::Features::SUBGROUP),
                    "f16": a.features.contains(wgpu::Features::SHADER_F16),
                    "cooperative_matrix": a.features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX),
                    "timestamps": a.features.contains(wgpu::Features::TIMESTAMP_QUERY)})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    // Columns as wide as their widest entry; the driver, the longest, last.
    let features = |f: wgpu::Features| {
        [
            (wgpu::Features::SUBGROUP, "subgroups"),
            (wgpu::Features::SHADER_F16, "f16"),
            (wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX, "coop"),
            (wgpu::Features::TIMESTAMP_QUERY, "timestamps"),
        ]
        .iter()
        .filter(|(bit, _)| f.contains(*bit))
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(",")
    };
    let mut rows = vec![[
        "#".to_string(),
        "name".into(),
        "backend".into(),
        "type".into(),
        "max buffer".into(),
        "max binding".into(),
        "features".into(),
        "driver".into(),
    ]];
    for a in &list {
        rows.push([
            a.index.to_string(),
            a.info.name.clone(),
            format!("{:?}", a.info.backend),
            format!("{:?}", a.info.device_type),
            format!("{} MiB", a.limits.max_buffer_size >> 20),
            format!("{} MiB", a.limits.max_storage_buffer_binding_size >> 20),
            features(a.features),
            format!("{} {}", a.info.driver, a.info.driver_info)
                .trim()
                .to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, cell)| match c {
                // The sizes right-aligned, the last column unpadded.
                4 | 5 => format!("{cell:>w$}", w = widths[c]),
                7 => cell.clone(),
                _ => format!("{cell:<w$}", w = widths[c]),
            })
            .collect();
        println!("{}", line.join("  "));
    }
    Ok(())
}

/// Tokens of PTB's training split (with `<eos>`), the size of `profile --synthetic`'s stream.
const PTB_TRAIN_TOKENS: usize = 929_589;

pub(crate) fn profile(args: ProfileArgs) -> Result<()> {
    let mut cfg = args.config.resolve()?;
    if args.steps == 0 {
        return Err(usage("--steps must be at least 1"));
    }
    let train_ids = if args.synthetic {
        lstm_gpu::profile::synthetic_ids(PTB_TRAIN_TOKENS, cfg.vocab_size, 1)
    } else {
        read_corpus(&args.corpus.source(true)?, &mut cfg, &args.config)?.train
    };
    lstm_gpu::data::Batches::new(&train_ids, cfg.batch_size, cfg.num_steps)
        .context("training split")?;
    let shapes = [(cfg.batch_size, cfg.num_steps, Mode::Train)];
    let needs = Needs::of_model(&cfg, &shapes);
    if let Some(path) = &args.trace {
        check_writable(path, "--trace")?;
    }
    args.gpu.check_precision(cfg.precision)?;
    let mut gpu = args.gpu.open(&needs)?;
    tune::choose(&mut gpu, &cfg, &shapes, !args.no_tune)?;
    let p = lstm_gpu::profile::profile(&gpu, &cfg, &train_ids, args.steps, !args.no_matmul_peak)?;
    if let Some(path) = &args.trace {
        let bytes = serde_json::to_vec(&p.chrome_trace())?;
        lstm_gpu::model::checkpoint::write_atomic(path, &bytes)
            .with_context(|| format!("--trace {}: could not write it", path.display()))?;
        eprintln!(
            "trace of one step written to {} (open it in ui.perfetto.dev or chrome://tracing)",
            path.display()
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print!("{}", p.table());
    }
    Ok(())
}

pub(crate) fn tune_command(args: TuneArgs) -> Result<()> {
    let cfg = args.config.resolve()?;
    let test_shape = test_shape(args.test_batch_size, args.test_num_steps)?;
    args.gpu.check_precision(cfg.precision)?;
    let mut gpu = args.gpu.open(&train::needs(&cfg, test_shape))?;
    let shapes = train::workspace_shapes(&cfg, test_shape);
    let t0 = std::time::Instant::now();
    let json = args.json;
    let entry = tune::tune_model(&mut gpu, &cfg, &shapes, |line| {
        if json {
            eprintln!("{line}")
        } else {
            println!("{line}")
        }
    })?;
    let secs = t0.elapsed().as_secs_f64();
    let path = tune::store(&gpu, &entry)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entry)?);
        return Ok(());
    }
    println!(
        "tuned {} products in {secs:.1} s on {} ({:?}); cached in {}",
        entry.matmul.len(),
        gpu.info.name,
        gpu.info.backend,
        path.display()
    );
    Ok(())
}

pub(crate) fn check_command(args: CheckArgs) -> Result<()> {
    use lstm_gpu::check::{self, Outcome};
    // Every buffer of the checks is a few KiB.
    let mut gpu = args.gpu.open(&Needs::at_most("check", 1 << 20))?;
    let name = gpu.info.name.clone();
    log::info!(
        "checking the kernels of {name} ({:?}) against their CPU twins",
        gpu.info.backend
    );
    if gpu.info.device_type == wgpu::DeviceType::Cpu {
        log::info!("{name} compiles each kernel at its first run: minutes on a cold shader cache");
    }
    let json = args.json;
    let mut row = |o: &Outcome| {
        if !json {
            println!("{}", check_row(o));
        }
    };
    if !json {
        println!("{}", check_header());
    }
    let all = pollster::block_on(check::all(&mut gpu, &mut row))?;
    let cases: usize = all.iter().map(|o| o.cases).sum();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "adapter": name,
                "backend": format!("{:?}", gpu.info.backend),
                "driver": gpu.info.driver_info,
                "checks": all.iter().map(Outcome::to_json).collect::<Vec<_>>(),
                "passed": all.iter().all(Outcome::passed),
            })
        );
    }
    check::verdict(&all, &name)?;
    log::info!("all {} checks ({cases} cases) passed on {name}", all.len());
    Ok(())
}

fn check_header() -> String {
    format!(
        "{:<32} {:>5}  {:>9}  {:>9}  {:<6} worst case",
        "check", "cases", "error", "tolerance", "result"
    )
}

/// One line of `check`'s table.
fn check_row(o: &lstm_gpu::check::Outcome) -> String {
    let error = if o.error.is_finite() {
        format!("{:.1e}", o.error)
    } else {
        "NaN/inf".to_string()
    };
    let mut line = format!(
        "{:<32} {:>5}  {:>9}  {:>9.0e}  {:<6} {}",
        o.check,
        o.cases,
        error,
        o.tolerance,
        if o.passed() { "ok" } else { "FAILED" },
        o.worst
    );
    if let Some(f) = &o.fault {
        line.push_str(&format!(" ({f})"));
    }
    line
}

pub(crate) fn shaders_command(command: ShadersCommand) -> Result<()> {
    use lstm_gpu::gpu::{shader_dir, shaders::FILES};
    match command {
        ShadersCommand::Export { dir, force } => {
            let written = shader_dir::export(&dir, force).map_err(|e| usage(format!("{e:#}")))?;
            let dir = train::shell_word(&dir.display().to_string());
            println!(
                "{} WGSL files written to {dir}; change any of them, then run with --shaders {dir}:",
                written.len()
            );
            println!("  lstm-gpu check --shaders {dir}      every kernel against its CPU twin");
            println!("  lstm-gpu profile --shaders {dir}    every kernel of a training step timed");
            println!("  lstm-gpu train --shaders {dir}      training on them");
            Ok(())
        }
        ShadersCommand::List { shaders } => {
            let changed = shaders.as_ref().map(|d| d.changed()).unwrap_or_default();
            for (name, text) in FILES {
                let mark = if changed.contains(name) {
                    format!("  changed in {}", shaders.as_ref().unwrap().dir().display())
                } else {
                    String::new()
                };
                println!("{name:<28} {:>5} lines{mark}", text.lines().count());
            }
            Ok(())
        }
    }
}

/// `bench kernels`: GFLOP/s of every matmul variant on every product of a seed training step
/// (or the shapes given), and the cached tuned choice of each against the fastest.
pub(crate) fn bench_kernels(command: BenchCommand) -> Result<()> {
    let BenchCommand::Kernels {
        gpu,
        variants,
        runs,
        shapes,
        json,
        precision,
    } = command;
    let seed = lstm_gpu::config::Config::default();
    let needs = if shapes.is_empty() {
        train::needs(&seed, (1, seed.num_steps))
    } else {
        Needs::of_products(&shapes)
    };
    gpu.check_precision(precision)?;
    let gpu = gpu.open(&needs)?;
    // Without --shape: every product of a seed training step, as the step
    // prepares them.
    let shapes = if shapes.is_empty() {
        tune::training_products(&gpu, &seed)?
    } else {
        shapes
    };
    let say = |line: &str| {
        if json {
            eprintln!("{line}")
        } else {
            println!("{line}")
        }
    };
    say(&format!(
        "adapter: {} ({:?}, {:?})",
        gpu.info.name, gpu.info.backend, gpu.info.device_type
    ));
    let rows = if precision == lstm_gpu::config::Precision::Mixed {
        if !variants.is_empty() {
            return Err(usage(
                "--variant names f32 kernels; --precision mixed times the f16 ones",
            ));
        }
        lstm_gpu::gpu::matmul_f16::bench_matmul_f16(&gpu, &shapes, runs as usize, |r| {
            say(&r.line())
        })?
    } else {
        lstm_gpu::gpu::matmul::bench_matmul(
            &gpu,
            &shapes,
            (!variants.is_empty()).then_some(&variants[..]),
            runs as usize,
            |r| say(&r.line()),
        )?
    };
    // How the cached tuned choice of each product fares in this very run.
    let mixed = precision == lstm_gpu::config::Precision::Mixed;
    if let Some(entry) = tune::cached(&gpu) {
        say("tuned choices (cached), against the fastest variant of this run:");
        for s in &shapes {
            let key = if mixed {
                lstm_gpu::gpu::matmul_f16::half_key(*s)
            } else {
                lstm_gpu::gpu::matmul::shape_key(*s)
            };
            let of_shape: Vec<_> = rows
                .iter()
                .filter(|r| {
                    (r.m, r.k, r.n) == (s.m, s.k, s.n)
                        && r.form == lstm_gpu::gpu::matmul::form_name(*s)
                })
                .collect();
            let (Some(choice), Some(best)) = (
                entry.matmul.get(&key),
                of_shape.iter().min_by(|a, b| a.ms.total_cmp(&b.ms)),
            ) else {
                continue;
            };
            // An f16 kernel's rows are named with its tile (the matrix units') and
            // `-split` where the step splits the product, as it then runs it.
            let row = if mixed {
                let of_choice =
                    |r: &&&lstm_gpu::gpu::matmul::BenchRow| r.variant.starts_with(choice.as_str());
                let split = of_shape
                    .iter()
                    .find(|r| of_choice(r) && r.variant.ends_with("-split"));
                split.or_else(|| of_shape.iter().find(of_choice))
            } else {
                of_shape.iter().find(|r| &r.variant == choice)
            };
            if let Some(t) = row {
                say(&format!(
                    "  {key:<20} {choice:<18} {:>9.3} ms {:>7.1} GFLOP/s {:>7.1} GB/s, {:.2}x the fastest ({} {:.3} ms)",
                    t.ms,
                    t.gflops,
                    t.gb_per_second,
                    t.ms / best.ms,
                    best.variant,
                    best.ms
                ));
            }
        }
    }
    if json {
        let tuned = tune::cached(&gpu).map(|e| e.matmul);
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "adapter": gpu.info.name, "backend": format!("{:?}", gpu.info.backend),
                "rows": rows, "tuned": tuned}))?
        );
    }
    Ok(())
}
