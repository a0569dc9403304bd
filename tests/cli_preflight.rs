//! What `lstm-gpu` checks before it opens the adapter or allocates anything, as a new user
//! meets it: an impossible model, a checkpoint that claims one, a corpus too small, a run
//! folder that cannot be written. Each is one line on stderr, with the default log level
//! (no log line before it), and a small process. Also: `--max-steps` ending exactly at an
//! epoch's end reports that epoch.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The program at its default log level (info), as a user runs it.
fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lstm-gpu"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env_remove("RUST_LOG")
        // The adapter's default kernels, no tuning (tests/tune.rs covers it).
        .env("LSTM_GPU_TUNE", "off")
        .env(
            "LSTM_GPU_CACHE_DIR",
            std::env::temp_dir().join("lstm-gpu-tests-no-cache"),
        );
    c
}

fn tiny_data() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/tiny"))
}

/// stderr is exactly one line, the error, naming `needle`; the exit code is `code`.
fn assert_only_the_error(o: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "only the error line expected, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(lines[0].contains(needle), "`{needle}` not in: {err}");
}

/// The largest resident set of any child this test process has waited for, in KiB.
#[cfg(target_os = "linux")]
fn children_peak_kib() -> i64 {
    #[repr(C)]
    struct RUsage {
        utime: [i64; 2],
        stime: [i64; 2],
        maxrss: i64,
        rest: [i64; 13],
    }
    extern "C" {
        fn getrusage(who: i32, usage: *mut RUsage) -> i32;
    }
    const RUSAGE_CHILDREN: i32 = -1;
    let mut u = RUsage {
        utime: [0; 2],
        stime: [0; 2],
        maxrss: 0,
        rest: [0; 13],
    };
    // SAFETY: getrusage fills the struct, which has the layout of Linux's `struct rusage`
    // on 64-bit targets (two timevals, then 14 longs).
    assert_eq!(unsafe { getrusage(RUSAGE_CHILDREN, &mut u) }, 0);
    u.maxrss
}

/// `train` on the tiny corpus with its whole vocabulary and `args` (which give the model's
/// remaining sizes).
fn train(run_dir: &Path, args: &[&str]) -> Output {
    bin()
        .arg("train")
        .arg("--data")
        .arg(tiny_data())
        .arg("--run-dir")
        .arg(run_dir)
        .args(["--no-progress", "--max-steps", "1", "--vocab-size", "60"])
        .args(["--embedding-size", "8", "--num-steps", "5"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn impossible_models_are_refused_before_any_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    // 640 GB and 6 GB of one LSTM weight: both refused by arithmetic on the shapes.
    for hidden in ["200000,128", "20000,128"] {
        let o = train(&run_dir, &["--hidden", hidden, "--batch-size", "2"]);
        assert_only_the_error(&o, 1, "parameter lstm.0.weight needs a");
        assert!(!run_dir.exists(), "a run folder was made for {hidden}");
    }
    // Within WebGPU's default limits (what a browser offers) the same arithmetic refuses
    // a layer of 200 MB.
    let o = train(
        &run_dir,
        &[
            "--limits",
            "webgpu",
            "--hidden",
            "3600,8",
            "--batch-size",
            "2",
        ],
    );
    assert_only_the_error(&o, 1, "at most 128 MiB");
    #[cfg(target_os = "linux")]
    {
        let peak = children_peak_kib();
        assert!(
            peak < 1 << 20,
            "a refused model still made a process of {peak} KiB"
        );
    }
}

/// A safetensors header for `config` whose tensors claim its shapes, with no data behind.
fn claimed_checkpoint(config: &serde_json::Value, vocab: usize) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let words: Vec<String> = (0..vocab).map(|i| format!("w{i}")).collect();
    header.insert(
        "__metadata__".into(),
        serde_json::json!({
            "format": "lstm-gpu/1",
            "config": config.to_string(),
            "vocab": serde_json::to_string(&words).unwrap(),
            "position": "{}",
            "checksum": "0",
        }),
    );
    let e = config["embedding_size"].as_u64().unwrap();
    let h: Vec<u64> = config["hidden"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let v = vocab as u64;
    let mut shapes = vec![("embedding".to_string(), vec![v, e])];
    let mut input = e;
    for (l, &hl) in h.iter().enumerate() {
        shapes.push((format!("lstm.{l}.weight"), vec![input + hl, 4 * hl]));
        shapes.push((format!("lstm.{l}.bias"), vec![4 * hl]));
        input = hl;
    }
    shapes.push(("softmax.weight".into(), vec![input, v]));
    shapes.push(("softmax.bias".into(), vec![v]));
    let mut at = 0u64;
    for (name, shape) in shapes {
        let bytes = shape.iter().product::<u64>() * 4;
        header.insert(
            name,
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [at, at + bytes]}),
        );
        at += bytes;
    }
    let text = serde_json::Value::Object(header).to_string();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&[0u8; 64]);
    out
}

