//! The `lstm-gpu` program as users run it, one binary (`cargo test --test cli`) in five
//! parts: training runs (`training`), runs that go wrong (`faults`), a trained model in use
//! (`inference`), the command line and bad input (`usage`), and the kernels from the command
//! line (`kernels`). This file holds what they share: the binary with tuning off, the tiny
//! fixture corpus in `data/tiny` with a tiny model, corpora written for a test, and the
//! assertions on a run's output. Each part reaches them through `use super::*`.

#[path = "../common/mod.rs"]
mod common;

mod faults;
mod inference;
mod kernels;
mod training;
mod usage;

use common::{
    built_in_shader as built_in, ptb_dir, shader_with_a_syntax_error, strip_with_a_negated_row,
    TINY_MODEL,
};
use lstm_gpu::model::checkpoint::Checkpoint;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = common::lstm_gpu();
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env("RUST_LOG", "warn");
    no_tuning(&mut c);
    c
}

/// The adapter's default kernels, whatever a user's cache holds, and no tuning by the
/// runs themselves: runs compared bit for bit must run the same kernels (tests/tune.rs
/// covers tuning).
fn no_tuning(c: &mut Command) {
    c.env("LSTM_GPU_TUNE", "off").env(
        "LSTM_GPU_CACHE_DIR",
        std::env::temp_dir().join("lstm-gpu-tests-no-cache"),
    );
}

fn tiny_data() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/tiny"))
}

/// A tiny model on the tiny corpus: 20 steps per epoch, dropout on, so that resuming must
/// also restore the dropout counters.
fn tiny_train(run_dir: &Path) -> Command {
    tiny_train_epochs(run_dir, "3")
}

fn tiny_train_epochs(run_dir: &Path, epochs: &str) -> Command {
    tiny_train_on(&tiny_data(), run_dir, epochs)
}

/// [`tiny_train_epochs`] on the corpus in `data`.
fn tiny_train_on(data: &Path, run_dir: &Path, epochs: &str) -> Command {
    let mut c = bin();
    c.arg("train")
        .arg("--data")
        .arg(data)
        .arg("--run-dir")
        .arg(run_dir);
    c.args(TINY_MODEL);
    c.args([
        "--keep-prob",
        "0.8",
        "--max-epoch",
        epochs,
        "--seed",
        "7",
        "--no-progress",
        "--log-every",
        "1",
    ]);
    c
}

fn run(c: &mut Command) -> Output {
    c.output().expect("run lstm-gpu")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The process failed with `code` and said so in one line, without a panic.
fn assert_one_line_error(o: &Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {err}");
    assert!(
        lines[0].to_lowercase().contains(&needle.to_lowercase()),
        "`{needle}` not in: {err}"
    );
}

fn params_of(path: &Path) -> Checkpoint {
    Checkpoint::load(path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()))
}

/// The runs in `dir`'s folders `a` and `b` left the same parameters, bit for bit.
fn assert_trained_alike(dir: &Path, a: &str, b: &str) {
    let last = |run: &str| params_of(&dir.join(run).join("last.safetensors"));
    assert!(
        last(a).params == last(b).params,
        "the runs {a} and {b} trained differently"
    );
}

/// The run's metrics records of one kind.
fn metrics_of(run_dir: &Path, kind: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == kind)
        .collect()
}

/// A corpus folder with the given train, valid and test files (None: absent).
fn corpus(dir: &Path, files: [Option<&[u8]>; 3]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (name, data) in ["ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"]
        .iter()
        .zip(files)
    {
        if let Some(data) = data {
            std::fs::write(dir.join(name), data).unwrap();
        }
    }
    dir.to_path_buf()
}

fn tiny_file(name: &str) -> Vec<u8> {
    std::fs::read(tiny_data().join(name)).unwrap()
}

/// The tiny training text without `<unk>`, so that the vocabulary has none.
fn train_without_unk() -> Vec<u8> {
    String::from_utf8(tiny_file("ptb.train.txt"))
        .unwrap()
        .replace("<unk>", "shares")
        .into_bytes()
}

fn train_on(data: &Path, run_dir: &Path) -> Output {
    let mut c = bin();
    c.arg("train")
        .arg("--data")
        .arg(data)
        .arg("--run-dir")
        .arg(run_dir);
    c.args([
        "--vocab-size",
        "1000",
        "--embedding-size",
        "8",
        "--hidden",
        "8",
        "--batch-size",
        "2",
        "--num-steps",
        "5",
        "--max-steps",
        "2",
        "--no-progress",
        "--no-eval-at-stop",
    ]);
    run(&mut c)
}
