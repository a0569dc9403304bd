//! Runs that go wrong: a diverging loss, non-finite steps (`--on-nan`), a full disk, a lost
//! device or its memory: one line, a non-zero exit, and the last checkpoint kept.

use super::*;

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

// ---- Non-finite steps: --on-nan stop|skip -------------------------------------------------

fn all_finite(ck: &Checkpoint) -> bool {
    ck.params
        .tensors()
        .iter()
        .all(|(_, t)| t.iter().all(|v| v.is_finite()))
}

/// The files of a folder whose names end with `.tmp` (half-written checkpoints).
fn temporary_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn on_nan_skip_skips_a_poisoned_step_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (clean, skip) = (dir.path().join("clean"), dir.path().join("skip"));
    // Six clean steps: the parameters a skipped seventh step must leave alone.
    let o = run(tiny_train(&clean).args(["--max-steps", "6", "--no-eval-at-stop"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(tiny_train(&skip)
        .env("LSTM_GPU_INJECT_FAULT", "nan-state:7")
        .args(["--on-nan", "skip", "--max-steps", "7", "--no-eval-at-stop"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        params_of(&clean.join("last.safetensors")).params,
        params_of(&skip.join("last.safetensors")).params,
        "the skipped step 7 changed the parameters"
    );
    let err = stderr(&o);
    assert!(err.contains("at step 7"), "no warning naming step 7: {err}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Skipped steps: 1 "),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let ck = params_of(&skip.join("last.safetensors"));
    assert_eq!(ck.position.skipped_steps, 1);
    assert_eq!(ck.position.epoch_skipped, 1);

    // On through the end of epoch 1 and into epoch 2: the NaN state was reset, so no other
    // step is skipped and every perplexity is finite.
    let o = run(tiny_train(&skip)
        .env("LSTM_GPU_INJECT_FAULT", "nan-state:7")
        .args(["--on-nan", "skip", "--max-steps", "25", "--resume"])
        .arg(skip.join("last.safetensors")));
    assert!(o.status.success(), "{}", stderr(&o));
    let train = metrics_of(&skip, "train");
    assert_eq!(train.len(), 25, "one record per step (--log-every 1)");
    for r in &train {
        let step = r["global_step"].as_u64().unwrap();
        let skipped = r["skipped_steps"].as_u64().unwrap();
        assert_eq!(skipped, u64::from(step == 7), "{r}");
        assert_eq!(
            r["skipped_steps_total"].as_u64().unwrap(),
            u64::from(step >= 7),
            "{r}"
        );
        if step != 7 {
            assert!(r["perplexity"].as_f64().is_some_and(f64::is_finite), "{r}");
        }
    }
    let epochs = metrics_of(&skip, "epoch");
    assert_eq!(epochs.len(), 1);
    assert_eq!(epochs[0]["skipped_steps"].as_u64(), Some(1));
    assert!(epochs[0]["train_perplexity"]
        .as_f64()
        .is_some_and(f64::is_finite));
    let ck = params_of(&skip.join("last.safetensors"));
    assert!(all_finite(&ck));
    assert_eq!(
        (ck.position.global_step, ck.position.skipped_steps),
        (25, 1)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("(1 steps skipped)"));
}

#[test]
fn on_nan_stop_names_the_step_and_keeps_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(tiny_train(dir.path())
        .env("LSTM_GPU_INJECT_FAULT", "nan-state:7")
        .args(["--max-steps", "12", "--checkpoint-every", "5"]));
    assert_one_line_error(&o, 1, "at step 7");
    assert_one_line_error(&o, 1, "last.safetensors is kept");
    let ck = params_of(&dir.path().join("last.safetensors"));
    assert_eq!(ck.position.global_step, 5);
    assert!(all_finite(&ck));
    assert!(!dir.path().join("step-10.safetensors").exists());
}

#[test]
fn on_nan_skip_gives_up_on_a_run_that_does_not_recover() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(tiny_train(dir.path()).args([
        "--on-nan",
        "skip",
        "--max-skips-in-a-row",
        "3",
        "--learning-rate",
        "1e30",
        "--max-steps",
        "30",
        "--checkpoint-every",
        "1",
    ]));
    assert_one_line_error(&o, 1, "--max-skips-in-a-row 3");
    let err = stderr(&o);
    assert!(err.contains("every step since the last report"), "{err}");
    let ck = params_of(&dir.path().join("last.safetensors"));
    assert!(all_finite(&ck));
    // Every step after the first was skipped; the run stopped well before --max-steps.
    let train = metrics_of(dir.path(), "train");
    assert!(train.len() < 10, "{}", train.len());
    let last = train.last().unwrap();
    assert_eq!(
        last["skipped_steps_total"].as_u64().unwrap(),
        last["global_step"].as_u64().unwrap() - 1,
        "{last}"
    );
}

// ---- Faults: full disk, lost device, out of memory ----------------------------------------

/// Run `lstm-gpu ARGS` with its run folder `run_dir` copied onto a tmpfs of `kib` KiB (a
/// disk that fills up for real, with ENOSPC), in a mount namespace of its own, so that no
/// mount rights outside it are needed where user namespaces are allowed. Afterwards the
/// folder is copied back to `out/run`. `{RUN}` in ARGS stands for the folder on the tmpfs.
/// Returns None when no way to mount a tmpfs works here.
#[cfg(target_os = "linux")]
fn run_on_a_small_disk(run_dir: &Path, kib: u64, args: &[String], out: &Path) -> Option<Output> {
    // A file size limit (RLIMIT_FSIZE) would be simpler, but Mesa's lavapipe backs its
    // memory with memfd files and dies of SIGBUS under one.
    const SCRIPT: &str = r#"
        mnt="$1"; src="$2"; out="$3"; kib="$4"; shift 4
        mkdir -p "$mnt" && mount -t tmpfs -o "size=${kib}k" tmpfs "$mnt" || exit 97
        cp -a "$src"/. "$mnt"/ || exit 98
        "$@" >"$out/stdout" 2>"$out/stderr"
        echo $? >"$out/rc"
        mkdir -p "$out/run" && cp -a "$mnt"/. "$out/run"/
    "#;
    let mnt = out.join("mnt");
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("{RUN}", &mnt.to_string_lossy()))
        .collect();
    for unshare in [&["--mount", "--map-root-user"][..], &["--mount"][..]] {
        let _ = std::fs::remove_file(out.join("rc"));
        let status = Command::new("unshare")
            .args(unshare)
            .args(["sh", "-c", SCRIPT, "sh"])
            .arg(&mnt)
            .arg(run_dir)
            .arg(out)
            .arg(kib.to_string())
            .arg(env!("CARGO_BIN_EXE_lstm-gpu"))
            .args(&args)
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if status.is_err() {
            break; // no unshare
        }
        if let Ok(rc) = std::fs::read_to_string(out.join("rc")) {
            let code: i32 = rc.trim().parse().unwrap();
            use std::os::unix::process::ExitStatusExt;
            return Some(Output {
                // A shell reports death by signal N as 128 + N.
                status: if code > 128 {
                    std::process::ExitStatus::from_raw(code - 128)
                } else {
                    std::process::ExitStatus::from_raw(code << 8)
                },
                stdout: std::fs::read(out.join("stdout")).unwrap(),
                stderr: std::fs::read(out.join("stderr")).unwrap(),
            });
        }
    }
    None
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_while_checkpointing_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let o = run(tiny_train(&run_dir).args(["--max-steps", "4", "--no-eval-at-stop"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let last = run_dir.join("last.safetensors");
    let before = std::fs::read(&last).unwrap();
    // Room for last.safetensors and metrics.jsonl, not for another checkpoint (tmpfs counts
    // whole 4 KiB pages).
    let pages = |bytes: u64| bytes.div_ceil(4096);
    let metrics = std::fs::metadata(run_dir.join("metrics.jsonl"))
        .unwrap()
        .len();
    assert!(metrics < 2048, "{metrics}");
    let kib = 4 * (pages(before.len() as u64) + 1);
    let args: Vec<String> = tiny_train(Path::new("{RUN}"))
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .chain(
            [
                "--max-steps",
                "10",
                "--checkpoint-every",
                "6",
                "--resume",
                "{RUN}/last.safetensors",
            ]
            .map(String::from),
        )
        .collect();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let Some(o) = run_on_a_small_disk(&run_dir, kib, &args, &out) else {
        eprintln!("skipping: no tmpfs can be mounted here (neither `unshare --mount --map-root-user` nor `unshare --mount` works); a_full_disk_for_the_metrics_is_one_line still fills a disk");
        return;
    };
    assert_one_line_error(&o, 1, "could not write checkpoint");
    assert_one_line_error(&o, 1, "step-6.safetensors");
    assert_one_line_error(&o, 1, "the disk is full");
    assert_one_line_error(&o, 1, "training stopped after step 6");
    assert_one_line_error(&o, 1, "last.safetensors is kept");
    let full = out.join("run");
    assert_eq!(
        std::fs::read(full.join("last.safetensors")).unwrap(),
        before,
        "last.safetensors changed"
    );
    assert_eq!(
        params_of(&full.join("last.safetensors"))
            .position
            .global_step,
        4
    );
    assert!(!full.join("step-6.safetensors").exists());
    assert_eq!(temporary_files(&full), Vec::<String>::new());
    // Steps 5 and 6 were reported before the disk filled up.
    assert!(metrics_of(&full, "train")
        .iter()
        .any(|r| r["global_step"] == 6));
    // And it resumes from there once there is room.
    let last = full.join("last.safetensors");
    let o = run(tiny_train(&full)
        .args(["--max-steps", "10", "--no-eval-at-stop", "--resume"])
        .arg(&last));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(params_of(&last).position.global_step, 10);
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_for_the_metrics_is_one_line() {
    // /dev/full answers every write with ENOSPC, a real full disk.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.path().join("metrics.jsonl")).unwrap();
    let o = run(tiny_train(dir.path()).args(["--max-steps", "3"]));
    assert_one_line_error(&o, 1, "metrics.jsonl");
    assert_one_line_error(&o, 1, "the disk is full");
    assert_one_line_error(&o, 1, "training stopped after step 1");
    assert_eq!(temporary_files(dir.path()), Vec::<String>::new());
}

/// A fault injected after step 5 of a run that saves every 3 steps: one line, exit 1, the
/// step-3 checkpoint kept whole, and the run resumes from it to the end.
fn fault_keeps_the_checkpoint(fault: &str, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let o = run(tiny_train(dir.path())
        .env("LSTM_GPU_INJECT_FAULT", format!("{fault}:5"))
        .args(["--max-steps", "12", "--checkpoint-every", "3"]));
    assert_one_line_error(&o, 1, needle);
    assert_one_line_error(&o, 1, "training stopped after step 5");
    assert_one_line_error(&o, 1, "last.safetensors is kept");
    let last = dir.path().join("last.safetensors");
    assert_eq!(params_of(&last).position.global_step, 3);
    assert!(!dir.path().join("step-6.safetensors").exists());
    assert_eq!(temporary_files(dir.path()), Vec::<String>::new());
    let o = run(tiny_train(dir.path())
        .args(["--max-steps", "12", "--no-eval-at-stop", "--resume"])
        .arg(&last));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(params_of(&last).position.global_step, 12);
}

#[test]
fn a_lost_device_is_one_line_and_keeps_the_checkpoint() {
    fault_keeps_the_checkpoint("device-lost", "the GPU device was lost");
}

#[test]
fn gpu_out_of_memory_is_one_line_and_keeps_the_checkpoint() {
    fault_keeps_the_checkpoint("out-of-memory", "the GPU ran out of memory");
}

#[test]
fn a_bad_fault_hook_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(tiny_train(dir.path())
        .env("LSTM_GPU_INJECT_FAULT", "meltdown:3")
        .args(["--max-steps", "3"]));
    assert_one_line_error(&o, 2, "LSTM_GPU_INJECT_FAULT");
}
