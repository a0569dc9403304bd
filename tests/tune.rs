//! `lstm-gpu tune` and the tuning cache: the first run measures and writes the cache, later
//! runs read it and say so, `--matmul`/`--recurrence` still force a kernel, and `profile`
//! reports what runs each product and why. A tiny model keeps the measurements short.

mod common;

use lstm_gpu::gpu::matmul::MatmulVariant;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The program with its cache in `cache`, tuning by itself on a first run on any adapter
/// (`LSTM_GPU_TUNE=on`: a CPU adapter, where the tests run, does not by default).
fn bin(cache: &Path) -> Command {
    let mut c = common::lstm_gpu();
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env("LSTM_GPU_CACHE_DIR", cache)
        .env("LSTM_GPU_TUNE", "on")
        .env("RUST_LOG", "info");
    c
}

/// Whether the adapter the program picks offers a tile the f16 matrix-unit kernel can use
/// (a GPU with matrix units; Mesa 26's lavapipe through CI's runner): where it does, tuning
/// in mixed precision must time `f16-coop`, and `--matmul f16-coop` must run.
fn has_coop_tile() -> bool {
    lstm_gpu::gpu::coop::coop_tile(&common::gpu()).is_some()
}

fn tiny_data() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/tiny"))
}

const MODEL: [&str; 10] = [
    "--vocab-size",
    "60",
    "--embedding-size",
    "8",
    "--hidden",
    "8,12",
    "--batch-size",
    "4",
    "--num-steps",
    "5",
];

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    format!("{}{err}", String::from_utf8_lossy(&o.stdout))
}

