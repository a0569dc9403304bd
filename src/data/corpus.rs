//! The corpus folder: finding and checking the three split files, encoding them with a
//! vocabulary, encoding a user's text, and the figures of `lstm-gpu data info`.

use super::batch::{epoch_size, Batches};
use super::vocab::{tokens_with_offsets, Vocab, UNK};
use crate::config::Config;
use anyhow::{bail, Context, Result};
use std::fmt;
use std::path::{Path, PathBuf};

/// What to do when the corpus is missing or unreadable; ends every such error.
const CORPUS_ADVICE: &str = "run `lstm-gpu data fetch` to download the Penn Treebank, \
     or pass --data DIR with a folder holding ptb.train.txt, ptb.valid.txt and ptb.test.txt";

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

    /// The file names this split may have, the PTB one first.
    pub fn file_names(self) -> [&'static str; 2] {
        match self {
            Split::Train => ["ptb.train.txt", "train.txt"],
            Split::Valid => ["ptb.valid.txt", "valid.txt"],
            Split::Test => ["ptb.test.txt", "test.txt"],
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The file of `split` in `dir`, if there is one (`ptb.train.txt` before `train.txt`).
pub fn find_split(dir: &Path, split: Split) -> Option<PathBuf> {
    split
        .file_names()
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

/// The file of `split` in `dir`, or an error saying what is missing and what to do.
fn split_path(dir: &Path, split: Split) -> Result<PathBuf> {
    if let Some(path) = find_split(dir, split) {
        return Ok(path);
    }
    if !dir.is_dir() {
        bail!(
            "corpus folder {} does not exist: {CORPUS_ADVICE}",
            dir.display()
        );
    }
    let [ptb, plain] = split.file_names();
    bail!(
        "corpus folder {} has no {ptb} (nor {plain}): {CORPUS_ADVICE}",
        dir.display()
    )
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
    if bytes.is_empty() {
        bail!("corpus file {shown} is empty: {CORPUS_ADVICE}");
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        bail!(
            "corpus file {shown} is gzip-compressed, not text: decompress it, or {CORPUS_ADVICE}"
        );
    }
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        bail!(
            "corpus file {shown} is binary (a NUL byte on line {}), not text: {CORPUS_ADVICE}",
            line_of(&bytes, at)
        );
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        anyhow::anyhow!(
            "corpus file {shown} is not UTF-8 text (byte 0x{:02x} on line {}): convert it to \
             UTF-8, or {CORPUS_ADVICE}",
            bytes[at],
            line_of(bytes, at)
        )
    })?;
    if tokens_with_offsets(&text).next().is_none() {
        bail!("corpus file {shown} holds only blanks, no words: {CORPUS_ADVICE}");
    }
    Ok(text)
}

/// The ids of `text` in `vocab`. A word outside the vocabulary becomes `<unk>` when the
/// vocabulary has it; otherwise the error names `source`, the line and the word.
fn encode_corpus_text(text: &str, vocab: &Vocab, source: &Path) -> Result<Vec<u32>> {
    let unk = vocab.unk();
    let mut ids = Vec::with_capacity(text.len() / 4);
    for (offset, token) in tokens_with_offsets(text) {
        match vocab.id(&token).or(unk) {
            Some(id) => ids.push(id),
            None => bail!(
                "{}:{}: the word {token:?} is not in the vocabulary, which has no {UNK} to \
                 stand for it; build the vocabulary from a train file that holds {UNK} or \
                 every word of the other splits",
                source.display(),
                line_of(text.as_bytes(), offset)
            ),
        }
    }
    Ok(ids)
}

/// Read and encode one corpus file with `vocab` (see [`read_text`] for what is refused).
pub fn encode_file(path: &Path, vocab: &Vocab) -> Result<Vec<u32>> {
    encode_corpus_text(&read_text(path)?, vocab, path)
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
    let unk = vocab.unk();
    let mut encoded = EncodedText {
        ids: Vec::new(),
        unknown: Vec::new(),
    };
    for (_, token) in tokens_with_offsets(text) {
        if let Some(id) = vocab.id(&token) {
            encoded.ids.push(id);
            continue;
        }
        let Some(unk) = unk else {
            return Err(crate::usage(format!(
                "the word {token:?} is not in the model's vocabulary (which has no {UNK}); \
                 use only words the model knows"
            )));
        };
        encoded.ids.push(unk);
        if !encoded.unknown.iter().any(|w| *w == token) {
            encoded.unknown.push(token.into_owned());
        }
    }
    Ok(encoded)
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
}

impl Corpus {
    /// Read the corpus in `dir`, building the vocabulary from the train split
    /// (see [`Vocab::from_train`]: at most `vocab_size` words).
    pub fn load(dir: &Path, vocab_size: usize) -> Result<Corpus> {
        let train_path = split_path(dir, Split::Train)?;
        let (vocab, train) = Vocab::from_train(&read_text(&train_path)?, vocab_size)
            .with_context(|| format!("building the vocabulary from {}", train_path.display()))?;
        Corpus::assemble(dir, vocab, train)
    }

    /// Read the corpus in `dir` with a given vocabulary (a checkpoint's): every split, train
    /// included, is encoded like valid and test.
    pub fn with_vocab(dir: &Path, vocab: Vocab) -> Result<Corpus> {
        let train = encode_file(&split_path(dir, Split::Train)?, &vocab)?;
        Corpus::assemble(dir, vocab, train)
    }

    fn assemble(dir: &Path, vocab: Vocab, train: Vec<u32>) -> Result<Corpus> {
        let valid = encode_file(&split_path(dir, Split::Valid)?, &vocab)?;
        let test = encode_file(&split_path(dir, Split::Test)?, &vocab)?;
        Ok(Corpus {
            vocab,
            train,
            valid,
            test,
            dir: dir.to_path_buf(),
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

/// The figures `lstm-gpu data info` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataInfo {
    pub dir: PathBuf,
    pub vocab_size: usize,
    pub unk: Option<u32>,
    pub eos: Option<u32>,
    pub batch_size: usize,
    pub num_steps: usize,
    pub splits: [SplitInfo; 3],
}

/// Size of one split and its batches per epoch at the configured shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitInfo {
    pub split: Split,
    pub tokens: usize,
    /// Batches per epoch; 0 when the split is too short for the batch shape.
    pub batches: usize,
}

/// Read the corpus in `dir` and measure it at `config`'s vocabulary size and batch shape.
pub fn info(dir: &Path, config: &Config) -> Result<DataInfo> {
    let corpus = Corpus::load(dir, config.vocab_size)?;
    let split_info = |split| {
        let tokens = corpus.split(split).len();
        SplitInfo {
            split,
            tokens,
            batches: epoch_size(tokens, config.batch_size, config.num_steps),
        }
    };
    Ok(DataInfo {
        dir: corpus.dir.clone(),
        vocab_size: corpus.vocab.len(),
        unk: corpus.vocab.unk(),
        eos: corpus.vocab.eos(),
        batch_size: config.batch_size,
        num_steps: config.num_steps,
        splits: Split::ALL.map(split_info),
    })
}

impl fmt::Display for DataInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = |id: Option<u32>| id.map_or("absent".to_string(), |i| format!("id {i}"));
        writeln!(f, "corpus      {}", self.dir.display())?;
        writeln!(
            f,
            "vocabulary  {} words (<unk> {}, <eos> {})",
            self.vocab_size,
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

    const TRAIN: &[u8] = b" the cat sat \n the dog sat \n a <unk> ran \n";

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
        assert!(line.contains("no ptb.test.txt (nor test.txt)"), "{line}");
        assert!(line.contains("--data DIR"), "{line}");

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
