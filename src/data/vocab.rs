//! Tokens and the vocabulary, with the exact semantics of TensorFlow's PTB reader:
//! `f.read().replace("\n", "<eos>").split()`, then words sorted by (descending count, word).

use anyhow::{bail, ensure, Result};
use std::borrow::Cow;
use std::collections::HashMap;

/// The word that stands for every word outside the vocabulary.
pub const UNK: &str = "<unk>";
/// The word every newline becomes.
pub const EOS: &str = "<eos>";

/// The characters Python's `str.split()` splits on: Unicode `White_Space` (Rust's
/// `char::is_whitespace`) plus the four information separators U+001C..U+001F.
fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// A separator of the text after `replace("\n", "<eos>")`: any whitespace but the newline,
/// which by then is the (non-blank) text `<eos>`.
pub(crate) fn is_separator(c: char) -> bool {
    c != '\n' && is_python_whitespace(c)
}

/// The tokens of `text` with the byte offset where each starts.
///
/// Splitting on the separators first and replacing newlines inside each piece afterwards gives
/// the same tokens as `text.replace("\n", "<eos>").split()` without building the replaced text.
pub(crate) fn tokens_with_offsets(text: &str) -> impl Iterator<Item = (usize, Cow<'_, str>)> {
    text.split(is_separator)
        .filter(|piece| !piece.is_empty())
        .map(move |piece| {
            // `piece` is a sub-slice of `text`, so the address difference is its offset.
            let offset = piece.as_ptr() as usize - text.as_ptr() as usize;
            let token = if piece == "\n" {
                Cow::Borrowed(EOS)
            } else if piece.contains('\n') {
                Cow::Owned(piece.replace('\n', EOS))
            } else {
                Cow::Borrowed(piece)
            };
            (offset, token)
        })
}

/// The tokens of `text` exactly as TensorFlow's PTB reader makes them:
/// `text.replace("\n", "<eos>").split()`.
///
/// Every newline becomes the token `<eos>`; a last line without a newline gets none. As in
/// TensorFlow, a newline that touches a word is glued to it (`"a b\nc"` gives `a`, `b<eos>c`):
/// the PTB files start and end every line with a space, so this never happens there
/// ([`Tokens::WordsEos`] keeps it apart). Blanks are
/// Python's: Unicode white space and U+001C..U+001F. Lower-casing is the caller's job.
pub fn tokenize(text: &str) -> impl Iterator<Item = Cow<'_, str>> {
    tokens_with_offsets(text).map(|(_, token)| token)
}

/// One blank-separated piece of text (it may hold newlines) as `words-eos` tokens, with
/// their byte offsets in the piece: each newline its own `<eos>`, the words between them
/// as they are (`"b\nc"` gives `b`, `<eos>`, `c`).
pub(crate) fn split_eos(piece: &str) -> impl Iterator<Item = (usize, &str)> {
    piece.split_inclusive('\n').flat_map(move |segment| {
        let at = segment.as_ptr() as usize - piece.as_ptr() as usize;
        let (word, eos) = match segment.strip_suffix('\n') {
            Some(word) => (word, true),
            None => (segment, false),
        };
        let word = (!word.is_empty()).then_some((at, word));
        word.into_iter()
            .chain(eos.then_some((at + segment.len() - 1, EOS)))
    })
}

/// The `words-eos` tokens of `text` with their byte offsets: [`tokenize`]'s words, but a
/// newline that touches a word is its own `<eos>` too (`"a b\nc"` gives `a`, `b`, `<eos>`,
/// `c`). On text whose line ends touch no word, as in the PTB files, the same tokens.
pub(crate) fn words_eos_with_offsets(text: &str) -> impl Iterator<Item = (usize, Cow<'_, str>)> {
    text.split(is_separator)
        .filter(|piece| !piece.is_empty())
        .flat_map(move |piece| {
            let offset = piece.as_ptr() as usize - text.as_ptr() as usize;
            split_eos(piece).map(move |(at, token)| (offset + at, Cow::Borrowed(token)))
        })
}