#[test]
fn a_checkpoint_claiming_a_huge_model_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("claims.safetensors");
    let mut config = serde_json::to_value(lstm_gpu::config::Config::default()).unwrap();
    config["vocab_size"] = 60.into();
    config["hidden"] = serde_json::json!([200000, 128]);
    std::fs::write(&path, claimed_checkpoint(&config, 60)).unwrap();
    for cmd in ["eval", "predict", "generate"] {
        let mut c = bin();
        c.arg(cmd).arg("--checkpoint").arg(&path);
        match cmd {
            "eval" => c.arg("--data").arg(tiny_data()),
            "predict" => c.arg("the"),
            _ => c.args(["--prompt", "the"]),
        };
        let o = c.output().unwrap();
        assert_only_the_error(&o, 1, "claims.safetensors");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("truncated"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    #[cfg(target_os = "linux")]
    assert!(children_peak_kib() < 1 << 20);
}

#[test]
fn errors_that_need_no_gpu_stand_alone() {
    let dir = tempfile::tempdir().unwrap();
    let model = ["--hidden", "8,6"];
    // The tiny corpus cannot fill one batch of 1000 rows.
    let o = train(
        &dir.path().join("run"),
        &[&model[..], &["--batch-size", "1000"]].concat(),
    );
    assert_only_the_error(&o, 2, "--batch-size 1000");
    // Nor can its test split one batch of 5000 rows (the test pass's own shape).
    let args = [
        &model[..],
        &["--batch-size", "2", "--test-batch-size", "5000"],
    ]
    .concat();
    let o = train(&dir.path().join("run"), &args);
    assert_only_the_error(&o, 2, "test split");
    assert!(!dir.path().join("run").exists());
    // A run folder under a regular file.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let o = train(
        &file.join("run"),
        &[&model[..], &["--batch-size", "2"]].concat(),
    );
    assert_only_the_error(&o, 2, "--run-dir");
}

fn records(run_dir: &Path, kind: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == kind)
        .collect()
}