fn cache_json(cache: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(cache.join("tuning.json")).expect("tuning.json written");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn tune_writes_the_cache_and_later_runs_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = ok(&bin(&cache).arg("tune").args(MODEL).output().unwrap());
    assert!(out.contains("cached in"), "{out}");
    let json = cache_json(&cache);
    assert_eq!(json["format"], "lstm-gpu-tuning/1");
    let adapters = json["adapters"].as_object().unwrap();
    assert_eq!(adapters.len(), 1, "{json}");
    let (key, entry) = adapters.iter().next().unwrap();
    assert!(key.contains("lstm-gpu "), "{key}");
    // Every product has a choice, and it is the fastest of the variants timed on it.
    let matmul = entry["matmul"].as_object().unwrap();
    assert!(!matmul.is_empty());
    // A wavefront kept with grouped kernels for the recurrent products (timed as
    // "wavefront (grouped kernels)") chose for them kernels with a grouped form (one per
    // direction for all layers, the least total time: not each product's fastest).
    let grouped_wavefront = entry["models"].as_object().unwrap().values().any(|m| {
        m["recurrence"] == "wavefront" && m["step_ms"].get("wavefront (grouped kernels)").is_some()
    });
    for (product, chosen) in matmul {
        let times = entry["matmul_ms"][product].as_object().unwrap();
        let fastest = times
            .iter()
            .min_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap()))
            .map(|(v, _)| serde_json::json!(v));
        let grouped = chosen
            .as_str()
            .and_then(|v| v.parse::<MatmulVariant>().ok())
            .is_some_and(|v| v.has_group_form());
        assert!(
            Some(chosen) == fastest.as_ref() || grouped_wavefront && grouped,
            "{product}: {chosen} of {times:?}"
        );
    }
    // The training (and validation) shape and the test pass's two (its stream in batches
    // of 1x5, the words left over at 1x1), each with a recurrence.
    let models = entry["models"].as_object().unwrap();
    assert_eq!(models.len(), 3, "{models:?}");
    for m in models.values() {
        let r = m["recurrence"].as_str().unwrap();
        assert!(["fused", "unfused", "wavefront"].contains(&r), "{r}");
        // The training shape's step timed each way.
        if let Some(ms) = m["step_ms"].as_object().filter(|t| !t.is_empty()) {
            let extra = usize::from(ms.contains_key("wavefront (grouped kernels)"));
            assert_eq!(ms.len(), 3 + extra, "{ms:?}");
        }
    }

    // A training run reads the cache, says so and logs what runs each product.
    let run_dir = dir.path().join("run");
    let out = ok(&bin(&cache)
        .arg("train")
        .arg("--data")
        .arg(tiny_data())
        .arg("--run-dir")
        .arg(&run_dir)
        .args(MODEL)
        .args(["--max-steps", "2", "--no-progress", "--no-eval-at-stop"])
        .output()
        .unwrap());
    assert!(out.contains("the choices tuned earlier"), "{out}");
    assert!(out.contains("(cached)"), "{out}");
    assert!(!out.contains("kernels: tuning on"), "{out}");

    // A cache that lacks one of the run's shapes (written before a version that added a
    // workspace), in a run that does not tune: its choices for the rest, not the defaults
    // for all, and the shape it lacks named.
    let mut partial = cache_json(&cache);
    let (_, entry) = partial["adapters"]
        .as_object_mut()
        .unwrap()
        .iter_mut()
        .next()
        .unwrap();
    let models = entry["models"].as_object_mut().unwrap();
    let stream_key = models
        .keys()
        .find(|k| k.contains("batch 1 steps 5"))
        .unwrap()
        .clone();
    models.remove(&stream_key);
    std::fs::write(cache.join("tuning.json"), partial.to_string()).unwrap();
    let out = ok(&bin(&cache)
        .arg("train")
        .arg("--data")
        .arg(tiny_data())
        .arg("--run-dir")
        .arg(dir.path().join("partial"))
        .args(MODEL)
        .args([
            "--max-steps",
            "2",
            "--no-progress",
            "--no-eval-at-stop",
            "--no-tune",
        ])
        .output()
        .unwrap());
    assert!(
        out.contains("the defaults for what they lack (the workspaces at 1x5:"),
        "{out}"
    );
    assert!(
        out.contains("(cached)") && !out.contains("kernels: tuning on"),
        "{out}"
    );

    // --matmul and --recurrence still force one kernel.
    let out = ok(&bin(&cache)
        .arg("train")
        .arg("--data")
        .arg(tiny_data())
        .arg("--run-dir")
        .arg(dir.path().join("forced"))
        .args(MODEL)
        .args(["--max-steps", "3", "--no-progress", "--no-eval-at-stop"])
        .args(["--matmul", "register-blocked", "--recurrence", "unfused"])
        .output()
        .unwrap());
    assert!(out.contains("recurrence unfused (forced)"), "{out}");
    assert!(out.contains("register-blocked (forced)"), "{out}");

    // profile reports the choices and where they came from.
    let o = bin(&cache)
        .arg("profile")
        .arg("--data")
        .arg(tiny_data())
        .args(MODEL)
        .args(["--steps", "1", "--no-matmul-peak", "--json"])
        .output()
        .unwrap();
    let out = ok(&o);
    let p: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(
        p["recurrence"].as_str().unwrap().ends_with("(cached)"),
        "{p}"
    );
    let choices = p["matmul_choices"].as_array().unwrap();
    assert!(!choices.is_empty());
    assert!(
        choices
            .iter()
            .all(|c| c.as_str().unwrap().ends_with("(cached)")),
        "{choices:?}"
    );
}

#[test]
fn a_first_training_run_tunes_by_itself_unless_told_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let train = |extra: &[&str], run: &str| {
        ok(&bin(&cache)
            .arg("train")
            .arg("--data")
            .arg(tiny_data())
            .arg("--run-dir")
            .arg(dir.path().join(run))
            .args(MODEL)
            .args(["--max-steps", "2", "--no-progress", "--no-eval-at-stop"])
            .args(extra)
            .output()
            .unwrap())
    };
    let out = train(&["--no-tune"], "a");
    assert!(out.contains("(default)"), "{out}");
    assert!(
        !cache.join("tuning.json").exists(),
        "--no-tune wrote a cache"
    );
    let out = train(&[], "b");
    assert!(out.contains("kernels: tuning on"), "{out}");
    // A CPU adapter's slow first compile is announced once, not by every matmul launcher
    // that tuning and training make.
    let notice = out
        .matches("compiles the matmul kernels at their first dispatch")
        .count();
    assert!(
        notice <= 1,
        "the compile notice given {notice} times: {out}"
    );
    assert!(out.contains("(tuned)"), "{out}");
    assert!(cache.join("tuning.json").exists());
    let out = train(&[], "c");
    assert!(out.contains("(cached)"), "{out}");
}