/// How text becomes tokens: [`tokenize`]'s words, or every character.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Tokens {
    /// Whitespace-separated words, every newline the token `<eos>` (TensorFlow's PTB reader).
    #[default]
    Words,
    /// Every Unicode scalar value is a token (spaces included), every newline `<eos>`.
    Chars,
    /// Whitespace-separated words with every newline its own `<eos>`, also where it touches
    /// a word (`words` glues it on, as TensorFlow's reader does): what most plain text
    /// needs. The same tokens as `words` on PTB, whose lines start and end with a space.
    #[serde(rename = "words-eos")]
    #[value(name = "words-eos")]
    WordsEos,
}

impl Tokens {
    /// `words` or `chars`, as the flag spells it.
    pub fn name(self) -> &'static str {
        match self {
            Tokens::Words => "words",
            Tokens::Chars => "chars",
            Tokens::WordsEos => "words-eos",
        }
    }

    /// The same tokens, with every line end its own `<eos>` also where it touches a word:
    /// how a user's text is read for scoring (`words` would glue a line end to the last word
    /// of a line that has no space before it, as TensorFlow's reader does to PTB).
    pub fn line_ends_as_eos(self) -> Tokens {
        match self {
            Tokens::Words => Tokens::WordsEos,
            t => t,
        }
    }

    /// Whether tokens are characters (rather than words).
    pub fn is_chars(self) -> bool {
        self == Tokens::Chars
    }
}

impl std::fmt::Display for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The character tokens of `text` with their byte offsets: every character, a newline as
/// `<eos>`.
pub(crate) fn chars_with_offsets(text: &str) -> impl Iterator<Item = (usize, Cow<'_, str>)> {
    text.char_indices().map(move |(at, c)| {
        let token = if c == '\n' {
            Cow::Borrowed(EOS)
        } else {
            Cow::Borrowed(&text[at..at + c.len_utf8()])
        };
        (at, token)
    })
}

