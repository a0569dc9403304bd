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
fn is_separator(c: char) -> bool {
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
/// the PTB files start and end every line with a space, so this never happens there. Blanks are
/// Python's: Unicode white space and U+001C..U+001F. Lower-casing is the caller's job.
pub fn tokenize(text: &str) -> impl Iterator<Item = Cow<'_, str>> {
    tokens_with_offsets(text).map(|(_, token)| token)
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

        // Count while giving each word a provisional id in order of first appearance, so the
        // text is hashed only once; the provisional ids are remapped after sorting.
        let mut provisional: HashMap<Cow<'_, str>, u32> = HashMap::new();
        let mut counts: Vec<u64> = Vec::new();
        let mut stream: Vec<u32> = Vec::with_capacity(text.len() / 4);
        for token in tokenize(text) {
            let next = counts.len() as u32;
            let id = *provisional.entry(token).or_insert(next);
            if id == next {
                counts.push(0);
            }
            counts[id as usize] += 1;
            stream.push(id);
        }
        ensure!(!counts.is_empty(), "the train text has no words");

        let mut by_provisional: Vec<Cow<'_, str>> = vec![Cow::Borrowed(""); counts.len()];
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

        let capped = order.len() > max_size;
        order.truncate(max_size);
        let mut words: Vec<String> = order
            .iter()
            .map(|&p| by_provisional[p as usize].to_string())
            .collect();
        if capped && !words.iter().any(|w| w == UNK) {
            *words.last_mut().expect("max_size >= 1") = UNK.to_string();
        }
        let vocab = Vocab::from_words(words)?;

        // Provisional id -> final id; words that did not make it become <unk>, which exists
        // whenever words were dropped.
        let unk = vocab.unk();
        let remap: Vec<u32> = by_provisional
            .iter()
            .map(|w| vocab.id(w).or(unk).expect("capping keeps or adds <unk>"))
            .collect();
        for id in &mut stream {
            *id = remap[*id as usize];
        }
        Ok((vocab, stream))
    }

    /// A vocabulary from its words in id order (as a checkpoint stores them). Every word must
    /// be a token the reader can produce (non-empty, no blanks) and appear once.
    pub fn from_words(words: Vec<String>) -> Result<Vocab> {
        ensure!(!words.is_empty(), "the vocabulary is empty");
        ensure!(
            u32::try_from(words.len()).is_ok(),
            "the vocabulary has {} words, more than ids can number",
            words.len()
        );
        let mut index = HashMap::with_capacity(words.len());
        for (id, word) in words.iter().enumerate() {
            if word.is_empty() || word.contains(is_python_whitespace) {
                bail!("vocabulary word {id} ({word:?}) is empty or holds white space");
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

    #[test]
    fn tokens_follow_tensorflow() {
        let cases = [
            " the cat \n sat on \n",
            " no final newline \n last line",
            "glued\nwords\n\nand  tabs\tand\r\nwindows \u{1f} sep \u{a0} nbsp",
            "\n\n\n",
            "   ",
            "",
            "ünïcödé wörds\u{3000}ideographic\n",
        ];
        for text in cases {
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
