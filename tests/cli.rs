//! The `lstm-gpu` program as users run it: resume exactness, interruption, bad input.
//! Training runs use the tiny fixture corpus in `data/tiny` and a tiny model.

use lstm_gpu::model::checkpoint::Checkpoint;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lstm-gpu"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env("RUST_LOG", "warn");
    c
}

fn tiny_data() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/tiny"))
}

fn ptb_dir() -> PathBuf {
    let dir = std::env::var("LSTM_GPU_PTB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/ptb"))
        });
    assert!(
        dir.join("ptb.train.txt").is_file(),
        "PTB corpus not found in {} (set LSTM_GPU_PTB_DIR)",
        dir.display()
    );
    dir
}

/// A tiny model on the tiny corpus: 19 steps per epoch, dropout on, so that resuming must
/// also restore the dropout counters.
fn tiny_train(run_dir: &Path) -> Command {
    tiny_train_epochs(run_dir, "3")
}

fn tiny_train_epochs(run_dir: &Path, epochs: &str) -> Command {
    let mut c = bin();
    c.arg("train")
        .arg("--data")
        .arg(tiny_data())
        .arg("--run-dir")
        .arg(run_dir);
    c.args([
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
    ]);
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

#[test]
fn resume_continues_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    // 24 steps cross the end of epoch 1 (19 steps).
    let o = run(tiny_train(&a).args(["--max-steps", "24"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(tiny_train(&b).args(["--max-steps", "11"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(tiny_train(&b)
        .args(["--max-steps", "24", "--resume"])
        .arg(b.join("last.safetensors")));
    assert!(o.status.success(), "{}", stderr(&o));
    let (ca, cb) = (
        params_of(&a.join("last.safetensors")),
        params_of(&b.join("last.safetensors")),
    );
    assert_eq!(ca.position.global_step, 24);
    assert_eq!(ca.params, cb.params, "parameters differ after resume");
    assert_eq!(ca.state, cb.state);
    assert!(a.join("epoch-1.safetensors").is_file());
    let metrics = std::fs::read_to_string(a.join("metrics.jsonl")).unwrap();
    assert!(
        metrics.lines().any(|l| l.contains("\"kind\":\"epoch\"")),
        "{metrics}"
    );
}

#[test]
fn sigint_saves_a_checkpoint_and_resume_matches() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    // Long enough that the signal always lands during training.
    let child = tiny_train_epochs(&b, "10000")
        .args(["--max-steps", "100000"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = b.join("metrics.jsonl");
    let t0 = Instant::now();
    while std::fs::read_to_string(&metrics).map_or(true, |m| m.lines().count() < 3) {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "training did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc_kill(child.id() as i32, 2) };
    let o = child.wait_with_output().unwrap();
    assert_one_line_error(&o, 130, "resume with");
    let last = b.join("last.safetensors");
    let stopped = params_of(&last).position.global_step;
    assert!(stopped >= 3, "stopped at {stopped}");
    let target = (stopped + 7).to_string();
    let o = run(tiny_train_epochs(&b, "10000")
        .args(["--max-steps", &target, "--resume"])
        .arg(&last));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(tiny_train_epochs(&a, "10000").args(["--max-steps", &target]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        params_of(&a.join("last.safetensors")).params,
        params_of(&last).params
    );
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn sigkill_at_random_moments_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let o = run(tiny_train(&a).args(["--max-steps", "45"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let last = b.join("last.safetensors");
    let mut rng = lstm_gpu::rng::SplitMix64::new(42);
    for round in 0..4 {
        let mut c = tiny_train(&b);
        c.args(["--max-steps", "45", "--checkpoint-every", "1"]);
        if last.is_file() {
            c.arg("--resume").arg(&last);
        }
        let mut child = c
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300 + rng.next_u64() % 900));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if last.is_file() {
            // Whatever moment the kill hit, the newest checkpoint is whole.
            let ck = params_of(&last);
            assert!(ck.position.global_step <= 45, "round {round}");
        }
        let leftovers: Vec<_> = std::fs::read_dir(&b)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            leftovers
                .iter()
                .all(|n| !n.starts_with("last.safetensors.")),
            "{leftovers:?}"
        );
        if status.success() {
            break;
        }
    }
    let mut c = tiny_train(&b);
    c.args(["--max-steps", "45"]);
    if last.is_file() {
        c.arg("--resume").arg(&last);
    }
    let o = run(&mut c);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        params_of(&a.join("last.safetensors")).params,
        params_of(&last).params
    );
}

#[test]
fn a_diverging_run_stops_with_a_clear_message_and_keeps_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(tiny_train(dir.path()).args([
        "--max-steps",
        "30",
        "--learning-rate",
        "1e30",
        "--checkpoint-every",
        "1",
    ]));
    assert_one_line_error(&o, 1, "step");
    let ck = params_of(&dir.path().join("last.safetensors"));
    assert!(ck
        .params
        .tensors()
        .iter()
        .all(|(_, t)| t.iter().all(|v| v.is_finite())));
}

#[test]
fn bad_flags_are_one_line_usage_errors() {
    let data = tiny_data();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["train", "--keep-prob", "0"], "--keep-prob"),
        (vec!["train", "--keep-prob", "1.5"], "--keep-prob"),
        (vec!["train", "--hidden", "16,0"], "--hidden"),
        (vec!["train", "--learning-rate", "-1"], "--learning-rate"),
        (vec!["train", "--batch-size", "0"], "--batch-size"),
        (vec!["train", "--batch-size", "500"], "--batch-size"),
        (vec!["train", "--adapter", "discrete"], "llvmpipe"),
    ];
    for (args, needle) in cases {
        let o = run(bin().args(&args).arg("--data").arg(&data));
        assert_one_line_error(&o, 2, needle);
    }
}

#[test]
fn bad_checkpoints_and_outputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"this is not a checkpoint").unwrap();
    let missing = dir.path().join("missing.safetensors");
    let o = run(bin()
        .args(["eval", "--checkpoint"])
        .arg(&missing)
        .arg("--data")
        .arg(tiny_data()));
    assert_one_line_error(&o, 1, "missing.safetensors");
    let o = run(bin()
        .args(["predict", "--checkpoint"])
        .arg(&junk)
        .arg("the"));
    assert_one_line_error(&o, 1, "safetensors");

    // A real checkpoint for the flag checks.
    let run_dir = dir.path().join("run");
    let o = run(tiny_train(&run_dir).args(["--max-steps", "3", "--no-eval-at-stop"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let ck = run_dir.join("last.safetensors");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["predict".into(), "--top-k".into(), "0".into(), "the".into()],
            "--top-k",
        ),
        (vec!["predict".into(), "   ".into()], "empty"),
        (
            vec![
                "generate".into(),
                "--prompt".into(),
                "the".into(),
                "--temperature".into(),
                "0".into(),
            ],
            "--temperature",
        ),
        (
            vec!["generate".into(), "--prompt".into(), "".into()],
            "empty",
        ),
        (
            vec![
                "embeddings".into(),
                "neighbors".into(),
                "the".into(),
                "-k".into(),
                "0".into(),
            ],
            "at least 1",
        ),
    ];
    for (args, needle) in cases {
        let (cmd, rest) = args.split_first().unwrap();
        let mut c = bin();
        c.arg(cmd).arg("--checkpoint").arg(&ck).args(rest);
        assert_one_line_error(&run(&mut c), 2, needle);
    }
    let o = run(bin()
        .arg("plot")
        .arg(&run_dir)
        .arg("--out")
        .arg(dir.path().join("nowhere/plot.svg")));
    assert_one_line_error(&o, 2, "nowhere");
    // Flags that contradict the checkpoint.
    let o = run(tiny_train(&run_dir)
        .args(["--hidden", "8,8", "--resume"])
        .arg(&ck));
    assert_one_line_error(&o, 2, "--hidden");
}

#[test]
fn trained_checkpoint_serves_eval_predict_and_generate() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(tiny_train(dir.path()).args(["--max-steps", "12"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let ck = dir.path().join("last.safetensors");
    let o = run(bin()
        .args(["eval", "--split", "test", "--checkpoint"])
        .arg(&ck)
        .arg("--data")
        .arg(tiny_data()));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("test perplexity"),
        "{out} {}",
        stderr(&o)
    );

    let o = run(bin()
        .args(["predict", "--json", "--top-k", "5", "--checkpoint"])
        .arg(&ck)
        .arg("The stock market"));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let next = v["next"].as_array().unwrap();
    assert_eq!(next.len(), 5);
    let probs: Vec<f64> = next
        .iter()
        .map(|w| w["probability"].as_f64().unwrap())
        .collect();
    assert!(
        probs.windows(2).all(|p| p[0] >= p[1]) && probs.iter().sum::<f64>() <= 1.0 + 1e-6,
        "{probs:?}"
    );

    let gen = |seed: &str| {
        let o = run(bin()
            .args([
                "generate",
                "--prompt",
                "the",
                "--words",
                "15",
                "--seed",
                seed,
                "--checkpoint",
            ])
            .arg(&ck));
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let (g1, g2, g3) = (gen("3"), gen("3"), gen("4"));
    assert_eq!(g1, g2, "same seed, same text");
    assert_ne!(g1, g3);
    assert!(g1.split_whitespace().count() >= 5, "{g1}");
}

#[test]
fn data_info_and_adapters_report_what_is_there() {
    let o = run(bin().args(["data", "info", "--data"]).arg(ptb_dir()));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    for figure in ["10000", "929589", "73760", "82430", "774"] {
        assert!(
            out.replace(',', "").contains(figure),
            "{figure} missing in:\n{out}"
        );
    }
    let o = run(bin().arg("adapters"));
    let out = String::from_utf8_lossy(&o.stdout);
    let listed = ["Vulkan", "Metal", "Dx12", "Gl"]
        .iter()
        .any(|b| out.contains(b));
    assert!(o.status.success() && listed, "{out}");
}

#[test]
fn profile_reports_one_submit_and_no_readback_per_step() {
    let mut c = bin();
    c.args(["profile", "--json", "--steps", "2", "--data"])
        .arg(tiny_data());
    c.args([
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
    ]);
    let o = run(&mut c);
    assert!(o.status.success(), "{}", stderr(&o));
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["submits_per_step"].as_f64(), Some(1.0), "{p}");
    assert_eq!(p["readbacks_per_step"].as_f64(), Some(0.0), "{p}");
    assert!(p["dispatches_per_step"].as_u64().unwrap() > 20);
    assert!(p["words_per_second"].as_f64().unwrap() > 0.0);
    assert!(p["matmul_gflops"].as_f64().unwrap() > 0.0);
    assert!(p["percent_of_matmul_limit"].as_f64().unwrap() > 0.0);
    let kernels = p["kernels"].as_array().unwrap();
    for name in [
        "lstm_cell_forward",
        "lstm_cell_backward",
        "softmax_xent_forward",
        "sgd_dense",
        "clip_scale",
    ] {
        assert!(
            kernels.iter().any(|k| k["kernel"] == name),
            "{name} missing from the profile"
        );
    }
}
