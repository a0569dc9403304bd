//! Any corpus: the three folder layouts, files named one by one, words and characters with
//! and without a vocabulary cap, `<unk>`, a split cut from the end of the training text, the
//! streaming reader against the in-memory tokeniser across chunk boundaries, and bad input
//! as one clear line. Every corpus here is written by the test itself.

use lstm_gpu::data::{tokenize, Corpus, CorpusSource, Split, Tokens, Vocab, EOS, UNK};
use lstm_gpu::error::{exit_code, one_line};
use lstm_gpu::rng::SplitMix64;
use std::fs;
use std::path::{Path, PathBuf};

const TRAIN: &str = " the cat sat on the mat \n the dog sat \n a cat ran \n";
const VALID: &str = " the dog ran \n";
const TEST: &str = " a cat sat \n";

fn write(dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    for (name, data) in files {
        fs::write(dir.join(name), data).unwrap();
    }
    dir.to_path_buf()
}

fn layout(dir: &Path, names: [&str; 3]) -> PathBuf {
    write(
        dir,
        &[
            (names[0], TRAIN.as_bytes()),
            (names[1], VALID.as_bytes()),
            (names[2], TEST.as_bytes()),
        ],
    )
}

fn words(corpus: &Corpus, ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|&i| corpus.vocab.word(i).to_string())
        .collect()
}

fn read(source: &CorpusSource, tokens: Tokens, cap: Option<usize>) -> Corpus {
    Corpus::read(source, tokens, cap).unwrap_or_else(|e| panic!("{}", one_line(&e)))
}

#[test]
fn every_folder_layout_and_named_files_read_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let layouts = [
        ["ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"],
        ["train.txt", "valid.txt", "test.txt"],
        ["wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"],
    ];
    let mut read_back = Vec::new();
    for (k, names) in layouts.iter().enumerate() {
        let dir = layout(&tmp.path().join(format!("l{k}")), *names);
        let corpus = read(
            &CorpusSource::folder(&dir, None).unwrap(),
            Tokens::Words,
            None,
        );
        assert_eq!(corpus.source.split(Split::Valid).path, dir.join(names[1]));
        read_back.push(corpus);
    }
    let dir = tmp.path().join("l0");
    let named = CorpusSource::files(
        &dir.join("ptb.train.txt"),
        Some(&dir.join("ptb.valid.txt")),
        Some(&dir.join("ptb.test.txt")),
        None,
    )
    .unwrap();
    read_back.push(read(&named, Tokens::Words, None));
    let first = &read_back[0];
    // 9 distinct tokens; <eos> and "the" lead (3 each: ties by the token), then cat, sat.
    assert_eq!(first.vocab.len(), 9);
    assert_eq!(first.vocab.words()[..4], ["<eos>", "the", "cat", "sat"]);
    assert_eq!(words(first, &first.valid), ["the", "dog", "ran", EOS]);
    for other in &read_back[1..] {
        assert_eq!(other.vocab, first.vocab);
        assert_eq!(
            (&other.train, &other.valid, &other.test),
            (&first.train, &first.valid, &first.test)
        );
    }
}

#[test]
fn two_layouts_in_one_folder_are_a_usage_error_naming_both() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = layout(
        tmp.path(),
        ["ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"],
    );
    write(&dir, &[("wiki.train.tokens", b" x \n")]);
    let err = CorpusSource::folder(&dir, None).unwrap_err();
    assert_eq!(exit_code(&err), 2);
    let line = one_line(&err);
    assert!(
        line.contains("ptb.train.txt") && line.contains("wiki.train.tokens"),
        "{line}"
    );
    assert!(line.contains("--train"), "{line}");
    // A folder with none of them names what it looks for.
    let empty = write(&tmp.path().join("empty"), &[("notes.txt", b"x")]);
    let line = one_line(&CorpusSource::folder(&empty, None).unwrap_err());
    assert!(
        line.contains("ptb.train.txt") && line.contains("wiki.train.tokens"),
        "{line}"
    );
    // A named file that is not there is a usage error naming the flag.
    let err = CorpusSource::files(&dir.join("nope.txt"), None, None, Some(0.1)).unwrap_err();
    assert_eq!(exit_code(&err), 2);
    assert!(one_line(&err).contains("--train"), "{}", one_line(&err));
}

