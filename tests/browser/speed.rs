//! Measurements, not checks (`--ignored`): the seed model's speed in the page against native
//! training on the same adapter, and the kernels the page chooses at the seed configuration.

use super::*;

/// The seed model's speed in the page against native and against TensorFlow.js in the same
/// browser, side by side on this machine: a benchmark, not a check
/// (`cargo test --release --test browser -- --ignored --nocapture`). Each trains
/// `LSTM_GPU_SPEED_STEPS` (default 6; TensorFlow.js `LSTM_GPU_TFJS_STEPS`, default 3) steps of
/// the seed configuration on PTB from `LSTM_GPU_PTB_DIR`; the first step (pipeline and
/// shader compiles) is left out of each mean. TensorFlow.js is `bench/tfjs/` with the bundles
/// `scripts/fetch-tfjs.sh` puts in target/tfjs; without them that column is skipped, saying so.
#[test]
#[ignore]
fn seed_model_speed_page_against_native() {
    let env_steps = |name: &str, default: usize| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let steps = env_steps("LSTM_GPU_SPEED_STEPS", 6).max(2);
    let tfjs_steps = env_steps("LSTM_GPU_TFJS_STEPS", 3).max(2);
    let dir = common::ptb_dir().display().to_string();
    let mean = |v: &[f64]| v[1..].iter().sum::<f64>() / (v.len() - 1) as f64;
    let (_server, b) = open_page_alone(&["--data", &dir]);
    let t0 = Instant::now();
    let info = b.ok(
        "return await window.lstm.api.create(args);",
        json!({"preset": "seed", "seed": 1, "log_every": 1}),
    );
    let create_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let events = b.ok("return await window.lstm.api.train(args);", json!(steps));
    let train_s = t1.elapsed().as_secs_f64();
    let page: Vec<f64> = train_values(&events, "words_per_second");
    let page_loss: Vec<f64> = train_values(&events, "loss");
    let kernels = info["kernels"].clone();
    let info = b.ok("return window.lstm.info;", json!(null));
    eprintln!(
        "page: {} dispatches a step; kernels {kernels}; model made in {create_s:.1} s, {steps} \
         steps in {train_s:.1} s; losses {page_loss:.3?}",
        info["dispatches_per_step"]
    );

    let bundles = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tfjs");
    let tfjs = if bundles.join("tf.min.js").is_file() {
        let web = tempfile::tempdir().unwrap();
        // `serve --web` wants a page and the wasm build beside it: the bench page, and the
        // real build (unused by the bench page).
        let www = web.path().join("www");
        std::fs::create_dir(&www).unwrap();
        let pkg = web.path().join("pkg");
        std::fs::create_dir(&pkg).unwrap();
        let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("web/pkg");
        for f in std::fs::read_dir(&built).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, pkg.join(f.file_name().unwrap())).unwrap();
        }
        let bench = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/tfjs");
        for (from, name) in [
            (bench.join("index.html"), "index.html"),
            (bench.join("lstm.js"), "lstm.js"),
            (bundles.join("tf.min.js"), "tf.min.js"),
            (
                bundles.join("tf-backend-webgpu.min.js"),
                "tf-backend-webgpu.min.js",
            ),
        ] {
            std::fs::copy(&from, www.join(name)).unwrap();
        }
        let (_tf_server, tf_url) =
            common::serve(&["--data", &dir, "--web", web.path().to_str().unwrap()]);
        b.open(&tf_url);
        let r = b.ok("return await window.bench(args);", json!(tfjs_steps));
        let rows = r["steps"].as_array().unwrap();
        let wps: Vec<f64> = rows
            .iter()
            .map(|e| e["words_per_second"].as_f64().unwrap())
            .collect();
        let loss: Vec<f64> = rows.iter().map(|e| e["loss"].as_f64().unwrap()).collect();
        let secs: Vec<f64> = rows
            .iter()
            .map(|e| e["seconds"].as_f64().unwrap())
            .collect();
        eprintln!(
            "TensorFlow.js {} on {}: seconds per step {secs:.1?}, losses {loss:.3?}",
            r["version"], r["backend"]
        );
        Some(mean(&wps))
    } else {
        eprintln!(
            "TensorFlow.js: skipped, no bundles in {} (run scripts/fetch-tfjs.sh)",
            bundles.display()
        );
        None
    };
    drop(b);

    let run = tempfile::tempdir().unwrap();
    let steps_arg = steps.to_string();
    native(&[
        "train",
        "--data",
        &dir,
        "--seed",
        "1",
        "--max-steps",
        &steps_arg,
        "--log-every",
        "1",
        "--no-progress",
        "--no-eval-at-stop",
        "--run-dir",
        run.path().to_str().unwrap(),
    ]);
    let native_wps: Vec<f64> = read_metrics(run.path())
        .iter()
        .filter(|m| m["kind"] == "train")
        .map(|m| m["words_per_second"].as_f64().unwrap())
        .collect();
    let (p, n) = (mean(&page), mean(&native_wps));
    eprintln!(
        "seed model, words/s after the first step: page {p:.0} (per step {page:.0?}), native \
         lavapipe {n:.0} (per step {native_wps:.0?}); page/native {:.3}",
        p / n
    );
    if let Some(t) = tfjs {
        eprintln!(
            "TensorFlow.js {t:.1} words/s in the same browser: the page is {:.1}x faster",
            p / t
        );
    }
}

