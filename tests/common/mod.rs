//! Shared helpers of the integration tests: the adapter, random inputs, error measures.
#![allow(dead_code)]

pub mod half;
pub mod split;

use lstm_gpu::gpu::{AdapterChoice, BackendChoice, Gpu, PickedAdapter};
use std::path::PathBuf;

/// The tiny model of the command-line tests (on `data/tiny`): vocabulary 60, embedding 8,
/// two layers of 8 and 6, 2 rows of 5 steps.
pub const TINY_MODEL: [&str; 10] = [
    "--vocab-size",
    "60",
    "--embedding-size",
    "8",
    "--hidden",
    "8,6",
    "--batch-size",
    "2",
    "--num-steps",
    "5",
];

/// The PTB corpus folder: `LSTM_GPU_PTB_DIR`, else `../shared/data/ptb` beside the
/// checkout. The tests that read it fail here, never skip, where the corpus is not there.
pub fn ptb_dir() -> PathBuf {
    let dir = std::env::var_os("LSTM_GPU_PTB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/ptb").into());
    assert!(
        lstm_gpu::data::fetch::corpus_present(&dir),
        "the PTB corpus is not in {}: set LSTM_GPU_PTB_DIR to a folder holding \
         ptb.train.txt, ptb.valid.txt and ptb.test.txt (or run `lstm-gpu data fetch`)",
        dir.display()
    );
    dir
}

/// The first `lines` lines of a PTB split (`train`, `valid`, `test`), each with its newline.
pub fn ptb_head(split: &str, lines: usize) -> String {
    let path = ptb_dir().join(format!("ptb.{split}.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().take(lines).map(|l| format!("{l}\n")).collect()
}

/// The adapter the tests run on: `LSTM_GPU_TEST_ADAPTER` (default `auto`) on
/// `LSTM_GPU_TEST_BACKEND` (default `auto`; `gl` runs the suite through naga's GLSL and
/// wgpu's GL backend). A machine with no adapter fails here with instructions; GPU tests
/// never pass silently.
pub fn gpu() -> Gpu {
    picked()
        .open_all()
        .unwrap_or_else(|e| panic!("could not open the test adapter: {e:#}"))
}

/// The test adapter, not opened yet (see [`gpu`]).
pub fn picked() -> PickedAdapter {
    std::env::set_var(
        "XDG_RUNTIME_DIR",
        std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into()),
    );
    let choice: AdapterChoice = std::env::var("LSTM_GPU_TEST_ADAPTER")
        .unwrap_or_else(|_| "auto".into())
        .parse()
        .expect("LSTM_GPU_TEST_ADAPTER");
    match PickedAdapter::pick(&choice, backend()) {
        Ok(g) => g,
        Err(e) => panic!(
            "GPU tests need an adapter and found none ({e:#}). On a machine without a GPU install \
             Mesa's lavapipe: `sudo apt-get install mesa-vulkan-drivers` (Debian/Ubuntu)."
        ),
    }
}

/// `LSTM_GPU_TEST_BACKEND`: the backend the tests run on.
pub fn backend() -> BackendChoice {
    match std::env::var("LSTM_GPU_TEST_BACKEND").as_deref() {
        Err(_) | Ok("") | Ok("auto") => BackendChoice::Auto,
        Ok("vulkan") => BackendChoice::Vulkan,
        Ok("gl") => BackendChoice::Gl,
        Ok("metal") => BackendChoice::Metal,
        Ok("dx12") => BackendChoice::Dx12,
        Ok(other) => panic!("LSTM_GPU_TEST_BACKEND={other}: use auto, vulkan, gl, metal or dx12"),
    }
}

/// Random values never exactly zero, and the relative L2 error (NaN never passes): the ones
/// `lstm-gpu check` uses.
pub use lstm_gpu::check::{random, random_ids, random_state, rel_l2};

/// Assert a relative L2 error at most `tol`, with a readable message.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    let e = rel_l2(got, want);
    assert!(
        e <= tol,
        "{what}: relative L2 error {e:e} > {tol:e} (len {})",
        want.len()
    );
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// NaN in every word: outputs are poisoned with this before a kernel runs.
pub fn nan(n: usize) -> Vec<f32> {
    vec![f32::NAN; n]
}

/// The program as the command-line tests start it: through `LSTM_GPU_TEST_RUNNER` where that
/// is set. The runner of `scripts/lavapipe-coop.sh` (a newer lavapipe, with cooperative
/// matrices, behind its own C library) is needed by the program as much as by the test
/// binaries that cargo runs through it: CI sets both.
pub fn lstm_gpu() -> std::process::Command {
    match std::env::var_os("LSTM_GPU_TEST_RUNNER").filter(|r| !r.is_empty()) {
        Some(runner) => {
            let mut c = std::process::Command::new(runner);
            c.arg(env!("CARGO_BIN_EXE_lstm-gpu"));
            c
        }
        None => std::process::Command::new(env!("CARGO_BIN_EXE_lstm-gpu")),
    }
}

/// A child process killed when dropped (a server, a WebDriver).
pub struct Kill(pub std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `lstm-gpu serve --port 0` with `args`: the process and the page's URL, from the line it
/// prints once listening.
pub fn serve(args: &[&str]) -> (Kill, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lstm-gpu"))
        .args(["serve", "--port", "0"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start lstm-gpu serve");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("serve printed no URL: {line:?}"))
        .to_string();
    (Kill(child), url)
}

/// The built-in text of `shaders/NAME`, as `lstm-gpu shaders export` writes it.
pub fn built_in_shader(name: &str) -> &'static str {
    lstm_gpu::gpu::shaders::FILES
        .iter()
        .find(|f| f.0 == name)
        .unwrap_or_else(|| panic!("no shaders/{name}"))
        .1
}

/// `shaders/NAME` with a syntax error (` oops` before the `;` of its first line that ends
/// in one), and that line's number (from 1).
pub fn shader_with_a_syntax_error(name: &str) -> (String, usize) {
    let mut lines: Vec<String> = built_in_shader(name).lines().map(String::from).collect();
    let at = lines
        .iter()
        .position(|l| l.trim_end().ends_with(';') && !l.trim_start().starts_with("//"))
        .expect("a statement");
    lines[at] = lines[at].replacen(';', " oops;", 1);
    (lines.join("\n") + "\n", at + 1)
}

/// `shaders/matmul_strip.wgsl` with one output row of the strip kernels' rank-1 update
/// negated: every strip kernel (strip-quad shares the code) computes wrong results.
pub fn strip_with_a_negated_row() -> String {
    let row = "fma(vec4<f32>(hi.w), bv, (*acc).r7)";
    let strip = built_in_shader("matmul_strip.wgsl");
    assert_eq!(
        strip.matches(row).count(),
        1,
        "the strip kernel changed: update this helper"
    );
    strip.replace(row, "fma(vec4<f32>(hi.w), -bv, (*acc).r7)")
}
