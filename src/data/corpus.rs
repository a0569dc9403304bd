//! The corpus: finding the three split files (a folder in one of three layouts, or files
//! named one by one, a missing split cut from the end of the training text), encoding them
//! with a vocabulary as a stream, encoding a user's text, and the figures of
//! `lstm-gpu data info`.

use super::batch::{epoch_size, Batches};
use super::reader::{
    file_len, for_each_token, line_at, line_boundary, line_end_touches_word, line_ends_touch_words,
    CORPUS_ADVICE,
};
use super::vocab::{tokens_of, tokens_with_offsets, Tokens, Vocab, VocabBuilder, EOS, UNK};
use crate::config::Config;
use crate::error::usage;
use anyhow::{bail, Context, Result};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One of the three parts of the corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Valid,
    Test,
}

impl Split {
    /// The three splits in their usual order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];

    /// `train`, `valid` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }

    /// The file names this split may have, one per folder layout of [`LAYOUTS`].
    pub fn file_names(self) -> [&'static str; 3] {
        LAYOUTS.map(|(_, files)| files[self as usize])
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The folder layouts a corpus may have: its name and its train, valid and test files.
pub const LAYOUTS: [(&str, [&str; 3]); 3] = [
    ("PTB", ["ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"]),
    ("plain", ["train.txt", "valid.txt", "test.txt"]),
    (
        "WikiText",
        ["wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"],
    ),
];

/// The file of `split` in `dir`, if there is one (in the order of [`LAYOUTS`]).
pub fn find_split(dir: &Path, split: Split) -> Option<PathBuf> {
    split
        .file_names()
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

/// 1-based line number of byte `offset` in `bytes`.
fn line_of(bytes: &[u8], offset: usize) -> usize {
    1 + bytes[..offset].iter().filter(|&&b| b == b'\n').count()
}

/// Read a corpus file as text, refusing what cannot be one: a missing, empty, compressed,
/// binary or non-UTF-8 file, or one without a single word.
pub fn read_text(path: &Path) -> Result<String> {
    let shown = path.display();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("corpus file {shown} does not exist: {CORPUS_ADVICE}")
        }
        Err(e) => bail!("cannot read corpus file {shown}: {e}"),
    };
    text_of_bytes(&format!("corpus file {shown}"), bytes, CORPUS_ADVICE)
}

/// The bytes of a corpus file as text, refusing what cannot be one (empty, compressed,
/// binary, not UTF-8, no word); `what` names the file in the error, `advice` ends it.
pub fn text_of_bytes(what: &str, bytes: Vec<u8>, advice: &str) -> Result<String> {
    if bytes.is_empty() {
        bail!("{what} is empty: {advice}");
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        bail!("{what} is gzip-compressed, not text: decompress it, or {advice}");
    }
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        bail!(
            "{what} is binary (a NUL byte on line {}), not text: {advice}",
            line_of(&bytes, at)
        );
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        anyhow::anyhow!(
            "{what} is not UTF-8 text (byte 0x{:02x} on line {}): convert it to UTF-8, or \
             {advice}",
            bytes[at],
            line_of(bytes, at)
        )
    })?;
    if tokens_with_offsets(&text).next().is_none() {
        bail!("{what} holds only blanks, no words: {advice}");
    }
    Ok(text)
}

/// Say once, when `words` tokens of a training text have line ends glued on (`word<eos>`,
/// TensorFlow's reader where a newline touches a word: most plain text, never PTB), how to
/// make each line end its own `<eos>` instead.
fn warn_glued(builder: &VocabBuilder, name: &str) {
    let glued = builder.glued();
    if glued > 0 {
        log::warn!(
            "{glued} distinct words of {name} have a line end glued on (like `word<eos>`), as \
             TensorFlow's PTB reader makes them where a newline touches a word: `--tokens \
             words-eos` makes every line end its own <eos>"
        );
    }
}

/// The end of an unknown-token error whose token is words glued by a line end (`a<eos>`).
fn glued_hint(token: &str, tokens: Tokens) -> &'static str {
    if tokens == Tokens::Words && token != EOS && token.contains(EOS) {
        " (a line end glued to a word, as TensorFlow's reader makes it: --tokens words-eos \
         keeps line ends apart)"
    } else {
        ""
    }
}

/// What a token outside the vocabulary is called in errors.
fn token_kind(tokens: Tokens) -> &'static str {
    match tokens {
        Tokens::Words | Tokens::WordsEos => "word",
        Tokens::Chars => "character",
    }
}

/// A token outside a vocabulary that has no `<unk>` to stand for it: where it is (file and
/// line) and which. Its own type, so that a caller reading with a checkpoint's vocabulary
/// can say what it means there (not the text the model was trained on).
#[derive(Debug)]
pub struct UnknownToken {
    /// `file:line`.
    pub place: String,
    /// "word" or "character".
    pub kind: &'static str,
    pub token: String,
    /// What to do, after the fact (with its leading separator), or nothing.
    pub advice: String,
}

impl fmt::Display for UnknownToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: the {} {:?} is not in the vocabulary, which has no {UNK} to stand for it{}",
            self.place, self.kind, self.token, self.advice
        )
    }
}

impl std::error::Error for UnknownToken {}