/// The tokens of `text` in mode `tokens`, with the byte offset where each starts.
pub(crate) fn tokens_of(
    text: &str,
    tokens: Tokens,
) -> Box<dyn Iterator<Item = (usize, Cow<'_, str>)> + '_> {
    match tokens {
        Tokens::Words => Box::new(tokens_with_offsets(text)),
        Tokens::Chars => Box::new(chars_with_offsets(text)),
        Tokens::WordsEos => Box::new(words_eos_with_offsets(text)),
    }
}

/// Builds a vocabulary and the id stream of a training text in one pass over its tokens:
/// each distinct token gets a provisional id in order of first appearance (so every token
/// is hashed once and the text itself need not be kept), remapped after sorting. Memory: the
/// distinct tokens and 4 bytes per token.
pub struct VocabBuilder {
    tokens: Tokens,
    provisional: HashMap<String, u32>,
    counts: Vec<u64>,
    stream: Vec<u32>,
    /// In `words` mode: the distinct tokens with a line end glued to a word (`word<eos>`).
    glued: usize,
}

impl VocabBuilder {
    /// An empty builder expecting about `capacity` tokens (reserved, not touched).
    pub fn new(tokens: Tokens, capacity: usize) -> VocabBuilder {
        VocabBuilder {
            tokens,
            provisional: HashMap::new(),
            counts: Vec::new(),
            stream: Vec::with_capacity(capacity),
            glued: 0,
        }
    }

    /// In `words` mode, how many distinct tokens so far hold a line end glued to a word
    /// (`word<eos>`, as TensorFlow's reader makes them where a newline touches a word).
    pub fn glued(&self) -> usize {
        self.glued
    }

    /// Count one token and append it to the stream.
    pub fn push(&mut self, token: &str) {
        let id = match self.provisional.get(token) {
            Some(&id) => id,
            None => {
                let id = self.counts.len() as u32;
                if self.tokens == Tokens::Words && token != EOS && token.contains(EOS) {
                    self.glued += 1;
                }
                self.provisional.insert(token.to_string(), id);
                self.counts.push(0);
                id
            }
        };
        self.counts[id as usize] += 1;
        self.stream.push(id);
    }

    /// Tokens pushed so far.
    pub fn len(&self) -> usize {
        self.stream.len()
    }

    /// Whether no token was pushed.
    pub fn is_empty(&self) -> bool {
        self.stream.is_empty()
    }

    /// The vocabulary and the stream's ids in it.
    ///
    /// Tokens are sorted by descending count, then by the token itself (byte order, which
    /// is Python's code-point order). With `max_size`, at most that many are kept; every
    /// other token becomes `<unk>`. When capping drops tokens and `<unk>` is not among the
    /// kept ones, the last kept token is replaced by `<unk>`, so that the dropped tokens
    /// have something to become and the vocabulary has exactly `max_size` tokens. Without
    /// capping the vocabulary is every distinct token, which may be fewer than `max_size`.
    pub fn finish(self, max_size: Option<usize>) -> Result<(Vocab, Vec<u32>)> {
        let VocabBuilder {
            tokens,
            provisional,
            counts,
            mut stream,
            ..
        } = self;
        if max_size == Some(0) {
            return Err(crate::usage("--vocab-size must be at least 1"));
        }
        ensure!(!counts.is_empty(), "the train text has no words");
        let mut by_provisional: Vec<String> = vec![String::new(); counts.len()];
        for (word, id) in provisional {
            by_provisional[id as usize] = word;
        }
        let mut order: Vec<u32> = (0..counts.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            let (a, b) = (a as usize, b as usize);
            counts[b].cmp(&counts[a]).then_with(|| {
                by_provisional[a]
                    .as_bytes()
                    .cmp(by_provisional[b].as_bytes())
            })
        });
        let max_size = max_size.unwrap_or(usize::MAX);
        let capped = order.len() > max_size;
        order.truncate(max_size);
        let mut words: Vec<String> = order
            .iter()
            .map(|&p| by_provisional[p as usize].clone())
            .collect();
        if capped && !words.iter().any(|w| w == UNK) {
            *words.last_mut().expect("max_size >= 1") = UNK.to_string();
        }
        let vocab = Vocab::from_tokens(words, tokens)?;
        // Provisional id -> final id; tokens that did not make it become <unk>, which exists
        // whenever tokens were dropped.
        let unk = vocab.unk();
        let remap: Vec<u32> = by_provisional
            .iter()
            .map(|w| vocab.id(w).or(unk).expect("capping keeps or adds <unk>"))
            .collect();
        for id in &mut stream {
            *id = remap[*id as usize];
        }
        stream.shrink_to_fit();
        Ok((vocab, stream))
    }
}

/// The words a model knows, with their ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocab {
    words: Vec<String>,
    index: HashMap<String, u32>,
}

impl Vocab {
    /// Build the vocabulary from a train text and return it with the text's ids, in one pass.
    ///
    /// Words are sorted by descending count, then by the word itself (byte order, which is
    /// Python's code-point order). At most `max_size` words are kept; every other word becomes
    /// `<unk>`. When capping drops words and `<unk>` is not among the kept ones, the last kept
    /// word is replaced by `<unk>`, so that the dropped words have something to become and the
    /// vocabulary still has exactly `max_size` words. Without capping the vocabulary is every
    /// distinct word of the text, which may be fewer than `max_size`.
    pub fn from_train(text: &str, max_size: usize) -> Result<(Vocab, Vec<u32>)> {
        if max_size == 0 {
            return Err(crate::usage("--vocab-size must be at least 1"));
        }
        let mut builder = VocabBuilder::new(Tokens::Words, text.len() / 4);
        for token in tokenize(text) {
            builder.push(&token);
        }
        builder.finish(Some(max_size))
    }

    /// A vocabulary from its words in id order, as the word reader makes them (see
    /// [`Vocab::from_tokens`]).
    pub fn from_words(words: Vec<String>) -> Result<Vocab> {
        Vocab::from_tokens(words, Tokens::Words)
    }

