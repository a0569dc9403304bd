//! `train`'s progress bar on a terminal, read from a pseudo-terminal as a user sees it: it
//! shows words/s and the running perplexity from the first steps, long before the first
//! log point, and says once how long an epoch will take.

#![cfg(target_os = "linux")]

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[repr(C)]
struct WinSize {
    rows: u16,
    cols: u16,
    x_pixels: u16,
    y_pixels: u16,
}

extern "C" {
    // glibc (libutil merged into libc since 2.34).
    fn openpty(
        master: *mut i32,
        slave: *mut i32,
        name: *mut std::ffi::c_char,
        termios: *const std::ffi::c_void,
        size: *const WinSize,
    ) -> i32;
}

/// A pseudo-terminal of 200 columns: (master, slave).
fn pty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    let size = WinSize {
        rows: 50,
        cols: 200,
        x_pixels: 0,
        y_pixels: 0,
    };
    // SAFETY: openpty writes two descriptors and reads the window size; null for the rest.
    let rc = unsafe {
        openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty failed: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned here alone.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// Everything `lstm-gpu args` wrote to its terminal (stderr), with the bar's redraws.
fn on_a_terminal(args: &[&str]) -> (bool, String) {
    let (master, slave) = pty();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lstm-gpu"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env("LSTM_GPU_TUNE", "off")
        .env(
            "LSTM_GPU_CACHE_DIR",
            std::env::temp_dir().join("lstm-gpu-tests-no-cache"),
        )
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut file = std::fs::File::from(master);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // The read ends with EIO once the child, the last holder of the slave, exits.
        while let Ok(n) = file.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    });
    let ok = child.wait().unwrap().success();
    let out = reader.join().unwrap();
    (ok, String::from_utf8_lossy(&out).into_owned())
}

/// The bar's messages ("ppl X, N words/s") in the order they were drawn.
fn bar_messages(text: &str) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for frame in text.split(['\r', '\n']) {
        let Some(at) = frame.find("] ") else { continue };
        let Some(rest) = frame[at..].split(" ppl ").nth(1) else {
            continue;
        };
        let Some((ppl, rest)) = rest.split_once(", ") else {
            continue;
        };
        let Some(wps) = rest.split(" words/s").next() else {
            continue;
        };
        if let (Ok(p), Ok(w)) = (ppl.parse(), wps.parse()) {
            out.push((p, w));
        }
    }
    out
}

#[test]
fn the_bar_shows_words_per_second_and_perplexity_from_the_first_steps() {
    let dir = tempfile::tempdir().unwrap();
    let data = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/tiny"));
    let run = dir.path().join("run");
    // 20 steps an epoch and a log point only at its end: everything the bar says before
    // that line comes from its own refreshes.
    let (ok, text) = on_a_terminal(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "--vocab-size",
        "60",
        "--embedding-size",
        "16",
        "--hidden",
        "16,16",
        "--batch-size",
        "2",
        "--num-steps",
        "5",
        "--max-steps",
        "20",
        "--log-every",
        "1000",
        "--no-eval-at-stop",
    ]);
    assert!(ok, "{text}");
    let first_log = text
        .find("1.000 perplexity:")
        .unwrap_or_else(|| panic!("no log point at the epoch's end in: {text}"));
    let before = bar_messages(&text[..first_log]);
    assert!(
        before.len() >= 3,
        "fewer than 3 bar refreshes before the first log point: {before:?} in {text}"
    );
    for &(ppl, wps) in &before {
        // A fresh model on 60 words: perplexity near 60, never NaN.
        assert!(ppl > 1.0 && ppl < 1000.0, "perplexity {ppl} in {before:?}");
        assert!(wps > 0.0, "words/s {wps} in {before:?}");
    }
    let distinct: std::collections::BTreeSet<u64> =
        before.iter().map(|(p, _)| p.to_bits()).collect();
    assert!(
        distinct.len() >= 2,
        "the bar's perplexity never changed before the first log point: {before:?}"
    );
}
