//! The page in a real browser: headless Chromium (WebGPU on its SwiftShader adapter) driven
//! over WebDriver (chromedriver), the page and a small slice of PTB (or the tiny fixture
//! corpus) served by `lstm-gpu serve`. One binary (`cargo test --test browser`) in four parts:
//!
//! - `training`: the page's steps against native training from the same initial weights
//!   (per-step perplexities within [`STEP_TOLERANCE`]), its checkpoints evaluated both ways
//!   (within [`EVAL_TOLERANCE`]), bad input as one message that changes nothing, the seed
//!   model's first minute, early stopping and mixed precision;
//! - `models`: the settings, the models kept across a reload, the server's models;
//! - `kernels`: checking, changing and tuning the kernels in the page;
//! - `speed`: measurements, run with `--ignored`.
//!
//! This file is the harness: the server, the browser (`Browser`: tests that time what a user
//! sees take the machine to themselves), and what the parts read from the page. Starting a
//! browser is most of a test's time, so each test tells its story in phases on one page.
//!
//! It needs the built page (`scripts/build-web.sh`), `chromium` and `chromium-driver`
//! (`.ci/run` installs them); without them it fails saying so.

#[path = "../common/mod.rs"]
mod common;

mod kernels;
mod models;
mod speed;
mod training;

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
    common::ptb_head(split, lines)
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

/// `open_page` for a test that times the page: no other test's browser runs beside it.
fn open_page_alone(args: &[&str]) -> (Kill, Browser) {
    open_page_with(args, Browser::start_alone)
}

/// `lstm-gpu serve` with `args`, and the page open in a headless Chromium with WebGPU,
/// started (its adapter asked for, the server's corpus loaded where it has one).
fn open_page(args: &[&str]) -> (Kill, Browser) {
    open_page_with(args, Browser::start)
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