#[test]
fn characters_are_tokens_and_a_newline_is_eos() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write(
        tmp.path(),
        &[
            ("train.txt", "abba cab\nbé\n".as_bytes()),
            ("valid.txt", b"ab\n"),
            ("test.txt", b"zz\n"),
        ],
    );
    let source = CorpusSource::folder(&dir, None).unwrap();
    // Without <unk>, a character the training text lacks is the clear error of today.
    let err = Corpus::read(&source, Tokens::Chars, None).unwrap_err();
    let line = one_line(&err);
    assert!(
        line.contains("test.txt:1:") && line.contains("character \"z\""),
        "{line}"
    );

    write(&dir, &[("test.txt", "cab é\n".as_bytes())]);
    let corpus = read(&source, Tokens::Chars, None);
    // Counts: b 4, a 3, <eos> 2, c 1, space 1, é 1: ties by the token's bytes.
    assert_eq!(corpus.vocab.words(), ["b", "a", EOS, " ", "c", "é"]);
    assert_eq!(words(&corpus, &corpus.valid), ["a", "b", EOS]);
    assert_eq!(words(&corpus, &corpus.test), ["c", "a", "b", " ", "é", EOS]);
    assert_eq!(corpus.train.len(), "abba cab\nbé\n".chars().count());
    assert_eq!(corpus.vocab.unk(), None);

    // Capped at 4: the fourth place becomes <unk>, and every rarer character reads as it.
    let capped = read(&source, Tokens::Chars, Some(4));
    assert_eq!(capped.vocab.words(), ["b", "a", EOS, UNK]);
    assert_eq!(
        words(&capped, &capped.test),
        ["<unk>", "a", "b", UNK, UNK, EOS]
    );
    // A character-level vocabulary rebuilds from its tokens (a checkpoint's), spaces and all,
    // and reads the splits the same way.
    let again = Vocab::from_tokens(corpus.vocab.words().to_vec(), Tokens::Chars).unwrap();
    let reread = Corpus::read_with_vocab(&source, again, Tokens::Chars).unwrap();
    assert_eq!(reread.train, corpus.train);
    // ... but not as words: a space is no word.
    assert!(Vocab::from_tokens(corpus.vocab.words().to_vec(), Tokens::Words).is_err());
}

#[test]
fn a_word_cap_maps_the_rest_to_unk_and_keeps_an_existing_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write(
        tmp.path(),
        &[
            ("train.txt", b" a a a b b c d \n a <unk> \n"),
            ("valid.txt", b" a zebra \n"),
            ("test.txt", b" d c \n"),
        ],
    );
    let source = CorpusSource::folder(&dir, None).unwrap();
    // Uncapped: every distinct word, <unk> among them (as the text has it); the unknown
    // valid word reads as that <unk>.
    let all = read(&source, Tokens::Words, None);
    assert_eq!(all.vocab.len(), 6);
    assert_eq!(words(&all, &all.valid), ["a", UNK, EOS]);
    // Capped at 3: the three most frequent, the present <unk> kept in the last place.
    let capped = read(&source, Tokens::Words, Some(3));
    assert_eq!(capped.vocab.words(), ["a", "<eos>", UNK]);
    assert_eq!(words(&capped, &capped.test), [UNK, UNK, EOS]);
    assert_eq!(
        words(&capped, &capped.train[..8]),
        ["a", "a", "a", UNK, UNK, UNK, UNK, EOS]
    );
}

#[test]
fn valid_fraction_cuts_the_end_of_the_training_text_at_a_line() {
    let tmp = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..100).map(|i| format!(" w{} x y \n", i % 10)).collect();
    let text = lines.concat();
    let path = tmp.path().join("book.txt");
    fs::write(&path, &text).unwrap();

    // No valid and no test file: 10% each from the end, valid before test.
    let source = CorpusSource::files(&path, None, None, Some(0.1)).unwrap();
    let corpus = read(&source, Tokens::Words, None);
    let (train, valid, test) = (&corpus.train, &corpus.valid, &corpus.test);
    assert!(!valid.is_empty() && !test.is_empty());
    // Whole lines each: every split ends with <eos>, and together they are the text.
    let eos = corpus.vocab.eos().unwrap();
    for ids in [train, valid, test] {
        assert_eq!(*ids.last().unwrap(), eos);
    }
    let all: Vec<u32> = [train.as_slice(), valid, test].concat();
    let expected: Vec<String> = tokenize(&text).map(|t| t.into_owned()).collect();
    assert_eq!(words(&corpus, &all), expected);
    let lines_of = |ids: &[u32]| ids.iter().filter(|&&i| i == eos).count();
    assert_eq!(
        (lines_of(train), lines_of(valid), lines_of(test)),
        (80, 10, 10)
    );
    // The log says so.
    assert_eq!(corpus.source.notes.len(), 2);
    assert!(
        corpus.source.notes[0].contains("valid split")
            && corpus.source.notes[0].contains("--valid-fraction 0.1"),
        "{:?}",
        corpus.source.notes
    );

    // A valid file given: only the test split is cut.
    let valid_path = tmp.path().join("valid.txt");
    fs::write(&valid_path, " w1 x \n").unwrap();
    let source = CorpusSource::files(&path, Some(&valid_path), None, Some(0.25)).unwrap();
    let corpus = read(&source, Tokens::Words, None);
    assert_eq!(corpus.valid.len(), 3);
    assert_eq!(
        corpus.test.iter().filter(|&&i| i == eos).count(),
        25,
        "the last quarter"
    );

    // Without the flag a missing split is an error that names it and the flag.
    let line = one_line(&CorpusSource::files(&path, None, None, None).unwrap_err());
    assert!(
        line.contains("valid") && line.contains("--valid-fraction"),
        "{line}"
    );
    // Impossible fractions and a one-line text are usage errors.
    for f in [0.0, -0.1, 0.5, 0.9, f64::NAN] {
        let err = CorpusSource::files(&path, None, None, Some(f)).unwrap_err();
        assert_eq!(exit_code(&err), 2, "{f}: {}", one_line(&err));
        assert!(one_line(&err).contains("--valid-fraction"));
    }
    let one_line_file = tmp.path().join("one.txt");
    fs::write(&one_line_file, " a b c d e f ").unwrap();
    let err = CorpusSource::files(&one_line_file, None, None, Some(0.1)).unwrap_err();
    assert_eq!(exit_code(&err), 2);
    assert!(one_line(&err).contains("one line"), "{}", one_line(&err));
}

