//! A corpus file read as a stream: checked (not empty, not compressed, no NUL byte, UTF-8)
//! and tokenised chunk by chunk, so that a large text is never held in memory whole. Only
//! the tokens a caller keeps (as ids) cost memory.

use super::vocab::{is_separator, split_eos, Tokens, EOS};
use anyhow::{bail, Context, Result};
use std::borrow::Cow;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::Path;

/// Bytes read at a time.
const CHUNK: usize = 1 << 20;

/// What to do when a corpus file is missing or unreadable; ends every such error.
pub(crate) const CORPUS_ADVICE: &str = "run `lstm-gpu data fetch` to download the Penn \
     Treebank, or pass --data DIR with a folder holding ptb.{train,valid,test}.txt, \
     {train,valid,test}.txt or wiki.{train,valid,test}.tokens (or name the files with --train, \
     --valid and --test)";

/// Open `path` for reading, with the file's length; a missing file says what to do.
fn open(path: &Path) -> Result<(File, u64)> {
    let shown = path.display();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("corpus file {shown} does not exist: {CORPUS_ADVICE}")
        }
        Err(e) => bail!("cannot read corpus file {shown}: {e}"),
    };
    let len = file
        .metadata()
        .with_context(|| format!("cannot read corpus file {shown}"))?
        .len();
    Ok((file, len))
}

/// The length of a corpus file, refusing a missing or empty one.
pub(crate) fn file_len(path: &Path) -> Result<u64> {
    let (_, len) = open(path)?;
    if len == 0 {
        bail!("corpus file {} is empty: {CORPUS_ADVICE}", path.display());
    }
    Ok(len)
}

/// 1-based line number of byte `offset` of `path` (read again: only errors need it).
pub(crate) fn line_at(path: &Path, offset: u64) -> usize {
    let Ok((file, _)) = open(path) else {
        return 0;
    };
    let mut newlines = 0;
    let mut left = offset;
    let mut reader = std::io::BufReader::with_capacity(CHUNK, file.take(offset));
    let mut buf = vec![0u8; CHUNK];
    while left > 0 {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                newlines += buf[..n].iter().filter(|&&b| b == b'\n').count();
                left -= n as u64;
            }
        }
    }
    1 + newlines
}

/// Call `f(token, byte offset)` for every token of bytes `range` of `path` in mode
/// `tokens`, and return how many there were. The range must start and end at a line
/// boundary (or the file's ends). Refused, in one line naming the file: a missing, empty,
/// gzip-compressed or binary (NUL byte) file, or one that is not UTF-8.
pub(crate) fn for_each_token(
    path: &Path,
    range: Range<u64>,
    tokens: Tokens,
    mut f: impl FnMut(&str, u64) -> Result<()>,
) -> Result<usize> {
    let shown = path.display();
    let (mut file, len) = open(path)?;
    if len == 0 {
        bail!("corpus file {shown} is empty: {CORPUS_ADVICE}");
    }
    let end = range.end.min(len);
    file.seek(SeekFrom::Start(range.start))
        .with_context(|| format!("cannot read corpus file {shown}"))?;
    let mut file = file.take(end.saturating_sub(range.start));

    // `buf[..kept]` is the tail of the previous chunk that was not a whole character yet.
    let mut buf = vec![0u8; CHUNK + 4];
    let mut kept = 0usize;
    // Byte offset in the file of `buf[0]`.
    let mut base = range.start;
    let mut count = 0usize;
    // Words mode: the word that may continue in the next chunk, and where it starts.
    let mut word = String::new();
    let mut word_start = 0u64;
    let mut first = true;
    loop {
        let n = read_full(&mut file, &mut buf[kept..kept + CHUNK])
            .with_context(|| format!("cannot read corpus file {shown}"))?;
        let filled = kept + n;
        let at_end = n == 0;
        if first {
            first = false;
            if range.start == 0 && buf[..filled].starts_with(&[0x1f, 0x8b]) {
                bail!(
                    "corpus file {shown} is gzip-compressed, not text: decompress it, or \
                     {CORPUS_ADVICE}"
                );
            }
        }
        let bytes = &buf[..filled];
        if let Some(at) = bytes.iter().position(|&b| b == 0) {
            bail!(
                "corpus file {shown} is binary (a NUL byte on line {}), not text: {CORPUS_ADVICE}",
                line_at(path, base + at as u64)
            );
        }
        let (text, rest) = match std::str::from_utf8(bytes) {
            Ok(t) => (t, 0),
            Err(e) if e.error_len().is_none() && !at_end => {
                // A character cut by the chunk's end: finish it with the next chunk.
                let valid = e.valid_up_to();
                (
                    std::str::from_utf8(&bytes[..valid]).expect("valid prefix"),
                    filled - valid,
                )
            }
            Err(e) => {
                let at = e.valid_up_to();
                bail!(
                    "corpus file {shown} is not UTF-8 text (byte 0x{:02x} on line {}): convert \
                     it to UTF-8, or {CORPUS_ADVICE}",
                    bytes[at],
                    line_at(path, base + at as u64)
                );
            }
        };
        match tokens {
            Tokens::Chars => {
                for (i, c) in text.char_indices() {
                    let token = if c == '\n' {
                        EOS
                    } else {
                        &text[i..i + c.len_utf8()]
                    };
                    f(token, base + i as u64)?;
                    count += 1;
                }
            }
            Tokens::Words | Tokens::WordsEos => {
                let eos_apart = tokens == Tokens::WordsEos;
                let mut emit = |piece: &str, at: u64| -> Result<()> {
                    if piece.is_empty() {
                        return Ok(());
                    }
                    if eos_apart {
                        for (i, token) in split_eos(piece) {
                            count += 1;
                            f(token, at + i as u64)?;
                        }
                        return Ok(());
                    }
                    let token = if piece == "\n" {
                        Cow::Borrowed(EOS)
                    } else if piece.contains('\n') {
                        Cow::Owned(piece.replace('\n', EOS))
                    } else {
                        Cow::Borrowed(piece)
                    };
                    count += 1;
                    f(&token, at)
                };
                let mut pieces = text.split(is_separator).peekable();
                while let Some(piece) = pieces.next() {
                    let offset = base + (piece.as_ptr() as usize - text.as_ptr() as usize) as u64;
                    if pieces.peek().is_none() && !at_end {
                        // The chunk's last piece may go on in the next chunk.
                        if word.is_empty() {
                            word_start = offset;
                        }
                        word.push_str(piece);
                    } else if word.is_empty() {
                        emit(piece, offset)?;
                    } else {
                        word.push_str(piece);
                        emit(&word, word_start)?;
                        word.clear();
                    }
                }
            }
        }
        if at_end {
            break;
        }
        buf.copy_within(filled - rest..filled, 0);
        kept = rest;
        base += (filled - rest) as u64;
    }
    Ok(count)
}

