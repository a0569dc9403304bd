//! 100 MB of text reads with memory proportional to its id stream (4 bytes a token plus the
//! vocabulary), not to copies of the text, and in seconds. The text is generated here,
//! written line by line so that writing it costs no memory either; the peak resident memory
//! of this process (`VmHWM`, Linux) is measured around the read. One test per file: the
//! high-water mark is the process's.

use lstm_gpu::data::{Corpus, CorpusSource, Split, Tokens};
use lstm_gpu::rng::SplitMix64;
use std::io::Write;
use std::time::Instant;

const TEXT_BYTES: u64 = 100_000_000;

/// Peak resident memory of this process in bytes.
fn peak_resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status (Linux)");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in kB");
    kb * 1024
}

#[test]
fn a_100_mb_text_reads_in_memory_proportional_to_its_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.txt");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    // A Zipf-like draw from 20000 made-up words, PTB-shaped lines of about 20 words.
    let words: Vec<String> = (0..20_000)
        .map(|i| format!("w{}", i * 7919 % 100_003))
        .collect();
    let mut rng = SplitMix64::new(5);
    let mut written = 0u64;
    let mut line = String::new();
    while written < TEXT_BYTES {
        line.clear();
        for _ in 0..(10 + rng.next_u64() % 20) {
            let u = rng.next_f64();
            let id = ((words.len() as f64).powf(u) as usize).min(words.len()) - 1;
            line.push(' ');
            line.push_str(&words[id]);
        }
        line.push_str(" \n");
        out.write_all(line.as_bytes()).unwrap();
        written += line.len() as u64;
    }
    out.flush().unwrap();
    drop(out);
    drop(words);

    let before = peak_resident();
    let start = Instant::now();
    let source = CorpusSource::files(&path, None, None, Some(0.05)).unwrap();
    let corpus = Corpus::read(&source, Tokens::Words, None).unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let growth = peak_resident().saturating_sub(before);
    let tokens: usize = Split::ALL.iter().map(|&s| corpus.split(s).len()).sum();
    let ids_bytes = 4 * tokens as u64;
    let vocab_bytes: u64 = corpus
        .vocab
        .words()
        .iter()
        .map(|w| w.len() as u64 + 64)
        .sum();
    eprintln!(
        "{written} bytes of text, {tokens} tokens ({} MB of ids), vocabulary {}: read in \
         {seconds:.2} s, peak resident memory +{:.1} MB",
        ids_bytes / 1_000_000,
        corpus.vocab.len(),
        growth as f64 / 1e6
    );
    assert!(tokens > 10_000_000, "{tokens} tokens");
    // The ids, the vocabulary twice over (its index) and a few MiB of buffers; one copy of
    // the text alone would be 100 MB more than the ids.
    let bound = ids_bytes + ids_bytes / 20 + 2 * vocab_bytes + (16 << 20);
    assert!(
        growth <= bound,
        "reading grew the peak resident memory by {growth} bytes, more than the ids \
         ({ids_bytes}) allow ({bound})"
    );
    assert!(growth < written, "{growth} bytes: as much as the text");
    assert!(seconds < 60.0, "{seconds:.1} s to read 100 MB");
}
