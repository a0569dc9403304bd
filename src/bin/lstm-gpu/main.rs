//! The `lstm-gpu` command line: parse, call the library, print. Every error ends as one
//! line on stderr with exit code 2 (usage) or 1 (everything else).
//!
//! A module per group of commands: `corpus` (the corpus flags, `data`), `train`,
//! `inference` (`eval`, `predict`, `generate`, `embeddings`), `kernels` (`adapters`,
//! `check`, `tune`, `profile`, `bench`, `shaders`) and `analysis` (`info`, `plot`).

mod analysis;
mod corpus;
mod inference;
mod kernels;
mod train;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;

use lstm_gpu::config::ConfigArgs;
use lstm_gpu::error::{exit_code, one_line};
use lstm_gpu::gpu::BackendChoice;

use corpus::CorpusArgs;
use inference::{EmbeddingsCommand, EvalArgs, GenerateArgs, PredictArgs};
use kernels::{BenchCommand, CheckArgs, ProfileArgs, ShadersCommand, TuneArgs};
use train::TrainArgs;

#[derive(Parser)]
#[command(
    name = "lstm-gpu",
    version,
    about = "Train the Penn Treebank LSTM language model on any GPU with WGSL compute shaders (wgpu: Vulkan, Metal, DX12, GL)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every GPU adapter wgpu finds, with the limits that matter here.
    Adapters {
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendChoice,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// The corpus: `data info` measures it, `data fetch` downloads it.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Train the model on the GPU.
    Train(TrainArgs),
    /// Perplexity of a checkpoint on a split, on the GPU.
    Eval(EvalArgs),
    /// The most probable next words after a context, with their probabilities.
    Predict(PredictArgs),
    /// Generate text from a prompt.
    Generate(GenerateArgs),
    /// Word embeddings of a checkpoint: nearest neighbours, or a labelled t-SNE map.
    Embeddings {
        /// Checkpoint (it carries its vocabulary).
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(subcommand)]
        command: EmbeddingsCommand,
    },
    /// Draw learning curves (perplexity per epoch, words/s, gradient norms) from metrics.jsonl
    /// files or run folders.
    Plot {
        /// metrics.jsonl files or run folders; several runs share one plot.
        #[arg(required = true)]
        metrics: Vec<PathBuf>,
        /// Output image, .svg or .png.
        #[arg(long, short = 'o')]
        out: PathBuf,
    },
    /// What a checkpoint or a run folder holds, without a GPU: the model, its training
    /// configuration (and preset), where training stood, the best epoch; a run's epochs,
    /// test perplexity and checkpoints.
    Info {
        /// Checkpoints (.safetensors) or run folders; several run folders are compared in
        /// one table (a row each: epochs, best valid perplexity, test perplexity, speed).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Time every kernel of a training step and the step as a whole.
    Profile(ProfileArgs),
    /// Time the matmul variants on every product of a model and the fused, unfused and
    /// wavefront recurrences (each checked first: one that computes wrong results is left
    /// out), and cache the fastest for this adapter (`train` does it by itself once).
    Tune(TuneArgs),
    /// Check this adapter's kernels against their CPU twins: every matmul variant (and the
    /// f16 ones of --precision mixed) on awkward shapes in every transpose form, and whole
    /// training steps on every recurrence; exit 1 if any is off.
    Check(CheckArgs),
    /// The kernels' WGSL files: `shaders export DIR` writes them, to change and run with
    /// `--shaders DIR` (check, profile, tune, train, ...) without a rebuild.
    Shaders {
        #[command(subcommand)]
        command: ShadersCommand,
    },
    /// Print a tab-completion script for a shell, e.g. `lstm-gpu completions bash >
    /// ~/.local/share/bash-completion/completions/lstm-gpu`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Serve the training page (the same kernels on the browser's WebGPU) and the corpus, or
    /// with --export write them as a static site.
    Serve(ServeArgs),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

/// `serve`: where the page's files and the corpus come from, and where they go.
#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    corpus: CorpusArgs,
    /// Serve no corpus: the page trains on files the user picks.
    #[arg(long, conflicts_with_all = ["data", "train"])]
    no_data: bool,
    /// Port [0: any free one].
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Address to listen on (0.0.0.0: every interface, so that other machines reach it).
    #[arg(long, default_value = "127.0.0.1")]
    listen: std::net::IpAddr,
    /// The folder holding www/ and the built pkg/ [default: the checkout's web/, else
    /// web/ beside the executable].
    #[arg(long)]
    web: Option<PathBuf>,
    /// Instead of serving: write the page, its wasm module and the corpus into DIR as
    /// the static files any web host serves (GitHub Pages, a course's site), so that
    /// students need nothing but a browser with WebGPU (which needs https:// or localhost).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["port", "listen"])]
    export: Option<PathBuf>,
    /// Checkpoints to offer the page, to ask a trained model or train on from it without
    /// training first (e.g. the course's seed model): the first as `data/model.safetensors`,
    /// which the address printed (`?checkpoint=data/model.safetensors`) loads; several (a
    /// course's small, medium and large models) are listed on the page to choose from.
    #[arg(long, value_name = "PATH", num_args = 1..)]
    checkpoint: Vec<PathBuf>,
}

