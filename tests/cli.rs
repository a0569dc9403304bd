//! The `lstm-gpu` program as users run it: resume exactness, interruption, bad input.
//! Training runs use the tiny fixture corpus in `data/tiny` and a tiny model.

mod common;

use common::{
    built_in_shader as built_in, shader_with_a_syntax_error, strip_with_a_negated_row, TINY_MODEL,
};
use lstm_gpu::model::checkpoint::Checkpoint;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lstm-gpu"));
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

/// `eval` of several checkpoints: a line each in training order, as the run validated each
/// epoch, the lowest named; `--json` a line each; a bad path among them fails before any is
/// scored.
#[test]
fn eval_scores_several_checkpoints_as_training_validated_them() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    // A rate this high makes a later epoch worse, so that the lowest is not the last.
    let o = run(tiny_train_epochs(&run_dir, "4").args(["--learning-rate", "3"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let valid: Vec<f64> = metrics_of(&run_dir, "epoch")
        .iter()
        .map(|r| r["valid_perplexity"].as_f64().unwrap())
        .collect();
    assert_eq!(valid.len(), 4);
    let lowest = (0..4)
        .min_by(|&a, &b| valid[a].total_cmp(&valid[b]))
        .unwrap();
    assert!(
        lowest < 3,
        "the test's premise: a later epoch is worse: {valid:?}"
    );
    let epochs: Vec<PathBuf> = (1..=4)
        .map(|e| run_dir.join(format!("epoch-{e}.safetensors")))
        .collect();
    // Given out of order (as a shell lists epoch-1, epoch-10, epoch-2): scored in training
    // order.
    let eval = || {
        let mut c = bin();
        c.args(["eval", "--data"])
            .arg(tiny_data())
            .arg("--checkpoint");
        c.args([&epochs[1], &epochs[3], &epochs[0], &epochs[2]]);
        c
    };
    let o = run(&mut eval());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    let close = |got: f64, want: f64| (got - want).abs() <= 1e-4 * want;
    for (e, line) in lines[..4].iter().enumerate() {
        let path = epochs[e].display().to_string();
        assert!(line.starts_with(&path), "{line}");
        assert!(
            line.contains(&format!("end of epoch {}, step ", e + 1)),
            "{line}"
        );
        let ppl: f64 = line
            .split("valid perplexity ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!(
            close(ppl, valid[e]),
            "epoch {}: {ppl} vs {}",
            e + 1,
            valid[e]
        );
    }
    assert!(
        lines[4].starts_with("lowest valid perplexity: ")
            && lines[4].ends_with(&epochs[lowest].display().to_string()),
        "{out}"
    );
    // One checkpoint: the line as before.
    let o = run(bin()
        .args(["eval", "--data"])
        .arg(tiny_data())
        .arg("--checkpoint")
        .arg(&epochs[0]));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("valid perplexity: "), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");

    let o = run(eval().args(["--json", "--split", "test"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 4);
    for (e, r) in rows.iter().enumerate() {
        assert_eq!(r["checkpoint"], epochs[e].display().to_string());
        assert_eq!(
            (r["split"].as_str(), r["epoch"].as_u64()),
            (Some("test"), Some(e as u64 + 1))
        );
        // The test split at batch 1, one step: every word of it.
        assert_eq!(
            (r["batch_size"].as_u64(), r["num_steps"].as_u64()),
            (Some(1), Some(1))
        );
        assert!(r["perplexity"].as_f64().unwrap().is_finite(), "{r}");
    }

    // A missing checkpoint among them: one usage line, and nothing scored.
    let o = run(eval().arg(dir.path().join("nothere.safetensors")));
    assert_one_line_error(&o, 2, "nothere.safetensors does not exist");
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn info_tells_what_a_checkpoint_and_a_run_folder_hold() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let o = run(tiny_train_epochs(&run_dir, "3").args([
        "--learning-rate",
        "3",
        "--checkpoint-every",
        "7",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let info = |path: &Path, json: bool| {
        let mut c = bin();
        c.arg("info").arg(path);
        if json {
            c.arg("--json");
        }
        let o = run(&mut c);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let metrics: Vec<serde_json::Value> = std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let valid: Vec<f64> = metrics
        .iter()
        .filter(|r| r["kind"] == "epoch")
        .map(|r| r["valid_perplexity"].as_f64().unwrap())
        .collect();
    let test = metrics.iter().find(|r| r["kind"] == "test").unwrap()["test_perplexity"]
        .as_f64()
        .unwrap();
    let lowest = (0..valid.len())
        .min_by(|&a, &b| valid[a].total_cmp(&valid[b]))
        .unwrap();

    // The run folder: a row per epoch, the lowest validation perplexity starred.
    let text = info(&run_dir, false);
    for (i, v) in valid.iter().enumerate() {
        let row = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{} ", i + 1)))
            .unwrap_or_else(|| panic!("no row for epoch {}: {text}", i + 1));
        assert!(row.contains(&format!("{v:.3}")), "{row}");
        assert_eq!(row.contains('*'), i == lowest, "{row}");
    }
    assert!(
        text.contains(&format!("test perplexity {test:.3} (batches of 1x1)")),
        "{text}"
    );
    assert!(
        text.contains("best.safetensors (end of epoch")
            && text.contains("step-7.safetensors (in epoch 1, step 7)"),
        "{text}"
    );
    assert!(text.contains("1 event file"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&info(&run_dir, true)).unwrap();
    assert_eq!(json["epochs"].as_array().unwrap().len(), valid.len());
    assert_eq!(json["best_epoch"], serde_json::json!((lowest + 1) as f64));
    assert_eq!(json["test_perplexity"].as_f64(), Some(test));
    // Each epoch's gradient norms, from its progress records: the largest is the largest
    // any of them logged, and the mean lies between their means.
    assert!(text.contains("grad norm (largest)"), "{text}");
    let logged: Vec<&serde_json::Value> = metrics.iter().filter(|r| r["kind"] == "train").collect();
    for (i, e) in json["epochs"].as_array().unwrap().iter().enumerate() {
        let of_epoch: Vec<_> = logged
            .iter()
            .filter(|r| r["epoch"].as_u64() == Some(i as u64 + 1))
            .collect();
        let field = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap();
        let largest = of_epoch
            .iter()
            .map(|r| field(r, "grad_norm_max"))
            .fold(0.0, f64::max);
        assert_eq!(e["grad_norm_max"].as_f64(), Some(largest), "{e}");
        let means = of_epoch.iter().map(|r| field(r, "grad_norm"));
        let (lo, hi) = means.fold((f64::MAX, 0.0f64), |(lo, hi), m| (lo.min(m), hi.max(m)));
        let mean = e["grad_norm"].as_f64().unwrap();
        assert!(lo <= mean && mean <= hi, "{e}: {lo}..{hi}");
    }

    // A checkpoint: verified, its model, where training stood, its best epoch.
    let best = run_dir.join("best.safetensors");
    let ck = params_of(&best);
    let text = info(&best, false);
    assert!(text.contains("checksum verified"), "{text}");
    assert!(
        text.contains(&format!(
            "{} parameters: embedding 8, LSTM 8 x 6, vocabulary 60 words",
            ck.config.num_params()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} of 3 epochs done", lowest + 1)),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "best        epoch {}, valid perplexity {:.3}",
            lowest + 1,
            valid[lowest]
        )),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&info(&best, true)).unwrap();
    assert_eq!(json["parameters"], ck.config.num_params());
    assert_eq!(json["position"]["global_step"], ck.position.global_step);
    assert_eq!(json["mid_epoch"], false);
    assert_eq!(json["preset"], serde_json::Value::Null);
    let text = info(&run_dir.join("step-7.safetensors"), false);
    assert!(
        text.contains("in epoch 1 of 3, after 7 of its batches (carries the LSTM state)"),
        "{text}"
    );

    // Several run folders: a row each.
    let other = dir.path().join("other");
    let o = run(&mut tiny_train_epochs(&other, "1"));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(bin().arg("info").arg(&run_dir).arg(&other));
    let table = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert!(rows[0].contains("best valid (epoch)"), "{table}");
    assert!(
        rows[1].contains(&format!("{:.3} ({})", valid[lowest], lowest + 1))
            && rows[1].contains(&format!("{test:.3}")),
        "{table}"
    );
    assert!(rows[2].contains(&other.display().to_string()), "{table}");
    let o = run(bin().arg("info").arg(&run_dir).arg(&best).arg("--json"));
    let both: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(both.as_array().map(Vec::len), Some(2), "{both}");
    assert_eq!(both[1]["parameters"], ck.config.num_params());

    // Bad paths: one line each.
    let o = run(bin().arg("info").arg(dir.path().join("none")));
    assert_one_line_error(&o, 2, "does not exist");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_one_line_error(
        &run(bin().arg("info").arg(&empty)),
        1,
        "is not a run folder",
    );
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    assert_one_line_error(
        &run(bin().arg("info").arg(&junk)),
        1,
        "not a valid safetensors file",
    );
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

/// `lstm-gpu completions bash` completes commands and each command's flags in bash itself;
/// the other shells' scripts name the flags too.
#[test]
fn completions_complete_commands_and_their_flags() {
    let script = |shell: &str| {
        let o = run(bin().args(["completions", shell]));
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let dir = tempfile::tempdir().unwrap();
    let bash = dir.path().join("lstm-gpu.bash");
    std::fs::write(&bash, script("bash")).unwrap();
    // What bash offers after the words typed so far, as its completion function computes it.
    let offered = |words: &str| {
        let o = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); \
                 _lstm__gpu lstm-gpu \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; echo \"${{COMPREPLY[*]}}\"",
                bash.display()
            ))
            .output()
            .expect("bash");
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(offered("lstm-gpu tr"), "train");
    assert_eq!(offered("lstm-gpu in"), "info");
    let keep = offered("lstm-gpu train --keep");
    assert!(
        keep.contains("--keep-checkpoints") && keep.contains("--keep-prob"),
        "{keep}"
    );
    assert_eq!(offered("lstm-gpu generate --top"), "--top-k --top-p");
    assert!(offered("lstm-gpu predict --").contains("--score"));
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let s = script(shell);
        assert!(
            s.contains("keep-checkpoints") && s.contains("top-p"),
            "{shell}"
        );
    }
    let o = run(bin().args(["completions", "tcsh"]));
    assert_eq!(o.status.code(), Some(2));
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
        (
            vec![
                "train",
                "--adapter",
                "discrete",
                "--batch-size",
                "2",
                "--num-steps",
                "5",
            ],
            "llvmpipe",
        ),
    ];
    for (args, needle) in cases {
        let o = run(bin().args(&args).arg("--data").arg(&data));
        assert_one_line_error(&o, 2, needle);
    }
}

#[test]
fn bench_kernels_times_the_shapes_asked_for() {
    let o = run(bin().args([
        "bench",
        "kernels",
        "--variant",
        "register-blocked",
        "--runs",
        "1",
        "--shape",
        "9x12x20:NT",
        "--shape",
        "5x7x3",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = out.lines().filter(|l| l.contains("GFLOP/s")).collect();
    assert_eq!(rows.len(), 2, "{out}");
    // Each row also says the product's own traffic per second.
    assert!(rows.iter().all(|r| r.ends_with("GB/s")), "{out}");
    assert!(
        rows[0].contains("register-blocked NT     9x12   x   20"),
        "{out}"
    );
    assert!(
        rows[1].contains("register-blocked NN     5x7    x    3"),
        "{out}"
    );
    let o = run(bin().args(["bench", "kernels", "--shape", "60x0x4"]));
    assert_one_line_error(&o, 2, "MxKxN");

    // Without timestamp queries (GL, a browser) the wall clock times many launches at once.
    let o = run(bin().env("LSTM_GPU_WITHOUT", "timestamps").args([
        "bench",
        "kernels",
        "--variant",
        "strip",
        "--runs",
        "2",
        "--shape",
        "9x12x20:NT",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let row = out
        .lines()
        .find(|l| l.contains("GFLOP/s"))
        .unwrap_or_else(|| panic!("{out}"));
    let ms: f64 = row
        .split(" ms")
        .next()
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ms > 0.0 && ms.is_finite(), "{out}");
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
    // A path that is not there is a usage error, as a missing --data folder is.
    assert_one_line_error(&o, 2, "missing.safetensors does not exist");
    let o = run(bin()
        .args(["predict", "--checkpoint"])
        .arg(&junk)
        .arg("the"));
    assert_one_line_error(&o, 1, "safetensors");

    // A real checkpoint for the flag checks.
    let run_dir = dir.path().join("run");
    let o = run(tiny_train(&run_dir)
        .args(["--max-steps", "3", "--no-eval-at-stop"])
        .env("RUST_LOG", "info"));
    assert!(o.status.success(), "{}", stderr(&o));
    // The stop line says the validation perplexity was not measured (not "NaN").
    let err = stderr(&o);
    assert!(
        err.contains("valid perplexity not measured (--no-eval-at-stop)") && !err.contains("NaN"),
        "{err}"
    );
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

/// The final test pass runs at batch 1 by default (the TensorFlow tutorial's protocol), in
/// its own workspace sharing the training step's logits, and gives what `eval --split test`
/// gives on the final checkpoint, also at batch 1 by default.
#[test]
fn test_pass_at_batch_1_matches_eval() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&mut tiny_train_epochs(dir.path(), "2"));
    assert!(o.status.success(), "{}", stderr(&o));
    let test = metrics_of(dir.path(), "test");
    assert_eq!(test.len(), 1);
    assert_eq!(test[0]["batch_size"].as_u64(), Some(1));
    let from_train = test[0]["test_perplexity"].as_f64().unwrap();
    assert!(from_train.is_finite() && from_train > 1.0);
    let o = run(bin()
        .args(["eval", "--split", "test", "--checkpoint"])
        .arg(dir.path().join("last.safetensors"))
        .arg("--data")
        .arg(tiny_data()));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        out.contains(&format!("{from_train:.3}")) && out.contains(" of 1x"),
        "train's test pass said {from_train:.3}, eval said {out}"
    );
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

    // Without a context, one per line of standard input, each from a fresh state: what
    // each gives on its own (blank lines skipped), the model loaded once.
    let predict_stdin = |input: &str, flags: &[&str]| {
        let mut child = bin()
            .args(["predict", "--checkpoint"])
            .arg(&ck)
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let alone = |context: &str, flags: &[&str]| {
        let o = run(bin()
            .args(["predict", "--checkpoint"])
            .arg(&ck)
            .args(flags)
            .arg(context));
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let lines = predict_stdin("The stock market\n\nthe\n", &["--json", "--top-k", "5"]);
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[0],
        alone("The stock market", &["--json", "--top-k", "5"]).trim()
    );
    assert_eq!(lines[1], alone("the", &["--json", "--top-k", "5"]).trim());
    assert_ne!(lines[0], lines[1]);
    let tables = predict_stdin("The stock market\nthe\n", &["--top-k", "5"]);
    assert_eq!(
        tables,
        format!(
            "The stock market\n{}\nthe\n{}",
            alone("The stock market", &["--top-k", "5"]),
            alone("the", &["--top-k", "5"])
        )
    );
    let scored = predict_stdin("the market fell\n", &["--score", "--json"]);
    assert_eq!(
        scored.trim(),
        alone("the market fell", &["--score", "--json"]).trim()
    );

    let gen_with = |seed: &str, sampling: &[&str]| {
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
            .arg(&ck)
            .args(sampling));
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let gen = |seed: &str| gen_with(seed, &[]);
    let (g1, g2, g3) = (gen("3"), gen("3"), gen("4"));
    assert_eq!(g1, g2, "same seed, same text");
    assert_ne!(g1, g3);
    assert!(g1.split_whitespace().count() >= 5, "{g1}");
    // A nucleus too small for a second word is greedy, as --top-k 1 is, whatever the seed;
    // a wide one samples as plain sampling does.
    let greedy = gen_with("3", &["--top-k", "1"]);
    assert_eq!(gen_with("4", &["--top-p", "1e-6"]), greedy);
    assert_eq!(gen_with("3", &["--top-p", "1"]), g1);
    assert_ne!(gen_with("3", &["--top-p", "0.9"]), greedy);
    // A reader that stops early ends the program quietly, as it ends `cat`: no panic.
    let many = dir.path().join("many.txt");
    std::fs::write(&many, "the company said\n".repeat(400)).unwrap();
    let mut piped = Command::new("bash");
    piped
        .arg("-c")
        .arg(format!(
            "{} predict --top-k 20 --checkpoint {} < {} | head -c 50 > /dev/null; echo ${{PIPESTATUS[0]}}",
            env!("CARGO_BIN_EXE_lstm-gpu"),
            ck.display(),
            many.display()
        ))
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env("RUST_LOG", "warn");
    no_tuning(&mut piped);
    let o = piped.output().unwrap();
    let (code, err) = (String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert_eq!(code.trim(), "141", "killed by SIGPIPE: {err}");
    assert!(!err.contains("panicked"), "{err}");

    // Prompts from standard input, one per line: each as `--prompt` gives it alone.
    let mut child = bin()
        .args(["generate", "--words", "15", "--seed", "3", "--checkpoint"])
        .arg(&ck)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut input = child.stdin.take().unwrap();
        input.write_all(b"the\n\nthe market\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let market = run(bin()
        .args([
            "generate",
            "--prompt",
            "the market",
            "--words",
            "15",
            "--seed",
            "3",
            "--checkpoint",
        ])
        .arg(&ck));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{g1}\n{}", String::from_utf8_lossy(&market.stdout))
    );
    for (p, needle) in [
        ("0", "--top-p must be above 0"),
        ("1.5", "at most 1, got 1.5"),
    ] {
        let o = run(bin()
            .args(["generate", "--prompt", "the", "--top-p", p, "--checkpoint"])
            .arg(&ck));
        assert_one_line_error(&o, 2, needle);
    }
}

/// `eval --text FILE` scores any text with a checkpoint: the test split's file as the test
/// split scores; the same text as plain prose (line ends touching the words, capitals) the
/// same; unknown words as `<unk>`, counted; bad input one line.
#[test]
fn eval_scores_a_users_text() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(tiny_train(dir.path()).args(["--max-steps", "12"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let ck = dir.path().join("last.safetensors");
    let eval = |args: &[&str]| {
        let o = run(bin().arg("eval").arg("--checkpoint").arg(&ck).args(args));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        (o, out)
    };
    let perplexity = |out: &str| -> f64 {
        let at = out.find("perplexity: ").unwrap_or_else(|| panic!("{out}")) + 12;
        out[at..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let data = tiny_data();
    let (o, out) = eval(&["--split", "test", "--data", data.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let test = perplexity(&out);
    let test_file = data.join("ptb.test.txt");
    let (o, out) = eval(&["--text", test_file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(perplexity(&out), test, "{out}");
    assert!(out.contains(" of 1x1"), "{out}");

    // As prose: no space before the line ends, each line capitalised.
    let prose: String = std::fs::read_to_string(&test_file)
        .unwrap()
        .lines()
        .map(|l| {
            let l = l.trim();
            let mut c = l.chars();
            let first = c.next().map(|f| f.to_uppercase().collect::<String>());
            format!("{}{}\n", first.unwrap_or_default(), c.as_str())
        })
        .collect();
    let prose_file = dir.path().join("prose.txt");
    std::fs::write(&prose_file, &prose).unwrap();
    let (o, out) = eval(&["--text", prose_file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(perplexity(&out), test, "{prose}\n{out}");

    // Words the model never saw are <unk>, named and counted.
    let odd = dir.path().join("odd.txt");
    std::fs::write(&odd, "the zyzzyva said the qwxlt\n").unwrap();
    let (o, out) = eval(&["--text", odd.to_str().unwrap()]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("zyzzyva, qwxlt") && err.contains("2 of the text's 6 words"),
        "{err}"
    );
    assert!(perplexity(&out).is_finite(), "{out}");

    // Bad input: one line, exit 2.
    let blank = dir.path().join("blank.txt");
    std::fs::write(&blank, " \n\n").unwrap();
    let missing = dir.path().join("missing.txt");
    for (args, needle) in [
        (vec!["--text", missing.to_str().unwrap()], "cannot be read"),
        (vec!["--text", blank.to_str().unwrap()], "at least one word"),
        (
            vec!["--text", odd.to_str().unwrap(), "--split", "test"],
            "cannot be used with",
        ),
        (
            vec!["--text", odd.to_str().unwrap(), "--batch-size", "4"],
            "odd.txt",
        ),
        // Files of their own go with --train, not a folder (they were ignored).
        (
            vec![
                "--data",
                data.to_str().unwrap(),
                "--test",
                odd.to_str().unwrap(),
            ],
            "cannot be used with",
        ),
    ] {
        let (o, _) = eval(&args);
        assert_one_line_error(&o, 2, needle);
    }
}

/// `predict --score`: each word's probability and rank after the words before it, from a
/// sentence start, every line end an `<eos>`. Its perplexity is `eval --text`'s on the same
/// text (in a file whose empty first line is the start, `<eos>`), each probability and rank
/// what `predict` lists after that word's context, and a word the vocabulary lacks is
/// scored as `<unk>`.
#[test]
fn predict_scores_each_word_as_eval_scores_the_text() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(tiny_train(dir.path()).args(["--max-steps", "12"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let ck = dir.path().join("last.safetensors");
    let predict = |args: &[&str]| {
        let o = run(bin().arg("predict").arg("--checkpoint").arg(&ck).args(args));
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // Two lines, the second touching its line end (PTB's reader would glue it on).
    let text = "the company said\nsales fell\n";
    let scored: serde_json::Value =
        serde_json::from_str(&predict(&["--score", "--json", text])).unwrap();
    let list = scored["words"].as_array().unwrap();
    let read: Vec<&str> = list.iter().map(|w| w["word"].as_str().unwrap()).collect();
    assert_eq!(
        read,
        ["the", "company", "said", "<eos>", "sales", "fell", "<eos>"],
        "{scored}"
    );
    assert_eq!(scored["start"], "<eos>");

    let file = dir.path().join("text.txt");
    std::fs::write(&file, format!("\n{text}")).unwrap();
    let o = run(bin()
        .args(["eval", "--checkpoint"])
        .arg(&ck)
        .arg("--text")
        .arg(&file));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.contains("7 batches of 1x1"), "{out}");
    let at = out.find("perplexity: ").unwrap() + 12;
    let eval: f64 = out[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let ppl = scored["perplexity"].as_f64().unwrap();
    assert!(
        (ppl - eval).abs() <= 1e-3 + 1e-5 * eval,
        "{ppl} against eval's {eval}"
    );

    // Each word as `predict` ranks it after its context.
    let mut context = vec!["<eos>".to_string()];
    for w in list {
        let next: serde_json::Value =
            serde_json::from_str(&predict(&["--json", "--top-k", "60", &context.join(" ")]))
                .unwrap();
        let next = next["next"].as_array().unwrap();
        let at = next.iter().position(|n| n["word"] == w["word"]).unwrap();
        assert_eq!(w["rank"].as_u64().unwrap() as usize, at + 1, "{w}");
        let (a, b) = (
            w["probability"].as_f64().unwrap(),
            next[at]["probability"].as_f64().unwrap(),
        );
        assert!((a - b).abs() <= 1e-5 * b, "{w}: {b}");
        context.push(w["word"].as_str().unwrap().to_string());
    }

    // The table; a word the vocabulary lacks is <unk>.
    let table = predict(&["--score", "the zyzzyva said"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    assert!(lines[2].starts_with("<unk>"), "{table}");
    assert!(
        lines[4].starts_with("perplexity ") && lines[4].contains("over 3 words"),
        "{table}"
    );
    // Bad input: one line.
    let o = run(bin()
        .args(["predict", "--score", "--top-k", "3", "--checkpoint"])
        .arg(&ck)
        .arg("the"));
    assert_one_line_error(&o, 2, "--top-k");
    let o = run(bin()
        .args(["predict", "--score", "--checkpoint"])
        .arg(&ck)
        .arg(" "));
    assert_one_line_error(&o, 2, "empty");
}

/// `lstm-gpu check`: every kernel of this adapter against its CPU twin, from the program
/// itself. On the test adapter every check passes; it lists what the adapter has (a kernel
/// the driver refuses is not checked, nor are the f16 ones without `SHADER_F16`).
#[test]
fn check_holds_every_kernel_of_the_adapter_to_its_twin() {
    let check = |env: &[(&str, &str)]| {
        let o = run(bin().args(["check", "--json"]).envs(env.iter().copied()));
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["passed"], true, "{v}");
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                assert_eq!(c["passed"], true, "{c}");
                assert!(c["cases"].as_u64().unwrap() >= 32, "{c}");
                c["check"].as_str().unwrap().to_string()
            })
            .collect::<Vec<_>>()
    };
    let all = check(&[]);
    let has = |names: &[String], n: &str| names.iter().any(|c| c == n);
    for name in [
        "matmul tiled",
        "matmul strip",
        "matmul strip-split",
        "matmul panel",
        "matmul skinny",
        "training step f32 unfused",
        "training step f32 wavefront",
    ] {
        assert!(has(&all, name), "{name} missing from {all:?}");
    }
    let f16 = has(&all, "f16 matmul f16-scalar");
    assert_eq!(f16, has(&all, "training step mixed f16-scalar"), "{all:?}");
    // Without the panel kernel (its split twin leaves with it) and without f16: the rest.
    let without = check(&[("LSTM_GPU_REFUSE", "panel"), ("LSTM_GPU_WITHOUT", "f16")]);
    let expected: Vec<String> = all
        .iter()
        .filter(|c| !c.starts_with("matmul panel") && !c.contains("f16"))
        .cloned()
        .collect();
    assert_eq!(without, expected);

    // A kernel that computes wrong results (LSTM_GPU_MISCOMPUTE negates its outputs as they
    // are read back): its row FAILED with its worst case, the others ok, one error line
    // naming it, exit 1; in the JSON, passed false.
    let o = run(bin().arg("check").env("LSTM_GPU_MISCOMPUTE", "strip"));
    assert_one_line_error(&o, 1, &format!("1 of {} checks failed", all.len()));
    assert!(stderr(&o).contains(": matmul strip\n"), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let failed: Vec<&str> = out.lines().filter(|l| l.contains("FAILED")).collect();
    assert_eq!(failed.len(), 1, "{out}");
    assert!(
        failed[0].starts_with("matmul strip ") && failed[0].contains("2.0e0"),
        "{out}"
    );
    let o = run(bin()
        .args(["check", "--json"])
        .env("LSTM_GPU_MISCOMPUTE", "strip"));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["passed"], false, "{v}");

    // The table: a header, a row per check.
    let o = run(bin().arg("check"));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.starts_with("check "), "{out}");
    assert_eq!(out.lines().count(), all.len() + 1, "{out}");
    assert!(out.lines().skip(1).all(|l| l.contains(" ok ")), "{out}");
}

/// A researcher's loop without a rebuild: `shaders export DIR` writes the kernels' WGSL
/// files; a change there is what runs under `--shaders DIR`, so that `check` holds the
/// changed kernel to its twin (a strip kernel with one output row negated fails, with the
/// kernel that shares its code, the rest pass), `tune` leaves it out and keeps its choices
/// apart from the built-in kernels', a training run keeps the changed files it trained with
/// in its folder; a file that does not compile is one error line naming
/// its line in the file; an edited file is not overwritten by a second export; a folder
/// that is not there is a usage error.
#[test]
fn a_kernel_changed_in_a_shaders_folder_is_what_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("my kernels");
    let o = run(bin().args(["shaders", "export"]).arg(&dir));
    assert!(o.status.success(), "{}", stderr(&o));
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(said.contains("--shaders '"), "quoted for the shell: {said}");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), lstm_gpu::gpu::shaders::FILES.len());

    // One output row of the strip kernels' rank-1 update negated.
    std::fs::write(dir.join("matmul_strip.wgsl"), strip_with_a_negated_row()).unwrap();
    let o = run(bin()
        .args(["check", "--json", "--shaders"])
        .arg(&dir)
        .env("RUST_LOG", "info"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("kernels built from")
            && stderr(&o).contains(": matmul_strip.wgsl (the other"),
        "{}",
        stderr(&o)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut failed: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| c["kernel"].as_str().unwrap())
        .collect();
    failed.sort();
    let strips = ["strip", "strip-quad", "strip-quad-split", "strip-split"];
    let available: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kernel"].as_str().unwrap())
        .filter(|k| strips.contains(k))
        .collect();
    assert!(available.contains(&"strip"), "{v}");
    assert_eq!(failed.len(), available.len(), "{v}");
    assert!(failed.iter().all(|k| strips.contains(k)), "{failed:?}");

    // tune leaves the changed kernel out, and keeps these choices under their own key.
    let cache = tmp.path().join("cache");
    let o = run(bin()
        .args(["tune", "--shaders"])
        .arg(&dir)
        .args(TINY_MODEL)
        .env_remove("LSTM_GPU_TUNE")
        .env("LSTM_GPU_CACHE_DIR", &cache));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("kernel strip left out: it computes wrong results"),
        "{}",
        stderr(&o)
    );
    let tuned: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.join("tuning.json")).unwrap()).unwrap();
    let keys: Vec<&String> = tuned["adapters"].as_object().unwrap().keys().collect();
    assert!(
        keys.len() == 1 && keys[0].contains(" | shaders "),
        "{keys:?}"
    );

    // A run folder keeps the changed files it was trained with (a harmless change here).
    let comment = format!("// my change\n{}", built_in("sgd.wgsl"));
    std::fs::write(dir.join("sgd.wgsl"), &comment).unwrap();
    std::fs::write(dir.join("matmul_strip.wgsl"), built_in("matmul_strip.wgsl")).unwrap();
    let run_dir = tmp.path().join("run");
    let o = run(bin()
        .args(["train", "--max-steps", "2", "--shaders"])
        .arg(&dir)
        .arg("--data")
        .arg(tiny_data())
        .arg("--run-dir")
        .arg(&run_dir)
        .args(TINY_MODEL));
    assert!(o.status.success(), "{}", stderr(&o));
    let kept: Vec<String> = std::fs::read_dir(run_dir.join("shaders"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept, vec!["sgd.wgsl".to_string()]);
    assert_eq!(
        std::fs::read_to_string(run_dir.join("shaders/sgd.wgsl")).unwrap(),
        comment
    );

    // A file that does not compile: one line, its place in the file.
    let sgd = dir.join("sgd.wgsl");
    let (broken, line) = shader_with_a_syntax_error("sgd.wgsl");
    std::fs::write(&sgd, broken).unwrap();
    let o = run(bin()
        .args(["profile", "--synthetic", "--steps", "1", "--shaders"])
        .arg(&dir)
        .args(TINY_MODEL));
    assert_one_line_error(&o, 1, "shader sgd does not compile");
    let place = format!("(line {line} of {})", sgd.display());
    assert!(stderr(&o).contains(&place), "{place} not in {}", stderr(&o));

    // A second export keeps the edited file.
    let o = run(bin().args(["shaders", "export"]).arg(&dir));
    assert_one_line_error(&o, 2, "sgd.wgsl in");
    assert_ne!(std::fs::read_to_string(&sgd).unwrap(), built_in("sgd.wgsl"));
    let o = run(bin().args(["shaders", "export", "--force"]).arg(&dir));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&sgd).unwrap(), built_in("sgd.wgsl"));

    let o = run(bin()
        .args(["check", "--shaders"])
        .arg(tmp.path().join("nowhere")));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("is not a folder"), "{}", stderr(&o));
}

/// `--adapter auto` prefers GPUs, so a CPU adapter under it means that wgpu sees no GPU
/// (a newcomer's missing driver): the run says so at once, in one warning. Asked for by
/// name, or where a GPU is first, it says nothing of the kind.
#[test]
fn auto_on_a_cpu_adapter_says_at_once_that_no_gpu_was_found() {
    let o = run(bin().args(["adapters", "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let cpu_first = listed[0]["type"] == "Cpu";
    let dir = tempfile::tempdir().unwrap();
    for (adapter, warned) in [("auto", cpu_first), ("0", false)] {
        let run_dir = dir.path().join(adapter);
        let o = run(tiny_train(&run_dir).args(["--max-steps", "1", "--adapter", adapter]));
        let err = stderr(&o);
        assert!(o.status.success(), "{err}");
        assert_eq!(
            err.matches("no GPU adapter found").count(),
            usize::from(warned),
            "--adapter {adapter}, CPU adapter first: {cpu_first}: {err}"
        );
    }
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
    // The features that decide what runs, in the table and in the JSON.
    let header = out.lines().next().unwrap();
    assert!(
        header.contains("features") && header.ends_with("driver"),
        "{out}"
    );
    let o = run(bin().args(["adapters", "--json"]));
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in ["subgroups", "f16", "cooperative_matrix", "timestamps"] {
        assert!(listed[0][key].is_boolean(), "{key}: {listed}");
    }
}

#[test]
fn profile_reports_one_submit_and_no_readback_per_step() {
    let mut c = bin();
    c.args(["profile", "--json", "--steps", "2", "--data"])
        .arg(tiny_data());
    c.args(TINY_MODEL);
    let o = run(&mut c);
    assert!(o.status.success(), "{}", stderr(&o));
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["submits_per_step"].as_f64(), Some(1.0), "{p}");
    assert_eq!(p["readbacks_per_step"].as_f64(), Some(0.0), "{p}");
    assert!(p["dispatches_per_step"].as_u64().unwrap() > 20);
    assert!(p["words_per_second"].as_f64().unwrap() > 0.0);
    assert!(p["matmul_gflops"].as_f64().unwrap() > 0.0);
    assert!(p["percent_of_matmul_limit"].as_f64().unwrap() > 0.0);
    // TINY_MODEL's parameters: embedding 60x8, lstm.0 (8+8)x32 + 32, lstm.1 (8+6)x24 + 24,
    // softmax 6x60 + 60: 1804 words. The step holds at least as much again in gradients,
    // and its logits (2x5 rows of 60).
    let params = 4 * (480 + 512 + 32 + 336 + 24 + 360 + 60);
    assert_eq!(p["parameter_bytes"].as_u64(), Some(params), "{p}");
    assert!(
        p["gpu_buffer_bytes"].as_u64().unwrap() > 2 * params + 4 * 10 * 60,
        "{p}"
    );
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

/// `profile --trace FILE`: the step as Chrome trace events, the host's spans and one GPU
/// span per dispatch on one timeline, each kernel after the submit; a folder that does not
/// exist is one line before any GPU work.
#[test]
fn profile_writes_the_step_as_a_chrome_trace() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("step.json");
    let mut c = bin();
    c.args([
        "profile",
        "--json",
        "--steps",
        "1",
        "--no-matmul-peak",
        "--trace",
    ])
    .arg(&path)
    .arg("--data")
    .arg(tiny_data());
    c.args(TINY_MODEL);
    let o = run(&mut c);
    assert!(o.status.success(), "{}", stderr(&o));
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let t: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let events = t["traceEvents"].as_array().unwrap();
    let spans = |cat: &str| -> Vec<&serde_json::Value> {
        events
            .iter()
            .filter(|e| e["ph"] == "X" && e["cat"] == cat)
            .collect()
    };
    let (host, gpu) = (spans("host"), spans("gpu"));
    assert_eq!(
        gpu.len() as u64,
        p["dispatches_per_step"].as_u64().unwrap(),
        "one GPU span per dispatch"
    );
    let submit = host
        .iter()
        .find(|e| e["name"] == "submit")
        .unwrap_or_else(|| panic!("no submit span: {host:?}"));
    let submit_end = submit["ts"].as_f64().unwrap() + submit["dur"].as_f64().unwrap();
    let mut last_start = f64::MIN;
    for e in &gpu {
        let (ts, dur) = (e["ts"].as_f64().unwrap(), e["dur"].as_f64().unwrap());
        assert!(ts >= submit_end - 1e-6 && dur >= 0.0, "{e}");
        assert!(ts >= last_start, "dispatches in order: {e}");
        last_start = ts;
        assert!(e["name"].as_str().is_some_and(|n| !n.is_empty()));
    }
    assert!(gpu.iter().any(|e| e["name"] == "softmax_xent_forward"));
    assert_eq!(
        t["otherData"]["dispatches_per_step"],
        p["dispatches_per_step"]
    );
    for meta in ["process_name", "thread_name"] {
        assert!(events.iter().any(|e| e["ph"] == "M" && e["name"] == meta));
    }

    let o = run(bin()
        .args(["profile", "--trace"])
        .arg(dir.path().join("missing/step.json"))
        .arg("--data")
        .arg(tiny_data())
        .args(TINY_MODEL));
    assert_one_line_error(&o, 2, "--trace");
}

// ---- Non-finite steps: --on-nan stop|skip -------------------------------------------------

/// The run's metrics records of one kind.
fn metrics_of(run_dir: &Path, kind: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == kind)
        .collect()
}

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

// ---- Corpus and output errors through the binary --------------------------------------------

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

#[test]
fn corpus_errors_are_one_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let train = tiny_file("ptb.train.txt");
    let valid = tiny_file("ptb.valid.txt");
    let test = tiny_file("ptb.test.txt");
    let no_unk = train_without_unk();
    // A valid split with a word the train split never has.
    let valid_oov = b" the market rose on zyzzyva day \n".to_vec();
    // (name, [train, valid, test] files, exit code, what the error line says)
    type Case<'a> = (&'a str, [Option<&'a [u8]>; 3], i32, &'a str);
    let cases: Vec<Case> = vec![
        (
            "missing",
            [Some(&train), Some(&valid), None],
            1,
            "ptb.test.txt",
        ),
        (
            "empty",
            [Some(&train), Some(b""), Some(&test)],
            1,
            "is empty",
        ),
        (
            "binary",
            [Some(b"the market\0 rose\n"), Some(&valid), Some(&test)],
            1,
            "binary",
        ),
        (
            "latin1",
            [Some(&train), Some(&valid), Some(b"the caf\xe9 rose\n")],
            1,
            "not UTF-8",
        ),
        (
            "gzip",
            [Some(b"\x1f\x8b\x08\x00rest"), Some(&valid), Some(&test)],
            1,
            "gzip",
        ),
        (
            "blank",
            [Some(&train), Some(b"  \t  "), Some(&test)],
            1,
            "only blanks",
        ),
        // 30 tokens of valid: 15 per row, a batch needs 21 at --num-steps 20.
        (
            "small",
            [Some(&train), Some(&valid), Some(&test)],
            2,
            "too few",
        ),
        (
            "oov",
            [Some(&no_unk), Some(&valid_oov), Some(&test)],
            1,
            "\"zyzzyva\" is not in the vocabulary",
        ),
    ];
    for (name, files, code, needle) in cases {
        let data = corpus(&dir.path().join(name), files);
        let run_dir = dir.path().join(format!("run-{name}"));
        let o = if name == "small" {
            run(bin()
                .arg("train")
                .arg("--data")
                .arg(&data)
                .arg("--run-dir")
                .arg(&run_dir)
                .args([
                    "--vocab-size",
                    "60",
                    "--batch-size",
                    "2",
                    "--num-steps",
                    "20",
                ]))
        } else {
            train_on(&data, &run_dir)
        };
        assert_one_line_error(&o, code, needle);
        assert!(!run_dir.exists(), "{name}: the run folder was created");
    }
    // `data info` reads the same files and says the same.
    let o = run(bin()
        .args(["data", "info", "--data"])
        .arg(dir.path().join("binary")));
    assert_one_line_error(&o, 1, "binary");
    // A corpus folder that is not there is a usage error.
    let o = train_on(&dir.path().join("nowhere"), &dir.path().join("run-nowhere"));
    assert_one_line_error(&o, 2, "nowhere");
    assert!(!dir.path().join("run-nowhere").exists());
}

#[test]
fn words_outside_the_vocabulary_in_eval_and_predict() {
    let dir = tempfile::tempdir().unwrap();
    let no_unk = train_without_unk();
    // Valid and test: lines of the train split, so every word is known.
    let lines: Vec<&str> = std::str::from_utf8(&no_unk).unwrap().lines().collect();
    let valid = format!("{}\n", lines[..4].join("\n")).into_bytes();
    let test = format!("{}\n", lines[4..8].join("\n")).into_bytes();
    let data = corpus(
        &dir.path().join("no-unk"),
        [Some(&no_unk), Some(&valid), Some(&test)],
    );
    let run_dir = dir.path().join("run");
    let o = train_on(&data, &run_dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let ck = run_dir.join("last.safetensors");
    assert!(params_of(&ck).vocab.iter().all(|w| w != "<unk>"));

    // eval on a corpus with a word the checkpoint does not know: the file, line and word.
    let oov_test = b" the market rose \n the zyzzyva fell \n".to_vec();
    let other = corpus(
        &dir.path().join("oov"),
        [Some(&no_unk), Some(&valid), Some(&oov_test)],
    );
    let o = run(bin()
        .args(["eval", "--split", "test", "--checkpoint"])
        .arg(&ck)
        .arg("--data")
        .arg(&other));
    assert_one_line_error(&o, 1, "ptb.test.txt:2: the word \"zyzzyva\"");

    // predict and generate: a usage error naming the word.
    let o = run(bin()
        .args(["predict", "--checkpoint"])
        .arg(&ck)
        .arg("the zyzzyva"));
    assert_one_line_error(&o, 2, "\"zyzzyva\"");
    let o = run(bin()
        .args([
            "generate",
            "--words",
            "3",
            "--prompt",
            "zyzzyva",
            "--checkpoint",
        ])
        .arg(&ck));
    assert_one_line_error(&o, 2, "\"zyzzyva\"");

    // With <unk> in the vocabulary the word is read as <unk>, with a warning naming it.
    let tiny_run = dir.path().join("tiny");
    let o = run(tiny_train(&tiny_run).args(["--max-steps", "2", "--no-eval-at-stop"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(bin()
        .env("RUST_LOG", "warn")
        .args(["predict", "--checkpoint"])
        .arg(tiny_run.join("last.safetensors"))
        .arg("the zyzzyva"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("zyzzyva"), "{}", stderr(&o));
}

#[test]
fn an_unwritable_run_folder_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    // A folder under a regular file cannot be made, even by root.
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a folder").unwrap();
    let o = run(tiny_train(&file.join("run")).args(["--max-steps", "2"]));
    assert_one_line_error(&o, 2, "--run-dir");
    assert_eq!(std::fs::read(&file).unwrap(), b"not a folder");
    // The run folder is a file itself.
    let o = run(tiny_train(&file).args(["--max-steps", "2"]));
    assert_one_line_error(&o, 2, "--run-dir");

    // A read-only folder stops only users other than root.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.path().join("read-only");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(ro.join("probe"), b"").is_ok() {
            eprintln!("skipping the read-only folder case: this user (root?) can write to a read-only folder");
        } else {
            let o = run(tiny_train(&ro).args(["--max-steps", "2"]));
            assert_one_line_error(&o, 2, "--run-dir");
            assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 0);
        }
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

// ---- --matmul: every variant runs the step and gives the same training -------------------

/// A tiny model whose sizes are multiples of 4, so that subgroup-broadcast really runs
/// (it falls back to register-blocked for other sizes).
fn aligned_model(c: &mut Command) -> &mut Command {
    c.args([
        "--vocab-size",
        "60",
        "--embedding-size",
        "8",
        "--hidden",
        "8,4",
        "--batch-size",
        "4",
        "--num-steps",
        "5",
    ])
}

#[test]
fn every_matmul_variant_runs_the_step_and_trains_alike() {
    let dir = tempfile::tempdir().unwrap();
    let mut finals = Vec::new();
    for (variant, prefix) in [
        ("tiled", "matmul_tiled"),
        ("register-blocked", "matmul_register_blocked"),
        ("subgroup-broadcast", "matmul_subgroup_"),
        ("skinny", "matmul_skinny"),
    ] {
        // The profile names the kernels the step really dispatched.
        let mut c = bin();
        c.args([
            "profile",
            "--json",
            "--steps",
            "1",
            "--no-matmul-peak",
            "--matmul",
        ])
        .arg(variant)
        .arg("--data")
        .arg(tiny_data());
        let o = run(aligned_model(&mut c));
        assert!(o.status.success(), "{variant}: {}", stderr(&o));
        let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let names: Vec<&str> = p["kernels"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|k| k["kernel"].as_str())
            .filter(|k| k.starts_with("matmul_"))
            .collect();
        assert!(
            !names.is_empty() && names.iter().all(|n| n.starts_with(prefix)),
            "--matmul {variant} ran {names:?}"
        );

        let run_dir = dir.path().join(variant);
        let mut c = bin();
        c.args([
            "train",
            "--max-steps",
            "6",
            "--seed",
            "3",
            "--no-progress",
            "--matmul",
        ])
        .arg(variant)
        .arg("--data")
        .arg(tiny_data())
        .arg("--run-dir")
        .arg(&run_dir);
        let o = run(aligned_model(&mut c));
        assert!(o.status.success(), "{variant}: {}", stderr(&o));
        finals.push((variant, params_of(&run_dir.join("last.safetensors")).params));
    }
    // Every variant sums each output in the order of k; they may differ only by rounding.
    let (_, first) = &finals[0];
    for (variant, params) in &finals[1..] {
        for ((name, a), (_, b)) in first.tensors().into_iter().zip(params.tensors()) {
            let (mut diff, mut norm) = (0.0f64, 0.0f64);
            for (x, y) in a.iter().zip(b) {
                assert!(y.is_finite(), "{variant}: {name} is not finite");
                diff += (*x as f64 - *y as f64).powi(2);
                norm += (*x as f64).powi(2);
            }
            let rel = (diff / norm.max(1e-30)).sqrt();
            assert!(
                rel <= 1e-5,
                "{variant}: {name} differs from tiled by {rel:.2e}"
            );
        }
    }
}

// ---- Damaged checkpoints and models too large for the adapter -----------------------------

#[test]
fn damaged_checkpoints_and_impossible_models_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let o = run(tiny_train(&run_dir)
        .args(["--max-steps", "3", "--no-eval-at-stop"])
        .env("RUST_LOG", "info"));
    assert!(o.status.success(), "{}", stderr(&o));
    // The stop line says the validation perplexity was not measured (not "NaN").
    let err = stderr(&o);
    assert!(
        err.contains("valid perplexity not measured (--no-eval-at-stop)") && !err.contains("NaN"),
        "{err}"
    );
    let ck = run_dir.join("last.safetensors");
    let good = std::fs::read(&ck).unwrap();

    // Truncated, and one bit flipped in the last tensor's data: both found, the file named.
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let mut flipped_bytes = good.clone();
    let at = flipped_bytes.len() - 9;
    flipped_bytes[at] ^= 0x10;
    let flipped = dir.path().join("flipped.safetensors");
    std::fs::write(&flipped, &flipped_bytes).unwrap();
    for (path, needle) in [(&truncated, "truncated"), (&flipped, "checksum")] {
        for cmd in ["eval", "predict"] {
            let mut c = bin();
            c.arg(cmd).arg("--checkpoint").arg(path);
            if cmd == "eval" {
                c.arg("--data").arg(tiny_data());
            } else {
                c.arg("the");
            }
            let o = run(&mut c);
            assert_one_line_error(&o, 1, needle);
            assert!(stderr(&o).contains(path.file_name().unwrap().to_str().unwrap()));
        }
        // Resuming from it fails before anything is written over the run's checkpoint.
        let o = run(tiny_train(&run_dir)
            .args(["--max-steps", "6", "--resume"])
            .arg(path));
        assert_one_line_error(&o, 1, needle);
        assert_eq!(
            std::fs::read(&ck).unwrap(),
            good,
            "last.safetensors changed"
        );
    }

    // A vocabulary that contradicts the checkpoint.
    let o = run(tiny_train(&run_dir)
        .args(["--vocab-size", "50", "--max-steps", "6", "--resume"])
        .arg(&ck));
    assert_one_line_error(&o, 2, "--vocab-size");
    assert_eq!(
        std::fs::read(&ck).unwrap(),
        good,
        "last.safetensors changed"
    );

    // A model larger than the adapter's buffers: said before anything is allocated or
    // written, naming the tensor and the limit.
    let big = dir.path().join("big");
    let o = run(bin()
        .args(["train", "--data"])
        .arg(tiny_data())
        .args([
            "--hidden",
            "8192,8192",
            "--embedding-size",
            "8",
            "--batch-size",
            "2",
            "--num-steps",
            "5",
            "--max-steps",
            "1",
            "--run-dir",
        ])
        .arg(&big));
    assert_one_line_error(&o, 1, "lstm.0.weight");
    assert!(stderr(&o).contains("MiB"), "{}", stderr(&o));
    assert!(
        !big.exists(),
        "a run folder was made for a model that cannot run"
    );

    // No adapter at all on the requested API (DX12 does not exist on Linux).
    if cfg!(target_os = "linux") {
        let o = run(bin()
            .args([
                "train",
                "--backend",
                "dx12",
                "--batch-size",
                "2",
                "--num-steps",
                "5",
            ])
            .arg("--data")
            .arg(tiny_data())
            .arg("--run-dir")
            .arg(&big));
        assert_one_line_error(&o, 1, "no GPU adapter found on backend Dx12");
        assert!(!big.exists());
    }
}

/// Usage errors of the corpus flags, each one line with exit code 2: two layouts in one
/// folder, --data with --train, an impossible --valid-fraction, --tie-weights on a model
/// whose embedding is not as wide as its top layer. `data info` describes a split cut from
/// the training text, in characters.
#[test]
fn corpus_flags_and_layouts_are_checked_as_usage() {
    let dir = tempfile::tempdir().unwrap();
    let both = corpus(
        &dir.path().join("both"),
        [
            Some(&tiny_file("ptb.train.txt")),
            Some(&tiny_file("ptb.valid.txt")),
            Some(&tiny_file("ptb.test.txt")),
        ],
    );
    std::fs::write(both.join("train.txt"), tiny_file("ptb.train.txt")).unwrap();
    let o = run(bin().args(["data", "info", "--data"]).arg(&both));
    assert_one_line_error(&o, 2, "ptb.train.txt");
    assert!(stderr(&o).contains("plain (train.txt)"), "{}", stderr(&o));
    let o = train_on(&both, &dir.path().join("run-both"));
    assert_one_line_error(&o, 2, "corpus layouts");

    let train = tiny_data().join("ptb.train.txt");
    let o = run(bin()
        .args(["data", "info", "--data"])
        .arg(tiny_data())
        .arg("--train")
        .arg(&train));
    assert_one_line_error(&o, 2, "cannot be used with");
    let o = run(bin()
        .args(["data", "info", "--valid-fraction", "0.7", "--train"])
        .arg(&train));
    assert_one_line_error(&o, 2, "--valid-fraction");
    let o = run(bin().args(["data", "info", "--train"]).arg(&train));
    assert_one_line_error(&o, 2, "--valid-fraction");
    let o = run(bin()
        .args(["train", "--tie-weights", "--data"])
        .arg(tiny_data())
        .args(["--embedding-size", "8", "--hidden", "8,6"]));
    assert_one_line_error(&o, 2, "--tie-weights");

    let o = run(bin()
        .args([
            "data",
            "info",
            "--tokens",
            "chars",
            // The cut splits hold characters the rest lacks: <unk> stands for them.
            "--vocab-size",
            "30",
            "--valid-fraction",
            "0.2",
            "--batch-size",
            "2",
            "--num-steps",
            "5",
            "--train",
        ])
        .arg(&train));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        out.contains("30 characters (<unk> id 29")
            && out.contains("valid split: the last")
            && out.contains("bytes"),
        "{out}"
    );
}

/// A text of made-up sentences, a few thousand characters.
fn sentences() -> String {
    let subjects = ["the cat", "a dog", "my friend", "the old man"];
    let verbs = ["sat on", "looked at", "ran to", "found"];
    let objects = ["the mat.", "a tree.", "the river.", "the house."];
    let mut text = String::new();
    for i in 0..300 {
        text.push_str(&format!(
            "{} {} {}\n",
            subjects[i % 4],
            verbs[(i / 4) % 4],
            objects[(i / 16) % 4]
        ));
    }
    text
}

/// A character-level model: the checkpoint says so, and predict, generate and eval read
/// text as characters (generate joins them without spaces); a character the vocabulary
/// lacks (and no <unk>) is a usage error naming it.
#[test]
fn a_character_level_checkpoint_reads_prompts_as_characters() {
    let dir = tempfile::tempdir().unwrap();
    let book = dir.path().join("book.txt");
    std::fs::write(&book, sentences()).unwrap();
    let run_dir = dir.path().join("run");
    let o = run(bin()
        .env("RUST_LOG", "info")
        .args([
            "train",
            "--tokens",
            "chars",
            "--valid-fraction",
            "0.1",
            "--train",
        ])
        .arg(&book)
        .arg("--run-dir")
        .arg(&run_dir)
        .args([
            "--embedding-size",
            "8",
            "--hidden",
            "16",
            "--batch-size",
            "4",
            "--num-steps",
            "10",
            "--max-steps",
            "30",
            "--no-progress",
        ]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("valid split: the last") && stderr(&o).contains("characters"),
        "{}",
        stderr(&o)
    );
    let ck_path = run_dir.join("last.safetensors");
    let ck = params_of(&ck_path);
    assert_eq!(ck.config.tokens, lstm_gpu::data::Tokens::Chars);
    assert!(
        ck.vocab
            .iter()
            .all(|t| t.chars().count() == 1 || t == "<eos>"),
        "{:?}",
        ck.vocab
    );
    assert_eq!(ck.vocab.len(), ck.config.vocab_size);

    let o = run(bin()
        .args(["predict", "--json", "--top-k", "3", "--checkpoint"])
        .arg(&ck_path)
        .arg("the ca"));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let context: Vec<&str> = v["context"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(context, ["t", "h", "e", " ", "c", "a"]);

    let o = run(bin()
        .args([
            "generate",
            "--prompt",
            "the ",
            "--chars",
            "40",
            "--seed",
            "2",
            "--checkpoint",
        ])
        .arg(&ck_path));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.starts_with("the "), "{text:?}");
    // 40 characters after the prompt (a newline for each <eos>) and the final newline: words
    // joined by spaces would be twice as long.
    assert_eq!(text.chars().count(), 4 + 40 + 1, "{text:?}");

    let o = run(bin()
        .args(["eval", "--split", "valid", "--checkpoint"])
        .arg(&ck_path)
        .args(["--valid-fraction", "0.1", "--train"])
        .arg(&book));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("valid perplexity"),
        "{out} {}",
        stderr(&o)
    );

    let o = run(bin()
        .args(["predict", "--checkpoint"])
        .arg(&ck_path)
        .arg("the ~"));
    assert_one_line_error(&o, 2, "character \"~\"");
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

/// `data info` on a plain text `train` (its last 20% as valid and test) read as `tokens`.
fn data_info_as(train: &Path, tokens: &str) -> Output {
    run(bin()
        .args([
            "data",
            "info",
            "--valid-fraction",
            "0.2",
            "--tokens",
            tokens,
            "--train",
        ])
        .arg(train))
}

/// Plain text whose line ends touch words: `words` (TensorFlow's reader) glues them on and
/// says so once, naming the mode that does not; `words-eos` makes each line end an `<eos>`.
#[test]
fn glued_line_ends_are_reported_and_words_eos_keeps_them_apart() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("story.txt");
    let mut text = String::new();
    for i in 0..200 {
        text.push_str(&format!(
            "the cat sat on mat {}\nand then it slept\n",
            i % 9
        ));
    }
    std::fs::write(&train, &text).unwrap();
    let info = |tokens: &str| data_info_as(&train, tokens);
    let glued = info("words");
    assert!(glued.status.success(), "{}", stderr(&glued));
    let err = stderr(&glued);
    assert!(
        err.contains("line end glued on") && err.contains("--tokens words-eos"),
        "{err}"
    );
    let apart = info("words-eos");
    assert!(apart.status.success(), "{}", stderr(&apart));
    assert!(!stderr(&apart).contains("glued"), "{}", stderr(&apart));
    let out = String::from_utf8_lossy(&apart.stdout);
    assert!(out.contains("words-eos"), "{out}");
    // The 9 words, the 9 digits and <eos>: "3<eos>and" and "slept<eos>the" are gone.
    assert!(out.contains("vocabulary  19 words"), "{out}");
    let glued_out = String::from_utf8_lossy(&glued.stdout);
    assert!(!glued_out.contains("vocabulary  19 words"), "{glued_out}");
}

/// A valid split whose glued pairs (`b<eos>a`) the training text never has: in `words`
/// mode an unknown token, and the error says which mode keeps line ends apart; in
/// `words-eos` every token is known.
#[test]
fn an_unknown_glued_token_names_words_eos() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("pairs.txt");
    let mut text = String::new();
    for i in 0..400 {
        text.push_str(if i % 2 == 0 { "a b\n" } else { "c d\n" });
    }
    for _ in 0..100 {
        text.push_str("a b\n");
    }
    std::fs::write(&train, &text).unwrap();
    let info = |tokens: &str| data_info_as(&train, tokens);
    let o = info("words");
    assert_one_line_error(&o, 1, "b<eos>a");
    assert!(
        stderr(&o).contains("--tokens words-eos keeps line ends apart"),
        "{}",
        stderr(&o)
    );
    let o = info("words-eos");
    assert!(o.status.success(), "{}", stderr(&o));
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

/// `--recurrence wavefront` on the command line: the step in the wavefront's order (its
/// chunks' launches more than unfused, said in the profile), a training run with it
/// leaves the same parameters as unfused bit for bit, and an unknown recurrence is one
/// line naming the three.
#[test]
fn the_wavefront_recurrence_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut launches = Vec::new();
    for how in ["unfused", "wavefront"] {
        let o = run(bin()
            .args(["profile", "--json", "--synthetic", "--steps", "1"])
            .args(TINY_MODEL)
            .args(["--recurrence", how]));
        assert!(o.status.success(), "profile {how}: {}", stderr(&o));
        let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(p["recurrence"], format!("{how} (forced)"));
        launches.push(p["dispatches_per_step"].as_u64().unwrap());
        let o = run(tiny_train(&dir.path().join(how)).args([
            "--max-steps",
            "6",
            "--no-eval-at-stop",
            "--recurrence",
            how,
        ]));
        assert!(o.status.success(), "train {how}: {}", stderr(&o));
    }
    // 5 time steps: 2 chunks of 3 and 2; layer 2's input projection and layer 1's
    // d(input) once more each.
    assert_eq!(launches[1], launches[0] + 2, "{launches:?}");
    assert_trained_alike(dir.path(), "unfused", "wavefront");
    let o = run(bin()
        .args(["profile", "--synthetic", "--steps", "1"])
        .args(TINY_MODEL)
        .args(["--recurrence", "diagonal"]));
    assert_one_line_error(&o, 2, "fused, unfused or wavefront");
}

/// `LSTM_GPU_COLUMN_SUMS` chooses how the bias gradients' column sums add their rows:
/// `sliced` (a GPU's default) cuts the softmax's and both layers' sums into row slices
/// (80 rows here: two slices of 40), `serial` (a CPU adapter's) adds each column in one
/// pass; both train, to the same parameters within rounding; anything else is one line and
/// exit 2.
#[test]
fn column_sums_env_slices_the_bias_sums() {
    let dir = tempfile::tempdir().unwrap();
    let model = [
        "--vocab-size",
        "60",
        "--embedding-size",
        "8",
        "--hidden",
        "8,6",
        "--batch-size",
        "8",
        "--num-steps",
        "10",
    ];
    let mut counts = Vec::new();
    // The tiny corpus's training text serves as all three splits: its valid and test
    // splits are too short for 8 rows of 10 steps.
    let text = tiny_data().join("ptb.train.txt");
    for how in ["serial", "sliced"] {
        let o = run(bin()
            .arg("train")
            .args(
                ["--train", "--valid", "--test"]
                    .map(|flag| [flag.as_ref(), text.as_os_str()])
                    .concat(),
            )
            .arg("--run-dir")
            .arg(dir.path().join(how))
            .args(model)
            .args(["--max-steps", "3", "--no-progress", "--no-eval-at-stop"])
            .env("LSTM_GPU_COLUMN_SUMS", how));
        assert!(o.status.success(), "{how}: {}", stderr(&o));
        let o = run(bin()
            .args(["profile", "--json", "--synthetic", "--steps", "1"])
            .args(model)
            .env("LSTM_GPU_COLUMN_SUMS", how));
        assert!(o.status.success(), "profile {how}: {}", stderr(&o));
        let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let count = |k: &str| p[k].as_u64().unwrap();
        counts.push((
            count("column_sums_in_slices"),
            count("column_sums_one_pass"),
        ));
    }
    assert_eq!(
        counts,
        [(0, 3), (3, 0)],
        "(in slices, one pass): serial, sliced"
    );
    let (a, b) = (
        params_of(&dir.path().join("serial/last.safetensors")),
        params_of(&dir.path().join("sliced/last.safetensors")),
    );
    for ((name, x), (_, y)) in a.params.tensors().into_iter().zip(b.params.tensors()) {
        for (u, v) in x.iter().zip(y) {
            assert!(
                (u - v).abs() <= 1e-4 * (1.0 + u.abs()),
                "{name}: {u} vs {v}"
            );
        }
    }
    let o = run(bin()
        .args(["profile", "--synthetic", "--steps", "1"])
        .args(TINY_MODEL)
        .env("LSTM_GPU_COLUMN_SUMS", "diagonal"));
    assert_one_line_error(&o, 2, "LSTM_GPU_COLUMN_SUMS=diagonal");
}

/// `LSTM_GPU_SPLIT_SUMS` chooses who adds a split recurrent product's slices (the cell, or a
/// pass of their own): the same training bit for bit either way, more launches with
/// `separate`; anything else is one line and exit 2.
#[test]
fn split_sums_env_changes_the_launches_not_the_training() {
    let dir = tempfile::tempdir().unwrap();
    let mut launches = Vec::new();
    for how in ["cell", "separate"] {
        let run_dir = dir.path().join(how);
        // Hidden 40 and 24: recurrent products long enough to split, as on a GPU.
        let o = run(bin()
            .args(["train", "--data"])
            .arg(tiny_data())
            .arg("--run-dir")
            .arg(&run_dir)
            .args([
                "--vocab-size",
                "60",
                "--embedding-size",
                "8",
                "--hidden",
                "40,24",
            ])
            .args(["--batch-size", "2", "--num-steps", "5", "--max-steps", "4"])
            .args([
                "--matmul",
                "strip-split",
                "--recurrence",
                "unfused",
                "--no-tune",
            ])
            .args(["--keep-prob", "0.8", "--no-progress", "--no-eval-at-stop"])
            .env("LSTM_GPU_SPLIT_SUMS", how));
        assert!(o.status.success(), "{how}: {}", stderr(&o));
        let o = run(bin()
            .args([
                "profile",
                "--json",
                "--synthetic",
                "--steps",
                "1",
                "--no-tune",
            ])
            .args([
                "--vocab-size",
                "60",
                "--embedding-size",
                "8",
                "--hidden",
                "40,24",
            ])
            .args(["--batch-size", "2", "--num-steps", "5"])
            .args(["--matmul", "strip-split", "--recurrence", "unfused"])
            .env("LSTM_GPU_SPLIT_SUMS", how));
        assert!(o.status.success(), "profile {how}: {}", stderr(&o));
        let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let count = |k: &str| p[k].as_u64().unwrap();
        launches.push((
            count("dispatches_per_step"),
            count("split_sums_in_cell"),
            count("split_sum_passes"),
        ));
    }
    // (launches, slices added by the cell, sum passes), cell then separate: the cell's
    // additions are exactly the passes saved.
    let [(l0, cell0, pass0), (l1, cell1, pass1)] = launches[..] else {
        unreachable!()
    };
    assert!(cell0 > 0 && cell1 == 0, "{launches:?}");
    assert_eq!((l1 - l0, pass1 - pass0), (cell0, cell0), "{launches:?}");
    assert_trained_alike(dir.path(), "cell", "separate");
    let o = run(bin()
        .args(["profile", "--synthetic", "--steps", "1"])
        .args(TINY_MODEL)
        .env("LSTM_GPU_SPLIT_SUMS", "sideways"));
    assert_one_line_error(&o, 2, "LSTM_GPU_SPLIT_SUMS=sideways");
}

/// `LSTM_GPU_WAVEFRONT_GROUPS` says whether a wavefront's paired time steps run as one
/// launch each (`on`, the default) or one per layer (`off`): with the strip kernel (which
/// has a grouped form) the tiny model's step (5 time steps: chunks of 3 and 2) runs 3 pairs
/// of time steps grouped (`wavefront_grouped_steps` in the profile), 2 (2 (5 - 3) - 1) = 6
/// launches fewer, and both train to the same parameters bit for bit; anything else is one
/// line and exit 2.
#[test]
fn wavefront_groups_env_changes_the_launches_not_the_training() {
    let dir = tempfile::tempdir().unwrap();
    let mut launches = Vec::new();
    for how in ["on", "off"] {
        let o = run(tiny_train(&dir.path().join(how))
            .args(["--max-steps", "6", "--no-eval-at-stop"])
            .args(["--matmul", "strip", "--recurrence", "wavefront"])
            .env("LSTM_GPU_WAVEFRONT_GROUPS", how));
        assert!(o.status.success(), "train {how}: {}", stderr(&o));
        let o = run(bin()
            .args(["profile", "--json", "--synthetic", "--steps", "1"])
            .args(TINY_MODEL)
            .args(["--matmul", "strip", "--recurrence", "wavefront"])
            .env("LSTM_GPU_WAVEFRONT_GROUPS", how));
        assert!(o.status.success(), "profile {how}: {}", stderr(&o));
        let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let count = |k: &str| p[k].as_u64().unwrap();
        launches.push((
            count("dispatches_per_step"),
            count("wavefront_grouped_steps"),
        ));
    }
    // Three grouped steps (two forward, one backward), each two launches fewer.
    assert_eq!(launches[0].1, 3, "{launches:?}");
    assert_eq!(launches[1].1, 0, "{launches:?}");
    assert_eq!(launches[1].0 - launches[0].0, 6, "{launches:?}");
    assert_trained_alike(dir.path(), "on", "off");
    let o = run(bin()
        .args(["profile", "--synthetic", "--steps", "1"])
        .args(TINY_MODEL)
        .env("LSTM_GPU_WAVEFRONT_GROUPS", "sometimes"));
    assert_one_line_error(&o, 2, "LSTM_GPU_WAVEFRONT_GROUPS=sometimes");
}
