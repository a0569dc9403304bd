//! The corpus flags and `lstm-gpu data`: where the text is, reading it with the notes it
//! gives, measuring and fetching it.

use anyhow::Result;
use std::path::PathBuf;

use lstm_gpu::config::{Config, ConfigArgs};
use lstm_gpu::data::{self, fetch, Corpus, CorpusOrigin, CorpusSource, Split, Tokens};
use lstm_gpu::error::usage;

/// Where the corpus is: a folder, or files named one by one.
#[derive(Clone, Debug, Default, clap::Args)]
pub(crate) struct CorpusArgs {
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
    pub(crate) fn source(&self, fetch: bool) -> Result<CorpusSource> {
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

    /// Whether the flags name a corpus (`--data` or `--train`).
    pub(crate) fn given(&self) -> bool {
        self.data.is_some() || self.train.is_some()
    }

    /// What checkpoints record of the corpus these flags name (`None`: the default one).
    pub(crate) fn origin(&self) -> Option<CorpusOrigin> {
        CorpusOrigin::of_flags(
            self.data.as_deref(),
            self.train.as_deref(),
            self.valid.as_deref(),
            self.test.as_deref(),
            self.valid_fraction,
        )
    }

    /// The corpus these flags name, or where they name none, the one a checkpoint recorded
    /// (`recorded`; a `--valid-fraction` given still applies), else the default (fetched
    /// when missing); with its origin.
    pub(crate) fn source_or(
        &self,
        recorded: Option<&CorpusOrigin>,
    ) -> Result<(CorpusSource, Option<CorpusOrigin>)> {
        match recorded {
            Some(origin) if !self.given() => {
                let mut origin = origin.clone();
                origin.valid_fraction = self.valid_fraction.or(origin.valid_fraction);
                Ok((origin.source()?, Some(origin)))
            }
            _ => Ok((self.source(true)?, self.origin())),
        }
    }
}

/// What the log says where a checkpoint's recorded corpus is read (no corpus named).
pub(crate) fn recorded_note(origin: &Option<CorpusOrigin>, flags: &CorpusArgs) -> Option<String> {
    match origin {
        Some(o) if !flags.given() => Some(format!(
            "corpus: the one the model was trained on ({})",
            o.flags()
        )),
        _ => None,
    }
}

/// The tokens a checkpoint's vocabulary reads `source` with: the checkpoint's own, except
/// that a `words` model (TensorFlow's PTB reader) reads a text other than the one it
/// recorded as `words-eos` where that text's line ends touch words: `words` would glue them on
/// (`blue<eos>the`, tokens the vocabulary does not have, `<unk>` or an error by the hundred),
/// where the model's vocabulary has `<eos>` as a token of its own either way (as `eval
/// --text` reads any text). Its own text is read as it was trained, and so is any text by a
/// vocabulary that holds glued tokens (the rule of [`Tokens::reading_for`], which the page
/// applies to the texts it holds).
pub(crate) fn reading_tokens(
    model: Tokens,
    vocab: &[String],
    source: &CorpusSource,
    origin: &Option<CorpusOrigin>,
    recorded: &Option<CorpusOrigin>,
) -> Result<(Tokens, Option<String>)> {
    if model != Tokens::Words || origin == recorded || data::glues_line_ends(vocab) {
        return Ok((model, None));
    }
    Ok(match source.line_ends_touch_words()? {
        Some(path) => (
            Tokens::WordsEos,
            Some(format!(
                "tokens: words-eos, every line end its own <eos>: line ends of {} touch words, which the model's reading (`words`, TensorFlow's PTB reader) would glue on",
                path.display()
            )),
        ),
        None => (model, None),
    })
}

/// Whose vocabulary reads a corpus, and why.
pub(crate) enum VocabOf {
    /// The checkpoint being evaluated, served or resumed: its own text is the one to read.
    Resumed(PathBuf),
    /// The checkpoint `--init` starts from: a new text must be written in its words.
    Init(PathBuf),
}

/// A corpus that a checkpoint's vocabulary cannot read (a token it lacks, and no `<unk>`):
/// not the text the model was trained on (or for `--init`, a text in other words), which the
/// error then says (the reader's advice about building a vocabulary does not apply to a
/// checkpoint's).
pub(crate) fn wrong_corpus(
    e: anyhow::Error,
    read: &Option<CorpusOrigin>,
    vocab_of: Option<&VocabOf>,
) -> anyhow::Error {
    let Some(vocab_of) = vocab_of else { return e };
    let path = match vocab_of {
        VocabOf::Resumed(path) | VocabOf::Init(path) => path,
    };
    let Some(unknown) = e.downcast_ref::<data::UnknownToken>() else {
        return e.context(format!("with the vocabulary of {}", path.display()));
    };
    let read = read
        .as_ref()
        .map_or("the default corpus".to_string(), CorpusOrigin::flags);
    let why = match vocab_of {
        VocabOf::Resumed(_) => format!(
            "{read} is not the text the model was trained on; name that text with --data DIR or --train FILE"
        ),
        VocabOf::Init(_) => format!(
            "--init keeps the vocabulary of the weights it starts from, and this text ({read}) goes beyond it (a vocabulary with <unk>, as PTB's, reads any text)"
        ),
    };
    usage(format!(
        "{}: the {} {:?} is not in the vocabulary of {}, which has no <unk> to stand for it: {why}",
        unknown.place,
        unknown.kind,
        unknown.token,
        path.display()
    ))
}

pub(crate) fn data_info(corpus: CorpusArgs, config: ConfigArgs) -> Result<()> {
    let mut cfg = config.resolve()?;
    let source = corpus.source(false)?;
    if let Some(note) = default_word_tokens(&source, &mut cfg, &config)? {
        log::info!("{note}");
    }
    let corpus = Corpus::read(&source, cfg.tokens, config.vocab_size)?;
    cfg.vocab_size = corpus.vocab.len();
    print!("{}", data::info_of(&corpus, &cfg));
    Ok(())
}

pub(crate) fn data_fetch(dir: Option<PathBuf>, url: Option<String>) -> Result<()> {
    let dir = dir.unwrap_or_else(fetch::default_data_dir);
    let urls = url.map_or_else(fetch::ptb_sources, |url| vec![url]);
    fetch::fetch_ptb_from(&urls, &dir)?;
    println!("PTB corpus ready in {}", dir.display());
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
pub(crate) fn read_corpus(
    source: &CorpusSource,
    cfg: &mut Config,
    flags: &ConfigArgs,
) -> Result<Corpus> {
    let (corpus, notes) = read_corpus_quietly(source, cfg, flags)?;
    say(&notes);
    Ok(corpus)
}

/// What reading a corpus has to say (its notes, the vocabulary), to log later: `train`
/// says it after the checks that need no GPU, so that their error line stands alone.
pub(crate) type Notes = Vec<(log::Level, String)>;

pub(crate) fn say(notes: &Notes) {
    for (level, line) in notes {
        log::log!(*level, "{line}");
    }
}

/// Without `--tokens`, the word tokens the text needs ([`Tokens::default_for`]): `words`,
/// TensorFlow's PTB reader, unless a line end touches a word, which `words-eos` then keeps
/// apart; a note that says so in that case. With `--tokens` (or `chars`), what it says.
fn default_word_tokens(
    source: &CorpusSource,
    cfg: &mut Config,
    flags: &ConfigArgs,
) -> Result<Option<String>> {
    if flags.tokens.is_some() || cfg.tokens != Tokens::Words {
        return Ok(None);
    }
    let Some(path) = source.line_ends_touch_words()? else {
        return Ok(None);
    };
    cfg.tokens = Tokens::WordsEos;
    Ok(Some(format!(
        "tokens: words-eos, every line end its own <eos>: line ends of {} touch words, which \
         TensorFlow's PTB reader (`--tokens words`) would glue on (`word<eos>next`)",
        path.display()
    )))
}

/// [`read_corpus`] with its notes returned instead of logged.
pub(crate) fn read_corpus_quietly(
    source: &CorpusSource,
    cfg: &mut Config,
    flags: &ConfigArgs,
) -> Result<(Corpus, Notes)> {
    let chosen = default_word_tokens(source, cfg, flags)?;
    let corpus = Corpus::read(source, cfg.tokens, flags.vocab_size)?;
    let mut notes: Notes = corpus
        .source
        .notes
        .iter()
        .map(|n| (log::Level::Info, n.clone()))
        .collect();
    notes.extend(chosen.map(|note| (log::Level::Info, note)));
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
