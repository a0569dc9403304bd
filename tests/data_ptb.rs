//! The reader on the real Penn Treebank: TensorFlow's vocabulary, token counts and batches.
//!
//! The corpus folder comes from env `LSTM_GPU_PTB_DIR`, by default `../shared/data/ptb` beside
//! the crate; these tests fail (they do not skip) when it is absent.

mod common;

use common::ptb_dir;
use lstm_gpu::config::Config;
use lstm_gpu::data::{self, Batches, Corpus, Split};
use lstm_gpu::error::{exit_code, one_line};
use md5::{Digest, Md5};
use std::sync::OnceLock;
use std::time::Instant;

/// The corpus, read once for every test of this file.
fn ptb() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let start = Instant::now();
        let corpus =
            Corpus::load(&ptb_dir(), 10_000).unwrap_or_else(|e| panic!("{}", one_line(&e)));
        eprintln!("read PTB in {:.0} ms", start.elapsed().as_secs_f64() * 1e3);
        corpus
    })
}

/// `sum((i + 1) * id) mod 2^64` over a split, as computed by a Python run of TensorFlow's
/// reader (`_build_vocab` + `_file_to_word_ids`).
fn weighted_sum(ids: &[u32]) -> u64 {
    ids.iter().enumerate().fold(0u64, |s, (i, &id)| {
        s.wrapping_add((i as u64 + 1).wrapping_mul(id as u64))
    })
}

#[test]
fn vocabulary_is_tensorflows() {
    let v = &ptb().vocab;
    assert_eq!(v.len(), 10_000);
    assert_eq!(v.words()[..6], ["the", "<unk>", "<eos>", "N", "of", "to"]);
    assert_eq!((v.unk(), v.eos()), (Some(1), Some(2)));
    assert_eq!(v.id("the"), Some(0));
    // MD5 of the words joined by newlines, in TensorFlow's order.
    let digest = Md5::digest(v.words().join("\n").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "0441f153167cc7d9589980acc402f405");
}

#[test]
fn splits_match_tensorflow_ids() {
    let c = ptb();
    assert_eq!(
        (c.train.len(), c.valid.len(), c.test.len()),
        (929_589, 73_760, 82_430)
    );
    assert_eq!(c.train[..5], [9970, 9971, 9972, 9974, 9975]);
    assert_eq!(c.valid[..5], [1132, 93, 358, 5, 329]);
    assert_eq!(c.test[..5], [102, 14, 24, 32, 752]);
    assert_eq!(weighted_sum(&c.train), 351_526_130_111_765);
    assert_eq!(weighted_sum(&c.valid), 2_317_298_654_843);
    assert_eq!(weighted_sum(&c.test), 2_638_912_025_278);
}

#[test]
fn train_batches_at_the_seed_shape() {
    let c = ptb();
    let batches = c.batches(Split::Train, 60, 20).unwrap();
    assert_eq!(batches.len(), 774);
    let batch_len = c.train.len() / 60;
    for i in [0, 1, 773] {
        let (x, y) = batches.batch(i);
        assert_eq!((x.len(), y.len()), (1200, 1200));
        for r in 0..60 {
            let row = &c.train[r * batch_len..(r + 1) * batch_len];
            assert_eq!(x[r * 20..(r + 1) * 20], row[i * 20..i * 20 + 20]);
            assert_eq!(y[r * 20..(r + 1) * 20], row[i * 20 + 1..i * 20 + 21]);
            // The targets are the inputs shifted one step.
            assert_eq!(x[r * 20 + 1..(r + 1) * 20], y[r * 20..(r + 1) * 20 - 1]);
        }
    }
    assert_eq!(batches.iter().count(), 774);
}

#[test]
fn too_large_a_batch_is_a_usage_error() {
    let c = ptb();
    let err = c.batches(Split::Valid, 4000, 20).unwrap_err();
    assert_eq!(exit_code(&err), 2);
    let line = one_line(&err);
    assert!(
        line.contains("valid split") && line.contains("73760 tokens"),
        "{line}"
    );
    assert!(
        line.contains("--batch-size") && line.contains("--num-steps"),
        "{line}"
    );
    assert!(Batches::new(&c.test, 1, 82_430).is_err());
}

#[test]
fn info_reports_sizes_and_batches() {
    let info = data::info(&ptb_dir(), &Config::default()).unwrap();
    assert_eq!(info.vocab_size, 10_000);
    let got: Vec<(usize, usize)> = info.splits.iter().map(|s| (s.tokens, s.batches)).collect();
    // (tokens / 60 - 1) / 20 per split.
    assert_eq!(got, [(929_589, 774), (73_760, 61), (82_430, 68)]);
    let shown = info.to_string();
    assert!(
        shown.contains("10000 words") && shown.contains("929589"),
        "{shown}"
    );
}

/// PTB's lines start and end with a space, so `--tokens words-eos` reads it exactly as
/// `words` (TensorFlow's reader) does: the same vocabulary and ids in every split.
#[test]
fn words_eos_reads_ptb_as_tensorflow_does() {
    let source = data::CorpusSource::folder(&ptb_dir(), None).unwrap();
    let apart = Corpus::read(&source, data::Tokens::WordsEos, Some(10_000)).unwrap();
    let words = ptb();
    assert_eq!(apart.vocab, words.vocab);
    assert!(apart.train == words.train && apart.valid == words.valid && apart.test == words.test);
}
