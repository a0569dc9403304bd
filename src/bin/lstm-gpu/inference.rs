//! The commands that ask a trained model: `eval` (perplexity of a split or a text),
//! `predict` (the next words, or each word's probability), `generate` and `embeddings`.

use anyhow::{Context, Result};
use clap::Subcommand;
use std::io::Write;
use std::path::{Path, PathBuf};

use lstm_gpu::config::Config;
use lstm_gpu::data::{self, Corpus, Split, Tokens, Vocab};
use lstm_gpu::error::usage;
use lstm_gpu::gpu::{tune, GpuArgs};
use lstm_gpu::model::checkpoint::{Checkpoint, CheckpointHeader};
use lstm_gpu::model::fit::Needs;
use lstm_gpu::model::predict::Predictor;
use lstm_gpu::model::schedule::{Kernels, Mode, ParamBuffers, Workspace};
use lstm_gpu::train;

use crate::corpus::{reading_tokens, recorded_note, wrong_corpus, CorpusArgs, VocabOf};

#[derive(clap::Args)]
pub(crate) struct EvalArgs {
    /// Checkpoint to evaluate; several (`--checkpoint runs/NAME/epoch-*.safetensors`, or the
    /// flag repeated) are each scored on the same text, a line each (run folder by run
    /// folder, each in training order), and the lowest named.
    #[arg(long, value_name = "PATH", num_args = 1.., required = true)]
    checkpoint: Vec<PathBuf>,
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
    /// Print a JSON line per checkpoint (its perplexity, the text and the shape it was
    /// scored at, where its training stood) instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    gpu: GpuArgs,
}

