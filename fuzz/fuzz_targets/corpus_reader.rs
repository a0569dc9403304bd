//! Any bytes as a corpus file: reading, vocabulary, encoding and batching must return
//! `Ok` or a one-line error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lstm_gpu::data::{encode_text, read_text, Batches, Corpus, CorpusSource, Tokens, Vocab};

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("lstm-gpu-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("ptb.train.txt");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    // The streaming reader the program uses, as words and as characters, with a split cut
    // from the end: Ok or one line.
    let cap = data.last().map(|&b| 1 + b as usize % 40);
    for tokens in [Tokens::Words, Tokens::Chars] {
        let read = CorpusSource::files(&path, None, None, Some(0.2))
            .and_then(|source| Corpus::read(&source, tokens, cap));
        match read {
            Ok(corpus) => {
                let n = corpus.vocab.len() as u32;
                assert!(corpus.train.iter().chain(&corpus.valid).all(|&i| i < n));
            }
            Err(e) => assert!(!format!("{e:#}").contains('\n'), "one line: {e:#}"),
        }
    }
    let text = match read_text(&path) {
        Ok(t) => t,
        Err(e) => {
            assert!(!format!("{e:#}").contains('\n'), "a corpus error is one line: {e:#}");
            return;
        }
    };
    let cap = 1 + data.first().copied().unwrap_or(0) as usize % 50;
    if let Ok((vocab, ids)) = Vocab::from_train(&text, cap) {
        assert!(ids.iter().all(|&i| (i as usize) < vocab.len()));
        let _ = encode_text(&text, &vocab);
        let again = Vocab::from_words(vocab.words().to_vec()).expect("a vocabulary rebuilds from its words");
        assert_eq!(again.len(), vocab.len());
        let batch = 1 + data.len() % 7;
        let steps = 1 + data.len() % 5;
        if let Ok(b) = Batches::new(&ids, batch, steps) {
            for i in 0..b.len() {
                let (x, y) = b.batch(i);
                assert_eq!(x.len(), batch * steps);
                assert_eq!(y.len(), batch * steps);
            }
        }
    }
});