    /// A vocabulary from its tokens in id order (as a checkpoint stores them). Every token
    /// must be one the reader of `tokens` can produce and appear once: for words, non-empty
    /// and without blanks; for characters, one character other than a newline, or one of
    /// `<eos>` and `<unk>`.
    pub fn from_tokens(words: Vec<String>, tokens: Tokens) -> Result<Vocab> {
        ensure!(!words.is_empty(), "the vocabulary is empty");
        ensure!(
            u32::try_from(words.len()).is_ok(),
            "the vocabulary has {} words, more than ids can number",
            words.len()
        );
        let mut index = HashMap::with_capacity(words.len());
        for (id, word) in words.iter().enumerate() {
            match tokens {
                Tokens::Words | Tokens::WordsEos => {
                    if word.is_empty() || word.contains(is_python_whitespace) {
                        bail!("vocabulary word {id} ({word:?}) is empty or holds white space");
                    }
                }
                Tokens::Chars => {
                    let mut chars = word.chars();
                    let one = matches!((chars.next(), chars.next()), (Some(c), None) if c != '\n');
                    if !one && word != EOS && word != UNK {
                        bail!(
                            "vocabulary token {id} ({word:?}) is not one character (nor {EOS} \
                             or {UNK}) in a character-level vocabulary"
                        );
                    }
                }
            }
            if let Some(first) = index.insert(word.clone(), id as u32) {
                bail!("vocabulary word {word:?} appears twice (ids {first} and {id})");
            }
        }
        Ok(Vocab { words, index })
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Always false: a vocabulary has at least one word.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The id of `word`, if it is in the vocabulary.
    pub fn id(&self, word: &str) -> Option<u32> {
        self.index.get(word).copied()
    }

    /// The word with id `id`. Panics when `id >= len()`.
    pub fn word(&self, id: u32) -> &str {
        &self.words[id as usize]
    }

    /// The id of `<unk>`, if the vocabulary has it.
    pub fn unk(&self) -> Option<u32> {
        self.id(UNK)
    }

    /// The id of `<eos>`, if the vocabulary has it.
    pub fn eos(&self) -> Option<u32> {
        self.id(EOS)
    }

    /// Every word, in id order.
    pub fn words(&self) -> &[String] {
        &self.words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python's `text.replace("\n", "<eos>").split()`, written the direct way.
    fn reference_tokens(text: &str) -> Vec<String> {
        text.replace('\n', EOS)
            .split(is_python_whitespace)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Texts for the tokenizers: padded and glued line ends, blanks of every kind, Unicode.
    const CASES: [&str; 7] = [
        " the cat \n sat on \n",
        " no final newline \n last line",
        "glued\nwords\n\nand  tabs\tand\r\nwindows \u{1f} sep \u{a0} nbsp",
        "\n\n\n",
        "   ",
        "",
        "ünïcödé wörds\u{3000}ideographic\n",
    ];

    /// `words-eos` is `text.replace("\n", " <eos> ").split()`, with offsets into `text`.
    #[test]
    fn words_eos_makes_every_newline_its_own_token() {
        for text in CASES {
            let want: Vec<String> = text
                .replace('\n', " <eos> ")
                .split(is_python_whitespace)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect();
            let got: Vec<(usize, Cow<str>)> = words_eos_with_offsets(text).collect();
            let tokens: Vec<&str> = got.iter().map(|(_, t)| t.as_ref()).collect();
            assert_eq!(tokens, want, "{text:?}");
            for (at, token) in &got {
                let expected = if token == EOS { "\n" } else { token.as_ref() };
                assert_eq!(&text[*at..*at + expected.len()], expected, "{text:?}");
            }
        }
        let got: Vec<_> = tokens_of("a b\nc\n\nd", Tokens::WordsEos)
            .map(|(at, t)| (at, t.into_owned()))
            .collect();
        let want = [
            (0, "a"),
            (2, "b"),
            (3, EOS),
            (4, "c"),
            (5, EOS),
            (6, EOS),
            (7, "d"),
        ];
        let want: Vec<(usize, String)> = want.iter().map(|&(a, t)| (a, t.to_string())).collect();
        assert_eq!(got, want);
        // PTB's lines start and end with a space: there both modes agree.
        let ptb = " the cat \n sat on \n the mat \n";
        let words: Vec<_> = tokenize(ptb).collect();
        let apart: Vec<_> = words_eos_with_offsets(ptb).map(|(_, t)| t).collect();
        assert_eq!(words, apart);
    }

    #[test]
    fn glued_line_ends_are_counted_in_words_mode_only() {
        let text = "one two\nthree four\nfive \n";
        for (tokens, want) in [(Tokens::Words, 2), (Tokens::WordsEos, 0)] {
            let mut b = VocabBuilder::new(tokens, 8);
            for (_, t) in tokens_of(text, tokens) {
                b.push(&t);
            }
            assert_eq!(b.glued(), want, "{tokens}");
        }
    }

    #[test]
    fn tokens_follow_tensorflow() {
        for text in CASES {
            let got: Vec<String> = tokenize(text).map(|t| t.into_owned()).collect();
            assert_eq!(got, reference_tokens(text), "{text:?}");
        }
        let got: Vec<_> = tokenize(" a b \n c\n").collect();
        assert_eq!(got, ["a", "b", "<eos>", "c<eos>"]);
        let got: Vec<_> = tokenize("x \n\n y").collect();
        assert_eq!(got, ["x", "<eos><eos>", "y"]);
        let offsets: Vec<usize> = tokens_with_offsets(" ab \n cd").map(|(o, _)| o).collect();
        assert_eq!(offsets, [1, 4, 6]);
    }

    #[test]
    fn order_is_count_then_bytes() {
        // b, a and <eos> tie at 3; "Z" < "a" in byte order; "é" sorts after ASCII.
        let text = " b a é Z c \n b a é Z \n b a c \n";
        let (vocab, ids) = Vocab::from_train(text, 100).unwrap();
        assert_eq!(vocab.words(), ["<eos>", "a", "b", "Z", "c", "é"]);
        let decoded: Vec<&str> = ids.iter().map(|&i| vocab.word(i)).collect();
        let expected: Vec<String> = reference_tokens(text);
        assert_eq!(decoded, expected);
        assert_eq!(vocab.eos(), Some(0));
        assert_eq!(vocab.unk(), None);
        assert_eq!(vocab.id("Z"), Some(3));
        assert_eq!(vocab.id("zz"), None);
    }

    #[test]
    fn capping_adds_unk_in_last_place() {
        let text = " a a a a b b b c c d \n";
        let (vocab, ids) = Vocab::from_train(text, 3).unwrap();
        assert_eq!(vocab.words(), ["a", "b", "<unk>"]);
        let decoded: Vec<&str> = ids.iter().map(|&i| vocab.word(i)).collect();
        assert_eq!(
            decoded,
            ["a", "a", "a", "a", "b", "b", "b", "<unk>", "<unk>", "<unk>", "<unk>"]
        );
    }

    #[test]
    fn capping_keeps_an_existing_unk() {
        let text = " a a a <unk> <unk> b c \n";
        let (vocab, ids) = Vocab::from_train(text, 3).unwrap();
        assert_eq!(vocab.words(), ["a", "<unk>", "<eos>"]);
        assert_eq!(ids, [0, 0, 0, 1, 1, 1, 1, 2]);
        // <unk> exists in the train text but falls below the cap: it still takes the last place.
        let (vocab, _) = Vocab::from_train(" a a a b b <unk> \n", 2).unwrap();
        assert_eq!(vocab.words(), ["a", "<unk>"]);
        // No capping: nothing is replaced and the vocabulary may be smaller than the cap.
        let (vocab, _) = Vocab::from_train(" a b \n", 10).unwrap();
        assert_eq!(vocab.words(), ["<eos>", "a", "b"]);
    }

    #[test]
    fn from_words_checks_its_input() {
        let v = Vocab::from_words(vec!["x".into(), UNK.into()]).unwrap();
        assert_eq!((v.len(), v.unk(), v.word(0)), (2, Some(1), "x"));
        for bad in [
            vec![],
            vec!["a".to_string(), "a".to_string()],
            vec!["a b".to_string()],
            vec![String::new()],
        ] {
            let err = Vocab::from_words(bad).unwrap_err();
            assert!(!format!("{err:#}").contains('\n'));
        }
        let err = Vocab::from_train(" a \n", 0).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(Vocab::from_train(" \t ", 5).is_err());
    }
}