#[derive(clap::Args)]
pub(crate) struct PredictArgs {
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
pub(crate) struct GenerateArgs {
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
    /// The prompt, given without --prompt (as `predict` takes its context).
    #[arg(value_name = "PROMPT", conflicts_with = "prompt")]
    prompt_given: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SplitArg {
    Train,
    Valid,
    Test,
}

#[derive(Subcommand)]
pub(crate) enum EmbeddingsCommand {
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

pub(crate) fn eval_command(args: EvalArgs) -> Result<()> {
    if args.batch_size == Some(0) || args.num_steps == Some(0) {
        return Err(usage("--batch-size and --num-steps must be at least 1"));
    }
    // Everything that needs no GPU first, for every checkpoint: its header, the text read
    // with its vocabulary, the batches. A bad path or a text too short is one line that
    // costs nothing.
    let headers: Vec<CheckpointHeader> = args
        .checkpoint
        .iter()
        .map(|p| Checkpoint::read_header(p))
        .collect::<Result<_>>()?;
    // Scored run folder by run folder (in the order given), each in training order: a
    // shell lists `epoch-*.safetensors` as epoch-1, epoch-10, epoch-2.
    let mut order: Vec<usize> = (0..headers.len()).collect();
    let folder = |i: usize| args.checkpoint[i].parent().map(Path::to_path_buf);
    let first_seen = |i: usize| (0..=i).find(|&j| folder(j) == folder(i)).unwrap_or(i);
    order.sort_by_key(|&i| (first_seen(i), headers[i].position.global_step));
    let (headers, checkpoint): (Vec<CheckpointHeader>, Vec<PathBuf>) = order
        .into_iter()
        .map(|i| (headers[i].clone(), args.checkpoint[i].clone()))
        .unzip();
    // What is scored: a split of a corpus read with each checkpoint's vocabulary, or a text.
    let text = match &args.text {
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| usage(format!("--text {}: cannot be read: {e}", path.display())))?;
            let what = format!("--text {}", path.display());
            let text = data::text_of_bytes(&what, bytes, "give a text file")
                .map_err(|e| usage(format!("{e:#}")))?;
            Some((what, text))
        }
        None => None,
    };
    // Without corpus flags, the corpus the checkpoints were trained on, where they all
    // recorded the same one.
    let recorded = match headers.split_first() {
        Some((first, rest)) if rest.iter().all(|h| h.corpus == first.corpus) => {
            first.corpus.clone()
        }
        _ => None,
    };
    let (source, origin) = match text {
        Some(_) => (None, None),
        None => {
            let (source, origin) = args.corpus.source_or(recorded.as_ref())?;
            if let Some(note) = recorded_note(&origin, &args.corpus) {
                log::info!("{note}");
            }
            (Some(source), origin)
        }
    };
    let split = match args.split {
        SplitArg::Train => Split::Train,
        SplitArg::Valid => Split::Valid,
        SplitArg::Test => Split::Test,
    };
    let name = match &args.text {
        Some(path) => path.display().to_string(),
        None => split.name().to_string(),
    };
    // The test split and a text are one stream (each token with its whole history), the
    // other splits scored as training validates.
    let one_stream = text.is_some() || split == Split::Test;
    // The text as each vocabulary reads it: checkpoints of one run share theirs.
    let mut read: Vec<(&[String], Tokens, Vec<u32>)> = Vec::new();
    let mut jobs = Vec::new();
    for (h, path) in headers.iter().zip(&checkpoint) {
        let tokens = h.config.tokens;
        let known = read
            .iter()
            .position(|(v, t, _)| *v == &h.vocab[..] && *t == tokens);
        let at = match known {
            Some(i) => i,
            None => {
                let ids = match (&text, &source) {
                    (Some((what, text)), _) => text_ids(&h.vocab, tokens, what, text)?,
                    (None, Some(source)) => {
                        let (tokens, note) =
                            reading_tokens(tokens, &h.vocab, source, &origin, &h.corpus)?;
                        if let Some(note) = note.filter(|_| read.is_empty()) {
                            log::info!("{note}");
                        }
                        let corpus = Corpus::read_with_vocab(
                            source,
                            Vocab::from_tokens(h.vocab.clone(), tokens)?,
                            tokens,
                        )
                        .map_err(|e| {
                            wrong_corpus(e, &origin, Some(&VocabOf::Resumed(path.clone())))
                        })?;
                        if read.is_empty() {
                            for note in &corpus.source.notes {
                                log::info!("{note}");
                            }
                        }
                        corpus.split(split).to_vec()
                    }
                    (None, None) => unreachable!("a text or a corpus"),
                };
                read.push((&h.vocab, tokens, ids));
                read.len() - 1
            }
        };
        let batch = args
            .batch_size
            .unwrap_or(if one_stream { 1 } else { h.config.batch_size });
        let steps = args
            .num_steps
            .unwrap_or(if one_stream { 1 } else { h.config.num_steps });
        lstm_gpu::data::Batches::new(&read[at].2, batch, steps)
            .with_context(|| format!("the {name} text"))?;
        args.gpu.check_precision(h.config.precision)?;
        jobs.push((path, h, at, (batch, steps)));
    }
    // One adapter for them all, opened for the largest buffers any of them makes.
    let mut needs = Needs {
        buffers: Vec::new(),
    };
    for (_, h, _, shape) in &jobs {
        needs
            .buffers
            .extend(Needs::of_model(&h.config, &train::pass_shapes(&h.config, *shape)).buffers);
    }
    let mut gpu = args.gpu.open(&needs)?;
    let several = jobs.len() > 1;
    let width = checkpoint
        .iter()
        .map(|p| p.display().to_string().chars().count())
        .max()
        .unwrap_or(0);
    let mut lowest: Option<(&PathBuf, f64)> = None;
    // The kernels of the model before, where this one is the same model at the same shape.
    let mut built: Option<(Config, (usize, usize), Kernels)> = None;
    for (path, h, at, (batch, steps)) in jobs {
        let ck = Checkpoint::load(path)?;
        let ids = &read[at].2;
        let cfg = inference_config(&ck.config, &gpu);
        if !matches!(&built, Some((c, s, _)) if *c == cfg && *s == (batch, steps)) {
            tune::choose(
                &mut gpu,
                &cfg,
                &train::pass_shapes(&cfg, (batch, steps)),
                false,
            )?;
            built = Some((cfg.clone(), (batch, steps), Kernels::new(&gpu)?));
        }
        let Some((_, _, kernels)) = &built else {
            unreachable!("built above")
        };
        let params = ParamBuffers::upload(&gpu, &cfg, &ck.params)?;
        let workspace = |(b, t)| Workspace::new(&gpu, kernels, &cfg, &params, b, t, Mode::Eval);
        // A bar on a terminal where the pass takes more than a second (the test split at
        // batch 1 is 82,000 batches); Ctrl-C ends the program as it always does.
        let view = train::PassView {
            label: Some(&name),
            interrupt: None,
        };
        let t0 = std::time::Instant::now();
        let (end, batches, shape) = match train::stream_steps(&cfg, (batch, steps)) {
            Some(s) => {
                let stream = train::Stream::new(ids, s)?;
                let (mut head, mut tail) = (workspace((1, s))?, workspace((1, 1))?);
                let scored = train::Scored::Stream(&mut head, &mut tail, &stream);
                let end = train::evaluate_sliced(&gpu, scored, 0, view)?;
                (end, stream.words(), stream.to_string())
            }
            None => {
                let batches = lstm_gpu::data::Batches::new(ids, batch, steps)?;
                let mut ws = workspace((batch, steps))?;
                let scored = train::Scored::Batches(&mut ws, &batches);
                let end = train::evaluate_sliced(&gpu, scored, 0, view)?;
                let shape = format!("{} batches of {batch}x{steps}", batches.len());
                (end, batches.len(), shape)
            }
        };
        let train::PassEnd::Perplexity(ppl) = end else {
            unreachable!("only a pass given an interrupt stops early")
        };
        let secs = t0.elapsed().as_secs_f64();
        let words_per_second = (batches * batch * steps) as f64 / secs;
        if lowest.is_none_or(|(_, p)| ppl < p) {
            lowest = Some((path, ppl));
        }
        let shape = format!("{shape}, {words_per_second:.0} words/s");
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "checkpoint": path.display().to_string(),
                    (if args.text.is_some() { "text" } else { "split" }): name,
                    "perplexity": ppl,
                    "batches": batches,
                    "batch_size": batch,
                    "num_steps": steps,
                    "words_per_second": words_per_second,
                    "epoch": h.position.epoch,
                    "step_in_epoch": h.position.step_in_epoch,
                    "global_step": h.position.global_step,
                })
            );
        } else if several {
            println!(
                "{:<width$}  {:<26} {name} perplexity {ppl:.3} ({shape})",
                path.display(),
                lstm_gpu::analysis::info::where_line(&h.position),
            );
        } else {
            println!("{name} perplexity: {ppl:.3} ({shape})");
        }
        std::io::stdout().flush()?;
    }
    if let (true, false, Some((path, ppl))) = (several, args.json, lowest) {
        println!("lowest {name} perplexity: {ppl:.3}, {}", path.display());
    }
    Ok(())
}

