//! The `lstm-gpu` command line: parse, call the library, print. Every error ends as one
//! line on stderr with exit code 2 (usage) or 1 (everything else).

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

use lstm_gpu::config::{Config, ConfigArgs};
use lstm_gpu::data::{self, fetch, Corpus, CorpusSource, Split, Tokens, Vocab};
use lstm_gpu::error::{exit_code, one_line, usage};
use lstm_gpu::gpu::context::list_adapters;
use lstm_gpu::gpu::{tune, BackendChoice, GpuArgs};
use lstm_gpu::model::checkpoint::Checkpoint;
use lstm_gpu::model::fit::Needs;
use lstm_gpu::model::predict::Predictor;
use lstm_gpu::model::schedule::{Kernels, Mode, ParamBuffers, Workspace};

use lstm_gpu::train::{self, TrainOptions};
use std::io::Write;

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
    /// Draw learning curves (perplexity per epoch, words/s) from metrics.jsonl files or run folders.
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
    /// Serve the training page (the same kernels on the browser's WebGPU) and the corpus.
    Serve {
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
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
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
    /// Download the PTB corpus (Mikolov's simple-examples.tgz), verify its MD5 sums and
    /// write the three files.
    Fetch {
        /// Destination folder [default: the default corpus folder].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Archive URL (http:// or file://) [default: the canonical one, or $LSTM_GPU_PTB_URL].
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Subcommand)]
enum EmbeddingsCommand {
    /// The nearest words by cosine similarity.
    Neighbors {
        word: String,
        /// How many neighbours.
        #[arg(short, default_value_t = 10)]
        k: usize,
    },
    /// A 2-D t-SNE map of the most frequent words, each point labelled.
    Map {
        /// Output image, .svg or .png.
        #[arg(long)]
        out: PathBuf,
        /// How many of the most frequent words.
        #[arg(long, default_value_t = 500)]
        words: usize,
    },
}