#[test]
fn max_steps_at_an_epoch_end_reports_that_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    // The tiny model on the tiny corpus: 20 steps an epoch.
    let model = [&common::TINY_MODEL[..], &["--log-every", "5"]].concat();
    let o = bin()
        .arg("train")
        .arg("--data")
        .arg(tiny_data())
        .arg("--run-dir")
        .arg(&run_dir)
        .args(&model)
        .args(["--no-progress", "--max-steps", "20"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("NaN"), "{err}");
    assert!(err.contains("the end of epoch 1"), "{err}");
    let epoch = &records(&run_dir, "epoch")[0];
    let stop = records(&run_dir, "stop");
    assert_eq!(stop.len(), 1, "{stop:?}");
    let stop = &stop[0];
    assert_eq!(stop["epoch"], 1);
    assert_eq!(stop["step"], 20);
    assert_eq!(stop["global_step"], 20);
    assert_eq!(stop["train_perplexity"], epoch["train_perplexity"]);
    assert_eq!(stop["valid_perplexity"], epoch["valid_perplexity"]);
    assert!(stop["train_perplexity"].as_f64().unwrap() > 1.0);

    // Resumed at that very point, it has trained nothing: validation measured, no train
    // perplexity, and still no NaN.
    let o = bin()
        .arg("train")
        .arg("--data")
        .arg(tiny_data())
        .arg("--run-dir")
        .arg(&run_dir)
        .args(["--no-progress", "--max-steps", "20", "--resume"])
        .arg(run_dir.join("last.safetensors"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("NaN"), "{err}");
    let stop = records(&run_dir, "stop");
    assert_eq!(stop.len(), 2, "{stop:?}");
    assert!(stop[1]["train_perplexity"].is_null());
    let valid = stop[1]["valid_perplexity"].as_f64().unwrap();
    let want = epoch["valid_perplexity"].as_f64().unwrap();
    assert!((valid - want).abs() <= 1e-9 * want, "{valid} vs {want}");
}

#[test]
fn a_short_training_run_on_the_test_backend() {
    // `LSTM_GPU_TEST_BACKEND` (CI runs this file on `gl` too): a tiny model trains two
    // epochs through the whole CLI on that backend, the loss falls, and a checkpoint evaluates.
    let backend = std::env::var("LSTM_GPU_TEST_BACKEND").unwrap_or_else(|_| "auto".into());
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let o = bin()
        .args(["train", "--backend", &backend, "--data"])
        .arg(tiny_data())
        .arg("--run-dir")
        .arg(&run_dir)
        .args([
            "--vocab-size",
            "60",
            "--embedding-size",
            "8",
            "--hidden",
            "8,6",
        ])
        .args(["--batch-size", "2", "--num-steps", "5", "--max-epoch", "2"])
        .args(["--learning-rate", "0.5", "--no-progress"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    if backend != "auto" {
        assert!(
            err.to_lowercase().contains(&format!("({backend}, ")),
            "not on {backend}: {err}"
        );
    }
    let epochs = records(&run_dir, "epoch");
    assert_eq!(epochs.len(), 2);
    let train: Vec<f64> = epochs
        .iter()
        .map(|e| e["train_perplexity"].as_f64().unwrap())
        .collect();
    assert!(train[1] < train[0], "{train:?}");
    assert_eq!(records(&run_dir, "test").len(), 1);
    let o = bin()
        .args(["eval", "--backend", &backend, "--checkpoint"])
        .arg(run_dir.join("last.safetensors"))
        .arg("--data")
        .arg(tiny_data())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("valid perplexity"));
}

/// `train --resume` with flags or a corpus that contradict the checkpoint: the checkpoint's
/// header says its shapes, tokens and vocabulary, so each contradiction is the one line on
/// stderr, before any adapter is opened (no adapter or tuning line before it), exit 2 for
/// flags and 1 for a corpus the vocabulary cannot read.
#[test]
fn a_resume_that_contradicts_its_checkpoint_stands_alone() {
    let dir = tempfile::tempdir().unwrap();
    // A corpus without <unk>, so that a word outside its vocabulary cannot be read as one.
    let small = dir.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let text = " the market rose \n the market fell \n the company rose \n".repeat(20);
    for split in ["train", "valid", "test"] {
        std::fs::write(small.join(format!("ptb.{split}.txt")), &text).unwrap();
    }
    let run_dir = dir.path().join("run");
    let o = bin()
        .arg("train")
        .arg("--data")
        .arg(&small)
        .arg("--run-dir")
        .arg(&run_dir)
        .args(["--no-progress", "--max-steps", "1", "--no-eval-at-stop"])
        .args(["--embedding-size", "8", "--hidden", "8,6"])
        .args(["--batch-size", "2", "--num-steps", "5"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ck = run_dir.join("last.safetensors");
    let resume = |data: &Path, args: &[&str]| {
        bin()
            .arg("train")
            .arg("--data")
            .arg(data)
            .arg("--run-dir")
            .arg(&run_dir)
            .args(["--no-progress", "--max-steps", "2", "--resume"])
            .arg(&ck)
            .args(args)
            .output()
            .unwrap()
    };
    for (args, needle) in [
        (
            &["--hidden", "64,64"][..],
            "--hidden [64, 64] (checkpoint: [8, 6])",
        ),
        (&["--embedding-size", "16"][..], "--embedding-size 16"),
        (&["--batch-size", "3"][..], "--batch-size 3"),
        (&["--num-steps", "7"][..], "--num-steps 7"),
        (&["--vocab-size", "3"][..], "--vocab-size 3"),
        (&["--tokens", "chars"][..], "--tokens chars"),
    ] {
        let o = resume(&small, args);
        assert_only_the_error(&o, 2, needle);
        assert_only_the_error(&o, 2, "last.safetensors");
    }
    // The tiny corpus has words the checkpoint's vocabulary does not: the file, the line
    // and the word, and that it is not the text the model was trained on.
    let o = resume(&tiny_data(), &[]);
    assert_only_the_error(&o, 2, "ptb.train.txt:1");
    assert_only_the_error(&o, 2, "is not the text");
    // What agrees still resumes.
    let o = resume(&small, &["--hidden", "8,6", "--no-eval-at-stop"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
