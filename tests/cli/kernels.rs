//! Kernels from the command line: `check`, `--shaders`, `profile`, `bench kernels`, every
//! `--matmul` variant and recurrence, and the launch-shaping environment variables.

use super::*;

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