/// The ids of bytes `range` of `path` in `vocab`, read as a stream. A token outside the
/// vocabulary becomes `<unk>` when the vocabulary has it; otherwise the error names the
/// file, the line and the token.
fn encode_range(path: &Path, range: Range<u64>, vocab: &Vocab, tokens: Tokens) -> Result<Vec<u32>> {
    let unk = vocab.unk();
    let len = file_len(path)?;
    let bytes = range.end.min(len).saturating_sub(range.start);
    let mut ids = Vec::with_capacity(capacity_for(bytes, tokens));
    for_each_token(path, range, tokens, |token, offset| {
        match vocab.id(token).or(unk) {
            Some(id) => ids.push(id),
            None => {
                return Err(UnknownToken {
                    place: format!("{}:{}", path.display(), line_at(path, offset)),
                    kind: token_kind(tokens),
                    token: token.to_string(),
                    advice: format!(
                        "; build the vocabulary from a train file that holds {UNK} or every {} \
                         of the other splits, or cap it with --vocab-size (which adds {UNK}){}",
                        token_kind(tokens),
                        glued_hint(token, tokens),
                    ),
                }
                .into())
            }
        }
        Ok(())
    })?;
    ids.shrink_to_fit();
    Ok(ids)
}

/// Tokens that `bytes` of text can hold at most: reserved for the id stream, untouched
/// (so not resident) beyond what is used, and released by `shrink_to_fit`.
fn capacity_for(bytes: u64, tokens: Tokens) -> usize {
    let bytes = usize::try_from(bytes).unwrap_or(usize::MAX / 8);
    match tokens {
        Tokens::Chars => bytes,
        Tokens::Words | Tokens::WordsEos => bytes / 2 + 1,
    }
}

/// Read and encode one corpus file with `vocab` (see [`read_text`] for what is refused).
pub fn encode_file(path: &Path, vocab: &Vocab) -> Result<Vec<u32>> {
    let ids = encode_range(path, 0..u64::MAX, vocab, Tokens::Words)?;
    if ids.is_empty() {
        bail!(
            "corpus file {} holds only blanks, no words: {CORPUS_ADVICE}",
            path.display()
        );
    }
    Ok(ids)
}

/// A user's text (a prompt) as ids, with the words that had to become `<unk>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedText {
    /// One id per token of [`tokenize`](super::tokenize).
    pub ids: Vec<u32>,
    /// The distinct words outside the vocabulary, in order of first appearance, so that the
    /// caller can warn about them.
    pub unknown: Vec<String>,
}

/// Encode a user's text with `vocab`: unknown words become `<unk>` and are reported back.
/// Without `<unk>` in the vocabulary an unknown word is a usage error naming it.
pub fn encode_text(text: &str, vocab: &Vocab) -> Result<EncodedText> {
    encode_text_as(text, vocab, Tokens::Words)
}

/// [`encode_text`] with the tokens of `tokens` (words, or every character).
pub fn encode_text_as(text: &str, vocab: &Vocab, tokens: Tokens) -> Result<EncodedText> {
    let unk = vocab.unk();
    let mut encoded = EncodedText {
        ids: Vec::new(),
        unknown: Vec::new(),
    };
    for (_, token) in tokens_of(text, tokens) {
        // A capitalised word of a lower-case vocabulary (PTB's) is the word.
        let known = vocab.id(&token).or_else(|| {
            let lower = token.to_lowercase();
            (lower != *token).then(|| vocab.id(&lower)).flatten()
        });
        if let Some(id) = known {
            encoded.ids.push(id);
            continue;
        }
        let Some(unk) = unk else {
            return Err(crate::usage(format!(
                "the {} {token:?} is not in the model's vocabulary (which has no {UNK}); \
                 use only {}s the model knows",
                token_kind(tokens),
                token_kind(tokens)
            )));
        };
        encoded.ids.push(unk);
        if !encoded.unknown.iter().any(|w| *w == token) {
            encoded.unknown.push(token.into_owned());
        }
    }
    Ok(encoded)
}

/// Where one split's text is: a whole file, or a byte range of one (a split cut from the
/// end of the training text by `--valid-fraction`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitSource {
    pub path: PathBuf,
    /// The bytes of `path` that are this split; `None`: all of them.
    pub bytes: Option<Range<u64>>,
}

impl SplitSource {
    fn range(&self) -> Range<u64> {
        self.bytes.clone().unwrap_or(0..u64::MAX)
    }
}

/// Where a model's corpus came from, as the command line named it (`--data DIR`, or
/// `--train FILE [--valid FILE] [--test FILE]`, and `--valid-fraction F`), its paths made
/// absolute: recorded in the checkpoints of a run, so that `eval` and `train --resume` read
/// the same text again without being told (and `info` says which it was).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorpusOrigin {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_fraction: Option<f64>,
}

impl CorpusOrigin {
    /// The origin of a corpus named by these flags (relative paths taken from the current
    /// folder); `None` for the default corpus (no `--data` or `--train`), which every
    /// machine finds in its own default folder.
    pub fn of_flags(
        data: Option<&Path>,
        train: Option<&Path>,
        valid: Option<&Path>,
        test: Option<&Path>,
        valid_fraction: Option<f64>,
    ) -> Option<CorpusOrigin> {
        if data.is_none() && train.is_none() {
            return None;
        }
        let absolute = |p: Option<&Path>| p.map(|p| std::path::absolute(p).unwrap_or(p.into()));
        Some(CorpusOrigin {
            data: absolute(data),
            train: absolute(train),
            valid: absolute(valid),
            test: absolute(test),
            valid_fraction,
        })
    }