/// Without `LSTM_GPU_TUNE`, a first run tunes by itself on a GPU but not on a CPU adapter
/// (minutes of compiling there, for little): it runs the defaults and says how to tune.
#[test]
fn a_first_run_on_a_cpu_adapter_runs_the_defaults_and_says_how_to_tune() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let adapters = bin(&cache).args(["adapters", "--json"]).output().unwrap();
    let list: serde_json::Value = serde_json::from_slice(&adapters.stdout).unwrap();
    let picked = |t: &str| list.as_array().unwrap().iter().any(|a| a["type"] == t);
    let out = ok(&bin(&cache)
        .env_remove("LSTM_GPU_TUNE")
        .arg("train")
        .arg("--data")
        .arg(tiny_data())
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .args(MODEL)
        .args(["--max-steps", "2", "--no-progress", "--no-eval-at-stop"])
        .output()
        .unwrap());
    // The test adapter is the one `auto` picks: a CPU one only where there is no GPU.
    let on_a_cpu = !picked("DiscreteGpu") && !picked("IntegratedGpu") && !picked("VirtualGpu");
    if on_a_cpu {
        assert!(
            out.contains("is a CPU adapter, where tuning takes minutes"),
            "{out}"
        );
        assert!(out.contains("LSTM_GPU_TUNE=on"), "{out}");
        assert!(!out.contains("kernels: tuning on"), "{out}");
        assert!(out.contains("(default)"), "{out}");
        assert!(!cache.join("tuning.json").exists());
    } else {
        assert!(out.contains("kernels: tuning on"), "{out}");
    }
    // Told off, nothing is said about it.
    let out = ok(&bin(&cache)
        .env("LSTM_GPU_TUNE", "off")
        .arg("train")
        .arg("--data")
        .arg(tiny_data())
        .arg("--run-dir")
        .arg(dir.path().join("off"))
        .args(MODEL)
        .args(["--max-steps", "1", "--no-progress", "--no-eval-at-stop"])
        .output()
        .unwrap());
    assert!(
        !out.contains("tuning takes minutes") && !out.contains("tuning on"),
        "{out}"
    );
}

/// A first run that forces one choice (here `profile --recurrence fused`, as
/// `scripts/gpu-bench.sh` runs it) still measures and stores both: a later run that forces
/// nothing must read a measured recurrence and a kernel for every product, not the forced
/// value passed off as tuned (on an NVIDIA H200 that made a training run take the fused
/// step, twice as slow there, "from the cache").
#[test]
fn a_forced_choice_is_not_stored_as_a_measured_one() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let forced = ok(&bin(&cache)
        .arg("profile")
        .args(MODEL)
        .args(["--synthetic", "--steps", "1", "--recurrence", "fused"])
        .output()
        .unwrap());
    assert!(forced.contains("recurrence fused (forced)"), "{forced}");
    let json = cache_json(&cache);
    let entry = json["adapters"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    assert!(!entry["matmul"].as_object().unwrap().is_empty(), "{json}");
    for m in entry["models"].as_object().unwrap().values() {
        let step_ms = m["step_ms"].as_object().unwrap();
        let extra = usize::from(step_ms.contains_key("wavefront (grouped kernels)"));
        assert_eq!(step_ms.len(), 3 + extra, "every recurrence timed: {json}");
        let ms = |r: &str| step_ms[r].as_f64().unwrap();
        let times = [ms("fused"), ms("unfused"), ms("wavefront")];
        let want = lstm_gpu::gpu::tune::choose_recurrence(&times).name();
        assert_eq!(m["recurrence"], want, "{json}");
    }
    let later = ok(&bin(&cache)
        .arg("profile")
        .args(MODEL)
        .args(["--synthetic", "--steps", "1"])
        .output()
        .unwrap());
    assert!(later.contains("(cached)"), "{later}");
    assert!(!later.contains("(forced)"), "{later}");
}