/// `eval --text`: the text as ids of a checkpoint's vocabulary, every line end its own
/// `<eos>` (the same tokens as PTB's reader on PTB-like text, a space before each line end,
/// and the sentence ends a plain text means where PTB's reader would glue them to the last
/// word); how many tokens are `<unk>` is said.
fn text_ids(vocab: &[String], tokens: Tokens, what: &str, text: &str) -> Result<Vec<u32>> {
    let (vocab, ids) = encode_as(vocab, text, tokens.line_ends_as_eos(), what)?;
    if let Some(unk) = vocab.unk() {
        let n = ids.iter().filter(|&&i| i == unk).count();
        if n > 0 {
            log::warn!(
                "{n} of the text's {} {}s ({:.1}%) are {}: the model predicts that \
                 token for them, not the {}s themselves",
                ids.len(),
                token_name(tokens),
                100.0 * n as f64 / ids.len() as f64,
                data::UNK,
                token_name(tokens)
            );
        }
    }
    Ok(ids)
}

/// The checkpoint's vocabulary and the context as ids, tokenised as the checkpoint's corpus
/// was (words or characters; a token the vocabulary lacks is looked up lower-cased too);
/// unknown tokens become `<unk>` with a warning naming them.
fn encode_context(ck: &Checkpoint, text: &str, flag: &str) -> Result<(Vocab, Vec<u32>)> {
    encode_as(&ck.vocab, text, ck.config.tokens, flag)
}

/// [`encode_context`] with the tokens of `tokens`.
fn encode_as(
    vocab: &[String],
    text: &str,
    tokens: Tokens,
    flag: &str,
) -> Result<(Vocab, Vec<u32>)> {
    let vocab = Vocab::from_tokens(vocab.to_vec(), tokens)?;
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

pub(crate) fn predict_command(args: PredictArgs) -> Result<()> {
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
            encode_as(&ck.vocab, text, tokens, "the text")
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

pub(crate) fn generate_command(mut args: GenerateArgs) -> Result<()> {
    args.prompt = args.prompt.take().or(args.prompt_given.take());
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

/// `embeddings`: a word's nearest neighbours, or the map of the most frequent words.
pub(crate) fn embeddings(checkpoint: PathBuf, command: EmbeddingsCommand) -> Result<()> {
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

/// A token as a table shows it: characters quoted, so that a space or a tab can be seen.
fn shown(token: &str, tokens: Tokens) -> String {
    match tokens {
        Tokens::Chars if token.chars().count() == 1 => format!("{token:?}"),
        _ => token.to_string(),
    }
}