    /// The flags that name this corpus, as a user would type them.
    pub fn flags(&self) -> String {
        let mut out = Vec::new();
        for (flag, path) in [
            ("--data", &self.data),
            ("--train", &self.train),
            ("--valid", &self.valid),
            ("--test", &self.test),
        ] {
            if let Some(p) = path {
                out.push(format!("{flag} {}", p.display()));
            }
        }
        if let Some(f) = self.valid_fraction {
            out.push(format!("--valid-fraction {f}"));
        }
        out.join(" ")
    }

    /// Where the splits are now; the files missing (moved, or another machine) are a usage
    /// error that says which corpus it was and how to name another.
    pub fn source(&self) -> Result<CorpusSource> {
        let source = match (&self.data, &self.train) {
            (Some(dir), _) => CorpusSource::folder(dir, self.valid_fraction),
            (None, Some(train)) => CorpusSource::files(
                train,
                self.valid.as_deref(),
                self.test.as_deref(),
                self.valid_fraction,
            ),
            (None, None) => bail!("a corpus origin names neither --data nor --train"),
        };
        source.map_err(|e| {
            usage(format!(
                "the corpus the checkpoint was trained on ({}) cannot be read: {e:#}; name \
                 the text with --data DIR or --train FILE",
                self.flags()
            ))
        })
    }
}

/// Where the three splits of a corpus are, in the order of [`Split::ALL`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorpusSource {
    /// The folder (or the training file's folder), as messages name the corpus.
    pub dir: PathBuf,
    pub splits: [SplitSource; 3],
    /// What was decided on the way (a split cut from the training text), for the log.
    pub notes: Vec<String>,
}

impl CorpusSource {
    /// The corpus in folder `dir`, in whichever layout of [`LAYOUTS`] it has. Two layouts in
    /// one folder are a usage error naming both. A valid or test file that is missing is
    /// cut from the end of the training text when `valid_fraction` is given.
    pub fn folder(dir: &Path, valid_fraction: Option<f64>) -> Result<CorpusSource> {
        if !dir.is_dir() {
            bail!(
                "corpus folder {} does not exist: {CORPUS_ADVICE}",
                dir.display()
            );
        }
        let present: Vec<(&str, Vec<&str>)> = LAYOUTS
            .iter()
            .map(|(name, files)| {
                let here: Vec<&str> = files
                    .iter()
                    .copied()
                    .filter(|f| dir.join(f).is_file())
                    .collect();
                (*name, here)
            })
            .filter(|(_, here)| !here.is_empty())
            .collect();
        if present.len() > 1 {
            let sets: Vec<String> = present
                .iter()
                .map(|(name, files)| format!("{name} ({})", files.join(", ")))
                .collect();
            return Err(usage(format!(
                "corpus folder {} holds the files of {} corpus layouts: {}; keep one set in the \
                 folder, or name the files with --train, --valid and --test",
                dir.display(),
                present.len(),
                sets.join(" and ")
            )));
        }
        let Some(&(_, files)) = LAYOUTS
            .iter()
            .find(|(name, _)| present.first().is_some_and(|p| p.0 == *name))
        else {
            let trains: Vec<&str> = LAYOUTS.iter().map(|(_, f)| f[0]).collect();
            bail!(
                "corpus folder {} has no {}: {CORPUS_ADVICE}",
                dir.display(),
                trains.join(", ")
            );
        };
        let path = |split: Split| {
            let p = dir.join(files[split as usize]);
            p.is_file().then_some(p)
        };
        let Some(train) = path(Split::Train) else {
            bail!(
                "corpus folder {} has no {} (it has {}): {CORPUS_ADVICE}",
                dir.display(),
                files[0],
                present[0].1.join(", ")
            );
        };
        CorpusSource::new(
            dir.to_path_buf(),
            train,
            path(Split::Valid),
            path(Split::Test),
            valid_fraction,
            |split| {
                format!(
                    "corpus folder {} has no {}: add it, or pass --valid-fraction F to take \
                     it from the end of the training text",
                    dir.display(),
                    files[split as usize]
                )
            },
        )
    }

    /// The corpus in files named one by one (`--train`, `--valid`, `--test`).
    pub fn files(
        train: &Path,
        valid: Option<&Path>,
        test: Option<&Path>,
        valid_fraction: Option<f64>,
    ) -> Result<CorpusSource> {
        for (flag, path) in [
            ("--train", Some(train)),
            ("--valid", valid),
            ("--test", test),
        ] {
            if let Some(p) = path {
                if !p.is_file() {
                    return Err(usage(format!(
                        "{flag} {}: no such file (name a text file, one sentence or line of \
                         text per line)",
                        p.display()
                    )));
                }
            }
        }
        let dir = train
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        CorpusSource::new(
            dir,
            train.to_path_buf(),
            valid.map(Path::to_path_buf),
            test.map(Path::to_path_buf),
            valid_fraction,
            |split| {
                format!(
                    "no {split} file: name it with --{split} FILE, or pass --valid-fraction F \
                     to take it from the end of the training text"
                )
            },
        )
        .map_err(|e| {
            if e.is::<crate::UsageError>() {
                e
            } else {
                usage(format!("{e:#}"))
            }
        })
    }

