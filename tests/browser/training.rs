//! Training on the page: the same steps as native training from the same weights, its
//! checkpoints both ways, bad input, the first minute of the seed model, early stopping and
//! mixed precision.

use super::*;

/// A checkpoint whose header says other shapes than its tensors have: `bytes` with the
/// configuration in the metadata changed to a wider first layer.
fn with_other_header(bytes: &[u8]) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let meta = header["__metadata__"].as_object_mut().unwrap();
    let key = "config".to_string();
    let mut cfg: Value = serde_json::from_str(meta[&key].as_str().unwrap()).unwrap();
    cfg["hidden"] = json!([24, 16]);
    meta.insert(key, Value::String(cfg.to_string()));
    let mut head = header.to_string().into_bytes();
    while head.len() % 8 != 0 {
        head.push(b' ');
    }
    let mut out = (head.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&head);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

/// In phases, on one page:
///
/// 1. the page gets an adapter and the server's corpus, makes a fresh tiny model, saves its
///    initial weights and trains it: the loss falls, the chart, progress, speed, prediction
///    and generation show values (a screenshot is taken mid-training);
/// 2. native training from the page's initial weights (`train --init`) logs the same
///    per-step perplexities within [`STEP_TOLERANCE`];
/// 3. the page's checkpoint evaluates natively to the page's own validation perplexity, and
///    native's checkpoint loads in the page (saved back bit for bit) and validates there to
///    native's figure, both within [`EVAL_TOLERANCE`];
/// 4. bad input (a file that is not text, a truncated checkpoint, a checkpoint whose tensors
///    are not the shapes its header says, a browser without WebGPU) is one message and
///    changes nothing, and the model trains on afterwards.
#[test]
fn page_trains_like_native_and_refuses_bad_input() {
    let t_start = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = small_ptb(dir.path(), 1000, 120);
    let (_server, url) = serve(&["--data", data.to_str().unwrap()]);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&out).unwrap();

    let b = Browser::start(true);
    b.open(&url);
    b.wait_started();
    let adapter = b.ok("return window.lstm.adapter;", json!(null));
    assert!(
        adapter.is_object(),
        "no WebGPU adapter in headless Chromium with --enable-unsafe-webgpu: {}",
        state(&b)
    );
    eprintln!("browser adapter: {adapter}");
    let corpus = b.ok(
        "return window.lstm.corpus && window.lstm.corpus.name;",
        json!(null),
    );
    assert_eq!(corpus, json!("ptb"), "the page loads the server's corpus");

    // 1. A fresh model, its initial weights saved, then training steps.
    let (options, flags) = tiny();
    let info = b.ok(
        "return await window.lstm.api.create(args);",
        options.clone(),
    );
    assert_eq!(info["position"]["global_step"], 0);
    // The page asks for WebGPU's subgroups itself (wgpu 30 does not map the feature), and
    // where the adapter has them its CPU adapter runs the strip-quad matmul.
    let subgroups = b.ok(
        "const a = await navigator.gpu.requestAdapter(); return a.features.has('subgroups');",
        json!(null),
    );
    let kernels = info["kernels"].to_string();
    if subgroups == json!(true) {
        assert!(
            kernels.contains("strip-quad (default)"),
            "an adapter with subgroups runs strip-quad: {kernels}"
        );
    }
    eprintln!("page kernels: {kernels}");
    let vocab = info["vocab_size"].as_u64().unwrap();
    let ck0 = page_checkpoint(&b);
    let ck0_path = out.join("initial.safetensors");
    std::fs::write(&ck0_path, &ck0).unwrap();
    let valid_native0 = native_eval(&ck0_path, &data);
    assert!(
        rel(valid_native0, vocab as f64) < 0.5,
        "a fresh model is near uniform: valid perplexity {valid_native0} with {vocab} words"
    );

    // Training runs while the page paints: start it, take the screenshot half way, wait.
    let t0 = Instant::now();
    b.ok(
        "window.__training = window.lstm.api.train(args); return null;",
        json!(STEPS),
    );
    b.ok(
        "for (let i = 0; i < 6000; i++) { if (window.lstm.info.position.global_step >= args) return; \
         await new Promise(r => setTimeout(r, 50)); } throw new Error('training did not get going');",
        json!(STEPS / 2),
    );
    b.screenshot(&out.join("page.png"));
    let events = b.ok("return await window.__training;", json!(null));
    let browser_secs = t0.elapsed().as_secs_f64();
    let train: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "train")
        .collect();
    assert_eq!(train.len(), STEPS, "one log point a step: {events}");
    let loss: Vec<f64> = train.iter().map(|e| e["loss"].as_f64().unwrap()).collect();
    let first: f64 = loss[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = loss[STEPS - 5..].iter().sum::<f64>() / 5.0;
    assert!(
        last < first - 0.3,
        "the loss falls over {STEPS} steps: first five {first:.3}, last five {last:.3}"
    );
    let uniform = (vocab as f64).ln();
    assert!(
        first < uniform + 0.5 && first > uniform - 1.0,
        "the first losses are near ln(vocabulary) = {uniform:.3}: {first:.3}"
    );

    // The page shows it: chart pixels, a progress text, the speed, a prediction, text.
    let shown = b.ok(
        "const c = document.getElementById('chart'); const g = c.getContext('2d');
         const d = g.getImageData(0, 0, c.width, c.height).data; let ink = 0;
         for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink++;
         const p = await window.lstm.api.predict('the company said', 10);
         await window.lstm.api.generate('the company', 12, 1.0, 3);
         return {ink, progress: document.getElementById('progress-text').textContent,
                 bar: document.getElementById('progress-bar').style.width,
                 speed: document.getElementById('speed').textContent,
                 rows: document.querySelectorAll('#predict-out div').length,
                 norms: window.lstm.normChart, clip: window.lstm.info.config.max_grad_norm,
                 normsHidden: document.getElementById('norm-chart').hidden,
                 prediction: p, generated: document.getElementById('generate-out').textContent};",
        json!(null),
    );
    assert!(
        shown["ink"].as_u64().unwrap() > 2000,
        "the chart has lines: {shown}"
    );
    assert!(
        shown["progress"]
            .as_str()
            .unwrap()
            .contains(&format!("step {STEPS}/")),
        "{shown}"
    );
    // The gradient norms' chart: every log point, the clipping threshold on its scale.
    assert_eq!(shown["norms"]["points"], STEPS, "{shown}");
    assert_eq!(shown["norms"]["clip"], shown["clip"], "{shown}");
    assert_eq!(shown["normsHidden"], false, "{shown}");
    assert!(
        shown["norms"]["lo"].as_f64() <= shown["clip"].as_f64()
            && shown["clip"].as_f64() <= shown["norms"]["hi"].as_f64(),
        "{shown}"
    );
    assert!(
        shown["bar"].as_str().unwrap() != "0.0%",
        "the progress bar moved: {shown}"
    );
    assert!(
        shown["speed"].as_str().unwrap().contains("words/s")
            && shown["speed"].as_str().unwrap().contains("gradient norm"),
        "{shown}"
    );
    assert_eq!(
        shown["rows"], 10,
        "the prediction box lists ten words: {shown}"
    );
    let probs: Vec<f64> = shown["prediction"]["next"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["probability"].as_f64().unwrap())
        .collect();
    assert!(
        probs.windows(2).all(|w| w[0] >= w[1])
            && probs[0] > 0.0
            && probs.iter().sum::<f64>() <= 1.0 + 1e-4,
        "ten words by falling probability: {probs:?}"
    );
    let generated = shown["generated"].as_str().unwrap();
    assert!(
        generated.starts_with("the company") && generated.split_whitespace().count() >= 12,
        "generated: {generated:?}"
    );

    // 2. Native training from the same initial weights.
    let run = dir.path().join("run");
    let t1 = Instant::now();
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--init",
        ck0_path.to_str().unwrap(),
        "--max-steps",
        "30",
        "--log-every",
        "1",
        "--no-progress",
        "--run-dir",
        run.to_str().unwrap(),
        "--no-eval-at-stop",
    ];
    args.extend(&flags);
    native(&args);
    let native_secs = t1.elapsed().as_secs_f64();
    let metrics = read_metrics(&run);
    let native_train: Vec<&Value> = metrics.iter().filter(|m| m["kind"] == "train").collect();
    assert_eq!(native_train.len(), STEPS, "native logs every step");
    let mut worst = 0.0f64;
    let mut table = Vec::new();
    for (i, (e, n)) in train.iter().zip(&native_train).enumerate() {
        let (p, q) = (
            e["perplexity"].as_f64().unwrap(),
            n["perplexity"].as_f64().unwrap(),
        );
        worst = worst.max(rel(p, q));
        if i < 5 || i + 1 == STEPS {
            table.push(format!("step {:>2}: browser {p:.6} native {q:.6}", i + 1));
        }
        assert!(
            rel(p, q) < STEP_TOLERANCE,
            "step {}: browser perplexity {p} against native {q}",
            i + 1
        );
        // The step's gradient norm (one step per log point: the mean and the largest) and
        // whether it was clipped.
        for key in ["grad_norm", "grad_norm_max"] {
            let (g, h) = (e[key].as_f64().unwrap(), n[key].as_f64().unwrap());
            assert!(
                rel(g, h) < STEP_TOLERANCE,
                "step {}: browser {key} {g} against native {h}",
                i + 1
            );
        }
        assert_eq!(
            e["clipped_fraction"].as_f64(),
            n["clipped_fraction"].as_f64(),
            "step {}",
            i + 1
        );
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let speed = |events: &[&Value]| -> f64 {
        let v: Vec<f64> = events[5..]
            .iter()
            .map(|e| e["words_per_second"].as_f64().unwrap())
            .collect();
        mean(&v)
    };
    let (browser_wps, native_wps) = (speed(&train), speed(&native_train));
    eprintln!(
        "per-step training perplexity, browser against native:\n  {}\n  worst relative difference \
         {worst:.2e} over {STEPS} steps",
        table.join("\n  ")
    );
    eprintln!(
        "words/s (steps 6-{STEPS}): browser {browser_wps:.0} (SwiftShader), native {native_wps:.0} \
         (lavapipe), ratio {:.2}; {STEPS} steps took {browser_secs:.1} s in the page, the native run \
         {native_secs:.1} s with start-up",
        browser_wps / native_wps
    );

    // 3. The page's checkpoint natively, and native's checkpoint in the page.
    let valid_browser = page_validate(&b);
    let ck1 = page_checkpoint(&b);
    let ck1_path = out.join("browser-step30.safetensors");
    std::fs::write(&ck1_path, &ck1).unwrap();
    let valid_native = native_eval(&ck1_path, &data);
    eprintln!(
        "the page's checkpoint: valid perplexity {valid_browser:.4} in the page, {valid_native:.4} native"
    );
    assert!(
        rel(valid_browser, valid_native) < EVAL_TOLERANCE,
        "browser validation {valid_browser} against native eval {valid_native}"
    );
    assert!(valid_native < valid_native0, "training lowered validation");

    // The page scores a text word by word as `predict --score` does with its checkpoint.
    let text = "the company said the board sold zyzzyva";
    let page_scored = b.ok(
        "const r = await window.lstm.api.score(args); \
         return {r, spans: document.querySelectorAll('#score-out .scored').length, \
                 line: document.querySelector('#score-out div').textContent};",
        json!(text),
    );
    let native_scored: Value = serde_json::from_str(&native(&[
        "predict",
        "--checkpoint",
        ck1_path.to_str().unwrap(),
        "--score",
        "--json",
        text,
    ]))
    .unwrap();
    let (pw, nw) = (
        page_scored["r"]["words"].as_array().unwrap(),
        native_scored["words"].as_array().unwrap(),
    );
    b.ok(
        "document.getElementById('talk').scrollIntoView(); return null;",
        json!(null),
    );
    b.screenshot(&out.join("scored.png"));
    assert_eq!(pw.len(), 7, "{page_scored}");
    assert_eq!(page_scored["spans"], json!(7), "{page_scored}");
    assert_eq!(page_scored["r"]["unknown"], json!(["zyzzyva"]));
    for (p, n) in pw.iter().zip(nw) {
        assert_eq!(
            (&p["word"], &p["rank"]),
            (&n["word"], &n["rank"]),
            "{p} {n}"
        );
        let (a, c) = (
            p["probability"].as_f64().unwrap(),
            n["probability"].as_f64().unwrap(),
        );
        assert!(rel(a, c) < EVAL_TOLERANCE, "{p} against native {n}");
    }
    let (a, c) = (
        page_scored["r"]["perplexity"].as_f64().unwrap(),
        native_scored["perplexity"].as_f64().unwrap(),
    );
    assert!(
        rel(a, c) < EVAL_TOLERANCE,
        "perplexity {a} in the page, {c} native"
    );
    // A nucleus too small for a second word is greedy: the page's text is native's.
    let page_greedy = b.ok(
        "return await window.lstm.api.generate('the company', 8, 1.0, 5, 0, 1e-6);",
        json!(null),
    );
    let native_greedy = native(&[
        "generate",
        "--checkpoint",
        ck1_path.to_str().unwrap(),
        "--prompt",
        "the company",
        "--words",
        "8",
        "--top-p",
        "1e-6",
    ]);
    assert_eq!(page_greedy.as_str().unwrap().trim(), native_greedy.trim());
    let refused = b.ok(
        "try { await window.lstm.api.generate('the', 3, 1.0, 1, 0, 0.0); return null; } \
         catch (e) { return String(e.message ?? e); }",
        json!(null),
    );
    assert!(
        refused
            .as_str()
            .unwrap()
            .contains("the top-p must be above 0"),
        "{refused}"
    );
    assert!(
        page_scored["line"]
            .as_str()
            .unwrap()
            .contains("over 7 words"),
        "{page_scored}"
    );

    let native_ck = std::fs::read(run.join("last.safetensors")).unwrap();
    let loaded = b.ok(
        &format!("{FROM_BASE64} return await window.lstm.api.loadCheckpoint(unb64(args));"),
        json!(base64(&native_ck)),
    );
    assert_eq!(loaded["position"]["global_step"], STEPS as u64, "{loaded}");
    let ck2_path = out.join("browser-resaved.safetensors");
    std::fs::write(&ck2_path, page_checkpoint(&b)).unwrap();
    let resaved = lstm_gpu::model::checkpoint::Checkpoint::load(&ck2_path).unwrap();
    let original =
        lstm_gpu::model::checkpoint::Checkpoint::load(&run.join("last.safetensors")).unwrap();
    assert_eq!(
        resaved.params, original.params,
        "the page saves the weights it loaded, bit for bit"
    );
    assert_eq!(resaved.position.global_step, original.position.global_step);
    let valid_loaded = page_validate(&b);
    let valid_native_ck = native_eval(&run.join("last.safetensors"), &data);
    eprintln!(
        "native's checkpoint: valid perplexity {valid_loaded:.4} in the page, {valid_native_ck:.4} native"
    );
    assert!(
        rel(valid_loaded, valid_native_ck) < EVAL_TOLERANCE,
        "native checkpoint validated in the page {valid_loaded} against native {valid_native_ck}"
    );

    // 4. Bad input: one message, nothing changed.
    let before = state(&b);
    let mut bad_messages = Vec::new();
    let mut expect_refused = |what: &str, b: &Browser, want: &str| {
        let after = state(b);
        let message = after["message"].as_str().unwrap().to_string();
        assert_eq!(
            after["kind"], "error",
            "{what}: an error message is shown: {after}"
        );
        assert!(
            !message.contains('\n') && message.contains(want),
            "{what}: {message:?}"
        );
        assert_eq!(
            after["step"], before["step"],
            "{what} left the model as it was"
        );
        assert_eq!(
            after["corpus"], before["corpus"],
            "{what} left the corpus as it was"
        );
        assert!(after["trainer"].as_bool().unwrap());
        bad_messages.push(format!("{what}: {message}"));
    };
    let binary = dir.path().join("weights.bin");
    std::fs::write(
        &binary,
        (0..4096u32)
            .flat_map(|i| (i * 2654435761).to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    b.pick_file("#file-train", &binary);
    b.ok(
        "for (let i = 0; i < 100; i++) { if (document.getElementById('message').className === 'error') return; \
         await new Promise(r => setTimeout(r, 50)); } throw new Error('no message');",
        json!(null),
    );
    expect_refused("a binary file as the training text", &b, "weights.bin");

    let truncated = &ck1[..ck1.len() / 2];
    let r = b.run(
        &format!("{FROM_BASE64} return await window.lstm.api.loadCheckpoint(unb64(args));"),
        json!(base64(truncated)),
    );
    assert!(r.is_err(), "a truncated checkpoint is refused");
    expect_refused("a truncated checkpoint", &b, "checkpoint");

    let r = b.run(
        &format!("{FROM_BASE64} return await window.lstm.api.loadCheckpoint(unb64(args));"),
        json!(base64(&with_other_header(&ck1))),
    );
    assert!(
        r.is_err(),
        "a checkpoint whose tensors do not match its header is refused"
    );
    expect_refused("a checkpoint of another shape", &b, "shape");

    // The model still trains after all that, from where it stood.
    let more = b.ok(
        "await window.lstm.api.setLogEvery(1); return await window.lstm.api.train(2);",
        json!(null),
    );
    let steps: Vec<u64> = train_values(&more, "global_step")
        .iter()
        .map(|&v| v as u64)
        .collect();
    assert_eq!(steps, [STEPS as u64 + 1, STEPS as u64 + 2], "{more}");

    // A new model with the plateau schedule chosen on the page.
    let made = b.ok(
        "document.getElementById('preset').value = 'tiny'; \
         document.getElementById('lr-schedule').value = 'plateau'; \
         document.getElementById('create').click(); \
         for (let i = 0; i < 2400 && window.lstm.info.config.lr_schedule !== 'plateau'; i++) \
           await new Promise(r => setTimeout(r, 50)); \
         return [window.lstm.info.config, document.getElementById('model-info').textContent, \
                 window.lstm.messages.slice(-3)];",
        json!(null),
    );
    let config = &made[0];
    assert_eq!(
        (&config["lr_schedule"], &config["decay"]),
        (&json!("plateau"), &json!(0.25)),
        "{made}"
    );
    assert!(
        made[1]
            .as_str()
            .unwrap()
            .contains("times 0.25 after an epoch without a new best"),
        "{made}"
    );
    drop(b);

    // No WebGPU: Chromium on Linux without --enable-unsafe-webgpu gives no adapter.
    let plain = Browser::start(false);
    plain.open(&url);
    plain.wait_started();
    let s = plain.ok(
        "return {adapter: window.lstm.adapter, no: window.lstm.noWebgpu, \
         message: document.getElementById('message').textContent, \
         create: document.getElementById('create').disabled};",
        json!(null),
    );
    assert!(s["adapter"].is_null(), "{s}");
    let message = s["message"].as_str().unwrap();
    assert!(
        message.contains("WebGPU") && message.contains("Chrome") && !message.contains('\n'),
        "{s}"
    );
    assert_eq!(
        s["create"], true,
        "without WebGPU nothing can be started: {s}"
    );
    let r = plain.run("return await window.lstm.api.create({});", json!(null));
    assert!(
        r.is_err_and(|e| e.contains("WebGPU")),
        "creating a model says why not"
    );
    bad_messages.push(format!("no WebGPU: {message}"));
    eprintln!(
        "bad input, as the page says it:\n  {}",
        bad_messages.join("\n  ")
    );
    eprintln!(
        "browser test took {:.0} s; screenshot (mid-training) {}",
        t_start.elapsed().as_secs_f64(),
        out.join("page.png").display()
    );
}

/// A newcomer's first minute, on the whole of PTB: the page's default on a CPU adapter is
/// the quick model, and it says how to pick the seed model; then, with the seed model
/// picked, New model and Train pressed, the page says what it is doing before the first
/// step ends, and the step count, words/s and the training perplexity move several times
/// (with the chart drawn) long before the epoch's first log point (10% of it), and it says
/// how long an epoch takes at the pace it sees. A screenshot is taken 60 seconds after
/// Train. The test has the browsers to itself (no other test's browser runs beside it), but
/// not always the CPU: where the steps have not moved three times in the minute it watches
/// on, up to three minutes.
#[test]
fn the_first_minute_of_the_seed_model_moves() {
    let dir = common::ptb_dir().display().to_string();
    let (_server, url) = serve(&["--data", &dir]);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&out).unwrap();
    let b = Browser::start_alone(true);
    b.open(&url);
    b.wait_started();
    let start = b.ok(
        "const s = window.lstm; return {adapter: s.adapter, corpus: s.corpus && s.corpus.train.length, \
         preset: document.getElementById('preset').value, \
         note: document.getElementById('preset-note').textContent};",
        json!(null),
    );
    assert!(start["adapter"].is_object(), "no WebGPU adapter: {start}");
    assert!(
        start["corpus"].as_u64().unwrap() > 4 << 20,
        "the server's corpus is the whole of PTB: {start}"
    );
    if start["adapter"]["device_type"] == "Cpu" {
        assert_eq!(start["preset"], "quick", "{start}");
        let note = start["note"].as_str().unwrap();
        assert!(
            note.contains("quick") && note.contains("\"seed\""),
            "the note says how to pick the seed model: {note}"
        );
    }

    // The seed model, as a user picks it: the list, New model, then Train
    // (LSTM_GPU_FIRST_MINUTE_PRESET=quick watches the CPU adapters' default instead).
    let preset = std::env::var("LSTM_GPU_FIRST_MINUTE_PRESET").unwrap_or_else(|_| "seed".into());
    b.ok(
        "document.getElementById('preset').value = args; return null;",
        json!(preset),
    );
    let create = b.element("#create");
    b.call("POST", &format!("/element/{create}/click"), Some(json!({})));
    b.ok(
        "for (let i = 0; i < 6000; i++) { const s = window.lstm; \
           if (s.info && !s.status) return; \
           if (s.messages.some(m => m.kind === 'error')) throw new Error(s.messages.map(m => m.text).join('; ')); \
           await new Promise(r => setTimeout(r, 100)); } throw new Error('no model');",
        json!(null),
    );
    let info = b.ok("return window.lstm.info;", json!(null));
    if preset == "seed" {
        assert_eq!(info["config"]["hidden"], json!([256, 128]), "{info}");
    }
    let log_every = info["log_every"].as_u64().unwrap();
    let epoch_size = info["epoch_size"].as_u64().unwrap();
    assert_eq!(log_every, epoch_size / 10);

    let train = b.element("#train");
    let t0 = Instant::now();
    b.call("POST", &format!("/element/{train}/click"), Some(json!({})));
    let mut samples: Vec<Value> = Vec::new();
    // A minute, and on a machine busy with other tests' native runs (SwiftShader's first
    // step then takes most of it) until the steps have moved three times, up to three.
    let moved = |samples: &[Value]| {
        let mut steps: Vec<u64> = samples
            .iter()
            .filter(|s| s["log_points"] == 0)
            .filter_map(|s| s["step"].as_u64())
            .filter(|&step| step > 0)
            .collect();
        steps.dedup();
        steps.len() >= 3 || samples.iter().any(|s| s["log_points"] != 0)
    };
    let mut screenshot = false;
    while t0.elapsed() < Duration::from_secs(60)
        || (!moved(&samples) && t0.elapsed() < Duration::from_secs(180))
    {
        if !screenshot && t0.elapsed() >= Duration::from_secs(60) {
            b.screenshot(&out.join(format!("first-minute-{preset}.png")));
            screenshot = true;
        }
        std::thread::sleep(Duration::from_millis(1000));
        samples.push(b.ok(
            "const s = window.lstm; const last = s.points[s.points.length - 1]; \
             return {step: s.info.position.global_step, log_points: s.trainEvents.length, \
                     progress: document.getElementById('progress-text').textContent, \
                     speed: document.getElementById('speed').textContent, \
                     perplexity: last ? last.perplexity : null, points: s.points.length};",
            json!(null),
        ));
    }
    if !screenshot {
        b.screenshot(&out.join(format!("first-minute-{preset}.png")));
    }
    let page = b.ok(
        "const s = window.lstm; const c = document.getElementById('chart'); \
         const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let ink = 0; \
         for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink++; \
         s.api.pause(); \
         return {statuses: s.statusLog, estimate: s.estimate, ink, \
                 messages: s.messages.map(m => m.text)};",
        json!(null),
    );
    eprintln!("the page's first minute: {samples:?}\n{page}");
    let statuses = page["statuses"].to_string();
    assert!(
        statuses.contains("compiling the kernels") && statuses.contains("first step"),
        "the page says what it does before the first step ends: {statuses}"
    );
    // What the page showed before its first log point.
    let before: Vec<&Value> = samples
        .iter()
        .filter(|s| s["log_points"] == 0 && s["step"].as_u64().unwrap() > 0)
        .collect();
    let distinct = |field: &str| {
        let mut v: Vec<String> = before.iter().map(|s| s[field].to_string()).collect();
        v.dedup();
        v.len()
    };
    assert!(
        distinct("step") >= 3 && distinct("perplexity") >= 3 && distinct("speed") >= 3,
        "the step count, the perplexity and words/s change at least 3 times before the first log point: {samples:?}"
    );
    for s in &before {
        assert!(s["speed"].as_str().unwrap().contains("words/s"), "{s}");
        let p = s["perplexity"].as_f64().unwrap_or(f64::NAN);
        assert!(p > 1.0 && p < 20_000.0, "a perplexity near the start: {s}");
        assert!(!s["progress"].as_str().unwrap().contains("step 0/"), "{s}");
    }
    assert!(
        page["ink"].as_u64().unwrap() > 2000,
        "the chart is drawn: {page}"
    );
    let epoch_seconds = page["estimate"]["epoch_seconds"]
        .as_f64()
        .unwrap_or(f64::NAN);
    assert!(
        epoch_seconds > 0.0
            && page["messages"]
                .to_string()
                .contains("an epoch takes about"),
        "the page says how long an epoch takes within the first minute: {page}\n{samples:?}"
    );
    // The estimate agrees with the pace the samples (one a second) saw after the first step.
    let trained: Vec<(usize, u64)> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| (i, s["step"].as_u64().unwrap()))
        .filter(|&(_, step)| step > 0)
        .collect();
    let (first, last) = (trained[0], trained[trained.len() - 1]);
    if last.1 > first.1 + 1 {
        let seen = (last.0 - first.0) as f64 / (last.1 - first.1) as f64;
        let estimated = epoch_seconds / epoch_size as f64;
        assert!(
            estimated > seen / 2.0 && estimated < seen * 2.0,
            "the estimate's {estimated:.2} s a step against the {seen:.2} s seen: {page}"
        );
    }
}