/// A text of a few MiB (several reader chunks) with multibyte characters and long words
/// everywhere, so that characters and words straddle chunk boundaries: the streamed ids are
/// exactly the in-memory tokeniser's, for words and for characters.
#[test]
fn the_streaming_reader_matches_the_whole_text_across_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let pieces = [
        "the",
        "naïve",
        "中文字",
        "🦀",
        "a",
        "bb",
        "\n",
        " ",
        "\t",
        "word",
        "é",
        "\u{a0}",
    ];
    let mut rng = SplitMix64::new(9);
    let mut text = String::new();
    while text.len() < 3 << 20 {
        text.push_str(pieces[(rng.next_u64() % pieces.len() as u64) as usize]);
        if rng.next_u64() % 3 == 0 {
            text.push(' ');
        }
    }
    let path = tmp.path().join("train.txt");
    fs::write(&path, &text).unwrap();
    let small = tmp.path().join("small.txt");
    fs::write(&small, "the a\n").unwrap();
    let source = CorpusSource::files(&path, Some(&small), Some(&small), None).unwrap();

    let corpus = read(&source, Tokens::Words, None);
    let want: Vec<String> = tokenize(&text).map(|t| t.into_owned()).collect();
    assert_eq!(corpus.train.len(), want.len());
    assert!(words(&corpus, &corpus.train) == want, "word streams differ");

    let chars = read(&source, Tokens::Chars, None);
    let want: Vec<String> = text
        .chars()
        .map(|c| {
            if c == '\n' {
                EOS.to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    assert_eq!(chars.train.len(), want.len());
    assert!(
        words(&chars, &chars.train) == want,
        "character streams differ"
    );
}

/// Bad input, each one clear line naming the file: a binary file, an empty split, a file
/// that is not UTF-8 in character mode (the byte and its line), conflicting layouts.
#[test]
fn bad_input_is_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let ok = TRAIN.as_bytes();
    let mut big_latin1 = vec![b'a'; 3 << 20];
    big_latin1.extend_from_slice(b"\ncaf\xe9\n");
    // (name, train file, valid file, tokens, what the error line says)
    type Case<'a> = (&'a str, Vec<u8>, Vec<u8>, Tokens, &'a str);
    let cases: Vec<Case> = vec![
        (
            "binary",
            b"ab\x00cd\n".to_vec(),
            ok.to_vec(),
            Tokens::Words,
            "binary (a NUL byte on line 1)",
        ),
        ("empty", ok.to_vec(), Vec::new(), Tokens::Chars, "is empty"),
        (
            "latin1",
            "ab\ncaf\u{e9}\n".as_bytes().to_vec(),
            b"ab\n\xe9t\xe9\n".to_vec(),
            Tokens::Chars,
            "not UTF-8 text (byte 0xe9 on line 2)",
        ),
        // Past the first chunk of the reader: the line is still right.
        (
            "latin1-late",
            big_latin1,
            ok.to_vec(),
            Tokens::Chars,
            "not UTF-8 text (byte 0xe9 on line 2)",
        ),
        (
            "gzip",
            b"\x1f\x8b\x08\x00rest".to_vec(),
            ok.to_vec(),
            Tokens::Words,
            "gzip",
        ),
    ];
    for (name, train, valid, tokens, needle) in cases {
        let dir = write(
            &tmp.path().join(name),
            &[
                ("train.txt", &train),
                ("valid.txt", &valid),
                ("test.txt", ok),
            ],
        );
        let err = CorpusSource::folder(&dir, None)
            .and_then(|s| Corpus::read(&s, tokens, None))
            .unwrap_err();
        let line = one_line(&err);
        assert!(line.contains(needle), "{name}: {line}");
        assert!(line.contains(".txt"), "{name}: names the file: {line}");
        assert!(!format!("{err:#}").contains('\n'), "{name}: {line}");
    }
}