    /// Cut the missing splits from the end of the training file: each the last
    /// `valid_fraction` of its bytes (valid before test when both are missing), at line
    /// boundaries.
    fn new(
        dir: PathBuf,
        train: PathBuf,
        valid: Option<PathBuf>,
        test: Option<PathBuf>,
        valid_fraction: Option<f64>,
        missing: impl Fn(Split) -> String,
    ) -> Result<CorpusSource> {
        let whole = |path: PathBuf| SplitSource { path, bytes: None };
        let missing_splits: Vec<Split> = [(Split::Valid, &valid), (Split::Test, &test)]
            .into_iter()
            .filter(|(_, p)| p.is_none())
            .map(|(s, _)| s)
            .collect();
        let mut notes = Vec::new();
        let Some(fraction) = valid_fraction else {
            if let Some(&split) = missing_splits.first() {
                bail!("{}", missing(split));
            }
            return Ok(CorpusSource {
                dir,
                splits: [whole(train), whole(valid.unwrap()), whole(test.unwrap())],
                notes,
            });
        };
        let parts = missing_splits.len() as f64;
        let fits = fraction * (parts.max(1.0) + 1.0) <= 1.0 + f64::EPSILON;
        if !(fraction > 0.0 && fraction.is_finite() && fits) {
            return Err(usage(format!(
                "--valid-fraction must be above 0 and leave the training text most of the \
                 text (at most {} with {} split{} to cut), got {fraction}",
                if parts > 1.0 { "0.33" } else { "0.5" },
                parts.max(1.0),
                if parts > 1.0 { "s" } else { "" }
            )));
        }
        if missing_splits.is_empty() {
            notes.push(format!(
                "--valid-fraction {fraction} is not used: the corpus has valid and test files"
            ));
            return Ok(CorpusSource {
                dir,
                splits: [whole(train), whole(valid.unwrap()), whole(test.unwrap())],
                notes,
            });
        }
        let len = file_len(&train)?;
        // Cut points from the end: the last split first.
        let mut cuts = Vec::new();
        for k in (1..=missing_splits.len()).rev() {
            let at = (len as f64 * (1.0 - fraction * k as f64)) as u64;
            let cut = line_boundary(&train, at)?.ok_or_else(|| {
                usage(format!(
                    "--valid-fraction: the training text {} is one line, which cannot be cut \
                     at a line boundary; give it several lines or name --valid and --test files",
                    train.display()
                ))
            })?;
            if cuts.last().is_some_and(|&c| c >= cut) {
                return Err(usage(format!(
                    "--valid-fraction {fraction}: the training text {} has too few lines to \
                     cut {} splits from it; give a larger fraction or name the files",
                    train.display(),
                    missing_splits.len()
                )));
            }
            cuts.push(cut);
        }
        cuts.push(len);
        let train_end = cuts[0];
        let mut cut_sources = Vec::new();
        for (i, &split) in missing_splits.iter().enumerate() {
            let bytes = cuts[i]..cuts[i + 1];
            notes.push(format!(
                "{split} split: the last {:.3}% of the training text {} (bytes {}..{}, from \
                 line {}), which training does not see (--valid-fraction {fraction})",
                100.0 * (bytes.end - bytes.start) as f64 / len as f64,
                train.display(),
                bytes.start,
                bytes.end,
                line_at(&train, bytes.start),
            ));
            cut_sources.push((
                split,
                SplitSource {
                    path: train.clone(),
                    bytes: Some(bytes),
                },
            ));
        }
        let pick = |split: Split, given: Option<PathBuf>| match given {
            Some(p) => whole(p),
            None => cut_sources
                .iter()
                .find(|(s, _)| *s == split)
                .map(|(_, src)| src.clone())
                .expect("a missing split was cut"),
        };
        Ok(CorpusSource {
            dir,
            splits: [
                SplitSource {
                    path: train.clone(),
                    bytes: Some(0..train_end),
                },
                pick(Split::Valid, valid),
                pick(Split::Test, test),
            ],
            notes,
        })
    }

    /// The source of `split`.
    pub fn split(&self, split: Split) -> &SplitSource {
        &self.splits[split as usize]
    }

    /// The first split file with a line end that touches a word, where `--tokens words`
    /// glues it on (see [`Tokens::default_for`]); `None` where the modes agree. Each split's
    /// bytes are scanned up to the first such line end.
    pub fn line_ends_touch_words(&self) -> Result<Option<&Path>> {
        for split in &self.splits {
            if line_ends_touch_words(&split.path, split.range())? {
                return Ok(Some(&split.path));
            }
        }
        Ok(None)
    }
}

impl Tokens {
    /// The word tokens of texts whose user named none: `words` (TensorFlow's PTB reader)
    /// where no line end touches a word (PTB and WikiText, whose lines start and end with a
    /// space: there the two modes give the same tokens), else `words-eos`, which keeps every
    /// line end its own `<eos>` where `words` would glue it to a word (`b<eos>c`, tokens
    /// that plain text then has by the hundred, and that its other splits cannot know).
    pub fn default_for(texts: &[&str]) -> Tokens {
        if texts
            .iter()
            .any(|t| line_end_touches_word(t.as_bytes(), None))
        {
            Tokens::WordsEos
        } else {
            Tokens::Words
        }
    }

