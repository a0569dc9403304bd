//! A trained model from the command line: `eval`, `predict`, `generate` and `info`, on
//! word- and character-level checkpoints and on a user's own text.

use super::*;

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

/// The step where `--max-steps` stops a run is a log point (its speed and norms), also
/// before the first `--log-every` one. A run stopped there by an older version has only its
/// `stop` record; one stopped by a signal that early, none. `info` tells each what there is,
/// and `plot` draws the first two and refuses the last in one line.
#[test]
fn info_and_plot_read_a_run_stopped_before_its_first_log_point() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut train = bin();
    train
        .arg("train")
        .arg("--data")
        .arg(tiny_data())
        .arg("--run-dir");
    let o = run(train.arg(&run_dir).args(TINY_MODEL).args([
        "--no-progress",
        "--log-every",
        "10",
        "--max-steps",
        "3",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let logged = metrics_of(&run_dir, "train");
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0]["global_step"], 3);
    assert!(logged[0]["words_per_second"].as_f64().unwrap() > 0.0);
    assert!(logged[0]["grad_norm"].as_f64().unwrap() > 0.0);
    let stop = &metrics_of(&run_dir, "stop")[0];
    assert_eq!(stop["train_perplexity"], logged[0]["perplexity"]);
    // As an older version left it: the stop alone.
    let stop_line = std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .find(|l| l.contains("\"stop\""))
        .unwrap()
        .to_string();
    std::fs::write(run_dir.join("metrics.jsonl"), stop_line + "\n").unwrap();
    let field = |k: &str| stop[k].as_f64().unwrap();
    let info = |json: bool| {
        let mut c = bin();
        c.arg("info").arg(&run_dir);
        if json {
            c.arg("--json");
        }
        let o = run(&mut c);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let text = info(false);
    assert!(
        text.contains("no epoch finished yet")
            && text.contains(&format!(
                "stopped by --max-steps at global step 3: train perplexity {:.3}, valid perplexity {:.3}",
                field("train_perplexity"),
                field("valid_perplexity")
            ))
            && text.contains("last.safetensors (in epoch 1, step 3)"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&info(true)).unwrap();
    assert_eq!(json["stopped"]["global_step"].as_f64(), Some(3.0), "{json}");
    assert_eq!(
        json["stopped"]["valid_perplexity"].as_f64(),
        Some(field("valid_perplexity"))
    );
    let svg = dir.path().join("stopped.svg");
    let plot = |out: &Path| run(bin().arg("plot").arg(&run_dir).arg("--out").arg(out));
    let o = plot(&svg);
    assert!(o.status.success(), "{}", stderr(&o));
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(
        drawn.contains("train") && drawn.contains("valid"),
        "{drawn}"
    );

    // Nothing logged (a signal before the first log point): the checkpoint is still told.
    std::fs::write(run_dir.join("metrics.jsonl"), "").unwrap();
    let text = info(false);
    assert!(
        text.contains("nothing logged yet") && text.contains("last.safetensors"),
        "{text}"
    );
    let empty = dir.path().join("empty.svg");
    assert_one_line_error(&plot(&empty), 1, "logged nothing yet");
    assert!(!empty.exists());
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
    // The prompt without --prompt, as `predict` takes its context; not both.
    let bare = |prompt: &[&str]| {
        run(bin()
            .args(["generate", "--words", "15", "--seed", "3", "--checkpoint"])
            .arg(&ck)
            .args(prompt))
    };
    assert_eq!(String::from_utf8_lossy(&bare(&["the"]).stdout), g1);
    assert_one_line_error(&bare(&["the", "--prompt", "the"]), 2, "cannot be used with");
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
    // A text the model was not trained on: a usage error that says so.
    assert_one_line_error(&o, 2, "ptb.test.txt:2: the word \"zyzzyva\"");
    assert!(
        stderr(&o).contains(&format!(
            "is not in the vocabulary of {}, which has no <unk> to stand for it: --data {} is not the text the model was trained on",
            ck.display(),
            std::path::absolute(&other).unwrap().display(),
        )) && !stderr(&o).contains("build the vocabulary"),
        "{}",
        stderr(&o)
    );

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

/// A run's checkpoints record the corpus its command line named (paths made absolute):
/// `eval`, `train --resume` and `info` find it without flags; a text the model was not
/// trained on, or one moved away, is one usage line that names it.
#[test]
fn checkpoints_remember_their_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let texts = dir.path().join("texts");
    std::fs::create_dir_all(&texts).unwrap();
    let story = texts.join("story.txt");
    std::fs::write(&story, train_without_unk()).unwrap();
    let run_dir = dir.path().join("run");
    // Trained from the text's folder, the file named relative to it.
    let o = run(bin()
        .current_dir(&texts)
        .args(["train", "--train", "story.txt", "--valid", "story.txt"])
        .args(["--test", "story.txt"])
        .args(["--max-steps", "3", "--no-progress", "--run-dir"])
        .arg(&run_dir)
        // TINY_MODEL without --vocab-size: every word of the text, and no <unk>.
        .args(&TINY_MODEL[2..]));
    assert!(o.status.success(), "{}", stderr(&o));
    let ck = run_dir.join("last.safetensors");
    let flags = format!("--train {0} --valid {0} --test {0}", story.display());
    let o = run(bin().arg("info").arg(&ck));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(&format!("corpus      {flags}")), "{text}");

    // Scored without corpus flags, from another folder: the same text as with them.
    let eval = |extra: &[&str]| {
        run(bin()
            .env("RUST_LOG", "info")
            .args(["eval", "--checkpoint"])
            .arg(&ck)
            .args(extra))
    };
    let recorded = eval(&[]);
    assert!(recorded.status.success(), "{}", stderr(&recorded));
    assert!(
        stderr(&recorded).contains(&format!("the one the model was trained on ({flags})")),
        "{}",
        stderr(&recorded)
    );
    let story_arg = story.display().to_string();
    let named = eval(&[
        "--train", &story_arg, "--valid", &story_arg, "--test", &story_arg,
    ]);
    assert!(named.status.success(), "{}", stderr(&named));
    let perplexity = |o: &Output| {
        String::from_utf8_lossy(&o.stdout)
            .split(',')
            .next()
            .unwrap()
            .to_string()
    };
    assert!(
        perplexity(&recorded).starts_with("valid perplexity: "),
        "{}",
        perplexity(&recorded)
    );
    assert_eq!(perplexity(&recorded), perplexity(&named));
    assert!(
        !stderr(&named).contains("trained on ("),
        "{}",
        stderr(&named)
    );

    // Resumed without corpus flags: the same text, still recorded.
    let before = params_of(&ck).corpus;
    assert!(before.is_some());
    let o = run(bin()
        .args(["train", "--max-steps", "5", "--no-progress", "--resume"])
        .arg(&run_dir));
    assert!(o.status.success(), "{}", stderr(&o));
    let resumed = params_of(&ck);
    assert_eq!(resumed.position.global_step, 5);
    assert_eq!(resumed.corpus, before);

    // Another text, whose words the vocabulary lacks: named as not the model's.
    let other = corpus(
        &dir.path().join("other"),
        [
            Some(b" zyzzyva the \n"),
            Some(&tiny_file("ptb.valid.txt")),
            Some(&tiny_file("ptb.test.txt")),
        ],
    );
    let o = eval(&["--data", other.to_str().unwrap()]);
    assert_one_line_error(&o, 2, "is not the text");
    assert!(stderr(&o).contains("zyzzyva"), "{}", stderr(&o));
    // The text moved away: the flags it was trained with, and what to do.
    std::fs::rename(&story, texts.join("moved.txt")).unwrap();
    let o = eval(&[]);
    assert_one_line_error(&o, 2, &flags);
    assert!(stderr(&o).contains("--train FILE"), "{}", stderr(&o));
}