#[derive(Subcommand)]
enum ShadersCommand {
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
enum BenchCommand {
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

/// Where the corpus is: a folder, or files named one by one.
#[derive(Clone, Debug, Default, clap::Args)]
struct CorpusArgs {
    /// Corpus folder holding ptb.{train,valid,test}.txt, {train,valid,test}.txt or
    /// wiki.{train,valid,test}.tokens [default: the default corpus folder (PTB), downloaded
    /// when missing].
    #[arg(long, conflicts_with_all = ["train", "valid", "test"])]
    data: Option<PathBuf>,
    /// The training text (instead of --data).
    #[arg(long)]
    train: Option<PathBuf>,
    /// The validation text (with --train).
    #[arg(long, requires = "train")]
    valid: Option<PathBuf>,
    /// The test text (with --train).
    #[arg(long, requires = "train")]
    test: Option<PathBuf>,
    /// A missing valid or test split is the last F of the training text (cut at a line
    /// boundary; valid before test when both are missing), which training then leaves out.
    #[arg(long, value_name = "F")]
    valid_fraction: Option<f64>,
}

impl CorpusArgs {
    /// The corpus these flags name. Without any, the default folder (fetched when missing
    /// and `fetch` is set).
    fn source(&self, fetch: bool) -> Result<CorpusSource> {
        if let Some(train) = &self.train {
            return CorpusSource::files(
                train,
                self.valid.as_deref(),
                self.test.as_deref(),
                self.valid_fraction,
            );
        }
        let dir = match &self.data {
            Some(_) => corpus_dir(self.data.clone())?,
            None if fetch => corpus_dir(None)?,
            None => fetch::default_data_dir(),
        };
        CorpusSource::folder(&dir, self.valid_fraction)
    }
}

#[derive(clap::Args)]
struct TrainArgs {
    #[command(flatten)]
    corpus: CorpusArgs,
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    gpu: GpuArgs,
    /// Stop after this many training steps counted from the very start (a resumed run stops
    /// where the uninterrupted one would).
    #[arg(long)]
    max_steps: Option<u64>,
    /// Seed of initialisation and dropout: same seed, same adapter, same result.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Progress every N steps [default: every 10% of an epoch].
    #[arg(long)]
    log_every: Option<usize>,
    /// Folder of this run's metrics.jsonl and checkpoints [default: runs/<date-time>].
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Also save a checkpoint every N steps (epoch ends always save).
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Keep only the newest N `epoch-N` and the newest N `step-N` checkpoints (as
    /// TensorFlow's Saver keeps 5); `best.safetensors` (the epoch with the lowest validation
    /// perplexity) and `last.safetensors` always stay [default: keep every one].
    #[arg(long, value_name = "N")]
    keep_checkpoints: Option<usize>,
    /// Stop early once N epochs in a row ended without a lower validation perplexity than
    /// the best so far (Keras' EarlyStopping); the test pass still runs, on the weights the
    /// run ended with, and `best.safetensors` holds the best epoch [default: never].
    #[arg(long, value_name = "N")]
    patience: Option<usize>,
    /// Continue exactly where a checkpoint stopped; a run folder stands for its
    /// last.safetensors. The run goes on in the checkpoint's folder unless --run-dir says
    /// otherwise.
    #[arg(long, conflicts_with = "init")]
    resume: Option<PathBuf>,
    /// Start from the weights of a safetensors file (documented names and shapes).
    #[arg(long)]
    init: Option<PathBuf>,
    /// Batch size of the final test pass [default: 1, as the TensorFlow tutorial tests: the
    /// split read as one stream, each word with its whole history; the training batch size
    /// is faster but cuts the split into that many rows that each start from a zero state].
    #[arg(long)]
    test_batch_size: Option<usize>,
    /// Time steps per batch of the final test pass [default: 1, as the TensorFlow tutorial
    /// tests: every word of the split is scored; longer batches drop the split's last
    /// words that do not fill one].
    #[arg(long)]
    test_num_steps: Option<usize>,
    /// No progress bar, plain log lines.
    #[arg(long)]
    no_progress: bool,
    /// Skip the validation pass when --max-steps stops a run mid-epoch.
    #[arg(long)]
    no_eval_at_stop: bool,
    /// A step whose loss or gradient norm is NaN or infinite never updates the parameters;
    /// then `stop` ends the run at the next progress point, naming the step (the last
    /// checkpoint is kept), and `skip` goes on (the carried state rows that are not finite
    /// start over from zero) and reports the skipped steps.
    #[arg(long, value_enum, default_value = "stop")]
    on_nan: train::OnNan,
    /// With --on-nan skip: stop when this many steps in a row were skipped (checked at
    /// progress points; 0: never stop).
    #[arg(long, default_value_t = 100)]
    max_skips_in_a_row: u64,
    /// Run the adapter's default kernels, without tuning them on a first run (choices
    /// cached by an earlier run or `lstm-gpu tune` are still read).
    #[arg(long)]
    no_tune: bool,
}

#[derive(clap::Args)]
struct CheckArgs {
    #[command(flatten)]
    gpu: GpuArgs,
    /// Print one JSON object (every check, and the adapter) instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// Checkpoint to evaluate.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Split to evaluate.
    #[arg(long, value_enum, default_value = "valid")]
    split: SplitArg,
    /// Score this text instead of a corpus split: any UTF-8 file, read with the checkpoint's
    /// tokens and vocabulary (a word the vocabulary lacks is looked up lower-cased, then read
    /// as <unk>, and the run says how many; every line end is an <eos>), as one stream at
    /// batch 1 unless --batch-size and --num-steps say otherwise.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["data", "train", "valid_fraction", "split"])]
    text: Option<PathBuf>,
    #[command(flatten)]
    corpus: CorpusArgs,
    /// Batch size [default: 1 for the test split, as `train`'s test pass and the TensorFlow
    /// tutorial score it (one stream, every word with its whole history); the checkpoint's
    /// for the others, as training validates].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Time steps per batch [default: 1 for the test split, as `train`'s test pass and the
    /// TensorFlow tutorial score it (every word of the split); the checkpoint's for the
    /// others].
    #[arg(long)]
    num_steps: Option<usize>,
    #[command(flatten)]
    gpu: GpuArgs,
}

#[derive(clap::Args)]
struct ProfileArgs {
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
struct TuneArgs {
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

#[derive(clap::Args)]
struct PredictArgs {
    /// Checkpoint (it carries its vocabulary).
    #[arg(long)]
    checkpoint: PathBuf,
    /// How many words to list.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Instead of the next words: how probable the model finds each word of CONTEXT after
    /// the words before it (from a sentence start, `<eos>`, where the vocabulary has one;
    /// every line end its own `<eos>`, as `eval --text` reads a text), with its rank among
    /// all words, and the text's perplexity.
    #[arg(long, conflicts_with = "top_k")]
    score: bool,
    #[command(flatten)]
    gpu: GpuArgs,
    /// The context, e.g. "the stock market" (with --score, the text to score). Without it,
    /// contexts are read from standard input, one per line, the model kept loaded between
    /// them (a prompt on a terminal; a table, or a JSON line with --json, per line).
    context: Option<String>,
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// Checkpoint (it carries its vocabulary).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Text to start from. Without it, prompts are read from standard input, one per line,
    /// the model kept loaded between them (a prompt on a terminal).
    #[arg(long)]
    prompt: Option<String>,
    /// Tokens to generate: words, or characters for a character-level model.
    #[arg(long, alias = "chars", default_value_t = 50)]
    words: usize,
    /// Sampling temperature: lower is more conservative.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    temperature: f32,
    /// Sample only among the k most probable words (0: all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Nucleus sampling: only among the fewest most probable words whose probability
    /// together reaches P, after the temperature and --top-k (1: all; 0.9 is common).
    #[arg(
        long,
        value_name = "P",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    top_p: f32,
    /// Seed of the sampler: same seed, same text.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    gpu: GpuArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SplitArg {
    Train,
    Valid,
    Test,
}

fn main() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // Mesa's lavapipe warns on every start without it.
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    lstm_gpu::signals::ignore_file_size_signal();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
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
        Command::Adapters { backend, json } => adapters(backend, json),
        Command::Data {
            command: DataCommand::Info { corpus, config },
        } => {
            let mut cfg = config.resolve()?;
            let source = corpus.source(false)?;
            let corpus = Corpus::read(&source, cfg.tokens, config.vocab_size)?;
            cfg.vocab_size = corpus.vocab.len();
            print!("{}", data::info_of(&corpus, &cfg));
            Ok(())
        }
        Command::Data {
            command: DataCommand::Fetch { dir, url },
        } => {
            let dir = dir.unwrap_or_else(fetch::default_data_dir);
            let url = url.unwrap_or_else(fetch::ptb_url);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("could not create {}", dir.display()))?;
            fetch::fetch_ptb(&url, &dir)?;
            println!("PTB corpus ready in {}", dir.display());
            Ok(())
        }
        Command::Train(args) => train_command(args),
        Command::Serve {
            corpus,
            no_data,
            port,
            listen,
            web,
        } => {
            let web = lstm_gpu::serve::web_dir(web.as_deref())?;
            let corpus = if no_data {
                None
            } else {
                Some(corpus.source(true)?)
            };
            lstm_gpu::serve::serve(lstm_gpu::serve::ServeOptions {
                listen,
                port,
                web,
                corpus,
            })
        }
        Command::Eval(args) => eval_command(args),
        Command::Predict(args) => predict_command(args),
        Command::Profile(args) => {
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
            let p = lstm_gpu::profile::profile(
                &gpu,
                &cfg,
                &train_ids,
                args.steps,
                !args.no_matmul_peak,
            )?;
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
        Command::Embeddings {
            checkpoint,
            command,
        } => {
            let ck = Checkpoint::load(&checkpoint)?;
            match command {
                EmbeddingsCommand::Neighbors { word, k } => {
                    for (w, cos) in lstm_gpu::analysis::embeddings::neighbors(&ck, &word, k)? {
                        println!("{:<20} {cos:.4}", shown(&w, ck.config.tokens));
                    }
                }
                EmbeddingsCommand::Map { out, words } => {
                    lstm_gpu::analysis::embeddings::map(&ck, &out, words, true)
                        .context("--words / --out")?;
                    println!("map of {words} words written to {}", out.display());
                }
            }
            Ok(())
        }
        Command::Completions { shell } => {
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
        Command::Info { paths, json } => {
            use lstm_gpu::analysis::info::{compare_runs, CheckpointInfo, RunInfo};
            if let Some(missing) = paths.iter().find(|p| !p.exists()) {
                return Err(usage(format!("{} does not exist", missing.display())));
            }
            let runs_only = paths.len() > 1 && paths.iter().all(|p| p.is_dir());
            let mut shown = Vec::new();
            let mut runs = Vec::new();
            for path in &paths {
                if path.is_dir() {
                    let info = RunInfo::read(path)?;
                    shown.push((info.json(), info.text()));
                    runs.push(info);
                } else {
                    let info = CheckpointInfo::read(path)?;
                    shown.push((info.json(), info.text()));
                }
            }
            if json {
                let all: Vec<serde_json::Value> = shown.into_iter().map(|(j, _)| j).collect();
                match all.as_slice() {
                    [one] => println!("{one}"),
                    _ => println!("{}", serde_json::Value::Array(all)),
                }
            } else if runs_only {
                print!("{}", compare_runs(&runs));
            } else {
                let texts: Vec<String> = shown.into_iter().map(|(_, t)| t).collect();
                print!("{}", texts.join("\n"));
            }
            Ok(())
        }
        Command::Plot { metrics, out } => {
            lstm_gpu::analysis::plot::plot_metrics(&metrics, &out)?;
            println!("plot written to {}", out.display());
            Ok(())
        }
        Command::Generate(args) => generate_command(args),
        Command::Tune(args) => tune_command(args),
        Command::Check(args) => check_command(args),
        Command::Shaders { command } => shaders_command(command),
        Command::Bench {
            command:
                BenchCommand::Kernels {
                    gpu,
                    variants,
                    runs,
                    shapes,
                    json,
                    precision,
                },
        } => {
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
                        let of_choice = |r: &&&lstm_gpu::gpu::matmul::BenchRow| {
                            r.variant.starts_with(choice.as_str())
                        };
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
    }
}

fn adapters(backend: BackendChoice, json: bool) -> Result<()> {
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

/// The corpus folder: `--data` as given (must exist), or the default one, fetched when
/// missing.
fn corpus_dir(data: Option<PathBuf>) -> Result<PathBuf> {
    match data {
        Some(d) => {
            if !d.is_dir() {
                return Err(usage(format!("--data {}: no such folder (get the corpus with `lstm-gpu data fetch --dir {}`)", d.display(), d.display())));
            }
            Ok(d)
        }
        None => {
            let d = fetch::default_data_dir();
            fetch::ensure_corpus(&d, true)?;
            Ok(d)
        }
    }
}

/// Read the corpus of `source` with the tokens of `cfg`, capped at `--vocab-size` when
/// given; the model's vocabulary size becomes the corpus's. Logs what reading decided.
fn read_corpus(source: &CorpusSource, cfg: &mut Config, flags: &ConfigArgs) -> Result<Corpus> {
    let (corpus, notes) = read_corpus_quietly(source, cfg, flags)?;
    say(&notes);
    Ok(corpus)
}

/// What reading a corpus has to say (its notes, the vocabulary), to log later: `train`
/// says it after the checks that need no GPU, so that their error line stands alone.
type Notes = Vec<(log::Level, String)>;

fn say(notes: &Notes) {
    for (level, line) in notes {
        log::log!(*level, "{line}");
    }
}

/// [`read_corpus`] with its notes returned instead of logged.
fn read_corpus_quietly(
    source: &CorpusSource,
    cfg: &mut Config,
    flags: &ConfigArgs,
) -> Result<(Corpus, Notes)> {
    let corpus = Corpus::read(source, cfg.tokens, flags.vocab_size)?;
    let mut notes: Notes = corpus
        .source
        .notes
        .iter()
        .map(|n| (log::Level::Info, n.clone()))
        .collect();
    if let Some(cap) = flags.vocab_size {
        if corpus.vocab.len() < cap {
            notes.push((
                log::Level::Warn,
                format!(
                    "the training text has only {} distinct tokens: the vocabulary is {}, not --vocab-size {cap}",
                    corpus.vocab.len(),
                    corpus.vocab.len()
                ),
            ));
        }
    }
    cfg.vocab_size = corpus.vocab.len();
    cfg.validate()?;
    notes.push((
        log::Level::Info,
        format!(
            "vocabulary: {} {} from {}",
            cfg.vocab_size,
            match cfg.tokens {
                Tokens::Words | Tokens::WordsEos => "words",
                Tokens::Chars => "characters",
            },
            source.split(Split::Train).path.display()
        ),
    ));
    Ok((corpus, notes))
}

/// A token as a table shows it: characters quoted, so that a space or a tab can be seen.
fn shown(token: &str, tokens: Tokens) -> String {
    match tokens {
        Tokens::Chars if token.chars().count() == 1 => format!("{token:?}"),
        _ => token.to_string(),
    }
}

fn train_command(mut args: TrainArgs) -> Result<()> {
    // The command line after `train`, which the resume command the run prints repeats.
    let train_flags: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .skip_while(|a| a != "train")
        .skip(1)
        .collect();
    // `--resume RUN_DIR`: where that run stopped.
    if let Some(dir) = args.resume.clone().filter(|p| p.is_dir()) {
        let last = dir.join(train::LAST);
        if !last.is_file() {
            return Err(usage(format!(
                "--resume {}: the folder has no {}; give a checkpoint file",
                dir.display(),
                train::LAST
            )));
        }
        args.resume = Some(last);
    }
    // On resume the checkpoint's configuration is the base; flags given override it (and
    // shape flags that contradict it are refused by the trainer).
    let (cfg, vocab) = match &args.resume {
        Some(path) => {
            let ck = Checkpoint::load(path)?;
            let mut cfg = ck.config.clone();
            args.config.apply(&mut cfg);
            // Flags that contradict the checkpoint's shapes or tokens need no GPU to be
            // seen: refused here, before the corpus, the adapter and tuning.
            train::check_same_model(&ck.config, &cfg, path)?;
            cfg.validate()?;
            (cfg, Some(ck.vocab))
        }
        None => (args.config.resolve()?, None),
    };
    if args.max_steps == Some(0) {
        return Err(usage("--max-steps must be at least 1"));
    }
    if args.log_every == Some(0) || args.checkpoint_every == Some(0) {
        return Err(usage(
            "--log-every and --checkpoint-every must be at least 1",
        ));
    }
    if args.patience == Some(0) {
        return Err(usage(
            "--patience must be at least 1 (epochs without a better validation perplexity)",
        ));
    }
    if args.keep_checkpoints == Some(0) {
        return Err(usage(
            "--keep-checkpoints must be at least 1 (best.safetensors and last.safetensors are always kept besides)",
        ));
    }
    let source = args.corpus.source(true)?;
    let mut cfg = cfg;
    let (corpus, notes) = match vocab {
        Some(words) => {
            let corpus = Corpus::read_with_vocab(
                &source,
                Vocab::from_tokens(words, cfg.tokens)?,
                cfg.tokens,
            )?;
            let notes = corpus
                .source
                .notes
                .iter()
                .map(|n| (log::Level::Info, n.clone()))
                .collect();
            (corpus, notes)
        }
        None => read_corpus_quietly(&source, &mut cfg, &args.config)?,
    };
    // Everything that needs no GPU is checked before the adapter is opened, so that its
    // error line stands alone: the batches of every split, whether the model fits the
    // adapter's limits (arithmetic on shapes, before anything is allocated), the run folder.
    let test_shape = test_shape(args.test_batch_size, args.test_num_steps)?;
    train::split_batches(&corpus, &cfg, test_shape)?;
    let needs = train::needs(&cfg, test_shape);
    args.gpu.check_precision(cfg.precision)?;
    let picked = args.gpu.pick()?;
    picked.check(&needs)?;
    let run_dir = match (args.run_dir, &args.resume) {
        (Some(dir), _) => dir,
        // Resumed: the run goes on in the folder of the checkpoint it resumes.
        (None, Some(ck)) => ck
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf),
        (None, None) => default_run_dir(),
    };
    train::prepare_run_dir(&run_dir)?;
    // Kernels changed by --shaders: the run folder keeps the files it was trained with.
    if let Some(dir) = &args.gpu.shaders {
        let kept = dir
            .keep_in(&run_dir.join("shaders"))
            .map_err(|e| usage(format!("--run-dir {}: {e:#}", run_dir.display())))?;
        if !kept.is_empty() {
            log::info!(
                "the changed kernel files are kept in {}",
                run_dir.join("shaders").display()
            );
        }
    }
    say(&notes);
    let mut gpu = picked.open(&needs)?;
    args.gpu.apply(&mut gpu);
    tune::choose(
        &mut gpu,
        &cfg,
        &train::workspace_shapes(&cfg, test_shape),
        !args.no_tune,
    )?;
    let opts = TrainOptions {
        max_steps: args.max_steps,
        seed: args.seed,
        log_every: args.log_every,
        run_dir: run_dir.clone(),
        checkpoint_every: args.checkpoint_every,
        keep_checkpoints: args.keep_checkpoints,
        patience: args.patience,
        resume: args.resume,
        init: args.init,
        progress: !args.no_progress,
        test_batch: Some(test_shape),
        interrupt: Some(lstm_gpu::signals::Interrupt::install()?),
        no_eval_at_stop: args.no_eval_at_stop,
        on_nan: args.on_nan,
        max_skips_in_a_row: args.max_skips_in_a_row,
        resume_flags: train::flags_to_repeat(&train_flags, &[]),
    };
    log::info!("run folder: {}", run_dir.display());
    let epochs = cfg.max_epoch;
    let summary = train::train(&gpu, cfg, &corpus, &opts)?;
    if let Some((p, b)) = &summary.best {
        train::say(format_args!(
            "best: {} (epoch {}, valid perplexity {:.3})",
            p.display(),
            b.epoch,
            b.valid_perplexity
        ));
    }
    if let Some(p) = summary.last_checkpoint {
        train::say(format_args!("checkpoint: {}", p.display()));
        if let Some(done) = summary.stopped_early {
            // --patience ended it: going on means without it.
            train::say(format_args!(
                "stopped early after epoch {done} of {epochs} (--patience): best.safetensors holds the best epoch, `lstm-gpu eval --split test` scores it"
            ));
            let flags = train::flags_to_repeat(&train_flags, &["--max-steps", "--patience"]);
            train::say(format_args!(
                "train on anyway with: {}",
                train::resume_command(&p, &run_dir, &flags)
            ));
        } else if summary.test_perplexity.is_some() {
            // Every epoch trained: going on means another one.
            let mut flags = train::flags_to_repeat(&train_flags, &["--max-steps", "--max-epoch"]);
            flags.extend(["--max-epoch".to_string(), (epochs + 1).to_string()]);
            train::say(format_args!(
                "train another epoch with: {}",
                train::resume_command(&p, &run_dir, &flags)
            ));
        } else {
            // Stopped at --max-steps: going on means going past them.
            let flags = train::flags_to_repeat(&train_flags, &["--max-steps"]);
            train::say(format_args!(
                "resume with: {}",
                train::resume_command(&p, &run_dir, &flags)
            ));
        }
    }
    Ok(())
}

/// A file the command will write at its end can be created where it is asked for: its
/// folder exists and is a folder (checked before any GPU work, so a typo costs nothing).
fn check_writable(path: &std::path::Path, flag: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        return Err(usage(format!(
            "{flag} {}: the folder {} does not exist",
            path.display(),
            dir.display()
        )));
    }
    if path.is_dir() {
        return Err(usage(format!(
            "{flag} {}: is a folder; give a file name",
            path.display()
        )));
    }
    Ok(())
}

/// The shape of the final test pass: batch 1 and one step unless the flags say otherwise,
/// as the TensorFlow tutorial tests (the split read as one stream, every word scored).
fn test_shape(batch: Option<usize>, steps: Option<usize>) -> Result<(usize, usize)> {
    let shape = (batch.unwrap_or(1), steps.unwrap_or(1));
    if shape.0 == 0 || shape.1 == 0 {
        return Err(usage(
            "--test-batch-size and --test-num-steps must be at least 1",
        ));
    }
    Ok(shape)
}

fn default_run_dir() -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // UTC date-time from the Unix time (civil-from-days, Howard Hinnant).
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    PathBuf::from(format!(
        "runs/{y:04}-{m:02}-{d:02}_{:02}-{:02}-{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    ))
}

/// Tokens of PTB's training split (with `<eos>`), the size of `profile --synthetic`'s stream.
const PTB_TRAIN_TOKENS: usize = 929_589;

fn tune_command(args: TuneArgs) -> Result<()> {
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

/// A checkpoint's configuration for evaluation and prediction on `gpu`: a model trained with
/// `--precision mixed` is scored in f32 where the adapter has no f16 in shaders (the f16
/// products change a perplexity by well under 0.01%), rather than refused.
fn inference_config(cfg: &Config, gpu: &lstm_gpu::gpu::Gpu) -> Config {
    let mixed = cfg.precision == lstm_gpu::config::Precision::Mixed;
    if mixed && !gpu.features.contains(wgpu::Features::SHADER_F16) {
        log::info!(
            "the checkpoint was trained with --precision mixed; {} has no shader-f16, so it runs in f32",
            gpu.info.name
        );
        return Config {
            precision: lstm_gpu::config::Precision::F32,
            ..cfg.clone()
        };
    }
    cfg.clone()
}

fn check_command(args: CheckArgs) -> Result<()> {
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

fn shaders_command(command: ShadersCommand) -> Result<()> {
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

fn eval_command(args: EvalArgs) -> Result<()> {
    let ck = Checkpoint::load(&args.checkpoint)?;
    let cfg: Config = ck.config.clone();
    // What is scored: a split of a corpus read with the checkpoint's vocabulary, or a text.
    let (ids, name, one_stream) = match &args.text {
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| usage(format!("--text {}: cannot be read: {e}", path.display())))?;
            let what = format!("--text {}", path.display());
            let text = data::text_of_bytes(&what, bytes, "give a text file")
                .map_err(|e| usage(format!("{e:#}")))?;
            // Every line end its own <eos>: the same tokens as PTB's reader on PTB-like text
            // (a space before each line end), and the sentence ends a plain text means
            // where PTB's reader would glue them to the last word.
            let (vocab, ids) = encode_as(&ck, &text, cfg.tokens.line_ends_as_eos(), &what)?;
            if let Some(unk) = vocab.unk() {
                let n = ids.iter().filter(|&&i| i == unk).count();
                if n > 0 {
                    log::warn!(
                        "{n} of the text's {} {}s ({:.1}%) are {}: the model predicts that \
                         token for them, not the {}s themselves",
                        ids.len(),
                        token_name(cfg.tokens),
                        100.0 * n as f64 / ids.len() as f64,
                        data::UNK,
                        token_name(cfg.tokens)
                    );
                }
            }
            (ids, path.display().to_string(), true)
        }
        None => {
            let source = args.corpus.source(true)?;
            let corpus = Corpus::read_with_vocab(
                &source,
                Vocab::from_tokens(ck.vocab.clone(), cfg.tokens)?,
                cfg.tokens,
            )?;
            for note in &corpus.source.notes {
                log::info!("{note}");
            }
            let split = match args.split {
                SplitArg::Train => Split::Train,
                SplitArg::Valid => Split::Valid,
                SplitArg::Test => Split::Test,
            };
            let ids = corpus.split(split).to_vec();
            (ids, split.name().to_string(), split == Split::Test)
        }
    };
    // The test split and a text are one stream (each token with its whole history), the
    // other splits scored as training validates.
    let batch = args
        .batch_size
        .unwrap_or(if one_stream { 1 } else { cfg.batch_size });
    let steps = args
        .num_steps
        .unwrap_or(if one_stream { 1 } else { cfg.num_steps });
    if batch == 0 || steps == 0 {
        return Err(usage("--batch-size and --num-steps must be at least 1"));
    }
    let batches = lstm_gpu::data::Batches::new(&ids, batch, steps)
        .with_context(|| format!("the {name} text"))?;
    let shapes = [(batch, steps, Mode::Eval)];
    args.gpu.check_precision(cfg.precision)?;
    let mut gpu = args.gpu.open(&Needs::of_model(&cfg, &shapes))?;
    let cfg = inference_config(&cfg, &gpu);
    tune::choose(&mut gpu, &cfg, &shapes, false)?;
    let kernels = Kernels::new(&gpu)?;
    let params = ParamBuffers::upload(&gpu, &cfg, &ck.params)?;
    let mut ws = Workspace::new(&gpu, &kernels, &cfg, &params, batch, steps, Mode::Eval)?;
    let t0 = std::time::Instant::now();
    let ppl = train::evaluate(&gpu, &mut ws, &batches, 0)?;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{name} perplexity: {ppl:.3} ({} batches of {batch}x{steps}, {:.0} words/s)",
        batches.len(),
        (batches.len() * batch * steps) as f64 / secs
    );
    Ok(())
}

/// The checkpoint's vocabulary and the context as ids, tokenised as the checkpoint's corpus
/// was (words or characters; a token the vocabulary lacks is looked up lower-cased too);
/// unknown tokens become `<unk>` with a warning naming them.
fn encode_context(ck: &Checkpoint, text: &str, flag: &str) -> Result<(Vocab, Vec<u32>)> {
    encode_as(ck, text, ck.config.tokens, flag)
}

/// [`encode_context`] with the tokens of `tokens`.
fn encode_as(ck: &Checkpoint, text: &str, tokens: Tokens, flag: &str) -> Result<(Vocab, Vec<u32>)> {
    let vocab = Vocab::from_tokens(ck.vocab.clone(), tokens)?;
    let empty = match tokens {
        Tokens::Words | Tokens::WordsEos => text.split_whitespace().next().is_none(),
        Tokens::Chars => text.is_empty(),
    };
    if empty {
        return Err(usage(format!(
            "{flag} is empty: give at least one {}",
            token_name(tokens)
        )));
    }
    let encoded = data::encode_text_as(text, &vocab, tokens)?;
    // A long text may have thousands: the first ones name the problem.
    const SHOWN: usize = 20;
    let unknown = &encoded.unknown;
    if !unknown.is_empty() {
        log::warn!(
            "not in the vocabulary, read as <unk>: {}{}",
            unknown[..unknown.len().min(SHOWN)].join(", "),
            match unknown.len().checked_sub(SHOWN) {
                Some(more) if more > 0 => format!(" and {more} more"),
                _ => String::new(),
            }
        );
    }
    Ok((vocab, encoded.ids))
}

/// What one token of `tokens` is called in messages.
fn token_name(tokens: Tokens) -> &'static str {
    match tokens {
        Tokens::Chars => "character",
        Tokens::Words | Tokens::WordsEos => "word",
    }
}

fn predict_command(args: PredictArgs) -> Result<()> {
    let ck = Checkpoint::load(&args.checkpoint)?;
    let max = lstm_gpu::gpu::softmax_xent::MAX_TOPK.min(ck.config.vocab_size);
    if args.top_k == 0 || args.top_k > max {
        return Err(usage(format!(
            "--top-k must be between 1 and {max}, got {}",
            args.top_k
        )));
    }
    // A context given on the command line is read before the adapter opens: a bad one is
    // one line and costs nothing.
    let encode = |text: &str| {
        if args.score {
            // Read as `eval --text` reads a text: every line end its own <eos>.
            let tokens = ck.config.tokens.line_ends_as_eos();
            encode_as(&ck, text, tokens, "the text")
        } else {
            encode_context(&ck, text, "the context")
        }
    };
    let given = args.context.as_deref().map(encode).transpose()?;
    args.gpu.check_precision(ck.config.precision)?;
    let mut gpu = args.gpu.open(&Predictor::needs(&ck.config))?;
    let cfg = inference_config(&ck.config, &gpu);
    tune::choose(&mut gpu, &cfg, &[(1, 1, Mode::Eval)], false)?;
    let mut p = Predictor::new(&gpu, &cfg, &ck.params, args.top_k)?;
    let answer = |p: &mut Predictor, vocab: &Vocab, ids: &[u32]| -> Result<()> {
        if args.score {
            return score_text(p, &gpu, vocab, ids, ck.config.tokens, args.json);
        }
        for &id in ids {
            p.feed(&gpu, id)?;
        }
        print_next_words(&p.top(&gpu)?, vocab, ids, ck.config.tokens, args.json);
        Ok(())
    };
    if let Some((vocab, ids)) = given {
        return answer(&mut p, &vocab, &ids);
    }
    // One context per line of standard input, each from a fresh state.
    let intro = if args.score {
        "type a text and Enter: how probable each word is after the ones before it"
    } else {
        "type a context and Enter: its most probable next words"
    };
    each_line_of_stdin(intro, |text, first, interactive| {
        let (vocab, ids) = encode(text)?;
        if !args.json && !interactive {
            // Tables one after the other: each says which line it answers.
            if !first {
                println!();
            }
            println!("{text}");
        }
        p.reset(&gpu);
        answer(&mut p, &vocab, &ids)
    })
}

/// `each(line, first, interactive)` for every line of standard input that is not blank
/// (`first`: no line was answered before), a `> ` prompt and `intro` on a terminal. There a
/// usage error (an empty context) is said and the next line read; elsewhere it ends the
/// loop, as any other error does.
fn each_line_of_stdin(
    intro: &str,
    mut each: impl FnMut(&str, bool, bool) -> Result<()>,
) -> Result<()> {
    let stdin = std::io::stdin();
    let interactive = std::io::IsTerminal::is_terminal(&stdin);
    if interactive {
        eprintln!("{intro} (Ctrl-D ends)");
    }
    let mut first = true;
    loop {
        if interactive {
            eprint!("> ");
            std::io::stderr().flush()?;
        }
        let mut line = String::new();
        if stdin.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let text = line.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        match each(text, first, interactive) {
            Err(e) if interactive && e.downcast_ref::<lstm_gpu::UsageError>().is_some() => {
                eprintln!("error: {e:#}");
            }
            result => result?,
        }
        first = false;
        std::io::stdout().flush()?;
    }
}

/// The next words after `ids`, as a table or as one JSON line.
fn print_next_words(top: &[(u32, f32)], vocab: &Vocab, ids: &[u32], tokens: Tokens, json: bool) {
    if json {
        let words: Vec<_> = top
            .iter()
            .map(|&(i, pr)| serde_json::json!({"word": vocab.word(i), "id": i, "probability": pr}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"context": ids.iter().map(|&i| vocab.word(i)).collect::<Vec<_>>(), "next": words})
        );
    } else {
        for (rank, (i, pr)) in top.iter().enumerate() {
            let word = shown(vocab.word(*i), tokens);
            println!("{:>3}. {word:<20} {pr:.4}", rank + 1);
        }
    }
}

/// `predict --score`: each word of `ids` with its probability and rank after the words
/// before it, from `<eos>` where the vocabulary has one, and their perplexity.
fn score_text(
    p: &mut Predictor,
    gpu: &lstm_gpu::gpu::Gpu,
    vocab: &Vocab,
    ids: &[u32],
    tokens: Tokens,
    json: bool,
) -> Result<()> {
    let start = vocab.eos();
    let fed: Vec<u32> = start.iter().chain(ids).copied().collect();
    let scored = p.score(gpu, &fed)?;
    let ppl = lstm_gpu::model::predict::perplexity(&scored);
    let from = match start {
        Some(_) => "from a sentence start (<eos>)".to_string(),
        None => format!(
            "the first {} is context only: the vocabulary has no <eos>",
            token_name(tokens)
        ),
    };
    if json {
        let out = lstm_gpu::model::predict::scored_json(&scored, vocab, start);
        println!("{out}");
        return Ok(());
    }
    if scored.is_empty() {
        println!("nothing to score: {from}");
        return Ok(());
    }
    println!(
        "{:<20} {:>11} {:>7}",
        token_name(tokens),
        "probability",
        "rank"
    );
    for w in &scored {
        let word = shown(vocab.word(w.id), tokens);
        println!("{word:<20} {:>11.5} {:>7}", w.probability(), w.rank);
    }
    println!(
        "perplexity {ppl:.3} over {} {}s, each after the ones before it, {from}",
        scored.len(),
        token_name(tokens)
    );
    Ok(())
}

fn generate_command(args: GenerateArgs) -> Result<()> {
    let how = lstm_gpu::model::predict::Sampling {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
    };
    let flag = |(name, what): (&str, String)| usage(format!("--{name} {what}"));
    // What needs no checkpoint first, then --top-k against its vocabulary.
    how.check(usize::MAX).map_err(flag)?;
    let ck = Checkpoint::load(&args.checkpoint)?;
    how.check(ck.config.vocab_size).map_err(flag)?;
    let encode = |prompt: &str| encode_context(&ck, prompt, "--prompt");
    let given = args.prompt.as_deref().map(encode).transpose()?;
    args.gpu.check_precision(ck.config.precision)?;
    let mut gpu = args.gpu.open(&Predictor::needs(&ck.config))?;
    let cfg = inference_config(&ck.config, &gpu);
    tune::choose(&mut gpu, &cfg, &[(1, 1, Mode::Eval)], false)?;
    let mut p = Predictor::new(&gpu, &cfg, &ck.params, 1)?;
    // The prompt, then `--words` tokens sampled after it, from a fresh state and the
    // sampler's seed (the same prompt, the same text).
    let mut write = |prompt: &str, vocab: &Vocab, ids: &[u32]| -> Result<()> {
        p.reset(&gpu);
        for &id in ids {
            p.feed(&gpu, id)?;
        }
        let mut rng = lstm_gpu::rng::SplitMix64::new(args.seed);
        let mut out = std::io::stdout().lock();
        let eos = vocab.eos();
        let chars = ck.config.tokens == Tokens::Chars;
        // Characters are joined as they come; words with a space between.
        let sep = if chars { "" } else { " " };
        if chars {
            write!(out, "{prompt}")?;
        } else {
            write!(out, "{}", prompt.trim())?;
        }
        let mut at_line_start = chars && prompt.ends_with('\n');
        for _ in 0..args.words {
            let probs = p.distribution(&gpu)?;
            let next = lstm_gpu::model::predict::sample(&probs, &how, rng.next_f64()) as u32;
            if Some(next) == eos {
                writeln!(out)?;
                at_line_start = true;
            } else {
                write!(
                    out,
                    "{}{}",
                    if at_line_start { "" } else { sep },
                    vocab.word(next)
                )?;
                at_line_start = false;
            }
            out.flush()?;
            p.feed(&gpu, next)?;
        }
        writeln!(out)?;
        Ok(())
    };
    if let (Some(prompt), Some((vocab, ids))) = (&args.prompt, given) {
        return write(prompt, &vocab, &ids);
    }
    // One prompt per line of standard input.
    each_line_of_stdin(
        "type a prompt and Enter: text that follows it",
        |prompt, first, interactive| {
            let (vocab, ids) = encode(prompt)?;
            if !first && !interactive {
                println!();
            }
            write(prompt, &vocab, &ids)
        },
    )
}