/// "stop after N epochs without a new best" is `train --patience N` in the page: the run
/// ends after the same epoch as native training's from the same seed, says why, runs its
/// test pass and is finished; a value that is not a whole number is refused before a step.
#[test]
fn the_page_stops_early_as_train_does() {
    let dir = tempfile::tempdir().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tiny");
    let (_server, b) = open_page(&["--data", data.to_str().unwrap()]);
    let options = json!({"preset": "seed", "seed": 5, "config": {
        "vocab_size": 60, "embedding_size": 8, "hidden": [8, 6], "batch_size": 2, "num_steps": 5,
        "learning_rate": 3.0, "max_epoch": 8, "max_epoch_decay_lr": 8}});
    b.ok("return await window.lstm.api.create(args);", options);
    b.ok(
        "document.getElementById('patience').value = 'two'; return null;",
        json!(null),
    );
    let refused = b
        .run("return await window.lstm.api.train(5);", json!(null))
        .expect_err("patience 'two'");
    assert!(
        refused.contains("stop after") && refused.contains("whole number"),
        "{refused}"
    );
    assert_eq!(state(&b)["step"], json!(0), "no step ran");
    let page = b.ok(
        "document.getElementById('patience').value = '1'; \
         const events = await window.lstm.api.train(); \
         return {events, finished: window.lstm.info.finished, epoch: window.lstm.info.position.epoch, \
                 messages: window.lstm.messages.map(m => m.text)};",
        json!(null),
    );
    let events = page["events"].as_array().unwrap();
    let stops: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "early_stop")
        .collect();
    let valid: Vec<f64> = events
        .iter()
        .filter(|e| e["kind"] == "epoch")
        .map(|e| e["valid_perplexity"].as_f64().unwrap())
        .collect();
    assert_eq!(stops.len(), 1, "one early stop: {valid:?}");
    let stop = stops[0]["epoch"].as_u64().unwrap();
    assert!(stop < 8, "the test's premise: it stopped early: {valid:?}");
    assert_eq!(valid.len() as u64, stop, "no epoch after it");
    assert_eq!(page["finished"], json!(true));
    assert!(
        events.iter().any(|e| e["kind"] == "finished"),
        "the test pass ran"
    );
    let messages = page["messages"].to_string();
    assert!(
        messages.contains(&format!("stopping early after epoch {stop}")),
        "{messages}"
    );

    // Native training from the same seed stops after the same epoch.
    let run = dir.path().join("run");
    native(
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
            "--seed",
            "5",
            "--learning-rate",
            "3",
            "--max-epoch",
            "8",
            "--max-epoch-decay-lr",
            "8",
            "--patience",
            "1",
            "--no-progress",
        ]
        .into_iter()
        .chain(common::TINY_MODEL)
        .collect::<Vec<_>>(),
    );
    let metrics = read_metrics(&run);
    let native_stop = metrics
        .iter()
        .find(|m| m["kind"] == "early_stop")
        .expect("native training stopped early too");
    assert_eq!(
        native_stop["epoch"],
        json!(stop),
        "{native_stop}; the page's {valid:?}"
    );
}

