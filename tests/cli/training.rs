//! Training runs from the command line: the schedules, the checkpoints a run keeps, resume
//! (bit for bit), interruption (SIGINT, SIGKILL), tied weights and mixed precision.

use super::*;

/// `--lr-schedule plateau`: the rate is kept after an epoch that lowers the best validation
/// perplexity and multiplied by `--decay` after one that does not; a run stopped mid-way and
/// resumed goes on at the rate it had come to, bit for bit the uninterrupted run.
#[test]
fn the_plateau_schedule_anneals_after_an_epoch_without_improvement() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    // A rate this high makes some epochs worse than the best before them.
    let flags = [
        "--learning-rate",
        "3",
        "--lr-schedule",
        "plateau",
        "--decay",
        "0.25",
    ];
    let o = run(tiny_train_epochs(&a, "5")
        .args(flags)
        .env("RUST_LOG", "info"));
    assert!(o.status.success(), "{}", stderr(&o));
    let epochs = metrics_of(&a, "epoch");
    assert_eq!(epochs.len(), 5);
    let (mut best, mut rate, mut decays) = (f64::INFINITY, 3.0f32, 0);
    for e in &epochs {
        assert_eq!(e["learning_rate"].as_f64(), Some(rate as f64), "{epochs:?}");
        let valid = e["valid_perplexity"].as_f64().unwrap();
        if valid < best {
            best = valid;
        } else {
            rate = (rate as f64 * 0.25) as f32;
            decays += 1;
        }
    }
    assert!(
        decays > 0,
        "the test's premise: an epoch set no new best: {epochs:?}"
    );
    assert!(
        stderr(&o).contains("is not below the run's best: the learning rate goes from 3 to 0.75"),
        "{}",
        stderr(&o)
    );
    let info = run(bin().arg("info").arg(a.join("last.safetensors")));
    let said = String::from_utf8_lossy(&info.stdout);
    assert!(
        said.contains("x0.25 after an epoch without a lower valid perplexity"),
        "{said}"
    );

    // Stopped in epoch 3 (20 steps an epoch) and resumed: the same rates and weights.
    let o = run(tiny_train_epochs(&b, "5")
        .args(flags)
        .args(["--max-steps", "50"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(tiny_train_epochs(&b, "5")
        .arg("--resume")
        .arg(b.join("last.safetensors")));
    assert!(o.status.success(), "{}", stderr(&o));
    let rates = |run: &Path| -> Vec<serde_json::Value> {
        metrics_of(run, "epoch")
            .iter()
            .map(|e| e["learning_rate"].clone())
            .collect()
    };
    assert_eq!(rates(&b), rates(&a));
    assert_trained_alike(dir.path(), "a", "b");
}

#[test]
fn resume_continues_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    // 24 steps cross the end of epoch 1 (20 steps).
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

/// The names of the files in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn train_keeps_the_best_epoch_and_only_the_newest_checkpoints_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let [all, few, half, rest] = ["all", "few", "half", "rest"].map(|d| dir.path().join(d));
    // A rate this high makes the tiny model worse after its first epoch on the validation
    // text, so that the best epoch is not the last one.
    let train = |run_dir: &Path, extra: &[&str]| {
        let o = run(tiny_train_epochs(run_dir, "4")
            .args(["--learning-rate", "3", "--checkpoint-every", "7"])
            .args(extra));
        assert!(o.status.success(), "{}", stderr(&o));
        o
    };
    let o = train(&all, &[]);
    // The epochs' validation perplexities, and which the run called its best.
    let metrics = std::fs::read_to_string(all.join("metrics.jsonl")).unwrap();
    let epochs: Vec<(u64, f64, bool)> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "epoch")
        .map(|r| {
            let valid = r["valid_perplexity"].as_f64().unwrap();
            (
                r["epoch"].as_u64().unwrap(),
                valid,
                r["best"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(epochs.len(), 4, "{metrics}");
    let mut lowest = f64::INFINITY;
    for &(epoch, valid, best) in &epochs {
        assert_eq!(best, valid < lowest, "epoch {epoch}: {epochs:?}");
        lowest = lowest.min(valid);
    }
    let &(best_epoch, best_valid, _) = epochs.iter().rev().find(|e| e.2).unwrap();
    assert!(
        best_epoch < 4,
        "the test's premise: a later epoch is worse: {epochs:?}"
    );
    let best = params_of(&all.join("best.safetensors"));
    assert_eq!(
        best.params,
        params_of(&all.join(format!("epoch-{best_epoch}.safetensors"))).params
    );
    let recorded = best.position.best.unwrap();
    assert_eq!(
        (recorded.epoch as u64, recorded.valid_perplexity),
        (best_epoch, best_valid)
    );
    assert_eq!(
        params_of(&all.join("last.safetensors")).position.best,
        Some(recorded)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!(
            "best: {} (epoch {best_epoch}, ",
            all.join("best.safetensors").display()
        )),
        "{out}"
    );
    let steps: Vec<String> = files_in(&all)
        .into_iter()
        .filter(|f| f.starts_with("step-"))
        .collect();
    assert!(steps.len() > 2, "{steps:?}");

    // The same run keeping the newest two: the same best, only the newest files.
    train(&few, &["--keep-checkpoints", "2"]);
    let mut newest_steps: Vec<(u64, String)> = steps
        .iter()
        .map(|f| (f[5..f.len() - 12].parse().unwrap(), f.clone()))
        .collect();
    newest_steps.sort();
    let mut expected: Vec<String> = [
        "best.safetensors",
        "epoch-3.safetensors",
        "epoch-4.safetensors",
        "last.safetensors",
        "metrics.jsonl",
    ]
    .map(String::from)
    .to_vec();
    expected.extend(newest_steps.iter().rev().take(2).map(|(_, f)| f.clone()));
    expected.sort();
    let (events, files): (Vec<String>, Vec<String>) = files_in(&few)
        .into_iter()
        .partition(|f| f.starts_with("events.out.tfevents."));
    assert_eq!(files, expected);
    assert_eq!(
        events.len(),
        1,
        "the TensorBoard events of the run: {events:?}"
    );
    assert_eq!(params_of(&few.join("best.safetensors")).params, best.params);

    // Stopped after epoch 1 and resumed into another folder: the best epoch so far comes
    // along, and the run ends with the same best as the uninterrupted one.
    train(&half, &["--max-steps", "30"]);
    let o = run(tiny_train_epochs(&rest, "4")
        .args([
            "--learning-rate",
            "3",
            "--checkpoint-every",
            "7",
            "--resume",
        ])
        .arg(half.join("last.safetensors"))
        .env("RUST_LOG", "info"));
    assert!(o.status.success(), "{}", stderr(&o));
    if best_epoch == 1 {
        assert!(stderr(&o).contains("copied to"), "{}", stderr(&o));
    }
    assert_eq!(
        params_of(&rest.join("best.safetensors")).params,
        best.params
    );

    // --patience 2: the run ends after the first epoch two epochs past its best, with the
    // parameters the uninterrupted run had there, and still runs its test pass.
    let mut best_so_far = (0, f64::INFINITY);
    let stop = epochs.iter().find_map(|&(epoch, valid, _)| {
        if valid < best_so_far.1 {
            best_so_far = (epoch, valid);
        }
        (epoch - best_so_far.0 >= 2 && epoch < 4).then_some(epoch)
    });
    let stop = stop.expect("the test's premise: two epochs without a better one before the last");
    let early = dir.path().join("early");
    let o = train(&early, &["--patience", "2"]);
    let records: Vec<serde_json::Value> = std::fs::read_to_string(early.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds = |k: &str| records.iter().filter(|r| r["kind"] == k).count();
    assert_eq!(kinds("epoch") as u64, stop);
    assert_eq!((kinds("early_stop"), kinds("test")), (1, 1));
    let stopped = records.iter().find(|r| r["kind"] == "early_stop").unwrap();
    assert_eq!(
        stopped["best_epoch"].as_u64(),
        Some(best_so_far.0),
        "{stopped}"
    );
    assert_eq!(
        params_of(&early.join("last.safetensors")).params,
        params_of(&all.join(format!("epoch-{stop}.safetensors"))).params
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let resume = out
        .lines()
        .find(|l| l.starts_with("train on anyway with: "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        out.contains(&format!("stopped early after epoch {stop} of 4")),
        "{out}"
    );
    assert!(
        !resume.contains("--patience") && resume.contains("--resume"),
        "{resume}"
    );
    let o = run(bin().arg("info").arg(&early));
    let told = String::from_utf8_lossy(&o.stdout);
    assert!(
        told.contains(&format!("stopped early after epoch {stop} (--patience 2)")),
        "{told}"
    );
    let o = run(tiny_train(&dir.path().join("none")).args(["--patience", "0"]));
    assert_one_line_error(&o, 2, "--patience must be at least 1");

    // A run folder where a checkpoint is asked for names the checkpoints in it.
    let o = run(bin().args(["eval", "--checkpoint"]).arg(&few));
    assert_one_line_error(&o, 2, "is a run folder; give one of its checkpoints");
    assert!(
        stderr(&o).contains("best.safetensors (the epoch with the lowest validation perplexity)")
    );
    let o = run(tiny_train(&dir.path().join("none")).args(["--keep-checkpoints", "0"]));
    assert_one_line_error(&o, 2, "--keep-checkpoints must be at least 1");
}

/// A run whose standard output nobody reads any more (a closed pipe) trains to its end and
/// keeps every checkpoint: its epoch lines are dropped, not a panic. The same where its
/// log and standard error go into that pipe too (`2>&1 | head`).
#[test]
fn training_goes_on_when_its_output_reader_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    for (name, redirect) in [("stdout", ""), ("both", "2>&1")] {
        let run_dir = dir.path().join(name);
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(format!(
                "{} train --data {} --run-dir {} {} --max-epoch 2 --no-progress {redirect} | true; echo ${{PIPESTATUS[0]}}",
                env!("CARGO_BIN_EXE_lstm-gpu"),
                tiny_data().display(),
                run_dir.display(),
                TINY_MODEL.join(" ")
            ))
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .env("RUST_LOG", "info");
        no_tuning(&mut c);
        let o = c.output().unwrap();
        let err = stderr(&o);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "0",
            "{name}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        for file in [
            "epoch-1.safetensors",
            "epoch-2.safetensors",
            "last.safetensors",
            "best.safetensors",
        ] {
            assert!(run_dir.join(file).is_file(), "{name}, {file}: {err}");
        }
    }
}

/// `--resume RUN_DIR` continues that run from its last checkpoint, in that folder.
#[test]
fn resume_of_a_run_folder_goes_on_where_it_stopped_and_there() {
    let dir = tempfile::tempdir().unwrap();
    let (a, c) = (dir.path().join("a"), dir.path().join("c"));
    let o = run(tiny_train(&a).args(["--max-steps", "24"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(tiny_train(&c).args(["--max-steps", "11"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let elsewhere = dir.path().join("cwd");
    std::fs::create_dir(&elsewhere).unwrap();
    // The run's own flags but no --run-dir, from another working folder.
    let o = run(bin()
        .current_dir(&elsewhere)
        .arg("train")
        .arg("--data")
        .arg(tiny_data())
        .args(TINY_MODEL)
        .args([
            "--keep-prob",
            "0.8",
            "--max-epoch",
            "3",
            "--seed",
            "7",
            "--no-progress",
        ])
        .args(["--log-every", "1", "--max-steps", "24", "--resume"])
        .arg(&c));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_trained_alike(dir.path(), "a", "c");
    assert_eq!(
        params_of(&c.join("last.safetensors")).position.global_step,
        24
    );
    assert!(c.join("epoch-1.safetensors").is_file());
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "no new run folder"
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("--run-dir {}", c.display())), "{out}");

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = run(tiny_train(&dir.path().join("d"))
        .arg("--resume")
        .arg(&empty));
    assert_one_line_error(&o, 2, "the folder has no last.safetensors");
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
    // The command it prints repeats the run's own flags: the corpus, the step limit.
    let err = stderr(&o);
    let hint = &err[err.find("resume with: ").expect("a resume command")..];
    assert!(
        hint.contains(&format!("--data {}", tiny_data().display()))
            && hint.contains("--max-steps 100000")
            && hint.matches("--run-dir").count() == 1,
        "{hint}"
    );
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

/// A signal during a step that takes seconds (a slow adapter's, a cold shader cache's
/// first) is answered at once: a line saying it was heard and what the run finishes first,
/// before the run stops after that step with its checkpoint.
#[test]
fn a_signal_during_a_slow_step_is_heard_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    // Step 3 takes 5 s more; a record comes after each step.
    let child = tiny_train_epochs(&run_dir, "1")
        .env("LSTM_GPU_INJECT_FAULT", "slow-step:3")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = interrupt_after(
        child,
        &run_dir,
        |r| r["kind"] == "train" && r["global_step"] == 2,
        Duration::from_millis(300),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{err}");
    let heard = err
        .find("SIGINT received: stopping once the GPU work in flight is done")
        .unwrap_or_else(|| panic!("no notice: {err}"));
    let stopped = err
        .find("interrupted by SIGINT; checkpoint saved to")
        .unwrap_or_else(|| panic!("no stop: {err}"));
    assert!(heard < stopped, "{err}");
    let position = params_of(&run_dir.join("last.safetensors")).position;
    assert_eq!(position.global_step, 3, "{err}");
}

/// The command a run prints at its end, run as printed by a shell, continues the run as if
/// it had not stopped: it names the run's corpus (a folder whose name needs quoting; without
/// it the default corpus folder would be read, here a file that cannot be one) and leaves
/// out the `--max-steps` where it stopped.
#[test]
fn the_printed_resume_command_continues_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("the 'tiny' corpus");
    std::fs::create_dir(&corpus).unwrap();
    for split in ["train", "valid", "test"] {
        let name = format!("ptb.{split}.txt");
        std::fs::copy(tiny_data().join(&name), corpus.join(&name)).unwrap();
    }
    let not_a_folder = dir.path().join("not-a-folder");
    std::fs::write(&not_a_folder, "").unwrap();
    let train = |run_dir: &Path| {
        let mut c = bin();
        c.env("LSTM_GPU_DATA", &not_a_folder)
            .arg("train")
            .arg("--data")
            .arg(&corpus)
            .arg("--run-dir")
            .arg(run_dir)
            .args(TINY_MODEL)
            .args(["--keep-prob", "0.8", "--seed", "7", "--no-progress"])
            .arg("--no-eval-at-stop");
        c
    };
    // The command of `out`'s line `prefix`, run by a shell that finds this build's
    // `lstm-gpu`, with `extra` flags.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_lstm-gpu")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run_printed = |o: &Output, prefix: &str, extra: &str| {
        assert!(o.status.success(), "{}", stderr(o));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let command = out
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in: {out}"))
            .to_string();
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(format!("{command} {extra}"))
            .env("PATH", &path)
            .env("LSTM_GPU_DATA", &not_a_folder)
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .env("RUST_LOG", "warn");
        no_tuning(&mut sh);
        let o = run(&mut sh);
        assert!(o.status.success(), "`{command}`: {}", stderr(&o));
        command
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("run b"));
    let o = run(train(&a).args(["--max-steps", "9"]));
    assert!(o.status.success(), "{}", stderr(&o));
    // Stopped at --max-steps 5: the command goes on without them (here to 9).
    let command = run_printed(
        &run(train(&b).args(["--max-steps", "5"])),
        "resume with: ",
        "--max-steps 9",
    );
    assert!(!command.contains("--max-steps"), "{command}");
    assert_eq!(
        params_of(&b.join("last.safetensors")).position.global_step,
        9
    );
    assert_trained_alike(dir.path(), "a", "run b");
    // A run that trained every epoch: the command trains one more.
    let c = dir.path().join("c");
    let o = run(train(&c).args(["--max-epoch", "1"]));
    let one = params_of(&c.join("last.safetensors")).position;
    let command = run_printed(&o, "train another epoch with: ", "");
    assert!(command.ends_with("--max-epoch 2"), "{command}");
    let two = params_of(&c.join("last.safetensors")).position;
    assert_eq!(
        (one.epoch, two.epoch, two.global_step),
        (1, 2, 2 * one.global_step),
        "{two:?}"
    );
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// The tiny corpus with one split (`ptb.valid.txt` or `ptb.test.txt`) repeated `copies`
/// times: a pass over it takes seconds.
fn corpus_with_a_long(dir: &Path, split: &str, copies: usize) -> PathBuf {
    let names = ["ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"];
    let files = names.map(|name| {
        let text = tiny_file(name);
        if name == split {
            text.repeat(copies)
        } else {
            text
        }
    });
    corpus(dir, files.each_ref().map(|f| Some(f.as_slice())))
}

/// Wait until the run in `run_dir` has written a metrics record that `pred` accepts, then
/// `delay` more, then send it SIGINT, and wait for it to end (at most 30 s after the
/// signal).
fn interrupt_after(
    child: std::process::Child,
    run_dir: &Path,
    pred: impl Fn(&serde_json::Value) -> bool,
    delay: Duration,
) -> Output {
    let t0 = Instant::now();
    while !std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|v| pred(&v))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the run never got there"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(delay);
    unsafe { libc_kill(child.id() as i32, 2) };
    let signalled = Instant::now();
    let pid = child.id() as i32;
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        // Still running 30 s after the signal: end it, so that the test fails on its exit.
        unsafe { libc_kill(pid, 9) };
    });
    let o = child.wait_with_output().unwrap();
    assert!(
        signalled.elapsed() < Duration::from_secs(30),
        "the run went on {:?} after SIGINT: {}",
        signalled.elapsed(),
        stderr(&o)
    );
    drop(watchdog);
    o
}

/// Ctrl-C in the test pass after the last epoch (82,000 batches at batch 1 on PTB: minutes
/// on a slow adapter) stops it between two slices instead of being ignored until it ends:
/// exit 130, the trained model named, and the command that scores it.
#[test]
fn sigint_in_the_test_pass_stops_it_and_says_how_to_score_the_model() {
    let dir = tempfile::tempdir().unwrap();
    // About a minute of test pass at batch 1 on lavapipe, uninterrupted.
    let data = corpus_with_a_long(&dir.path().join("data"), "ptb.test.txt", 3500);
    let run_dir = dir.path().join("run");
    let child = tiny_train_on(&data, &run_dir, "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = interrupt_after(child, &run_dir, |v| v["kind"] == "epoch", Duration::ZERO);
    assert_one_line_error(&o, 130, "during the test pass (batch ");
    let last = run_dir.join("last.safetensors");
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "training had finished and is saved in {}; score it with: lstm-gpu eval --checkpoint {} --split test",
            last.display(),
            last.display()
        )),
        "{err}"
    );
    assert!(metrics_of(&run_dir, "test").is_empty());
    assert_eq!(params_of(&last).position.epoch, 1);
}

/// Ctrl-C in an epoch's validation pass stops it, keeps the epoch's end (its last step
/// trained, its validation not yet run) and the resumed run validates the epoch as an
/// uninterrupted one does, to the bit.
#[test]
fn sigint_in_validation_keeps_the_epochs_end_and_resume_matches() {
    let dir = tempfile::tempdir().unwrap();
    // Several seconds of validation on lavapipe.
    let data = corpus_with_a_long(&dir.path().join("data"), "ptb.valid.txt", 3000);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let train = |run_dir: &Path| tiny_train_on(&data, run_dir, "1");
    let child = train(&b).stderr(Stdio::piped()).spawn().unwrap();
    // The epoch's last step is a log point: validation starts right after its record (and
    // the training loop's own check for a signal), and lasts seconds.
    let last_step = |v: &serde_json::Value| v["kind"] == "train" && v["step"] == 20;
    let o = interrupt_after(child, &b, last_step, Duration::from_millis(500));
    assert_one_line_error(&o, 130, "during the validation pass (batch ");
    assert!(stderr(&o).contains("resume with: "), "{}", stderr(&o));
    assert!(metrics_of(&b, "epoch").is_empty());
    let last = b.join("last.safetensors");
    let kept = params_of(&last).position;
    assert_eq!((kept.epoch, kept.step_in_epoch), (0, 20), "{kept:?}");

    let o = run(train(&b).arg("--resume").arg(&last));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&mut train(&a));
    assert!(o.status.success(), "{}", stderr(&o));
    let valid = |run_dir: &Path| metrics_of(run_dir, "epoch")[0]["valid_perplexity"].clone();
    assert!(valid(&a).is_number());
    assert_eq!(valid(&a), valid(&b));
    // The resumed sitting trained none of the epoch: no speed of its own to give.
    let speed = |run_dir: &Path| metrics_of(run_dir, "epoch")[0]["words_per_second"].clone();
    assert!(speed(&a).as_f64().is_some_and(|w| w > 0.0), "{}", speed(&a));
    assert!(speed(&b).is_null(), "{}", speed(&b));
    assert_eq!(metrics_of(&a, "test"), metrics_of(&b, "test"));
    assert_trained_alike(dir.path(), "a", "b");
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

/// Tied weights through the command line: the checkpoint holds no softmax.weight and says
/// it is tied, and it serves predict.
#[test]
fn tied_weights_train_and_predict() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let o = run(bin()
        .args(["train", "--tie-weights", "--data"])
        .arg(tiny_data())
        .arg("--run-dir")
        .arg(&run_dir)
        .args([
            "--embedding-size",
            "6",
            "--hidden",
            "8,6",
            "--batch-size",
            "2",
            "--num-steps",
            "5",
            "--max-steps",
            "5",
            "--no-progress",
        ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let path = run_dir.join("last.safetensors");
    let ck = params_of(&path);
    assert!(ck.config.tie_weights && ck.params.softmax_w.is_empty());
    let names: Vec<String> = safetensors::SafeTensors::deserialize(&std::fs::read(&path).unwrap())
        .unwrap()
        .names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert!(!names.iter().any(|n| n == "softmax.weight"), "{names:?}");
    assert!(ck.params.embedding.iter().all(|v| v.is_finite()));
    let o = run(bin()
        .args(["predict", "--json", "--top-k", "2", "--checkpoint"])
        .arg(&path)
        .arg("the market"));
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The share of steps clipped counts the steps whose gradient norm is above
/// `--max-grad-norm`, in f32 and in mixed precision alike (where the clip scale the SGD
/// kernels get also divides out the loss scale, and so is below 1 at every step: counting
/// those reported every mixed step as clipped). Logged at every step, each record's share is
/// 1 exactly where its norm is above the threshold; the threshold sits among the norms, so
/// both occur.
#[test]
fn the_clipped_share_counts_the_steps_whose_norm_is_above_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let threshold = 1.7f32;
    for precision in ["f32", "mixed"] {
        let run_dir = dir.path().join(precision);
        let o = run(tiny_train(&run_dir).args([
            "--precision",
            precision,
            "--max-grad-norm",
            &threshold.to_string(),
            "--max-steps",
            "16",
            "--no-eval-at-stop",
        ]));
        assert!(o.status.success(), "{precision}: {}", stderr(&o));
        let records = metrics_of(&run_dir, "train");
        assert_eq!(records.len(), 16, "{precision}: {records:?}");
        let mut clipped = 0;
        for r in &records {
            let norm = r["grad_norm"].as_f64().unwrap();
            let above = norm > f64::from(threshold);
            clipped += usize::from(above);
            assert_eq!(
                r["clipped_fraction"].as_f64(),
                Some(if above { 1.0 } else { 0.0 }),
                "{precision}: {r}"
            );
        }
        assert!(
            0 < clipped && clipped < records.len(),
            "{precision}: {clipped} of {} steps above {threshold}: move the threshold",
            records.len()
        );
    }
}

/// `--precision mixed` resumes exactly too: the parameters, the state and the dynamic loss
/// scale (its clean-step count) come back from the checkpoint; the log and the metrics
/// report the scale. Where the adapter has no f16 in shaders, it is one line.
#[test]
fn a_mixed_precision_run_resumes_bit_identically_with_its_loss_scale() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let mixed = |run_dir: &Path, steps: &str| {
        let mut c = tiny_train(run_dir);
        c.args([
            "--precision",
            "mixed",
            "--max-steps",
            steps,
            "--no-eval-at-stop",
        ]);
        c
    };
    let o = run(&mut mixed(&a, "24"));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&mut mixed(&b, "11"));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(mixed(&b, "24")
        .arg("--resume")
        .arg(b.join("last.safetensors")));
    assert!(o.status.success(), "{}", stderr(&o));
    let (ca, cb) = (
        params_of(&a.join("last.safetensors")),
        params_of(&b.join("last.safetensors")),
    );
    assert_eq!(ca.config.precision, lstm_gpu::config::Precision::Mixed);
    assert_eq!(ca.params, cb.params, "parameters differ after resume");
    assert_eq!(ca.state, cb.state);
    let ls = ca
        .position
        .loss_scale
        .expect("a mixed checkpoint keeps its loss scale");
    assert_eq!(cb.position.loss_scale, Some(ls));
    // No overflow at the initial scale on this model: 24 clean steps.
    assert_eq!((ls.scale, ls.clean, ls.overflows), (65536.0, 24, 0));
    let train = metrics_of(&a, "train");
    assert!(
        train.iter().all(|r| r["loss_scale"] == 65536.0),
        "{train:?}"
    );
    // An f32 run's records have no such fields.
    let f = dir.path().join("f");
    let o = run(tiny_train(&f).args(["--max-steps", "2", "--no-eval-at-stop"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(metrics_of(&f, "train")
        .iter()
        .all(|r| r.get("loss_scale").is_none()));
    assert_eq!(
        params_of(&f.join("last.safetensors")).position.loss_scale,
        None
    );

    let o = run(mixed(&dir.path().join("c"), "2").env("LSTM_GPU_WITHOUT", "f16"));
    assert_one_line_error(&o, 1, "shader-f16");
    // A mixed checkpoint still predicts and evaluates there, in f32.
    let ck = a.join("last.safetensors");
    for without in ["", "f16"] {
        let o = run(bin()
            .args(["predict", "--checkpoint"])
            .arg(&ck)
            .arg("the market")
            .env("LSTM_GPU_WITHOUT", without));
        assert!(o.status.success(), "predict ({without}): {}", stderr(&o));
        let o = run(bin()
            .args(["eval", "--split", "valid", "--data"])
            .arg(tiny_data())
            .arg("--checkpoint")
            .arg(&ck)
            .env("LSTM_GPU_WITHOUT", without));
        assert!(o.status.success(), "eval ({without}): {}", stderr(&o));
    }
}

/// A new run into a folder that holds another run's checkpoints is refused in one usage
/// line that says how to go on with that run, and leaves every file as it was; resuming
/// there, or a new run into a folder with no checkpoint, goes ahead.
#[test]
fn a_new_run_never_overwrites_another_runs_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let o = run(&mut tiny_train_epochs(&run_dir, "1"));
    assert!(o.status.success(), "{}", stderr(&o));
    let files = |d: &Path| -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
            .collect();
        v.sort();
        v
    };
    let before = files(&run_dir);
    assert!(before.iter().any(|(p, _)| p.ends_with("best.safetensors")));
    let o = run(&mut tiny_train_epochs(&run_dir, "1"));
    assert_one_line_error(&o, 2, "holds another run's checkpoints");
    assert!(
        stderr(&o).contains(&format!("--resume {}", run_dir.display())),
        "{}",
        stderr(&o)
    );
    assert!(files(&run_dir) == before, "the folder was changed");
    let o = run(tiny_train_epochs(&run_dir, "2")
        .arg("--resume")
        .arg(&run_dir));
    assert!(o.status.success(), "{}", stderr(&o));
    // A folder with other files but no checkpoint takes a new run.
    let other = dir.path().join("notes");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("README.txt"), "my runs").unwrap();
    let o = run(tiny_train(&other).args(["--max-steps", "2"]));
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `--init` of an lstm-gpu checkpoint starts from its model: its shapes, tokens and
/// vocabulary (not one built again from the text, whose words a vocabulary of its own would
/// number otherwise), and its corpus where no corpus flag names one; the batches may differ.
/// A text in other words and shape flags that contradict it are one usage line each.
#[test]
fn init_from_a_checkpoint_keeps_its_model_and_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let story = dir.path().join("story.txt");
    std::fs::write(&story, train_without_unk()).unwrap();
    let train = |run_dir: &str| {
        let mut c = bin();
        c.args(["train", "--no-progress", "--run-dir"])
            .arg(dir.path().join(run_dir));
        c
    };
    // TINY_MODEL without --vocab-size: every word of the text, and no <unk>.
    // Each text its own three splits.
    let text = |c: &mut Command, path: &Path| {
        for split in ["--train", "--valid", "--test"] {
            c.arg(split).arg(path);
        }
    };
    let mut c = train("a");
    text(&mut c, &story);
    let o = run(c.args(["--max-steps", "3"]).args(&TINY_MODEL[2..]));
    assert!(o.status.success(), "{}", stderr(&o));
    let a = params_of(&dir.path().join("a/last.safetensors"));
    let a_path = dir.path().join("a/last.safetensors");
    let init = |run_dir: &str| {
        let mut c = train(run_dir);
        c.arg("--init").arg(&a_path).args(["--max-steps", "2"]);
        c
    };

    // No model or corpus flag: the checkpoint's model and text, other batches.
    let o = run(init("b")
        .env("RUST_LOG", "info")
        .args(["--batch-size", "3"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("its weights, model and vocabulary")
            && stderr(&o).contains("the one the model was trained on"),
        "{}",
        stderr(&o)
    );
    let b = params_of(&dir.path().join("b/last.safetensors"));
    assert_eq!(b.vocab, a.vocab);
    assert_eq!(
        (b.config.embedding_size, &b.config.hidden, b.config.tokens),
        (a.config.embedding_size, &a.config.hidden, a.config.tokens)
    );
    assert_eq!((b.config.batch_size, b.position.global_step), (3, 2));
    assert_eq!(b.corpus, a.corpus);
    // Where its weights came from, recorded (kept across a resume) and shown by `info`.
    let absolute = a_path.display().to_string();
    assert_eq!((a.init, b.init.as_deref()), (None, Some(absolute.as_str())));
    let b_path = dir.path().join("b/last.safetensors");
    let o = run(bin()
        .args(["train", "--no-progress", "--max-steps", "3", "--resume"])
        .arg(&b_path));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(params_of(&b_path).init.as_deref(), Some(absolute.as_str()));
    let o = run(bin().arg("info").arg(&b_path));
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(
        shown.contains(&format!("started from  {absolute} (--init)")),
        "{shown}"
    );

    // Another text in the same words, the rarest now the most frequent: read with the
    // checkpoint's vocabulary, where a run of its own numbers the words otherwise.
    let words: Vec<&String> = a.vocab.iter().filter(|w| *w != "<eos>").collect();
    let mut reversed = String::new();
    for (i, w) in words.iter().enumerate() {
        for _ in 0..=i {
            reversed.push_str(&format!(" {w} the \n"));
        }
    }
    let other = dir.path().join("other.txt");
    std::fs::write(&other, &reversed).unwrap();
    let mut c = init("c");
    text(&mut c, &other);
    let o = run(&mut c);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        params_of(&dir.path().join("c/last.safetensors")).vocab,
        a.vocab
    );
    let mut c = train("own");
    text(&mut c, &other);
    let o = run(c.args(["--max-steps", "1"]).args(&TINY_MODEL[2..]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(
        params_of(&dir.path().join("own/last.safetensors")).vocab,
        a.vocab,
        "the text's own vocabulary should number its words otherwise"
    );

    // A word the checkpoint's vocabulary lacks, and no <unk>.
    let zebra = dir.path().join("zebra.txt");
    std::fs::write(&zebra, format!("{reversed} zebra the \n")).unwrap();
    let mut c = init("d");
    text(&mut c, &zebra);
    let o = run(&mut c);
    assert_one_line_error(&o, 2, "--init keeps the vocabulary");
    assert!(stderr(&o).contains("\"zebra\""), "{}", stderr(&o));
    // Shapes other than the checkpoint's.
    let o = run(init("e").args(["--hidden", "8,8"]));
    assert_one_line_error(&o, 2, "flags contradict the model of --init");
    assert!(stderr(&o).contains("--hidden [8, 8]"), "{}", stderr(&o));
    // Words read with every line end its own <eos> are the same vocabulary's; characters
    // are not.
    let o = run(init("f").args(["--tokens", "words-eos"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let f = params_of(&dir.path().join("f/last.safetensors"));
    assert_eq!(
        (f.vocab, f.config.tokens.to_string()),
        (a.vocab.clone(), "words-eos".into())
    );
    let o = run(init("g").args(["--tokens", "chars"]));
    assert_one_line_error(&o, 2, "--tokens chars (checkpoint: words)");
}

/// A `words` model (TensorFlow's PTB reader, which glues a line end touching a word onto it)
/// reads another text whose line ends touch words with every line end its own `<eos>`, as
/// its vocabulary has it: `eval` scores it as the same text spaced as PTB is, and `--init`
/// trains on it as on that text, bit for bit. Its own text it reads as it was trained.
#[test]
fn a_words_model_reads_another_texts_line_ends_as_its_own_eos() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&mut tiny_train_epochs(&dir.path().join("ptb"), "1"));
    assert!(o.status.success(), "{}", stderr(&o));
    let ck = dir.path().join("ptb/last.safetensors");
    assert_eq!(params_of(&ck).config.tokens.to_string(), "words");
    // The tiny valid split as PTB spaces it, and as plain text (no space at either end of
    // a line).
    let spaced = String::from_utf8(tiny_file("ptb.valid.txt")).unwrap();
    let plain: String = spaced.lines().map(|l| format!("{}\n", l.trim())).collect();
    assert_ne!(spaced, plain);
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (spaced, plain) = (write("spaced.txt", &spaced), write("plain.txt", &plain));
    let on = |c: &mut Command, path: &Path| {
        for split in ["--train", "--valid", "--test"] {
            c.arg(split).arg(path);
        }
    };

    let eval = |path: &Path| {
        let mut c = bin();
        c.env("RUST_LOG", "info")
            .args(["eval", "--checkpoint"])
            .arg(&ck);
        on(&mut c, path);
        let o = run(&mut c);
        assert!(o.status.success(), "{}", stderr(&o));
        o
    };
    let perplexity = |o: &Output| {
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        out.split(" (").next().unwrap().to_string()
    };
    let (as_ptb, as_plain) = (eval(&spaced), eval(&plain));
    assert!(perplexity(&as_ptb).starts_with("valid perplexity: "));
    assert_eq!(perplexity(&as_plain), perplexity(&as_ptb));
    assert!(
        stderr(&as_plain).contains("tokens: words-eos") && !stderr(&as_ptb).contains("words-eos"),
        "{}",
        stderr(&as_plain)
    );

    let init = |run_dir: &str, path: &Path| {
        let mut c = bin();
        c.args(["train", "--no-progress", "--max-steps", "4", "--seed", "3"])
            .env("RUST_LOG", "info")
            .arg("--init")
            .arg(&ck)
            .arg("--run-dir")
            .arg(dir.path().join(run_dir));
        on(&mut c, path);
        let o = run(&mut c);
        assert!(o.status.success(), "{}", stderr(&o));
        stderr(&o)
    };
    init("spaced", &spaced);
    let log = init("plain", &plain);
    assert_trained_alike(dir.path(), "spaced", "plain");
    // How much of the text the kept vocabulary reads as <unk> (the tiny model keeps 60
    // words of the tiny corpus: some of its valid split's are not among them).
    let unk = log
        .lines()
        .find(|l| l.contains("read as <unk> in the vocabulary of"))
        .unwrap_or_else(|| panic!("{log}"));
    let share: f64 = unk
        .split(" (")
        .nth(1)
        .and_then(|t| t.split('%').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{unk}"));
    assert!(share > 0.0 && share < 100.0, "{unk}");
    let tokens = |run: &str| {
        params_of(&dir.path().join(run).join("last.safetensors"))
            .config
            .tokens
            .to_string()
    };
    assert_eq!(
        (tokens("spaced"), tokens("plain")),
        ("words".into(), "words-eos".into())
    );

    // A model trained on the plain text with `--tokens words` (glued tokens and all) reads
    // its own text as it was trained.
    let mut c = bin();
    c.args([
        "train",
        "--no-progress",
        "--max-steps",
        "2",
        "--tokens",
        "words",
    ])
    .arg("--run-dir")
    .arg(dir.path().join("glued"))
    .args(&TINY_MODEL[2..]);
    on(&mut c, &plain);
    let o = run(&mut c);
    assert!(o.status.success(), "{}", stderr(&o));
    let glued = dir.path().join("glued/last.safetensors");
    assert!(params_of(&glued)
        .vocab
        .iter()
        .any(|w| w.ends_with("<eos>") && w != "<eos>"));
    let o = run(bin()
        .env("RUST_LOG", "info")
        .args(["eval", "--checkpoint"])
        .arg(&glued));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the one the model was trained on")
            && !stderr(&o).contains("words-eos"),
        "{}",
        stderr(&o)
    );
}