/// Whether a line end of `bytes` touches a word: a byte other than a blank right before or
/// after it (another line end included); `before` is the byte before `bytes`, if any. There
/// `--tokens words` glues the line end on (`b<eos>c`, TensorFlow's reader) and `words-eos`
/// keeps it apart; on text without such line ends (PTB, WikiText: a space on both sides)
/// the two give the same tokens. A byte of a non-ASCII character counts as a word's (a
/// Unicode blank beside a line end is a false alarm, and then the two modes agree anyway).
pub(crate) fn line_end_touches_word(bytes: &[u8], before: Option<u8>) -> bool {
    let blank = |b: u8| matches!(b, b' ' | b'\t' | b'\r' | 0x0b | 0x0c | 0x1c..=0x1f);
    let mut prev = before;
    for &b in bytes {
        let touching = match (prev, b) {
            // A word (or another line end) after a line end, or a line end after a word.
            (Some(b'\n'), b) => !blank(b),
            (Some(p), b'\n') => !blank(p),
            _ => false,
        };
        if touching {
            return true;
        }
        prev = Some(b);
    }
    false
}

/// [`line_end_touches_word`] of bytes `range` of `path`, read in chunks and stopping at the
/// first such line end; the file's other faults are [`for_each_token`]'s to report.
pub(crate) fn line_ends_touch_words(path: &Path, range: Range<u64>) -> Result<bool> {
    let (mut file, len) = open(path)?;
    let end = range.end.min(len);
    let shown = path.display();
    file.seek(SeekFrom::Start(range.start))
        .with_context(|| format!("cannot read corpus file {shown}"))?;
    let mut file = file.take(end.saturating_sub(range.start));
    let mut buf = vec![0u8; CHUNK];
    let mut before = None;
    loop {
        let n = read_full(&mut file, &mut buf)
            .with_context(|| format!("cannot read corpus file {shown}"))?;
        if n == 0 {
            return Ok(false);
        }
        if line_end_touches_word(&buf[..n], before) {
            return Ok(true);
        }
        before = Some(buf[n - 1]);
    }
}