/// `tune --precision mixed` chooses among the f16 kernels (the scalar one and the panel;
/// the matrix units' where the adapter has them) per product of the mixed step, keyed
/// `f16 MxKxN:NN` beside the f32 choices, each the fastest timed, and the mixed step's
/// recurrence (unfused or wavefront: the fused step has no f16 form) under a model key of
/// its own; a later mixed run reads them back and says so; `--matmul f16-panel` forces one.
#[test]
fn tune_in_mixed_precision_chooses_among_the_f16_kernels() {
    use lstm_gpu::gpu::matmul_f16::HalfVariant;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let mixed = ["--precision", "mixed"];
    let out = ok(&bin(&cache)
        .arg("tune")
        .args(MODEL)
        .args(mixed)
        .output()
        .unwrap());
    assert!(out.contains("in mixed precision"), "{out}");
    let json = cache_json(&cache);
    let entry = json["adapters"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    let matmul = entry["matmul"].as_object().unwrap();
    assert!(!matmul.is_empty());
    let grouped_wavefront = entry["models"].as_object().unwrap().values().any(|m| {
        m["recurrence"] == "wavefront" && m["step_ms"].get("wavefront (grouped kernels)").is_some()
    });
    let mut panels_timed = 0;
    for (product, chosen) in matmul {
        assert!(
            product.starts_with("f16 "),
            "{product}: not a mixed product"
        );
        let chosen: HalfVariant = chosen.as_str().unwrap().parse().unwrap();
        let times = entry["matmul_ms"][product].as_object().unwrap();
        panels_timed += usize::from(times.contains_key("f16-panel"));
        let fastest = times
            .iter()
            .min_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap()))
            .map(|(v, _)| v.parse::<HalfVariant>().unwrap());
        assert!(
            Some(chosen) == fastest || grouped_wavefront && chosen.has_group_form(),
            "{product}: {chosen} of {times:?}"
        );
    }
    assert!(panels_timed > 0, "the f16 panel was timed on no product");
    if has_coop_tile() {
        let coop_timed = matmul
            .keys()
            .filter(|product| {
                entry["matmul_ms"][product.as_str()]
                    .get("f16-coop")
                    .is_some()
            })
            .count();
        assert!(
            coop_timed > 0,
            "the adapter has matrix units and f16-coop was timed on no product: {entry}"
        );
    }
    // The training shape and the test pass's two (1x5 and 1x1).
    let models = entry["models"].as_object().unwrap();
    assert_eq!(models.len(), 3, "{models:?}");
    for (key, m) in models {
        assert!(key.ends_with("precision mixed"), "{key}");
        let r = m["recurrence"].as_str().unwrap();
        assert!(["unfused", "wavefront"].contains(&r), "{key}: {r}");
        if let Some(ms) = m["step_ms"].as_object().filter(|t| !t.is_empty()) {
            assert!(!ms.contains_key("fused"), "{ms:?}");
        }
    }

    // A mixed profile reads them back (an f32 one would not find its model there).
    let profile = |extra: &[&str]| {
        let o = bin(&cache)
            .arg("profile")
            .args(MODEL)
            .args(mixed)
            .args(["--synthetic", "--steps", "1", "--no-matmul-peak", "--json"])
            .args(extra)
            .output()
            .unwrap();
        let out = ok(&o);
        let p: serde_json::Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
        (out, p)
    };
    let (out, p) = profile(&[]);
    assert!(out.contains("the choices tuned earlier"), "{out}");
    let choices = p["matmul_choices"].as_array().unwrap();
    assert!(!choices.is_empty());
    for c in choices {
        let c = c.as_str().unwrap();
        assert!(c.starts_with("f16 ") && c.ends_with("(cached)"), "{c}");
    }
    let (_, p) = profile(&["--matmul", "f16-panel"]);
    for c in p["matmul_choices"].as_array().unwrap() {
        assert!(c.as_str().unwrap().ends_with("f16-panel (forced)"), "{c}");
    }
}