/// `--precision mixed` in a tab: where the browser's adapter has `shader-f16`, the page
/// offers it, a tiny model trains in it (the loss falls) and its checkpoint carries the loss
/// scale and evaluates natively; where it has not, the option is disabled with the reason and
/// asking for it anyway is refused with the one-line message.
#[test]
fn the_page_trains_in_mixed_precision_where_the_adapter_has_f16() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_ptb(dir.path(), 600, 80);
    let (_server, b) = open_page(&["--data", data.to_str().unwrap()]);
    let page = b.ok(
        "const o = document.querySelector('#precision option[value=\"mixed\"]'); \
         return {adapter: window.lstm.adapter, disabled: o.disabled, text: o.textContent};",
        json!(null),
    );
    assert!(page["adapter"].is_object(), "no WebGPU adapter: {page}");
    eprintln!("browser adapter: {}", page["adapter"]);
    let (mut options, _) = tiny();
    options["config"]["precision"] = json!("mixed");
    if page["adapter"]["f16"] != json!(true) {
        assert_eq!(page["disabled"], json!(true), "{page}");
        assert!(
            page["text"].as_str().unwrap().contains("shader-f16"),
            "{page}"
        );
        let refused = b
            .run("return await window.lstm.api.create(args);", options)
            .expect_err("a mixed model without shader-f16");
        assert!(refused.contains("shader-f16"), "{refused}");
        return;
    }
    assert_eq!(page["disabled"], json!(false), "{page}");
    let info = b.ok("return await window.lstm.api.create(args);", options);
    assert_eq!(info["config"]["precision"], "mixed", "{info}");
    let events = b.ok("return await window.lstm.api.train(args);", json!(20));
    let loss: Vec<f64> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "train")
        .map(|e| e["loss"].as_f64().unwrap())
        .collect();
    assert_eq!(loss.len(), 20, "{events}");
    let (first, last) = (
        loss[..5].iter().sum::<f64>() / 5.0,
        loss[15..].iter().sum::<f64>() / 5.0,
    );
    assert!(
        last < first - 0.2,
        "the loss falls: {first:.3} -> {last:.3}"
    );
    let ck = page_checkpoint(&b);
    let path = dir.path().join("mixed.safetensors");
    std::fs::write(&path, &ck).unwrap();
    let parsed = lstm_gpu::model::checkpoint::Checkpoint::load(&path).unwrap();
    assert_eq!(parsed.config.precision, lstm_gpu::config::Precision::Mixed);
    let ls = parsed
        .position
        .loss_scale
        .expect("the page's checkpoint keeps the loss scale");
    assert!(ls.scale > 0.0 && ls.clean + ls.overflows > 0, "{ls:?}");
    let valid = native_eval(&path, &data);
    assert!(valid.is_finite() && valid > 1.0, "{valid}");
}
