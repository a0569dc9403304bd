//! The page in a real browser: headless Chromium (WebGPU on its SwiftShader adapter) driven
//! over WebDriver (chromedriver), the page and a small slice of PTB served by `lstm-gpu
//! serve`. One test, in phases, because starting the browser is most of its time:
//!
//! 1. the page gets an adapter and the server's corpus, makes a fresh tiny model, saves its
//!    initial weights and trains it: the loss falls, the chart, progress, speed, prediction
//!    and generation show values (a screenshot is taken mid-training);
//! 2. native training from the page's initial weights (`train --init`) logs the same
//!    per-step perplexities within [`STEP_TOLERANCE`];
//! 3. the page's checkpoint evaluates natively to the page's own validation perplexity, and
//!    native's checkpoint loads in the page (saved back bit for bit) and validates there to
//!    native's figure, both within [`EVAL_TOLERANCE`];
//! 4. bad input (a file that is not text, a truncated checkpoint, a checkpoint whose tensors
//!    are not the shapes its header says, a browser without WebGPU) is one message and
//!    changes nothing, and the model trains on afterwards.
//!
//! It needs the built page (`scripts/build-web.sh`), `chromium` and `chromium-driver`
//! (`.ci/run` installs them); without them it fails saying so.

mod common;

use common::Kill;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Training steps in the page, and natively from the same initial weights.
const STEPS: usize = 30;
/// How close the page's per-step training perplexities must be to native lavapipe's,
/// relative. The kernels and the step schedule are the same; what differs is the compiler
/// (Chromium's Tint and SwiftShader's LLVM against naga and lavapipe's LLVM), which may
/// contract a multiply and an add into one `fma` and round `exp`/`log` differently in the
/// last bits. Over 30 steps of SGD those differences grow but stay far below this (the
/// test prints the measured worst).
const STEP_TOLERANCE: f64 = 1e-3;
/// A validation pass is a sum of one forward pass's losses: the same rounding, no growth.
const EVAL_TOLERANCE: f64 = 2e-4;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lstm-gpu")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tool(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("the browser test needs {name}: apt-get install {package} (.ci/run does)");
}

/// The first `lines` lines of a PTB split.
fn head(split: &str, lines: usize) -> String {
    let dir = std::env::var("LSTM_GPU_PTB_DIR").unwrap_or_else(|_| "../shared/data/ptb".into());
    let path = Path::new(&dir).join(format!("ptb.{split}.txt"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (set LSTM_GPU_PTB_DIR)", path.display()));
    text.lines().take(lines).map(|l| format!("{l}\n")).collect()
}

/// `lstm-gpu serve` with the built page.
fn serve(args: &[&str]) -> (Kill, String) {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    assert!(
        web.join("pkg/lstm_gpu_web_bg.wasm").is_file(),
        "the page is not built: run scripts/build-web.sh first"
    );
    common::serve(args)
}

/// A WebDriver session on a headless Chromium of its own.
struct Browser {
    agent: ureq::Agent,
    base: String,
    _driver: Kill,
    _profile: tempfile::TempDir,
    _turn: Turn,
}

/// The browsers of this file's tests share the machine (the test harness runs as many
/// tests at once as it has cores), and a test that times what a user sees would time the
/// other tests' Chromiums too: such a test takes the machine to itself, the others share it.
static TURNS: RwLock<()> = RwLock::new(());

enum Turn {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

impl Browser {
    fn start(webgpu: bool) -> Browser {
        // A test that failed while holding its turn poisons the lock; the next ones go on.
        let turn = Turn::Shared(TURNS.read().unwrap_or_else(|e| e.into_inner()));
        Browser::start_with(webgpu, turn)
    }

    /// A browser for a test that times the page: it waits until no other test's browser
    /// runs, and none starts until it is dropped.
    fn start_alone(webgpu: bool) -> Browser {
        let turn = Turn::Alone(TURNS.write().unwrap_or_else(|e| e.into_inner()));
        Browser::start_with(webgpu, turn)
    }

    fn start_with(webgpu: bool, turn: Turn) -> Browser {
        let driver = tool("chromedriver", "chromium-driver");
        let chromium = tool("chromium", "chromium");
        let port = free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(900)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let t0 = Instant::now();
        while agent.get(&format!("{base}/status")).call().is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".to_string(),
            "--window-size=1100,1500".to_string(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if webgpu {
            args.push("--enable-unsafe-webgpu".into());
        }
        let mut b = Browser {
            agent,
            base,
            _driver: Kill(child),
            _profile: profile,
            _turn: turn,
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium.display().to_string(), "args": args},
        }}});
        let v = b.call("POST", "/session", Some(caps));
        let id = v["sessionId"].as_str().expect("a session id").to_string();
        b.base = format!("{}/session/{id}", b.base);
        b.call("POST", "/timeouts", Some(json!({"script": 900_000})));
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let mut resp = match body {
            Some(b) => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(b.to_string()),
            None if method == "GET" => self.agent.get(&url).call(),
            None => self.agent.delete(&url).call(),
        }
        .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = resp.status();
        let text = resp
            .body_mut()
            .with_config()
            .limit(512 << 20)
            .read_to_string()
            .unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "WebDriver {method} {path}: {status} {}",
            v["value"]["message"].as_str().unwrap_or(&text)
        );
        v["value"].clone()
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url})));
    }

    /// Run `body` (JavaScript, `await` allowed, `args` as `args`) in the page; its value, or
    /// `Err` with the message it threw.
    fn run(&self, body: &str, args: Value) -> Result<Value, String> {
        let script = format!(
            "const done = arguments[arguments.length - 1]; const args = arguments[0];
             (async () => {{ {body} }})().then(v => done({{ok: v === undefined ? null : v}}),
                e => done({{err: String(e && e.message ? e.message : e)}}));"
        );
        let v = self.call(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": [args]})),
        );
        match v.get("err") {
            Some(e) => Err(e.as_str().unwrap_or("?").to_string()),
            None => Ok(v["ok"].clone()),
        }
    }

    fn ok(&self, body: &str, args: Value) -> Value {
        self.run(body, args)
            .unwrap_or_else(|e| panic!("page script failed: {e}\n{body}"))
    }

    /// Wait until the page has asked for its adapter (and loaded the server's corpus).
    fn wait_started(&self) {
        self.ok(
            "for (let i = 0; i < 1200; i++) { if (window.lstm && window.lstm.started) return; \
             await new Promise(r => setTimeout(r, 100)); } throw new Error('page did not start');",
            json!(null),
        );
    }

    fn element(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .expect("an element id")
            .to_string()
    }

    /// Pick `path` in the file input `css`, as a user would.
    fn pick_file(&self, css: &str, path: &Path) {
        let id = self.element(css);
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({"text": path.display().to_string()})),
        );
    }

    fn screenshot(&self, to: &Path) {
        let b64 = self.call("GET", "/screenshot", None);
        let bytes = decode_base64(b64.as_str().unwrap());
        std::fs::write(to, bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.agent.delete(&self.base).call();
    }
}

fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    } as u32;
    let clean: Vec<u8> = s
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c) << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    out
}

/// JavaScript that turns a Uint8Array `b` into base64.
const TO_BASE64: &str =
    "const b64 = (b) => { let s = ''; for (let i = 0; i < b.length; i += 0x8000) \
     s += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000)); return btoa(s); };";
/// JavaScript that turns base64 `s` into a Uint8Array.
const FROM_BASE64: &str = "const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));";

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// Native `lstm-gpu` with `args`; its stdout (panics with stderr on failure).
fn native(args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lstm-gpu {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `lstm-gpu eval`'s perplexity of `checkpoint` on the valid split of `data`.
fn native_eval(checkpoint: &Path, data: &Path) -> f64 {
    let out = native(&[
        "eval",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--split",
        "valid",
    ]);
    let line = out.lines().find(|l| l.contains("perplexity:")).expect(&out);
    line.split("perplexity:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// `lstm-gpu serve` with `args`, and the page open in a headless Chromium with WebGPU,
/// started (its adapter asked for, the server's corpus loaded where it has one).
fn open_page(args: &[&str]) -> (Kill, Browser) {
    open_page_with(args, Browser::start)
}

/// `open_page` for a test that times the page: no other test's browser runs beside it.
fn open_page_alone(args: &[&str]) -> (Kill, Browser) {
    open_page_with(args, Browser::start_alone)
}

fn open_page_with(args: &[&str], start: fn(bool) -> Browser) -> (Kill, Browser) {
    let (server, url) = serve(args);
    let b = start(true);
    b.open(&url);
    b.wait_started();
    (server, b)
}

/// A folder `ptb` in `dir` with the first `train` lines of PTB's training text and the first
/// `other` lines of its valid and test texts.
fn small_ptb(dir: &Path, train: usize, other: usize) -> PathBuf {
    let data = dir.join("ptb");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("ptb.train.txt"), head("train", train)).unwrap();
    std::fs::write(data.join("ptb.valid.txt"), head("valid", other)).unwrap();
    std::fs::write(data.join("ptb.test.txt"), head("test", other)).unwrap();
    data
}

/// One field of the page's training events (`kind` "train"), in order.
fn train_values(events: &Value, field: &str) -> Vec<f64> {
    events
        .as_array()
        .expect("an array of events")
        .iter()
        .filter(|e| e["kind"] == "train")
        .map(|e| e[field].as_f64().unwrap())
        .collect()
}

fn read_metrics(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The page's model options for the test's tiny model, and the same as native flags.
fn tiny() -> (Value, Vec<&'static str>) {
    (
        json!({"preset": "seed", "seed": 7, "log_every": 1,
               "config": {"embedding_size": 16, "hidden": [16, 16], "batch_size": 4, "num_steps": 10}}),
        vec![
            "--embedding-size",
            "16",
            "--hidden",
            "16,16",
            "--batch-size",
            "4",
            "--num-steps",
            "10",
            "--seed",
            "7",
        ],
    )
}

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

/// What the page shows of itself: the model's position, the corpus, the messages.
fn state(b: &Browser) -> Value {
    b.ok(
        "const s = window.lstm; return {step: s.info ? s.info.position.global_step : null, \
         corpus: s.corpus ? s.corpus.train.length : null, trainer: !!s.trainer, \
         messages: s.messages.length, message: document.getElementById('message').textContent, \
         kind: document.getElementById('message').className};",
        json!(null),
    )
}

/// The page's checkpoint, saved without a download.
fn page_checkpoint(b: &Browser) -> Vec<u8> {
    decode_base64(
        b.ok(
            &format!("{TO_BASE64} return b64(await window.lstm.api.save(false));"),
            json!(null),
        )
        .as_str()
        .unwrap(),
    )
}

fn page_validate(b: &Browser) -> f64 {
    b.ok("return await window.lstm.api.validate();", json!(null))
        .as_f64()
        .unwrap()
}

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
    let dir = std::env::var("LSTM_GPU_PTB_DIR").unwrap_or_else(|_| "../shared/data/ptb".into());
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
    let dir = std::env::var("LSTM_GPU_PTB_DIR").unwrap_or_else(|_| "../shared/data/ptb".into());
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

/// A newcomer's first minute, on the whole of PTB: the page's default on a CPU adapter is
/// the quick model, and it says how to pick the seed model; then, with the seed model
/// picked, New model and Train pressed, the page says what it is doing before the first
/// step ends, and the step count, words/s and the training perplexity move several times
/// (with the chart drawn) long before the epoch's first log point (10% of it), and it says
/// how long an epoch takes at the pace it sees. A screenshot is taken 60 seconds after
/// Train. The test has the machine to itself (no other test's browser runs beside it).
#[test]
fn the_first_minute_of_the_seed_model_moves() {
    let dir = std::env::var("LSTM_GPU_PTB_DIR").unwrap_or_else(|_| "../shared/data/ptb".into());
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
    while t0.elapsed() < Duration::from_secs(60) {
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
    b.screenshot(&out.join(format!("first-minute-{preset}.png")));
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

/// The page's settings, a student's way to change the model before New model: they show the
/// chosen preset's configuration (what New model makes when none is changed); the changed ones
/// (and only those) are set over the preset, and stay when another preset is picked; "Back to
/// the preset's" undoes them; a value that is not a number, or one the library refuses, is one
/// line in the page's words (the setting's name, not the command line's flag) and leaves the
/// model as it was.
#[test]
fn the_pages_settings_make_the_model_they_show() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_ptb(dir.path(), 600, 80);
    let (_server, b) = open_page(&["--data", data.to_str().unwrap()]);
    let settings = |b: &Browser| {
        b.ok(
            "const o = {}; for (const i of document.querySelectorAll('#settings-fields input')) \
               o[i.id.slice(4)] = {value: i.value, edited: i.classList.contains('edited')}; return o;",
            json!(null),
        )
    };
    let pick = |b: &Browser, preset: &str| {
        b.ok(
            "const p = document.getElementById('preset'); p.value = args; \
             p.dispatchEvent(new Event('change')); return null;",
            json!(preset),
        );
    };
    let set = |b: &Browser, values: Value| {
        b.ok(
            "for (const [k, v] of Object.entries(args)) { const i = document.getElementById('set-' + k); \
               i.value = v; i.dispatchEvent(new Event('input')); } return null;",
            values,
        );
    };
    // New model, then the model made, or the error message shown.
    let create = |b: &Browser| -> Result<Value, String> {
        let r = b.ok(
            "const s = window.lstm; const before = s.info; const n = s.messages.length; \
             document.getElementById('create').click(); \
             for (let i = 0; i < 2400; i++) { \
               if (s.info !== before && !s.status) return {info: s.info, model: document.getElementById('model-info').textContent}; \
               const e = s.messages.slice(n).find(m => m.kind === 'error'); \
               if (e) return {error: e.text, message: document.getElementById('message').textContent}; \
               await new Promise(r => setTimeout(r, 50)); } throw new Error('neither a model nor an error');",
            json!(null),
        );
        match r["error"].as_str() {
            Some(e) => {
                assert_eq!(r["message"], r["error"], "the message shown: {r}");
                Err(e.to_string())
            }
            None => Ok(r),
        }
    };
    // What a setting shows of a configuration field.
    let shown = |field: &str, v: &Value| -> String {
        match (field, v) {
            ("hidden", Value::Array(a)) => a
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            ("max_epoch_decay_lr", v) => (v.as_u64().unwrap() + 1).to_string(),
            (_, v) => v.to_string(),
        }
    };

    // The tiny preset as it is: the settings show what New model makes.
    pick(&b, "tiny");
    let tiny = settings(&b);
    assert!(tiny.as_object().unwrap().len() >= 12, "{tiny}");
    let made = create(&b).unwrap();
    let config = &made["info"]["config"];
    for (field, s) in tiny.as_object().unwrap() {
        let want = if field == "vocab_size" {
            // The text has fewer distinct words than the preset's vocabulary allows.
            assert!(
                config[field].as_u64().unwrap() <= s["value"].as_str().unwrap().parse().unwrap()
            );
            continue;
        } else {
            shown(field, &config[field])
        };
        assert_eq!(
            s["value"].as_str().unwrap(),
            want,
            "{field}: {tiny} against {config}"
        );
        assert_eq!(s["edited"], json!(false), "{field}");
    }
    assert_eq!(config["hidden"], json!([32, 32]), "{config}");

    // Changed settings stay when another preset is picked; the others follow the preset.
    set(
        &b,
        json!({"hidden": "24,16", "max_epoch": "3", "keep_prob": "0.8", "learning_rate": "0.5",
               "max_epoch_decay_lr": "2"}),
    );
    pick(&b, "small");
    b.ok(
        "document.getElementById('settings').open = true; return null;",
        json!(null),
    );
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&out).unwrap();
    b.screenshot(&out.join("settings.png"));
    let small = settings(&b);
    assert_eq!(small["hidden"]["value"], "24,16", "{small}");
    assert_eq!(small["hidden"]["edited"], json!(true), "{small}");
    assert_ne!(
        small["embedding_size"]["value"], tiny["embedding_size"]["value"],
        "{small}"
    );
    pick(&b, "tiny");
    let made = create(&b).unwrap();
    let config = &made["info"]["config"];
    assert_eq!(config["hidden"], json!([24, 16]), "{config}");
    assert_eq!(
        (
            &config["max_epoch"],
            &config["keep_prob"],
            &config["learning_rate"],
            &config["max_epoch_decay_lr"]
        ),
        (&json!(3), &json!(0.8), &json!(0.5), &json!(1)),
        "{config}"
    );
    for field in [
        "embedding_size",
        "batch_size",
        "num_steps",
        "decay",
        "max_grad_norm",
        "init_scale",
    ] {
        assert_eq!(
            shown(field, &config[field]),
            tiny[field]["value"].as_str().unwrap(),
            "{field}: {config}"
        );
    }
    let model = made["model"].as_str().unwrap();
    let decay = &config["decay"];
    for part in [
        "LSTM 24+16".to_string(),
        "3 epochs".to_string(),
        "dropout keeping 0.8".to_string(),
        format!("learning rate 0.5 times {decay} an epoch after the first 2"),
    ] {
        assert!(model.contains(&part), "{part:?} in the model line: {model}");
    }

    // Refused: the message in the page's words, one line; the model stays.
    for (values, setting, flag) in [
        (json!({"keep_prob": "1.5"}), "keep prob", "--keep-prob"),
        (json!({"hidden": "24, many"}), "LSTM layers", "--hidden"),
        (
            json!({"hidden": "24,16", "keep_prob": "0.8", "max_epoch": "0"}),
            "epochs",
            "--max-epoch",
        ),
    ] {
        set(&b, values.clone());
        let e = create(&b).expect_err(&values.to_string());
        assert!(
            e.contains(&format!("\"{setting}\"")) || e.starts_with(&format!("{setting}:")),
            "{values}: the setting named: {e}"
        );
        assert!(!e.contains(flag) && !e.contains('\n'), "{values}: {e}");
        let still = b.ok("return window.lstm.info.config.hidden;", json!(null));
        assert_eq!(still, json!([24, 16]), "{values}: the model stays");
    }

    // Back to the preset's values: nothing changed by hand.
    b.ok(
        "document.getElementById('settings-reset').click(); return null;",
        json!(null),
    );
    let back = settings(&b);
    assert_eq!(back, tiny, "the preset's settings again");
}

/// The page keeps the model it trains in the browser's storage (at every epoch's end and
/// whenever training stops): after a reload, with the same text loaded, "Resume ..." brings
/// it back where it stood, weights bit for bit; with another text it is offered disabled,
/// saying why; "Forget it" removes it.
#[test]
fn the_page_keeps_its_model_across_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_ptb(dir.path(), 600, 80);
    let (_server, url) = serve(&["--data", data.to_str().unwrap()]);
    let b = Browser::start(true);
    b.open(&url);
    b.wait_started();
    let offer = "const r = document.getElementById('resume-kept'); \
                 return {hidden: r.hidden, disabled: r.disabled, text: r.textContent, title: r.title, \
                         forget: document.getElementById('forget-kept').hidden};";
    // The same, once the page has read the picked file.
    let offer_after_pick = format!(
        "for (let i = 0; i < 200 && window.lstm.corpus.name !== 'other.txt'; i++) \
           await new Promise(r => setTimeout(r, 50)); \
         await new Promise(r => setTimeout(r, 200)); {offer}"
    );
    assert_eq!(
        b.ok(offer, json!(null))["hidden"],
        json!(true),
        "nothing kept yet"
    );
    let (options, _) = tiny();
    b.ok("return await window.lstm.api.create(args);", options);
    b.ok("return await window.lstm.api.train(3);", json!(null));
    let trained = page_checkpoint(&b);
    let history =
        "const s = window.lstm; return {train: s.trainEvents, points: s.points, epochs: s.epochs};";
    let shown = b.ok(history, json!(null));
    assert_eq!(shown["train"].as_array().unwrap().len(), 3, "{shown}");

    b.open(&url);
    b.wait_started();
    assert_eq!(state(&b)["trainer"], json!(false), "a fresh page");
    let offered = b.ok(offer, json!(null));
    assert_eq!(
        (&offered["hidden"], &offered["disabled"], &offered["forget"]),
        (&json!(false), &json!(false), &json!(false)),
        "{offered}"
    );
    let text = offered["text"].as_str().unwrap();
    assert!(
        text.contains("epoch 1, step 3") && text.contains("LSTM 16+16"),
        "{offered}"
    );
    b.ok(
        "document.getElementById('resume-kept').click(); \
         for (let i = 0; i < 1200 && !window.lstm.trainer; i++) await new Promise(r => setTimeout(r, 50)); \
         return null;",
        json!(null),
    );
    assert_eq!(state(&b)["step"], json!(3), "{}", state(&b));
    let resumed = page_checkpoint(&b);
    let [trained, resumed] = [&trained, &resumed]
        .map(|bytes| lstm_gpu::model::checkpoint::Checkpoint::from_bytes(bytes).unwrap());
    assert_eq!(resumed.params, trained.params, "the weights bit for bit");
    assert_eq!(resumed.position, trained.position);
    assert_eq!(resumed.state, trained.state, "the carried state too");
    assert_eq!(
        b.ok(history, json!(null)),
        shown,
        "the chart's points as they were"
    );

    // Another text: offered, but not to resume on it.
    let other = dir.path().join("other.txt");
    std::fs::write(&other, head("valid", 300)).unwrap();
    b.pick_file("#file-train", &other);
    let offered = b.ok(&offer_after_pick, json!(null));
    assert_eq!(
        (&offered["hidden"], &offered["disabled"]),
        (&json!(false), &json!(true)),
        "{offered}"
    );
    assert!(
        offered["title"].as_str().unwrap().contains("another text"),
        "{offered}"
    );

    b.ok(
        "await window.lstm.api.forgetKept(); return null;",
        json!(null),
    );
    assert_eq!(b.ok(offer, json!(null))["hidden"], json!(true));
    b.open(&url);
    b.wait_started();
    assert_eq!(
        b.ok(offer, json!(null))["hidden"],
        json!(true),
        "forgotten for good"
    );
}

/// The page keeps one model per text (the last trained on it) and keeps it at every epoch's
/// end: a tab closed mid-run loses at most the epoch that ran. Each text's model is offered
/// where that text is loaded, the others named; the oldest beyond `keepAtMost` are forgotten;
/// a model kept by the page's first version (one, under "last") is found again.
#[test]
fn the_page_keeps_a_model_per_text_and_at_each_epochs_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tiny");
    let (_server, url) = serve(&["--data", data.to_str().unwrap()]);
    let b = Browser::start(true);
    b.open(&url);
    b.wait_started();
    let options = |seed: u32| {
        json!({"preset": "seed", "seed": seed, "config": {
            "vocab_size": 60, "embedding_size": 8, "hidden": [8, 6], "batch_size": 2,
            "num_steps": 5, "max_epoch": 50, "max_epoch_decay_lr": 50}})
    };
    let offer = "const r = document.getElementById('resume-kept'); \
                 return {hidden: r.hidden, disabled: r.disabled, text: r.textContent, title: r.title, \
                         kept: window.lstm.keptAll.length};";
    let wait_for = |name: &str| {
        format!(
            "for (let i = 0; i < 200 && window.lstm.corpus.name !== '{name}'; i++) \
               await new Promise(r => setTimeout(r, 50)); \
             await new Promise(r => setTimeout(r, 200)); {offer}"
        )
    };
    let resume = "document.getElementById('resume-kept').click(); \
                  for (let i = 0; i < 1200 && !window.lstm.trainer; i++) await new Promise(r => setTimeout(r, 50)); \
                  return {step: window.lstm.info.position.global_step, epochs: window.lstm.epochs.length};";
    let reload = || {
        b.open(&url);
        b.wait_started();
    };

    // Training on, the tab closed (the page opened again) once a model is kept.
    let made = b.ok("return await window.lstm.api.create(args);", options(5));
    let epoch_size = made["epoch_size"].as_u64().unwrap();
    let during = b.ok(
        "window.lstm.api.train(); \
         for (let i = 0; i < 2400 && window.lstm.keptStep === null; i++) await new Promise(r => setTimeout(r, 25)); \
         return {kept: window.lstm.keptStep, running: window.lstm.running};",
        json!(null),
    );
    assert_eq!(during["running"], json!(true), "still training: {during}");
    reload();
    let offered = b.ok(offer, json!(null));
    assert_eq!(
        (&offered["hidden"], &offered["disabled"], &offered["kept"]),
        (&json!(false), &json!(false), &json!(1)),
        "{offered}"
    );
    let text = offered["text"].as_str().unwrap();
    let epoch: u64 = text
        .split("epoch ")
        .nth(1)
        .and_then(|t| t.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{offered}"));
    assert!(
        epoch >= 2
            && text.contains(&format!("epoch {epoch}, step 0,"))
            && text.contains("for this text"),
        "kept at an epoch's end: {offered}"
    );
    let resumed = b.ok(resume, json!(null));
    assert_eq!(
        resumed,
        json!({"step": (epoch - 1) * epoch_size, "epochs": epoch - 1}),
        "the kept model where its epoch ended, with its epochs"
    );

    // Another text: the first model offered, not to resume there; a model trained on it.
    let other = dir.path().join("other.txt");
    std::fs::write(&other, head("valid", 300)).unwrap();
    b.pick_file("#file-train", &other);
    let offered = b.ok(&wait_for("other.txt"), json!(null));
    assert_eq!(
        (&offered["hidden"], &offered["disabled"]),
        (&json!(false), &json!(true)),
        "{offered}"
    );
    assert!(
        offered["title"].as_str().unwrap().contains("another text"),
        "{offered}"
    );
    b.ok("return await window.lstm.api.create(args);", options(6));
    b.ok("return await window.lstm.api.train(3);", json!(null));

    // Both kept: each offered where its text is loaded, the other named.
    reload();
    let offered = b.ok(offer, json!(null));
    let text = offered["text"].as_str().unwrap();
    assert_eq!(
        (&offered["disabled"], &offered["kept"]),
        (&json!(false), &json!(2)),
        "{offered}"
    );
    assert!(
        text.contains(&format!("epoch {epoch}, step 0,"))
            && text.contains("1 more kept for other text")
            && offered["title"]
                .as_str()
                .unwrap()
                .contains("other.txt: LSTM 8+6"),
        "{offered}"
    );
    b.pick_file("#file-train", &other);
    let offered = b.ok(&wait_for("other.txt"), json!(null));
    assert_eq!(offered["disabled"], json!(false), "{offered}");
    assert!(
        offered["text"]
            .as_str()
            .unwrap()
            .contains("epoch 1, step 3,"),
        "{offered}"
    );
    assert_eq!(b.ok(resume, json!(null)), json!({"step": 3, "epochs": 0}));

    // Forgetting the one offered leaves the other.
    b.ok(
        "await window.lstm.api.forgetKept(); return null;",
        json!(null),
    );
    let offered = b.ok(offer, json!(null));
    assert_eq!(
        (&offered["hidden"], &offered["disabled"], &offered["kept"]),
        (&json!(false), &json!(true), &json!(1)),
        "the first text's, not for this one: {offered}"
    );
    assert!(
        state(&b)["message"]
            .as_str()
            .unwrap()
            .contains("for this text is forgotten"),
        "{}",
        state(&b)
    );

    // At most `keepAtMost`: keeping a second text's model forgets the oldest.
    b.ok(
        "window.lstm.keepAtMost = 1; return await window.lstm.api.create(args);",
        options(7),
    );
    // (as many steps as the model resumed before it had: a new model is kept all the same)
    b.ok("return await window.lstm.api.train(3);", json!(null));
    reload();
    let offered = b.ok(offer, json!(null));
    assert_eq!(
        (&offered["disabled"], &offered["kept"]),
        (&json!(true), &json!(1)),
        "only the other text's: {offered}"
    );
    assert!(
        offered["text"]
            .as_str()
            .unwrap()
            .contains("for other.txt (")
            && offered["text"]
                .as_str()
                .unwrap()
                .contains("epoch 1, step 3,"),
        "{offered}"
    );

    // The first version's store: one model under "last", moved to its text's key.
    b.ok("return await window.lstm.api.create(args);", options(8));
    b.ok("return await window.lstm.api.train(4);", json!(null));
    b.ok(
        "const s = window.lstm; \
         const bytes = await s.api.save(false); \
         const c = s.corpus; \
         const record = {bytes, saved: Date.now(), position: s.info.position, model: 'LSTM 8+6, old', \
           corpus: `${c.name}:${c.train.length}:${c.valid.length}:${c.test.length}`}; \
         await new Promise((ok, no) => { const d = indexedDB.deleteDatabase('lstm-gpu'); d.onsuccess = ok; d.onerror = no; }); \
         await new Promise((ok, no) => { \
           const open = indexedDB.open('lstm-gpu', 1); \
           open.onupgradeneeded = () => open.result.createObjectStore('models'); \
           open.onerror = no; \
           open.onsuccess = () => { const db = open.result; const tx = db.transaction('models', 'readwrite'); \
             tx.objectStore('models').put(record, 'last'); tx.oncomplete = () => { db.close(); ok(); }; tx.onerror = no; }; }); \
         return null;",
        json!(null),
    );
    reload();
    let offered = b.ok(offer, json!(null));
    assert_eq!(
        (&offered["hidden"], &offered["disabled"], &offered["kept"]),
        (&json!(false), &json!(false), &json!(1)),
        "{offered}"
    );
    assert!(
        offered["text"]
            .as_str()
            .unwrap()
            .contains("LSTM 8+6, old; epoch 1, step 4,"),
        "{offered}"
    );
    assert_eq!(b.ok(resume, json!(null)), json!({"step": 4, "epochs": 0}));
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

/// The page's "Check the kernels": `lstm_gpu::check` on the browser's WebGPU (its own
/// device), every row shown as it finishes, every check passing on the browser's adapter
/// (Tint and SwiftShader here, not naga and lavapipe).
#[test]
fn the_page_checks_every_kernel_of_its_adapter() {
    let (_server, b) = open_page(&["--no-data"]);
    let t0 = Instant::now();
    let summary = b.ok("return await window.lstm.api.checkKernels();", json!(null));
    eprintln!(
        "page check on {}: {:.0} s",
        summary["adapter"]["name"],
        t0.elapsed().as_secs_f64()
    );
    let checks = summary["checks"].as_array().expect("the checks");
    let names: Vec<&str> = checks
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for c in checks {
        assert_eq!(c["passed"], json!(true), "{c}");
        assert!(c["cases"].as_u64().unwrap() >= 32, "{c}");
    }
    assert_eq!(summary["passed"], json!(true), "{summary}");
    for name in [
        "matmul tiled",
        "matmul strip",
        "matmul skinny",
        "training step f32 unfused",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    // The table has a row per check, and the status says they passed.
    let page = b.ok(
        "return {rows: document.querySelectorAll('#check-table tbody tr').length, \
                 streamed: window.lstm.checks.length, \
                 status: document.getElementById('check-status').textContent};",
        json!(null),
    );
    assert_eq!(page["rows"], json!(checks.len()), "{page}");
    assert_eq!(page["streamed"], json!(checks.len()), "{page}");
    assert!(
        page["status"]
            .as_str()
            .unwrap()
            .starts_with(&format!("all {} checks passed", checks.len())),
        "{page}"
    );
}

/// The page's kernel editor, the browser's `--shaders DIR`: it lists every WGSL file the
/// kernels are built from; a changed file is what "Check the kernels" and "New model" build
/// (a strip kernel with one output row negated fails its checks, and only the strip
/// kernels' do); a file that does not compile is one line naming its line in the user's
/// file; back to the built-in file, nothing is changed.
#[test]
fn a_kernel_changed_in_the_page_is_what_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_ptb(dir.path(), 300, 40);
    let (_server, b) = open_page(&["--data", data.to_str().unwrap()]);
    let built_in = common::built_in_shader;
    let page = b.ok(
        "return {files: document.querySelectorAll('#kernel-file option').length, \
                 shown: document.getElementById('kernel-source').value};",
        json!(null),
    );
    assert_eq!(page["files"], json!(lstm_gpu::gpu::shaders::FILES.len()));
    assert_eq!(page["shown"], json!(built_in("lstm_cell.wgsl")));

    // A file that does not compile.
    let (broken, line) = common::shader_with_a_syntax_error("sgd.wgsl");
    let changed = b.ok(
        "return await window.lstm.api.useKernel('sgd.wgsl', args);",
        json!(broken),
    );
    assert_eq!(changed, json!(["sgd.wgsl"]));
    let (options, _) = tiny();
    let refused = b
        .run(
            "return await window.lstm.api.create(args);",
            options.clone(),
        )
        .expect_err("a model on a kernel that does not compile");
    let place = format!("line {line} of your sgd.wgsl");
    assert!(refused.contains(&place), "{place} not in: {refused}");
    assert!(!refused.contains('\n'), "one line: {refused}");
    let changed = b.ok(
        "return await window.lstm.api.resetKernel('sgd.wgsl');",
        json!(null),
    );
    assert_eq!(changed, json!([]));

    // One output row of the strip kernels negated: their checks fail, no other matmul's
    // (the training steps fail too where they run on strip kernels, as here by default).
    let negated = common::strip_with_a_negated_row();
    b.ok(
        "return await window.lstm.api.useKernel('matmul_strip.wgsl', args);",
        json!(negated),
    );
    let summary = b.ok("return await window.lstm.api.checkKernels();", json!(null));
    assert_eq!(
        summary["changed"],
        json!(["matmul_strip.wgsl"]),
        "{summary}"
    );
    for c in summary["checks"].as_array().unwrap() {
        let (check, passed) = (c["check"].as_str().unwrap(), c["passed"] == json!(true));
        if check.starts_with("matmul strip") {
            assert!(!passed, "{c}");
        } else if check.starts_with("matmul ") || check.starts_with("f16 matmul ") {
            assert!(passed, "{c}");
        }
    }
    assert!(
        summary["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["check"] == json!("matmul strip")),
        "{summary}"
    );
    let status = b.ok(
        "return document.getElementById('check-status').textContent;",
        json!(null),
    );
    assert!(
        status
            .as_str()
            .unwrap()
            .contains("with your matmul_strip.wgsl"),
        "{status}"
    );
    // A model builds on it (the kernels compile), and back to the built-in file, nothing
    // is changed.
    b.ok("return await window.lstm.api.create(args);", options);
    let changed = b.ok(
        "return await window.lstm.api.resetKernel('matmul_strip.wgsl');",
        json!(null),
    );
    assert_eq!(changed, json!([]));
}

/// The page tunes its kernels on its adapter as a native run does (every candidate held to
/// its CPU twin first, a wrong one left out with a warning in the tuning log: here a strip
/// kernel changed to negate a row), keeps the choices in the browser's storage under the
/// kernels' key, and reads them back for the next model on those kernels instead of
/// measuring again; "Forget the tuned choices" clears them. On a CPU adapter (SwiftShader
/// here) it tunes only when asked. One tuning: it is most of the test's time.
#[test]
fn the_page_tunes_its_kernels_and_keeps_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_ptb(dir.path(), 300, 40);
    let (_server, b) = open_page(&["--data", data.to_str().unwrap()]);
    let page = |b: &Browser| {
        b.ok(
            "let stored = null; try { stored = JSON.parse(localStorage.getItem('lstm-gpu tuning')); } catch (e) {} \
             return {tune: document.getElementById('tune').checked, \
                     log: document.getElementById('kernel-list').textContent, \
                     info: document.getElementById('model-info').textContent, \
                     note: document.getElementById('tune-note').textContent, \
                     stored};",
            json!(null),
        )
    };
    let sources = |info: &Value| -> Vec<String> {
        info["kernels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                let k = k.as_str().unwrap();
                k[k.rfind('(').unwrap() + 1..k.len() - 1].to_string()
            })
            .collect()
    };
    assert_eq!(
        page(&b)["tune"],
        json!(false),
        "SwiftShader is a CPU adapter"
    );

    // Not asked: the adapter's defaults, nothing stored.
    let (options, _) = tiny();
    let info = b.ok(
        "return await window.lstm.api.create(args);",
        options.clone(),
    );
    assert!(sources(&info).iter().all(|s| s == "default"), "{info}");
    assert_eq!(page(&b)["stored"], Value::Null);

    // Asked, with a strip kernel changed to compute wrong results (one output row negated):
    // every product and the recurrence measured, each kernel held to its twin first, the
    // wrong ones left out with a warning; the choices kept under the changed kernels' key.
    b.ok(
        "return await window.lstm.api.useKernel('matmul_strip.wgsl', args);",
        json!(common::strip_with_a_negated_row()),
    );
    let mut tuned = options.clone();
    tuned["tune"] = json!(true);
    let t0 = Instant::now();
    let info = b.ok("return await window.lstm.api.create(args);", tuned);
    eprintln!("tuning the tiny model in the page: {:.1?}", t0.elapsed());
    assert!(sources(&info).iter().all(|s| s == "tuned"), "{info}");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&out).unwrap();
    b.ok(
        "document.getElementById('kernel-choices').open = true; return null;",
        json!(null),
    );
    b.screenshot(&out.join("tuned.png"));
    let p = page(&b);
    let log = p["log"].as_str().unwrap();
    for want in [
        "kernels: tuning on the browser's WebGPU adapter",
        "against their CPU twins first",
        "warning: kernel strip left out: it computes wrong results",
        "recurrence ",
        "kernels: tuned in",
    ] {
        assert!(log.contains(want), "{want} not in the tuning log: {log}");
    }
    assert!(
        p["info"]
            .as_str()
            .unwrap()
            .contains("kernels tuned on this GPU now"),
        "{p}"
    );
    for k in info["kernels"].as_array().unwrap().iter().skip(1) {
        assert!(!k.as_str().unwrap().contains(" strip"), "{info}");
    }
    let stored = &p["stored"];
    assert_eq!(stored["format"], json!("lstm-gpu-tuning/1"), "{p}");
    let adapters = stored["adapters"].as_object().unwrap();
    assert_eq!(adapters.len(), 1, "{p}");
    let (key, entry) = adapters.iter().next().unwrap();
    assert!(
        key.contains("| shaders "),
        "the changed kernels' key: {key}"
    );
    assert_eq!(entry["models"].as_object().unwrap().len(), 1, "{p}");
    // What the model runs is what was stored.
    for k in info["kernels"].as_array().unwrap().iter().skip(1) {
        let k = k.as_str().unwrap();
        let mut words = k.split_whitespace();
        let (product, variant) = (words.next().unwrap(), words.next().unwrap());
        assert_eq!(entry["matmul"][product], json!(variant), "{k}: {entry}");
    }
    let recurrence = entry["models"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()["recurrence"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        info["kernels"][0],
        json!(format!("recurrence {recurrence} (tuned)"))
    );

    // The next model of that shape on those kernels reads them back (the box, checked, asks
    // for a tuning that is not needed).
    b.ok(
        "document.getElementById('tune').checked = true; return null;",
        json!(null),
    );
    let t0 = Instant::now();
    let info = b.ok(
        "return await window.lstm.api.create(args);",
        options.clone(),
    );
    eprintln!("the same model with the kept choices: {:.1?}", t0.elapsed());
    assert!(sources(&info).iter().all(|s| s == "cached"), "{info}");
    let p = page(&b);
    assert!(!p["log"].as_str().unwrap().contains("tuning on"), "{p}");
    assert!(p["note"].as_str().unwrap().contains("1 model"), "{p}");

    // The built-in kernels are not the changed ones: their choices are not those.
    b.ok(
        "return await window.lstm.api.resetKernel('matmul_strip.wgsl');",
        json!(null),
    );
    b.ok(
        "document.getElementById('tune').checked = false; return null;",
        json!(null),
    );
    let info = b.ok("return await window.lstm.api.create(args);", options);
    assert!(sources(&info).iter().all(|s| s == "default"), "{info}");

    // Forgotten: nothing stored.
    b.ok("window.lstm.api.forgetTuning(); return null;", json!(null));
    assert_eq!(page(&b)["stored"], Value::Null);
    assert_eq!(page(&b)["note"], json!(""));
}

/// `serve --checkpoint PATH`: the address it prints loads the model into the page once the
/// corpus is in; the page then holds its weights and validates as the program does.
#[test]
fn the_page_loads_the_model_its_address_names() {
    let dir = tempfile::tempdir().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tiny");
    let run = dir.path().join("run");
    native(
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
            "--max-steps",
            "10",
            "--checkpoint-every",
            "4",
            "--no-progress",
        ]
        .into_iter()
        .chain(common::TINY_MODEL)
        .collect::<Vec<_>>(),
    );
    let last = run.join("last.safetensors");
    let earlier = run.join("step-4.safetensors");
    let (_server, b) = open_page(&[
        "--data",
        data.to_str().unwrap(),
        "--checkpoint",
        last.to_str().unwrap(),
    ]);
    let s = state(&b);
    assert_eq!(
        (s["trainer"].as_bool(), s["step"].as_u64()),
        (Some(true), Some(10)),
        "{s}"
    );
    let original = lstm_gpu::model::checkpoint::Checkpoint::load(&last).unwrap();
    let in_page =
        lstm_gpu::model::checkpoint::Checkpoint::from_bytes(&page_checkpoint(&b)).unwrap();
    assert_eq!(in_page.params, original.params);
    let (page, program) = (page_validate(&b), native_eval(&last, &data));
    assert!(rel(page, program) < 2e-4, "page {page}, program {program}");

    // "Similar words" lists what `lstm-gpu embeddings neighbors` lists of the same weights.
    let word = original
        .vocab
        .iter()
        .find(|w| !w.starts_with('<'))
        .unwrap()
        .clone();
    let listed = native(&[
        "embeddings",
        "--checkpoint",
        last.to_str().unwrap(),
        "neighbors",
        &word,
        "-k",
        "5",
    ]);
    let listed: Vec<(String, f64)> = listed
        .lines()
        .map(|l| {
            let mut parts = l.split_whitespace();
            let w = parts.next().unwrap().to_string();
            (w, parts.next().unwrap().parse().unwrap())
        })
        .collect();
    let similar = b.ok(
        "document.getElementById('similar-word').value = ' ' + args + ' ';          document.getElementById('similar').click();          for (let i = 0; i < 600 && !window.lstm.similar; i++) await new Promise(r => setTimeout(r, 50));          return {r: window.lstm.similar, rows: document.querySelectorAll('#similar-out div').length};",
        json!(word),
    );
    assert_eq!(similar["r"]["word"], json!(word), "{similar}");
    assert_eq!(similar["rows"], json!(10), "ten rows drawn: {similar}");
    let shown: Vec<(String, f64)> = similar["r"]["neighbors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["word"].as_str().unwrap().to_string(),
                n["cosine"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed.len(), 5, "{listed:?}");
    for ((a, x), (b, y)) in listed.iter().zip(&shown) {
        assert_eq!(a, b, "the page's {shown:?} against {listed:?}");
        assert!((x - y).abs() < 1e-4, "{a}: {x} against {y}");
    }
    let refused = b
        .run(
            "return await window.lstm.api.similar('zzzqx', 5);",
            json!(null),
        )
        .expect_err("a word outside the vocabulary");
    assert!(
        refused.contains("`zzzqx` is not in the model's vocabulary"),
        "{refused}"
    );
    let refused = b
        .run(
            "return await window.lstm.api.similar('  ', 5);",
            json!(null),
        )
        .expect_err("no word");
    assert!(refused.contains("type a word"), "{refused}");

    // The plain address: the page offers the server's model with a button, loaded on click.
    let offer = "const e = document.getElementById('load-served'); \
                 const l = document.getElementById('served-model'); \
                 return [e.hidden, e.textContent, l.hidden, [...l.options].map(o => o.textContent)];";
    let (_server, url) = serve(&[
        "--data",
        data.to_str().unwrap(),
        "--checkpoint",
        last.to_str().unwrap(),
    ]);
    let plain = url.split('?').next().unwrap();
    b.open(plain);
    b.wait_started();
    let offered = b.ok(offer, json!(null));
    assert_eq!(
        (&offered[0], &offered[2]),
        (&json!(false), &json!(true)),
        "{offered}"
    );
    assert!(
        offered[1]
            .as_str()
            .unwrap()
            .contains("run/last.safetensors"),
        "{offered}"
    );
    assert_eq!(state(&b)["trainer"], false);
    b.ok(
        "await window.lstm.api.loadServed(); return null;",
        json!(null),
    );
    assert_eq!(state(&b)["step"].as_u64(), Some(10));

    // Several models (a course's): listed with where each stood, the one chosen loaded.
    let (_server, url) = serve(&[
        "--data",
        data.to_str().unwrap(),
        "--checkpoint",
        last.to_str().unwrap(),
        earlier.to_str().unwrap(),
    ]);
    b.open(url.split('?').next().unwrap());
    b.wait_started();
    let offered = b.ok(offer, json!(null));
    assert_eq!(
        (&offered[0], &offered[2]),
        (&json!(false), &json!(false)),
        "{offered}"
    );
    let listed = offered[3].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{offered}");
    assert!(
        listed[0]
            .as_str()
            .unwrap()
            .starts_with("run/last.safetensors: ")
            && listed[0].as_str().unwrap().contains("step 10"),
        "{offered}"
    );
    assert!(
        listed[1]
            .as_str()
            .unwrap()
            .starts_with("run/step-4.safetensors: ")
            && listed[1].as_str().unwrap().contains("step 4"),
        "{offered}"
    );
    // Chosen in the list, then the button: the second model.
    b.ok(
        "const l = document.getElementById('served-model'); l.selectedIndex = 1; \
         document.getElementById('load-served').click(); \
         for (let i = 0; i < 600 && !(window.lstm.info && window.lstm.info.position.global_step === 4); i++) \
           await new Promise(r => setTimeout(r, 50)); return null;",
        json!(null),
    );
    assert_eq!(state(&b)["step"].as_u64(), Some(4));
    let in_page =
        lstm_gpu::model::checkpoint::Checkpoint::from_bytes(&page_checkpoint(&b)).unwrap();
    let original = lstm_gpu::model::checkpoint::Checkpoint::load(&earlier).unwrap();
    assert_eq!(in_page.params, original.params);
    // And by number, from the page's api.
    b.ok(
        "await window.lstm.api.loadServed(0); return null;",
        json!(null),
    );
    assert_eq!(state(&b)["step"].as_u64(), Some(10));

    // Trained on to the end of its epoch (20 steps): the epoch's row, its rate and its
    // validation perplexity starred as the run's best (its first).
    let rows = b.ok(
        "await window.lstm.api.train(10); \
         return [...document.querySelectorAll('#epochs tbody tr')] \
           .map(r => [...r.cells].map(c => c.textContent));",
        json!(null),
    );
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let cells: Vec<&str> = rows[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        (cells.len(), cells[0], cells[1]),
        (5, "1", "1"),
        "{cells:?}"
    );
    assert!(cells[3].ends_with(" *"), "{cells:?}");
}