/// `--matmul` naming an f16 kernel for an f32 model, an unknown one, or the matrix units
/// where the adapter has none: one line, no panic. (An f32 kernel with mixed precision sets
/// how the f16 products split k, as a GPU's default would.)
#[test]
fn a_matmul_of_the_other_precision_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let run = |extra: &[&str]| {
        bin(&cache)
            .arg("profile")
            .args(MODEL)
            .args(["--synthetic", "--steps", "1", "--no-matmul-peak"])
            .args(extra)
            .output()
            .unwrap()
    };
    let one_line = |o: &Output, code: i32, needle: &str| {
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(code), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].contains(needle), "`{needle}` not in {err}");
    };
    one_line(&run(&["--matmul", "f16-panel"]), 2, "is an f16 kernel");
    let out = ok(&run(&["--matmul", "strip-split", "--precision", "mixed"]));
    assert!(out.contains("matmul_f16"), "{out}");
    one_line(
        &run(&["--matmul", "f16-tiny"]),
        2,
        "f16-scalar, f16-panel, f16-coop",
    );
    // The matrix units: refused where the adapter has none (Debian 12's lavapipe, GL), run
    // where it has them; with an empty cache, where the run would tune first.
    let o = bin(&dir.path().join("empty cache"))
        .arg("profile")
        .args(MODEL)
        .args(["--synthetic", "--steps", "1", "--no-matmul-peak"])
        .args(["--matmul", "f16-coop", "--precision", "mixed"])
        .output()
        .unwrap();
    if has_coop_tile() {
        let out = ok(&o);
        assert!(out.contains("f16-coop (forced)"), "{out}");
    } else {
        one_line(&o, 1, "needs cooperative matrices");
        // Said before anything is tuned.
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("tuning on"), "{err}");
    }
}