    /// How a model of these tokens and vocabulary reads `texts` that are not (known to be)
    /// its own: a `words` model reads texts whose line ends touch words as `words-eos`
    /// ([`Tokens::default_for`]), its vocabulary having `<eos>` either way, unless that
    /// vocabulary holds glued tokens (`word<eos>next`: trained on them, it reads as trained);
    /// any other model as it is.
    pub fn reading_for(self, vocab: &[String], texts: &[&str]) -> Tokens {
        if self == Tokens::Words
            && !glues_line_ends(vocab)
            && Tokens::default_for(texts) == Tokens::WordsEos
        {
            Tokens::WordsEos
        } else {
            self
        }
    }
}

/// Whether a vocabulary holds tokens with a line end glued on (`b<eos>c`: `words` read a
/// text whose line ends touch words).
pub fn glues_line_ends(vocab: &[String]) -> bool {
    vocab.iter().any(|w| w != EOS && w.contains(EOS))
}

/// The three splits as ids in one vocabulary.
#[derive(Clone, Debug)]
pub struct Corpus {
    pub vocab: Vocab,
    pub train: Vec<u32>,
    pub valid: Vec<u32>,
    pub test: Vec<u32>,
    /// The folder the splits were read from.
    pub dir: PathBuf,
    /// How the text became tokens.
    pub tokens: Tokens,
    /// Where each split was read from.
    pub source: CorpusSource,
}

impl Corpus {
    /// Read the corpus in `dir` (words), building the vocabulary from the train split
    /// (see [`Vocab::from_train`]: at most `vocab_size` words).
    pub fn load(dir: &Path, vocab_size: usize) -> Result<Corpus> {
        Corpus::read(
            &CorpusSource::folder(dir, None)?,
            Tokens::Words,
            Some(vocab_size),
        )
    }

    /// Read the corpus in `dir` (words) with a given vocabulary (a checkpoint's): every
    /// split, train included, is encoded like valid and test.
    pub fn with_vocab(dir: &Path, vocab: Vocab) -> Result<Corpus> {
        Corpus::read_with_vocab(&CorpusSource::folder(dir, None)?, vocab, Tokens::Words)
    }

    /// Read the corpus of `source` as `tokens`, building the vocabulary from the train split
    /// by count (ties by the token), at most `cap` tokens when given (the rest `<unk>`).
    /// Every split is streamed from its file: memory is the ids (4 bytes a token) and the
    /// vocabulary, never the text.
    pub fn read(source: &CorpusSource, tokens: Tokens, cap: Option<usize>) -> Result<Corpus> {
        let train = source.split(Split::Train);
        let range = train.range();
        let bytes = range.end.min(file_len(&train.path)?) - range.start;
        let mut builder = VocabBuilder::new(tokens, capacity_for(bytes, tokens));
        for_each_token(&train.path, range, tokens, |token, _| {
            builder.push(token);
            Ok(())
        })?;
        if builder.is_empty() {
            bail!(
                "corpus file {} holds only blanks, no words: {CORPUS_ADVICE}",
                train.path.display()
            );
        }
        warn_glued(&builder, &train.path.display().to_string());
        let (vocab, ids) = builder
            .finish(cap)
            .with_context(|| format!("building the vocabulary from {}", train.path.display()))?;
        Corpus::assemble(source, vocab, ids, tokens)
    }

    /// Read the corpus of `source` with a given vocabulary (a checkpoint's): every split,
    /// train included, is encoded like valid and test.
    pub fn read_with_vocab(source: &CorpusSource, vocab: Vocab, tokens: Tokens) -> Result<Corpus> {
        let train = encode_split(source, Split::Train, &vocab, tokens)?;
        Corpus::assemble(source, vocab, train, tokens)
    }

    fn assemble(
        source: &CorpusSource,
        vocab: Vocab,
        train: Vec<u32>,
        tokens: Tokens,
    ) -> Result<Corpus> {
        let valid = encode_split(source, Split::Valid, &vocab, tokens)?;
        let test = encode_split(source, Split::Test, &vocab, tokens)?;
        Ok(Corpus {
            vocab,
            train,
            valid,
            test,
            dir: source.dir.clone(),
            tokens,
            source: source.clone(),
        })
    }

    /// A corpus from three texts in memory (what a browser page reads from its server or
    /// from files the user picked), as `tokens`: the vocabulary is `vocab` (a checkpoint's)
    /// or built from the train text, at most `cap` tokens. `names` say what each text was in
    /// errors. An out-of-vocabulary token becomes `<unk>` when the vocabulary has it.
    pub fn from_texts(
        names: [&str; 3],
        texts: [&str; 3],
        tokens: Tokens,
        vocab: Option<Vocab>,
        cap: Option<usize>,
    ) -> Result<Corpus> {
        let (vocab, train) = match vocab {
            Some(v) => {
                let ids = encode_memory(names[0], texts[0], &v, tokens)?;
                (v, ids)
            }
            None => {
                let mut builder =
                    VocabBuilder::new(tokens, capacity_for(texts[0].len() as u64, tokens));
                for (_, token) in tokens_of(texts[0], tokens) {
                    builder.push(&token);
                }
                if builder.is_empty() {
                    bail!("{} holds only blanks, no words", names[0]);
                }
                warn_glued(&builder, names[0]);
                builder
                    .finish(cap)
                    .with_context(|| format!("building the vocabulary from {}", names[0]))?
            }
        };
        let valid = encode_memory(names[1], texts[1], &vocab, tokens)?;
        let test = encode_memory(names[2], texts[2], &vocab, tokens)?;
        let source = CorpusSource {
            dir: PathBuf::from("(in memory)"),
            splits: names.map(|n| SplitSource {
                path: PathBuf::from(n),
                bytes: None,
            }),
            notes: Vec::new(),
        };
        Ok(Corpus {
            vocab,
            train,
            valid,
            test,
            dir: source.dir.clone(),
            tokens,
            source,
        })
    }