/// Read until `buf` is full or the reader ends; the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The byte offset just after the first newline at or after `at - 1` in `path` (so `at`
/// itself when a line starts there); when there is
/// none, just after the last newline before it; `None` when the file has no newline
/// between its ends (one line).
pub(crate) fn line_boundary(path: &Path, at: u64) -> Result<Option<u64>> {
    let (mut file, len) = open(path)?;
    let mut buf = vec![0u8; CHUNK];
    // From the byte before `at`: a cut right at a line's start stays there.
    let mut pos = at.min(len).saturating_sub(1);
    file.seek(SeekFrom::Start(pos))?;
    loop {
        let n = read_full(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        if let Some(i) = buf[..n].iter().position(|&b| b == b'\n') {
            let cut = pos + i as u64 + 1;
            if cut < len {
                return Ok(Some(cut));
            }
            break;
        }
        pos += n as u64;
    }
    // Backwards from `at`.
    let mut end = at.min(len);
    while end > 0 {
        let start = end.saturating_sub(CHUNK as u64);
        file.seek(SeekFrom::Start(start))?;
        let n = (end - start) as usize;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            let cut = start + i as u64 + 1;
            if cut > 0 && cut < len {
                return Ok(Some(cut));
            }
            // A newline at the very end: look before it.
            end = start + i as u64;
            continue;
        }
        end = start;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::vocab::tokens_of;

    /// The streaming reader gives the tokens and offsets of the in-memory tokenizer in every
    /// word mode, on a text longer than a chunk whose line ends touch words, so that chunk
    /// boundaries fall inside glued pieces.
    #[test]
    fn streamed_tokens_match_the_tokenizer_across_chunks() {
        let mut text = String::new();
        let mut i = 0;
        while text.len() < CHUNK + CHUNK / 2 {
            text.push_str(&format!("w{i}\nx{} y\n\n ", i % 7));
            i += 1;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.txt");
        std::fs::write(&path, &text).unwrap();
        for tokens in [Tokens::Words, Tokens::WordsEos] {
            let want: Vec<(u64, String)> = tokens_of(&text, tokens)
                .map(|(at, t)| (at as u64, t.into_owned()))
                .collect();
            let mut got = Vec::new();
            let n = for_each_token(&path, 0..u64::MAX, tokens, |t, at| {
                got.push((at, t.to_string()));
                Ok(())
            })
            .unwrap();
            assert_eq!(n, want.len(), "{tokens}");
            assert!(got == want, "{tokens}: the streamed tokens differ");
        }
    }

    /// The scan finds a line end touching a word exactly where `words` and `words-eos` give
    /// different tokens (on ASCII text: many small random ones, over their whole length and
    /// from a line boundary on), and across a chunk's end on either side.
    #[test]
    fn a_line_end_touches_a_word_where_the_two_word_modes_differ() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.txt");
        let touches = |text: &[u8], range: Range<u64>| {
            std::fs::write(&path, text).unwrap();
            line_ends_touch_words(&path, range).unwrap()
        };
        let differ = |text: &str| {
            let words: Vec<_> = tokens_of(text, Tokens::Words).map(|t| t.1).collect();
            let apart: Vec<_> = tokens_of(text, Tokens::WordsEos).map(|t| t.1).collect();
            words != apart
        };
        let alphabet = [b'a', b'b', b' ', b'\n', b'\n', b'\t', b'\r', 0x1c];
        let mut rng = crate::rng::SplitMix64::new(5);
        let (mut touching, mut apart) = (0, 0);
        for _ in 0..3000 {
            let len = 1 + rng.next_u64() as usize % 9;
            let text: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.next_u64() as usize % alphabet.len()])
                .collect();
            let as_str = std::str::from_utf8(&text).unwrap();
            let found = touches(&text, 0..u64::MAX);
            assert_eq!(found, differ(as_str), "{as_str:?}");
            if found {
                touching += 1;
            } else {
                apart += 1;
            }
            // From just after the first line end on, as a split cut by --valid-fraction.
            if let Some(at) = as_str.find('\n') {
                let from = at + 1;
                assert_eq!(
                    touches(&text, from as u64..u64::MAX),
                    differ(&as_str[from..]),
                    "{as_str:?} from {from}"
                );
            }
        }
        assert!(
            touching > 100 && apart > 100,
            "{touching} touching, {apart} apart"
        );
        // PTB's lines: a space on both sides of every line end.
        assert!(!touches(b" the cat \n a dog \n", 0..u64::MAX));
        // A Unicode blank beside a line end is taken for a word: a harmless false alarm.
        assert!(touches(" a\u{3000}\n b \n".as_bytes(), 0..u64::MAX));
        // Across a chunk's end: the word in one chunk, the line end in the next, and the
        // other way round.
        for (word_at, newline_at) in [(CHUNK - 1, CHUNK), (CHUNK, CHUNK - 1)] {
            let mut text = vec![b' '; CHUNK + 10];
            text[word_at] = b'w';
            text[newline_at] = b'\n';
            assert!(
                touches(&text, 0..u64::MAX),
                "word at {word_at}, line end at {newline_at}"
            );
            text[word_at] = b' ';
            assert!(!touches(&text, 0..u64::MAX));
        }
    }
}