/// A kernel the adapter's driver refuses to build is left out with one warning, never
/// fatal (`LSTM_GPU_REFUSE` refuses it through wgpu's own error path, as a driver's
/// compiler would): tuning times and chooses among the others, in f32 and in mixed
/// precision (the f16 panel, compiled on first use); `bench kernels` times the rest; and
/// asking for a refused kernel is one usage error that lists what there is.
#[test]
fn a_kernel_the_driver_refuses_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // `lstm-gpu ARGS` with the environment `env`: its output and its stderr.
    let run = |env: (&str, &str), args: &[&str]| -> (Output, String) {
        let o = bin(&cache).env(env.0, env.1).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        (o, err)
    };
    let with_model = |args: &[&'static str]| -> Vec<&'static str> {
        args.iter().chain(&MODEL).copied().collect()
    };
    // One usage error line (exit 2) that holds every one of `needles`.
    let usage_error = |(o, err): (Output, String), needles: &[&str]| {
        assert_eq!(o.status.code(), Some(2), "{err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{err}");
        assert!(
            needles.iter().all(|n| errors[0].contains(n)),
            "{needles:?}: {err}"
        );
    };
    let timed = |json: &serde_json::Value| -> Vec<String> {
        let mut names: Vec<String> = json["matmul_ms"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|times| times.as_object().unwrap().keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let refused = ["panel", "block-64x64", "strip-quad", "fused"];
    let refuse = refused.join(",");
    let (o, err) = run(
        ("LSTM_GPU_REFUSE", &refuse),
        &with_model(&["tune", "--json"]),
    );
    assert!(o.status.success(), "{err}");
    for name in refused {
        let warned = format!("kernel {name} left out");
        assert_eq!(err.matches(&warned).count(), 1, "{warned:?} once in: {err}");
    }
    // A split variant runs its unsplit twin on short products: it goes with it.
    let split = ["panel-split", "block-64x64-split", "strip-quad-split"];
    for name in split {
        let warned = format!("kernel {name} left out: it runs");
        assert_eq!(err.matches(&warned).count(), 1, "{warned:?} once in: {err}");
    }
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names = timed(&json);
    for name in refused.iter().chain(&split) {
        assert!(!names.iter().any(|n| n == name), "{name} timed: {names:?}");
    }
    // Without the fused kernels, the recurrence is chosen among the others.
    for model in json["models"].as_object().unwrap().values() {
        let times = model["step_ms"].as_object().unwrap();
        assert!(
            !times.contains_key("fused") && times.contains_key("unfused"),
            "{model}"
        );
        assert_ne!(model["recurrence"], "fused", "{model}");
    }
    // The other kernels of the same modules still run.
    for name in ["block-128x64", "strip"] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} not timed: {names:?}"
        );
    }

    let mixed = with_model(&["tune", "--json", "--precision", "mixed"]);
    let (o, err) = run(("LSTM_GPU_REFUSE", "f16-panel"), &mixed);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("kernel f16-panel left out"), "{err}");
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let others: &[&str] = if has_coop_tile() {
        &["f16-coop", "f16-scalar"]
    } else {
        &["f16-scalar"]
    };
    assert_eq!(timed(&json), others, "{json}");

    let bench = ["bench", "kernels", "--runs", "1", "--shape", "20x16x24"];
    let (o, _) = run(("LSTM_GPU_REFUSE", "block-64x64"), &bench);
    let out = ok(&o);
    let timed_rows: Vec<&str> = out.lines().filter(|l| l.starts_with("matmul ")).collect();
    assert!(
        !timed_rows.iter().any(|l| l.contains("block-64x64")),
        "{out}"
    );
    assert!(out.contains("block-128x64 NN"), "{out}");

    // Asking for a refused kernel: one usage error that says what there is.
    let asked: Vec<&str> = bench
        .iter()
        .chain(&["--variant", "block-64x64"])
        .copied()
        .collect();
    usage_error(
        run(("LSTM_GPU_REFUSE", "block-64x64"), &asked),
        &["block-64x64", "block-128x64"],
    );
    let fused = with_model(&[
        "profile",
        "--synthetic",
        "--steps",
        "1",
        "--recurrence",
        "fused",
    ]);
    usage_error(
        run(("LSTM_GPU_REFUSE", "fused"), &fused),
        &["--recurrence fused"],
    );

    // A refused grouped launch: the wavefront's pairs run one launch per layer, as with
    // LSTM_GPU_WAVEFRONT_GROUPS=off.
    let wavefront = with_model(&[
        "profile",
        "--synthetic",
        "--steps",
        "1",
        "--json",
        "--recurrence",
        "wavefront",
        "--matmul",
        "strip-split",
    ]);
    let profile = |env: (&str, &str)| -> serde_json::Value {
        let (o, err) = run(env, &wavefront);
        assert!(o.status.success(), "{err}");
        let warned = err.contains("kernel strip-grouped left out");
        assert_eq!(warned, env.1 == "strip-grouped", "{err}");
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let grouped = profile(("LSTM_GPU_REFUSE", ""));
    let refused = profile(("LSTM_GPU_REFUSE", "strip-grouped"));
    let apart = profile(("LSTM_GPU_WAVEFRONT_GROUPS", "off"));
    assert!(
        grouped["wavefront_grouped_steps"].as_u64().unwrap() > 0,
        "{grouped}"
    );
    assert_eq!(refused["wavefront_grouped_steps"], 0, "{refused}");
    assert_eq!(refused["dispatches_per_step"], apart["dispatches_per_step"]);
}