    /// The ids of `split`.
    pub fn split(&self, split: Split) -> &[u32] {
        match split {
            Split::Train => &self.train,
            Split::Valid => &self.valid,
            Split::Test => &self.test,
        }
    }

    /// The batches of `split`; a usage error names the split when it is too short for them.
    pub fn batches(
        &self,
        split: Split,
        batch_size: usize,
        num_steps: usize,
    ) -> Result<Batches<'_>> {
        Batches::new(self.split(split), batch_size, num_steps)
            .with_context(|| format!("the {split} split"))
    }
}

/// A text in memory encoded with `vocab`, `<unk>` for tokens outside it (an error naming the
/// token where the vocabulary has no `<unk>`); a text without a token is an error.
fn encode_memory(name: &str, text: &str, vocab: &Vocab, tokens: Tokens) -> Result<Vec<u32>> {
    let unk = vocab.unk();
    let mut ids = Vec::with_capacity(capacity_for(text.len() as u64, tokens));
    for (offset, token) in tokens_of(text, tokens) {
        match vocab.id(&token).or(unk) {
            Some(id) => ids.push(id),
            None => {
                return Err(UnknownToken {
                    place: format!("{name}:{}", line_of(text.as_bytes(), offset)),
                    kind: token_kind(tokens),
                    token: token.to_string(),
                    advice: glued_hint(&token, tokens).to_string(),
                }
                .into())
            }
        }
    }
    if ids.is_empty() {
        bail!("{name} holds only blanks, no words");
    }
    Ok(ids)
}

/// One split of `source` encoded with `vocab`; an empty one is an error naming it.
fn encode_split(
    source: &CorpusSource,
    split: Split,
    vocab: &Vocab,
    tokens: Tokens,
) -> Result<Vec<u32>> {
    let s = source.split(split);
    let ids = encode_range(&s.path, s.range(), vocab, tokens)?;
    if ids.is_empty() {
        match &s.bytes {
            Some(b) if b.start > 0 => bail!(
                "the {split} split cut from {} (bytes {}..{}) holds only blanks, no words: \
                 give a larger --valid-fraction or name a {split} file",
                s.path.display(),
                b.start,
                b.end
            ),
            _ => bail!(
                "corpus file {} holds only blanks, no words: {CORPUS_ADVICE}",
                s.path.display()
            ),
        }
    }
    Ok(ids)
}

/// The figures `lstm-gpu data info` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataInfo {
    pub dir: PathBuf,
    pub tokens: Tokens,
    pub vocab_size: usize,
    pub unk: Option<u32>,
    pub eos: Option<u32>,
    pub batch_size: usize,
    pub num_steps: usize,
    pub splits: [SplitInfo; 3],
    /// Where each split comes from, as [`SplitSource`]s say it.
    pub sources: [String; 3],
    /// What reading decided (a split cut from the training text).
    pub notes: Vec<String>,
}

/// Size of one split and its batches per epoch at the configured shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitInfo {
    pub split: Split,
    pub tokens: usize,
    /// Batches per epoch; 0 when the split is too short for the batch shape.
    pub batches: usize,
}

/// Read the corpus in `dir` (words) and measure it at `config`'s vocabulary size (as a cap)
/// and batch shape.
pub fn info(dir: &Path, config: &Config) -> Result<DataInfo> {
    let corpus = Corpus::read(
        &CorpusSource::folder(dir, None)?,
        config.tokens,
        Some(config.vocab_size),
    )?;
    Ok(info_of(&corpus, config))
}

/// The figures of a corpus that was read, at `config`'s batch shape.
pub fn info_of(corpus: &Corpus, config: &Config) -> DataInfo {
    let split_info = |split| {
        let tokens = corpus.split(split).len();
        SplitInfo {
            split,
            tokens,
            batches: epoch_size(tokens, config.batch_size, config.num_steps),
        }
    };
    let source = |split: Split| {
        let s = corpus.source.split(split);
        match &s.bytes {
            Some(b) if b.start > 0 || s.path != corpus.source.split(Split::Train).path => {
                format!("{} bytes {}..{}", s.path.display(), b.start, b.end)
            }
            Some(b) if split == Split::Train && b.end < file_len(&s.path).unwrap_or(0) => {
                format!("{} bytes 0..{}", s.path.display(), b.end)
            }
            _ => s.path.display().to_string(),
        }
    };
    DataInfo {
        dir: corpus.dir.clone(),
        tokens: corpus.tokens,
        vocab_size: corpus.vocab.len(),
        unk: corpus.vocab.unk(),
        eos: corpus.vocab.eos(),
        batch_size: config.batch_size,
        num_steps: config.num_steps,
        splits: Split::ALL.map(split_info),
        sources: Split::ALL.map(source),
        notes: corpus.source.notes.clone(),
    }
}