// Parsed once per run: the size of the larger variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum DataCommand {
    /// Vocabulary size, tokens per split and batches per epoch at the given flags.
    Info {
        #[command(flatten)]
        corpus: CorpusArgs,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Download the PTB corpus (Mikolov's simple-examples.tgz, or where that fails the same
    /// files from an HTTPS mirror), verify its MD5 sums and write the three files.
    Fetch {
        /// Destination folder [default: the default corpus folder].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Archive URL (http://, https:// or file://), or a folder's URL ending in / that holds
        /// ptb.{train,valid,test}.txt [default: $LSTM_GPU_PTB_URL, else the canonical archive
        /// and then the mirror].
        #[arg(long)]
        url: Option<String>,
    },
}

fn main() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // Mesa's lavapipe warns on every start without it.
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    lstm_gpu::signals::ignore_file_size_signal();
    // wgpu's own info lines (the cooperative-matrix tiles it found, ...) are for RUST_LOG.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,wgpu_hal=warn,wgpu_core=warn,naga=warn"),
    )
    .format_target(false)
    .format_timestamp_secs()
    .init();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Train(_) | Command::Serve { .. }) {
        lstm_gpu::signals::default_pipe_signal();
    }
    if let Err(e) = run(cli) {
        eprintln!("error: {}", one_line(&e));
        std::process::exit(exit_code(&e));
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Adapters { backend, json } => kernels::adapters(backend, json),
        Command::Data {
            command: DataCommand::Info { corpus, config },
        } => corpus::data_info(corpus, config),
        Command::Data {
            command: DataCommand::Fetch { dir, url },
        } => corpus::data_fetch(dir, url),
        Command::Train(args) => train::train_command(args),
        Command::Serve(args) => serve(args),
        Command::Eval(args) => inference::eval_command(args),
        Command::Predict(args) => inference::predict_command(args),
        Command::Generate(args) => inference::generate_command(args),
        Command::Embeddings {
            checkpoint,
            command,
        } => inference::embeddings(checkpoint, command),
        Command::Profile(args) => kernels::profile(args),
        Command::Tune(args) => kernels::tune_command(args),
        Command::Check(args) => kernels::check_command(args),
        Command::Shaders { command } => kernels::shaders_command(command),
        Command::Bench { command } => kernels::bench_kernels(command),
        Command::Info { paths, json } => analysis::info(paths, json),
        Command::Plot { metrics, out } => analysis::plot(metrics, out),
        Command::Completions { shell } => completions(shell),
    }
}

/// `serve`: the page and the corpus over HTTP, or (`--export DIR`) as a static site.
fn serve(args: ServeArgs) -> Result<()> {
    let web = lstm_gpu::serve::web_dir(args.web.as_deref())?;
    let corpus = if args.no_data {
        None
    } else {
        // Without corpus flags, the one the first model offered was trained on.
        let recorded = args
            .checkpoint
            .first()
            .and_then(|p| lstm_gpu::model::checkpoint::Checkpoint::read_header(p).ok())
            .and_then(|h| h.corpus);
        let (source, origin) = args.corpus.source_or(recorded.as_ref())?;
        if let Some(note) = corpus::recorded_note(&origin, &args.corpus) {
            log::info!("{note}");
        }
        Some(source)
    };
    let Some(dir) = args.export else {
        return lstm_gpu::serve::serve(lstm_gpu::serve::ServeOptions {
            listen: args.listen,
            port: args.port,
            web,
            corpus,
            checkpoints: args.checkpoint,
        });
    };
    let with_corpus = corpus.is_some();
    let models = args.checkpoint.len();
    let (files, bytes) = lstm_gpu::serve::export(&lstm_gpu::serve::ExportOptions {
        web,
        corpus,
        checkpoints: args.checkpoint,
        dir: dir.clone(),
    })?;
    let model = match models {
        0 => String::new(),
        1 => "the model".to_string(),
        n => format!("{n} models"),
    };
    let what = match (with_corpus, models > 0) {
        (true, true) => format!(" with the corpus and {model}"),
        (true, false) => " and the corpus".to_string(),
        (false, true) => format!(" and {model} (no corpus: it asks for files)"),
        (false, false) => " (no corpus: it asks for files)".to_string(),
    };
    let open = match models {
        0 => " its address".to_string(),
        1 => format!(
            " its address with ?checkpoint={} (which loads the model)",
            lstm_gpu::serve::MODEL_ROUTE
        ),
        _ => format!(
            " its address with ?checkpoint={} (which loads the first model; the page offers the others)",
            lstm_gpu::serve::MODEL_ROUTE
        ),
    };
    println!(
        "the page{what} written to {} ({files} files, {:.1} MB): put the folder on any static web \
         host (GitHub Pages, a course's site) and open{open} in a browser with WebGPU \
         (https:// or localhost); to try it here: python3 -m http.server -d {} 8000",
        dir.display(),
        bytes as f64 / 1e6,
        lstm_gpu::train::shell_word(&dir.display().to_string())
    );
    Ok(())
}

/// `completions SHELL`: the tab-completion script of this command line.
fn completions(shell: clap_complete::Shell) -> Result<()> {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "lstm-gpu", &mut script);
    if shell == clap_complete::Shell::Bash {
        // clap_complete 4.6 spells the bash states of a hyphenated program's
        // subcommands two ways (`lstm__gpu__subcmd__train` where it walks the words,
        // `lstm__subcmd__gpu__subcmd__train` in the arms), so no subcommand's flags
        // complete (clap-rs/clap#6421, #6529): one spelling. A no-op once fixed.
        script = String::from_utf8_lossy(&script)
            .replace("lstm__subcmd__gpu", "lstm__gpu")
            .into_bytes();
    }
    // A reader that stops early (`| head`) is not an error.
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