/// `tune --json` of MODEL at `precision` with the kernels `wrong` computing wrong results
/// (`LSTM_GPU_MISCOMPUTE`): its JSON and its log.
fn tune_miscomputing(cache: &Path, precision: &str, wrong: &[&str]) -> (serde_json::Value, String) {
    let o = bin(cache)
        .env("LSTM_GPU_MISCOMPUTE", wrong.join(","))
        .args(["tune", "--json", "--precision", precision])
        .args(MODEL)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    (serde_json::from_slice(&o.stdout).unwrap(), err)
}

/// A kernel that computes wrong results on the adapter (a driver's miscompile; here
/// `LSTM_GPU_MISCOMPUTE` negates its outputs when they are read back) is left out of tuning
/// with one warning naming its worst case, as a refused one is: each candidate is held to
/// its CPU twin first (`lstm_gpu::check`). In mixed precision the f16 kernels are screened.
#[test]
fn a_kernel_that_computes_wrong_results_is_left_out_of_tuning() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cases: [(&str, &[&str], &str); 2] = [
        ("f32", &["strip", "panel"], "register-blocked"),
        ("mixed", &["f16-panel"], "f16-scalar"),
    ];
    for (precision, wrong, right) in cases {
        let (json, err) = tune_miscomputing(&cache, precision, wrong);
        let timed: Vec<&String> = json["matmul_ms"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|times| times.as_object().unwrap().keys())
            .collect();
        for name in wrong {
            assert_eq!(
                err.matches(&format!(
                    "kernel {name} left out: it computes wrong results"
                ))
                .count(),
                1,
                "{precision}: {err}"
            );
            assert!(
                !timed.iter().any(|t| *t == name),
                "{precision}: {name} timed"
            );
        }
        assert!(timed.iter().any(|t| *t == right), "{precision}: {timed:?}");
    }
}

/// A recurrence whose training step computes wrong results on the adapter (a driver's
/// miscompile of the fused step kernels or the wavefront's launches; here
/// `LSTM_GPU_MISCOMPUTE` negates the step's loss when it is read back) is left out of the
/// choice with one warning naming its worst case: each recurrence's step is held to the f64
/// reference step before its timing counts. Where every one is wrong, the reference
/// (unfused) is kept, with a warning that training will be wrong too.
#[test]
fn a_recurrence_that_computes_wrong_results_is_left_out_of_tuning() {
    let cases: [(&str, &[&str], &[&str]); 2] = [
        ("f32", &["fused", "wavefront"], &["unfused"]),
        ("mixed", &["unfused", "wavefront"], &[]),
    ];
    for (precision, wrong, right) in cases {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let (json, err) = tune_miscomputing(&cache, precision, wrong);
        let what = format!("{precision} with {wrong:?} wrong");
        for name in wrong {
            assert_eq!(
                err.matches(&format!(
                    "recurrence {name} left out: its training step computes wrong results"
                ))
                .count(),
                1,
                "{what}: {err}"
            );
        }
        assert_eq!(
            err.contains("every recurrence's training step computes wrong results"),
            right.is_empty(),
            "{what}: {err}"
        );
        // MODEL's training shape (the other one is the test pass's, batch 1).
        let train = json["models"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(key, _)| key.contains(" batch 4 steps 5 "))
            .unwrap_or_else(|| panic!("{what}: no training shape: {json}"))
            .1;
        let chosen = train["recurrence"].as_str().unwrap();
        let step_ms = train["step_ms"].as_object().unwrap();
        for name in wrong {
            assert!(!step_ms.contains_key(*name), "{what}: {name} timed: {json}");
        }
        if right.is_empty() {
            assert_eq!(chosen, "unfused", "{what}");
        } else {
            assert!(right.contains(&chosen), "{what}: {chosen} chosen");
            for name in right {
                let timed =
                    step_ms.contains_key(*name) || (*name == "fused" && precision == "mixed");
                assert!(timed, "{what}: {name} not timed: {json}");
            }
        }
    }
}