impl fmt::Display for DataInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = |id: Option<u32>| id.map_or("absent".to_string(), |i| format!("id {i}"));
        writeln!(f, "corpus      {}", self.dir.display())?;
        writeln!(f, "tokens      {}", self.tokens)?;
        writeln!(
            f,
            "vocabulary  {} {} (<unk> {}, <eos> {})",
            self.vocab_size,
            match self.tokens {
                Tokens::Words | Tokens::WordsEos => "words",
                Tokens::Chars => "characters",
            },
            id(self.unk),
            id(self.eos)
        )?;
        writeln!(
            f,
            "split      tokens  batches (--batch-size {} --num-steps {})",
            self.batch_size, self.num_steps
        )?;
        for s in &self.splits {
            let too_short = if s.batches == 0 {
                "  (too short: lower --batch-size or --num-steps)"
            } else {
                ""
            };
            writeln!(
                f,
                "{:<6} {:>10}  {:>7}{too_short}",
                s.split, s.tokens, s.batches
            )?;
        }
        for (split, source) in Split::ALL.iter().zip(&self.sources) {
            writeln!(f, "{:<6} from {source}", split.name())?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::one_line;
    use std::fs;

    /// A corpus folder with the given files.
    fn folder(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, contents) in files {
            fs::write(dir.path().join(name), contents).unwrap();
        }
        dir
    }

    /// A `words` model reads another text with touching line ends as `words-eos`, unless its
    /// vocabulary was built from glued tokens; nothing else changes its reading.
    #[test]
    fn a_words_model_reads_touching_line_ends_as_their_own_eos() {
        let vocab = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        let ptb = vocab(&["the", "<eos>", "cat", "<unk>"]);
        let glued = vocab(&["the", "<eos>", "cat<eos>the", "cat"]);
        let (plain, spaced) = ("the cat\nthe cat\n", " the cat \n the cat \n");
        assert_eq!(
            Tokens::Words.reading_for(&ptb, &[spaced, plain]),
            Tokens::WordsEos
        );
        assert_eq!(Tokens::Words.reading_for(&ptb, &[spaced]), Tokens::Words);
        assert_eq!(Tokens::Words.reading_for(&glued, &[plain]), Tokens::Words);
        assert_eq!(
            Tokens::WordsEos.reading_for(&ptb, &[plain]),
            Tokens::WordsEos
        );
        assert_eq!(Tokens::Chars.reading_for(&ptb, &[plain]), Tokens::Chars);
        assert!(glues_line_ends(&glued) && !glues_line_ends(&ptb));
    }

    const TRAIN: &[u8] = b" the cat sat \n the dog sat \n a <unk> ran \n";

    /// The default corpus records nothing; a named one its absolute paths, and reading it
    /// where its files are gone is a usage error naming the flags it was trained with.
    #[test]
    fn a_corpus_origin_names_its_flags_and_where_they_are_gone() {
        assert_eq!(
            CorpusOrigin::of_flags(None, None, None, None, Some(0.1)),
            None
        );
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let origin = CorpusOrigin::of_flags(Some(&gone), None, None, None, None).unwrap();
        assert_eq!(origin.flags(), format!("--data {}", gone.display()));
        let err = origin.source().unwrap_err();
        assert!(err.is::<crate::UsageError>());
        let text = format!("{err:#}");
        assert!(
            text.contains(&format!("trained on (--data {})", gone.display()))
                && text.contains("--data DIR or --train FILE"),
            "{text}"
        );
        let json = serde_json::to_string(&origin).unwrap();
        assert_eq!(serde_json::from_str::<CorpusOrigin>(&json).unwrap(), origin);
        assert!(!json.contains("train"), "{json}");
    }

    #[test]
    fn loads_either_naming() {
        let ptb = folder(&[
            ("ptb.train.txt", TRAIN),
            ("ptb.valid.txt", b" the cat \n"),
            ("ptb.test.txt", b" a dog"),
        ]);
        let plain = folder(&[
            ("train.txt", TRAIN),
            ("valid.txt", b" the cat \n"),
            ("test.txt", b" a dog"),
        ]);
        let a = Corpus::load(ptb.path(), 100).unwrap();
        let b = Corpus::load(plain.path(), 100).unwrap();
        assert_eq!(a.vocab, b.vocab);
        assert_eq!((a.train.len(), a.valid.len(), a.test.len()), (12, 3, 2));
        assert_eq!(a.train, b.train);
        assert_eq!(a.vocab.words()[..3], ["<eos>", "sat", "the"]);
        let words = |ids: &[u32]| -> Vec<String> {
            ids.iter().map(|&i| a.vocab.word(i).to_string()).collect()
        };
        assert_eq!(words(&a.valid), ["the", "cat", "<eos>"]);
        // The last line has no newline, hence no <eos> (TensorFlow's semantics).
        assert_eq!(words(&a.test), ["a", "dog"]);
        assert_eq!(a.dir, ptb.path());
    }

    #[test]
    fn unknown_words_become_unk_or_fail_with_file_line_word() {
        let with_unk = folder(&[
            ("ptb.train.txt", TRAIN),
            ("ptb.valid.txt", b" the cat \n the zebra \n"),
            ("ptb.test.txt", b" a dog \n"),
        ]);
        let corpus = Corpus::load(with_unk.path(), 100).unwrap();
        let unk = corpus.vocab.unk().unwrap();
        assert_eq!(corpus.valid[4], unk);

        let no_unk = folder(&[
            ("ptb.train.txt", b" the cat sat \n"),
            ("ptb.valid.txt", b" the cat \n the sat \n cat zebra the \n"),
            ("ptb.test.txt", b" the \n"),
        ]);
        let err = Corpus::load(no_unk.path(), 100).unwrap_err();
        let line = one_line(&err);
        let valid = no_unk.path().join("ptb.valid.txt");
        assert!(line.contains(&format!("{}:3:", valid.display())), "{line}");
        assert!(line.contains("\"zebra\""), "{line}");
        assert!(!format!("{err:#}").contains('\n'));
    }

    #[test]
    fn bad_files_are_one_line_errors_naming_the_path() {
        let cases: [(&[u8], &str); 5] = [
            (b"", "is empty"),
            (b"  \t \r ", "only blanks"),
            (b"the \0 cat\n", "binary"),
            (b"the \n caf\xe9 \n", "not UTF-8 text (byte 0xe9 on line 2)"),
            (b"\x1f\x8b\x08\x00rest", "gzip"),
        ];
        for (train, expected) in cases {
            let dir = folder(&[
                ("ptb.train.txt", train),
                ("ptb.valid.txt", b" the \n"),
                ("ptb.test.txt", b" the \n"),
            ]);
            let err = Corpus::load(dir.path(), 100).unwrap_err();
            let line = one_line(&err);
            assert!(line.contains(expected), "{expected}: {line}");
            assert!(line.contains("ptb.train.txt"), "{line}");
            assert!(line.contains("lstm-gpu data fetch"), "{line}");
            assert!(!format!("{err:#}").contains('\n'), "{line}");
        }
        // UTF-16 with a BOM has NUL bytes, so it is caught as binary.
        assert!(one_line(
            &read_text(&folder(&[("x", b"\xff\xfea\0")]).path().join("x")).unwrap_err()
        )
        .contains("binary"));
    }

    #[test]
    fn missing_files_and_folders_say_what_to_do() {
        let dir = folder(&[("ptb.train.txt", TRAIN), ("ptb.valid.txt", b" the \n")]);
        let line = one_line(&Corpus::load(dir.path(), 100).unwrap_err());
        assert!(line.contains("has no ptb.test.txt"), "{line}");
        assert!(line.contains("--valid-fraction F"), "{line}");

        let gone = dir.path().join("nowhere");
        let line = one_line(&Corpus::load(&gone, 100).unwrap_err());
        assert!(line.contains("does not exist"), "{line}");
        assert!(line.contains("nowhere"), "{line}");
    }

    #[test]
    fn checkpoint_vocabulary_encodes_all_splits() {
        let dir = folder(&[
            ("ptb.train.txt", TRAIN),
            ("ptb.valid.txt", b" the cat \n"),
            ("ptb.test.txt", b" a dog \n"),
        ]);
        let fresh = Corpus::load(dir.path(), 100).unwrap();
        let rebuilt = Vocab::from_words(fresh.vocab.words().to_vec()).unwrap();
        let again = Corpus::with_vocab(dir.path(), rebuilt).unwrap();
        assert_eq!(
            (&fresh.train, &fresh.valid, &fresh.test),
            (&again.train, &again.valid, &again.test)
        );
        // A vocabulary without <unk> refuses a train word it lacks, naming it.
        let small = Vocab::from_words(vec!["the".into(), "cat".into()]).unwrap();
        let line = one_line(&Corpus::with_vocab(dir.path(), small).unwrap_err());
        assert!(
            line.contains("ptb.train.txt:1:") && line.contains("\"sat\""),
            "{line}"
        );
    }

    #[test]
    fn user_text_reports_unknown_words() {
        let vocab = Vocab::from_words(["the", "cat", UNK].map(String::from).to_vec()).unwrap();
        let got = encode_text("the zebra cat the okapi zebra", &vocab).unwrap();
        assert_eq!(got.ids, [0, 2, 1, 0, 2, 2]);
        assert_eq!(got.unknown, ["zebra", "okapi"]);

        let no_unk = Vocab::from_words(vec!["the".into()]).unwrap();
        let err = encode_text("the zebra", &no_unk).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(one_line(&err).contains("\"zebra\""));
    }

    #[test]
    fn tiny_fixture_loads_and_batches() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tiny");
        let config = Config {
            batch_size: 4,
            num_steps: 5,
            ..Config::default()
        };
        let info = info(&dir, &config).unwrap();
        assert!(info.unk.is_some() && info.eos.is_some());
        for s in &info.splits {
            assert!(s.batches >= 1, "{s:?}");
            assert_eq!(s.batches, (s.tokens / 4 - 1) / 5);
        }
        let shown = info.to_string();
        assert!(
            shown.contains("vocabulary") && shown.contains("train"),
            "{shown}"
        );
    }
}