/// The page's words/s at the seed configuration with each matmul kernel and recurrence
/// forced (`LSTM_GPU_PAGE_KERNELS`, default every pair of tiled, tiled-k8, tiled-128x64,
/// register-blocked, skinny, strip and strip-quad with fused and unfused, written `matmul/recurrence,...`), 3
/// steps each, the first left out: what a tuning in the browser would choose from. A
/// benchmark (`-- --ignored --nocapture`).
#[test]
#[ignore]
fn page_kernel_choices_at_the_seed_configuration() {
    let dir = common::ptb_dir().display().to_string();
    let list = std::env::var("LSTM_GPU_PAGE_KERNELS").unwrap_or_else(|_| {
        let mut v = Vec::new();
        for m in [
            "tiled",
            "tiled-k8",
            "tiled-128x64",
            "register-blocked",
            "skinny",
            "strip",
            "strip-quad",
        ] {
            for r in ["fused", "unfused"] {
                v.push(format!("{m}/{r}"));
            }
        }
        v.join(",")
    });
    let (_server, b) = open_page_alone(&["--data", &dir]);
    for pair in list.split(',') {
        let (m, r) = pair.split_once('/').expect("matmul/recurrence");
        b.ok(
            "return await window.lstm.api.create(args);",
            json!({"preset": "seed", "seed": 1, "log_every": 1, "matmul": m, "recurrence": r}),
        );
        let events = b.ok("return await window.lstm.api.train(3);", json!(null));
        if std::env::var("LSTM_GPU_PAGE_PROFILE").is_ok() {
            let t = b.ok(
                "return JSON.parse(await window.lstm.trainer.time_kernels());",
                json!(null),
            );
            let base = t["baseline_ms"].as_f64().unwrap();
            eprintln!("  kernels of one step, each alone ({base:.2} ms a submit and readback):");
            for r in t["rows"].as_array().unwrap().iter().take(14) {
                let (ms, runs) = (r["ms"].as_f64().unwrap(), r["runs"].as_f64().unwrap());
                eprintln!(
                    "  {:>36} {:>4} runs {:>9.1} ms {:>7.2} GFLOP/s",
                    r["label"].as_str().unwrap(),
                    runs,
                    ms,
                    r["flops"].as_f64().unwrap() / ((ms - runs * base).max(1e-3) * 1e6)
                );
            }
        }
        let wps: Vec<f64> = train_values(&events, "words_per_second");
        eprintln!(
            "page, seed model, matmul {m:>16}, recurrence {r:>7}: {:.1} words/s (per step {wps:.1?})",
            wps[1..].iter().sum::<f64>() / (wps.len() - 1) as f64
        );
    }
}
