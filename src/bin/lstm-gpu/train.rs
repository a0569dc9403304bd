//! `lstm-gpu train`: the flags checked before any GPU work, the run folder, the trainer,
//! and the command that goes on where the run stopped.

use anyhow::{Context, Result};
use std::path::PathBuf;

use lstm_gpu::config::ConfigArgs;
use lstm_gpu::data::{Corpus, Vocab};
use lstm_gpu::error::usage;
use lstm_gpu::gpu::{tune, GpuArgs};
use lstm_gpu::model::checkpoint::Checkpoint;
use lstm_gpu::train::{self, TrainOptions};

use crate::corpus::{
    read_corpus_quietly, reading_tokens, recorded_note, say, wrong_corpus, CorpusArgs, VocabOf,
};

#[derive(clap::Args)]
pub(crate) struct TrainArgs {
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
    /// Start from the weights of a safetensors file, at step 0: an lstm-gpu checkpoint
    /// brings its model, settings and vocabulary (and its corpus unless a corpus flag names
    /// one: to fine-tune on another text, name it); bare weights (documented names and
    /// shapes) take the model from the flags.
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

pub(crate) fn train_command(mut args: TrainArgs) -> Result<()> {
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
    // shape flags that contradict it are refused by the trainer). `--init` of an lstm-gpu
    // checkpoint starts from its model the same way (its shapes, tokens and vocabulary, and
    // its corpus where no corpus flag is given; the batches may differ); bare weights take
    // the model from the flags and the vocabulary from the corpus.
    let mut recorded = None;
    // The weights the run started from, recorded in its checkpoints (a resumed run's, as
    // its checkpoint recorded them).
    let mut started_from = args.init.as_ref().map(|path| {
        std::path::absolute(path)
            .unwrap_or_else(|_| path.clone())
            .display()
            .to_string()
    });
    let (cfg, vocab, vocab_of) = match (&args.resume, &args.init) {
        (Some(path), _) => {
            let ck = Checkpoint::load(path)?;
            recorded = ck.corpus.clone();
            started_from = ck.init.clone();
            let mut cfg = ck.config.clone();
            args.config.apply(&mut cfg);
            // Flags that contradict the checkpoint's shapes or tokens need no GPU to be
            // seen: refused here, before the corpus, the adapter and tuning.
            train::check_same_model(&ck.config, &cfg, path)?;
            cfg.validate()?;
            (cfg, Some(ck.vocab), Some(VocabOf::Resumed(path.clone())))
        }
        (None, Some(path)) => match Checkpoint::read_header_if_any(path).context("--init")? {
            Some(header) => {
                recorded = header.corpus.clone();
                let mut cfg = header.config.clone();
                args.config.apply(&mut cfg);
                train::check_same_weights(&header.config, &cfg, path)?;
                cfg.validate()?;
                (cfg, Some(header.vocab), Some(VocabOf::Init(path.clone())))
            }
            None => (args.config.resolve()?, None, None),
        },
        (None, None) => (args.config.resolve()?, None, None),
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
    // Resumed without corpus flags: the corpus the checkpoint was trained on.
    let (source, origin) = args.corpus.source_or(recorded.as_ref())?;
    let mut cfg = cfg;
    let (corpus, notes) = match vocab {
        Some(words) => {
            // `--init` on another text reads it as the model's vocabulary would (a resumed
            // run goes on reading its text as it did).
            let mut reading = None;
            if matches!(vocab_of, Some(VocabOf::Init(_))) && args.config.tokens.is_none() {
                let (tokens, note) =
                    reading_tokens(cfg.tokens, &words, &source, &origin, &recorded)?;
                cfg.tokens = tokens;
                reading = note;
            }
            let corpus = Corpus::read_with_vocab(
                &source,
                Vocab::from_tokens(words, cfg.tokens)?,
                cfg.tokens,
            )
            .map_err(|e| wrong_corpus(e, &origin, vocab_of.as_ref()))?;
            let mut notes: crate::corpus::Notes = corpus
                .source
                .notes
                .iter()
                .map(|n| (log::Level::Info, n.clone()))
                .collect();
            if let Some(VocabOf::Init(path)) = &vocab_of {
                notes.insert(
                    0,
                    (
                        log::Level::Info,
                        format!(
                            "--init {}: its weights, model and vocabulary ({} words); training starts at step 0",
                            path.display(),
                            corpus.vocab.len()
                        ),
                    ),
                );
            }
            notes.extend(reading.map(|note| (log::Level::Info, note)));
            // What fine-tuning on another text loses to the vocabulary it keeps.
            if let (Some(VocabOf::Init(path)), Some(unk)) = (&vocab_of, corpus.vocab.unk()) {
                let n = corpus.train.iter().filter(|&&id| id == unk).count();
                notes.push((
                    log::Level::Info,
                    format!(
                        "{n} of the training text's {} tokens ({:.1}%) read as <unk> in the vocabulary of {}",
                        corpus.train.len(),
                        100.0 * n as f64 / corpus.train.len().max(1) as f64,
                        path.display()
                    ),
                ));
            }
            if let Some(note) = recorded_note(&origin, &args.corpus) {
                notes.insert(0, (log::Level::Info, note));
            }
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
    // A new run never overwrites another's checkpoints (its best among them).
    if args.resume.is_none() {
        let held = train::run_checkpoints(&run_dir);
        if !held.is_empty() {
            let shown = match held.len() {
                n if n > 4 => format!("{} and {} more", held[..3].join(", "), n - 3),
                _ => held.join(", "),
            };
            return Err(usage(format!(
                "--run-dir {}: the folder holds another run's checkpoints ({shown}), which a new run would overwrite: go on with that run (`lstm-gpu train --resume {}`), or train into another folder",
                run_dir.display(),
                train::shell_word(&run_dir.display().to_string())
            )));
        }
    }
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
        interrupt: Some(lstm_gpu::signals::Interrupt::install(
            "stopping once the GPU work in flight is done (a slow adapter's step, or the first \
             one on a cold shader cache, can take minutes), then saving a checkpoint; a second \
             signal does not stop it sooner",
        )?),
        no_eval_at_stop: args.no_eval_at_stop,
        on_nan: args.on_nan,
        max_skips_in_a_row: args.max_skips_in_a_row,
        resume_flags: train::flags_to_repeat(&train_flags, &[]),
        corpus: origin,
        started_from,
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
pub(crate) fn check_writable(path: &std::path::Path, flag: &str) -> Result<()> {
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
pub(crate) fn test_shape(batch: Option<usize>, steps: Option<usize>) -> Result<(usize, usize)> {
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
    let name = format!(
        "runs/{y:04}-{m:02}-{d:02}_{:02}-{:02}-{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    // Two runs started in the same second get folders of their own.
    (1..)
        .map(|n| match n {
            1 => PathBuf::from(&name),
            n => PathBuf::from(format!("{name}_{n}")),
        })
        .find(|p| !p.exists())
        .expect("a free name")
}
