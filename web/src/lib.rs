//! lstm-gpu in a browser tab: wasm-bindgen glue over the library's [`Session`], the same
//! kernels and step schedule the command line runs, on the browser's WebGPU.
//!
//! The page (`web/www/`, its entry `app.js`) calls [`adapter`], then [`create`] with the corpus texts (and
//! a checkpoint, optionally), and drives the returned [`Trainer`]: `advance` runs steps up to
//! the next log point and resolves to the events of [`Event`](lstm_gpu::session::Event) as
//! JSON, `validate`, `save`, `predict`, `generate`, `score`. `create` chooses the kernels
//! as a native run does: the choices the page keeps for this adapter and model in the
//! browser's storage, else a tuning now (when asked), else the adapter's defaults. Every method resolves to a value or
//! rejects with one line of text; a call made while another is running rejects with "busy"
//! and changes nothing. Build with `scripts/build-web.sh`.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use anyhow::{anyhow, bail, Context, Result};
use js_sys::{Promise, Uint8Array};
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use lstm_gpu::config::{Config, Preset};
use lstm_gpu::data::{encode_text_as, text_of_bytes, Corpus, Tokens, Vocab};
use lstm_gpu::gpu::lstm_step::Recurrence;
use lstm_gpu::gpu::softmax_xent::MAX_TOPK;
use lstm_gpu::gpu::tune::{self, TuningCache};
use lstm_gpu::gpu::MatmulChoice;
use lstm_gpu::gpu::PickedAdapter;
use lstm_gpu::model::checkpoint::Checkpoint;
use lstm_gpu::model::predict::{sample, Predictor, Sampling};
use lstm_gpu::model::similar::Embeddings;
use lstm_gpu::model::Params;
use lstm_gpu::rng::SplitMix64;
use lstm_gpu::session::{self, Session};

/// The library's warnings (a kernel left out, as natively on standard error) on the
/// browser's console, and while [`create`] runs, also to its `on_line` (the page's tuning
/// log).
struct ConsoleLog;

thread_local! {
    static WARNINGS_TO: RefCell<Option<js_sys::Function>> = const { RefCell::new(None) };
}

impl log::Log for ConsoleLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Warn
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = JsValue::from_str(&format!("warning: {}", r.args()));
        web_sys::console::warn_1(&line);
        WARNINGS_TO.with(|to| {
            if let Some(f) = &*to.borrow() {
                let _ = f.call1(&JsValue::NULL, &line);
            }
        });
    }

    fn flush(&self) {}
}

static CONSOLE_LOG: ConsoleLog = ConsoleLog;

#[wasm_bindgen(start)]
fn start() {
    if log::set_logger(&CONSOLE_LOG).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}

/// One line: the error and its causes.
/// `value` as JSON with its f32 numbers as they are written (0.1, where `json!` widens them to
/// f64 first: 0.10000000149011612), for what the page shows of them.
fn shortest<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_string(value)
        .and_then(|text| serde_json::from_str(&text))
        .unwrap_or(serde_json::Value::Null)
}

fn js_error(e: anyhow::Error) -> JsValue {
    JsValue::from_str(&format!("{e:#}"))
}

fn adapter_json(summary: &lstm_gpu::gpu::context::AdapterSummary) -> serde_json::Value {
    let info = &summary.info;
    serde_json::json!({
        "name": if info.name.is_empty() || info.name == lstm_gpu::gpu::context::BROWSER_ADAPTER { "(the browser does not say)" } else { info.name.as_str() },
        "backend": format!("{:?}", info.backend),
        "device_type": format!("{:?}", info.device_type),
        "driver": info.driver,
        "max_storage_binding_mib": summary.limits.max_storage_buffer_binding_size as f64 / (1 << 20) as f64,
        "subgroups": summary.features.contains(wgpu::Features::SUBGROUP),
        "f16": summary.features.contains(wgpu::Features::SHADER_F16),
    })
}

/// The adapter this browser gives, as JSON (name, backend, type, driver); rejects with the
/// message that says which browsers have WebGPU where it has none.
#[wasm_bindgen]
pub async fn adapter() -> Result<String, JsValue> {
    let picked = PickedAdapter::request_browser().await.map_err(js_error)?;
    Ok(adapter_json(&picked.summary).to_string())
}

/// The WGSL files every kernel is built from, as JSON `[{"name": ..., "text": ...}]`: what
/// the page's kernel editor starts from (`lstm-gpu shaders export` natively).
#[wasm_bindgen]
pub fn shader_files() -> String {
    let files: Vec<serde_json::Value> = lstm_gpu::gpu::shaders::FILES
        .iter()
        .map(|(name, text)| serde_json::json!({"name": name, "text": text}))
        .collect();
    serde_json::Value::Array(files).to_string()
}

/// The user's kernel files (name -> text, as the page's editor keeps them) as the library's
/// `--shaders`: `None` where none differs from the built-in one.
fn user_kernels(
    files: &std::collections::BTreeMap<String, String>,
) -> Result<Option<lstm_gpu::gpu::shader_dir::ShaderDir>> {
    let dir = lstm_gpu::gpu::shader_dir::ShaderDir::from_texts(
        files.iter().map(|(n, t)| (n.clone(), t.clone())).collect(),
    )?;
    Ok((!dir.changed().is_empty()).then_some(dir))
}

/// Check every kernel of this browser's adapter against its CPU twin, as `lstm-gpu check`
/// does natively (`lstm_gpu::check`, on a device of its own), built from the user's edited
/// files where `kernels` (JSON: name -> text; empty: none) gives some: `on_row` is called
/// with each check's JSON (`check`, `cases`, `error`, `tolerance`, `worst`, `fault`,
/// `passed`) as it finishes; resolves to `{"adapter": ..., "checks": [...], "passed":
/// bool, "changed": [files]}`, or rejects with one line where the adapter cannot be opened.
#[wasm_bindgen]
pub async fn check_kernels(on_row: js_sys::Function, kernels: String) -> Result<String, JsValue> {
    use lstm_gpu::check::{self, Outcome};
    let files: std::collections::BTreeMap<String, String> = if kernels.trim().is_empty() {
        Default::default()
    } else {
        serde_json::from_str(&kernels)
            .map_err(|e| js_error(anyhow!("the kernel files are not valid JSON: {e}")))?
    };
    let kernels = user_kernels(&files).map_err(js_error)?;
    let picked = PickedAdapter::request_browser().await.map_err(js_error)?;
    let adapter = adapter_json(&picked.summary);
    let mut gpu = picked
        .open_async(&lstm_gpu::model::fit::Needs::at_most("check", 1 << 20))
        .await
        .map_err(js_error)?;
    let changed = kernels.as_ref().map(|k| k.changed()).unwrap_or_default();
    gpu.shader_dir = kernels;
    gpu.check_changed_shaders().await.map_err(js_error)?;
    let mut row = |o: &Outcome| {
        let _ = on_row.call1(&JsValue::NULL, &JsValue::from_str(&o.to_json().to_string()));
    };
    let all = check::all(&mut gpu, &mut row).await.map_err(js_error)?;
    Ok(serde_json::json!({
        "adapter": adapter,
        "checks": all.iter().map(Outcome::to_json).collect::<Vec<_>>(),
        "passed": all.iter().all(Outcome::passed),
        "changed": changed,
    })
    .to_string())
}

/// Refuse bytes that are not text (empty, compressed, binary, not UTF-8) with the message
/// `create` would give, naming them `what`: the page checks a file when it is picked.
#[wasm_bindgen]
pub fn check_text(what: String, bytes: &[u8]) -> Result<(), JsValue> {
    text_of_bytes(&what, bytes.to_vec(), TEXT_ADVICE)
        .map(drop)
        .map_err(js_error)
}

const TEXT_ADVICE: &str = "pick a plain text file (PTB's ptb.train.txt, or any UTF-8 text)";

/// What `create` reads from its JSON options.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Options {
    /// `seed`, `small`, `medium` or `large`; default `seed`.
    preset: Option<String>,
    /// Fields of [`Config`] set over the preset (`hidden`, `batch_size`, `vocab_size`, ...).
    config: serde_json::Map<String, serde_json::Value>,
    /// Initialisation and dropout seed of a fresh model.
    seed: Option<u64>,
    /// Report every this many steps (default: a tenth of an epoch).
    log_every: Option<usize>,
    /// The matmul kernel for every product (`tiled`, `register-blocked`, ... as `--matmul`;
    /// `f16-scalar`, `f16-panel` with the mixed precision); default: the rule for the adapter.
    matmul: Option<String>,
    /// `fused`, `unfused` or `wavefront`, as `--recurrence`; default: the adapter's.
    recurrence: Option<String>,
    /// The user's edited kernel files, name -> text, as `--shaders DIR` natively: the
    /// kernels are built from those that differ from the built-in ones.
    kernels: std::collections::BTreeMap<String, String>,
    /// Measure the kernels on this adapter and model where `tuning` has no choices for
    /// them, as a native run does once (`lstm-gpu tune`); default no.
    tune: bool,
    /// The tuning cache the page keeps in the browser's storage (the JSON of
    /// [`TuningCache`]; empty: none): the choices measured earlier are used without a
    /// tuning, as natively from the cache file.
    tuning: String,
}

/// The options' JSON read (empty: the defaults).
fn options_of(options: &str) -> Result<Options> {
    if options.trim().is_empty() {
        return Ok(Options::default());
    }
    serde_json::from_str(options).context("the options are not valid JSON")
}

/// The configuration a new model made from `options` starts from (its preset with the
/// options' fields set over it), as JSON, unchecked: what the page's settings show before
/// a model is made. The vocabulary size is the largest allowed; a corpus with fewer distinct
/// tokens gives the model fewer. A field no configuration has is an error, as in [`create`].
#[wasm_bindgen]
pub fn model_config(options: String) -> Result<String, JsValue> {
    let cfg = options_of(&options)
        .and_then(|o| config_of(&o))
        .map_err(js_error)?;
    serde_json::to_string(&cfg).map_err(|e| js_error(e.into()))
}

/// An option read through its type's names, as the command line reads them.
fn parsed<T: std::str::FromStr<Err = String>>(what: &str, v: &Option<String>) -> Result<Option<T>> {
    v.as_deref()
        .map(str::parse::<T>)
        .transpose()
        .map_err(|e| anyhow!("the option {what}: {e}"))
}

/// Whether the options leave the word tokens to the texts (`"tokens": "auto"`, as the
/// command line does without `--tokens`): `words` unless a line end touches a word, then
/// `words-eos` ([`Tokens::default_for`]).
fn auto_tokens(opts: &Options) -> bool {
    opts.config.get("tokens").is_some_and(|v| *v == "auto")
}

fn config_of(opts: &Options) -> Result<Config> {
    let preset = match opts.preset.as_deref().unwrap_or("seed") {
        "seed" => Preset::Seed,
        "small" => Preset::Small,
        "medium" => Preset::Medium,
        "large" => Preset::Large,
        other => bail!("no preset {other:?}: seed, small, medium or large"),
    };
    let preset = Config::preset(preset);
    let mut value = serde_json::to_value(&preset)?;
    let fields = value.as_object_mut().expect("a config is an object");
    for (k, v) in &opts.config {
        if k == "tokens" && *v == "auto" {
            // The preset's (words), until the texts are known: see `auto_tokens`.
            continue;
        }
        if !fields.contains_key(k) {
            bail!("the options name no configuration field {k:?}");
        }
        fields.insert(k.clone(), v.clone());
    }
    let cfg: Config = serde_json::from_value(value).context("the model options")?;
    Ok(cfg)
}

/// Start a training session: the corpus from the bytes of its three splits (read as text;
/// anything else is an error naming it), the model fresh from `options` or, given a
/// checkpoint, exactly where that checkpoint stands (its configuration, vocabulary, weights
/// and position win over the options). Everything is checked before the adapter is opened.
/// The kernels are those the options' `tuning` cache holds for this adapter and model, else
/// measured now when `tune` is set (each line of the tuning, and any warning, passed to
/// `on_line` as it comes; [`Trainer::tuning_cache`] then gives the cache to keep), else the
/// adapter's defaults.
#[wasm_bindgen]
pub async fn create(
    options: String,
    train: Vec<u8>,
    valid: Vec<u8>,
    test: Vec<u8>,
    checkpoint: Option<Vec<u8>>,
    on_line: Option<js_sys::Function>,
) -> Result<Trainer, JsValue> {
    let mut say = |line: &str| {
        if let Some(f) = &on_line {
            let _ = f.call1(&JsValue::NULL, &JsValue::from_str(line));
        }
    };
    WARNINGS_TO.with(|to| *to.borrow_mut() = on_line.clone());
    let made = create_session(options, [train, valid, test], checkpoint, &mut say).await;
    WARNINGS_TO.with(|to| *to.borrow_mut() = None);
    made.map(|(session, tuning)| Trainer {
        inner: Rc::new(Inner {
            session: RefCell::new(Some(session)),
            predictor: RefCell::new(None),
        }),
        tuning,
    })
    .map_err(js_error)
}

/// A session made as [`create`] says, and the page's tuning cache with what it measured
/// (`None` where it measured nothing).
async fn create_session(
    options: String,
    texts: [Vec<u8>; 3],
    checkpoint: Option<Vec<u8>>,
    say: &mut dyn FnMut(&str),
) -> Result<(Session, Option<String>)> {
    let opts = options_of(&options)?;
    let names = ["the training text", "the validation text", "the test text"];
    let advice = TEXT_ADVICE;
    let [a, b, c] = texts;
    let texts = [
        text_of_bytes(names[0], a, advice)?,
        text_of_bytes(names[1], b, advice)?,
        text_of_bytes(names[2], c, advice)?,
    ];
    let texts = [texts[0].as_str(), texts[1].as_str(), texts[2].as_str()];
    let (cfg, corpus, params, pos, state) = match checkpoint {
        Some(bytes) => {
            let mut ck = Checkpoint::from_bytes(&bytes).context("the checkpoint")?;
            // A `words` model given a text whose line ends touch words reads each as its
            // own <eos>, as the command line reads another text (`Tokens::reading_for`).
            let tokens = ck.config.tokens.reading_for(&ck.vocab, &texts);
            if tokens != ck.config.tokens {
                say("tokens: words-eos, every line end its own <eos>: line ends of the texts touch words, which the model's reading (tokens \"words\", TensorFlow's PTB reader) would glue on (word<eos>next)");
                ck.config.tokens = tokens;
            }
            let vocab = Vocab::from_tokens(ck.vocab.clone(), tokens)
                .context("the checkpoint's vocabulary")?;
            let corpus = Corpus::from_texts(names, texts, tokens, Some(vocab), None)?;
            (ck.config, corpus, ck.params, ck.position, ck.state)
        }
        None => {
            let mut cfg = config_of(&opts)?;
            if auto_tokens(&opts) {
                cfg.tokens = Tokens::default_for(&texts);
                if cfg.tokens == Tokens::WordsEos {
                    say("tokens: words-eos, every line end its own <eos>: line ends of the texts touch words, which TensorFlow's PTB reader (tokens \"words\") would glue on (word<eos>next)");
                }
            }
            let corpus = Corpus::from_texts(names, texts, cfg.tokens, None, Some(cfg.vocab_size))?;
            cfg.vocab_size = corpus.vocab.len();
            cfg.validate()?;
            let seed = opts.seed.unwrap_or(1);
            let params = Params::<f32>::init(&cfg, seed);
            (
                cfg.clone(),
                corpus,
                params,
                session::start(&cfg, seed),
                None,
            )
        }
    };
    cfg.validate()?;
    session::split_batches(&corpus, &cfg, (cfg.batch_size, cfg.num_steps))?;
    let matmul = parsed::<MatmulChoice>("matmul", &opts.matmul)?;
    if let Some(m) = matmul {
        m.check_precision(cfg.precision)?;
    }
    let recurrence = parsed::<Recurrence>("recurrence", &opts.recurrence)?;
    let kernels = user_kernels(&opts.kernels)?;
    let mut gpu = PickedAdapter::request_browser()
        .await?
        .open_async(&Session::needs(&cfg))
        .await?;
    MatmulChoice::apply(matmul, &mut gpu);
    gpu.recurrence = recurrence;
    gpu.shader_dir = kernels;
    gpu.check_changed_shaders().await?;
    // The kernels measured on this adapter earlier (or now, when asked), as natively.
    let mut cache = TuningCache::from_json(opts.tuning.as_bytes());
    let cached = cache.entry(&gpu).cloned();
    let (_, measured) = tune::choose_async(
        &mut gpu,
        &cfg,
        &Session::shapes(&cfg),
        opts.tune,
        cached,
        "this browser's storage",
        say,
    )
    .await?;
    let tuning = measured.map(|entry| {
        cache.merge(&gpu, &entry);
        cache.to_json()
    });
    let mut s = Session::new(gpu, cfg, corpus, &params, pos, state.as_ref())?;
    if let Some(n) = opts.log_every {
        s.log_every = n.max(1);
    }
    Ok((s, tuning))
}

struct Inner {
    /// Out of its cell while a call runs on it.
    session: RefCell<Option<Session>>,
    /// Built on the session's parameter buffers at the first prediction.
    predictor: RefCell<Option<Predictor>>,
}

/// A training session in the page.
#[wasm_bindgen]
pub struct Trainer {
    inner: Rc<Inner>,
    /// The tuning cache with what [`create`] measured, for the page to keep.
    tuning: Option<String>,
}

/// Take the session out for one call, run `f` on it, and put it back whatever happened.
fn with_session<F, Fut, T>(inner: &Rc<Inner>, f: F) -> Promise
where
    F: FnOnce(Session, Rc<Inner>) -> Fut + 'static,
    Fut: std::future::Future<Output = (Session, Result<T>)> + 'static,
    T: Into<JsValue>,
{
    let inner = inner.clone();
    future_to_promise(async move {
        let Some(session) = inner.session.borrow_mut().take() else {
            return Err(JsValue::from_str(
                "busy: the model is still working on the last request",
            ));
        };
        let (session, result) = f(session, inner.clone()).await;
        *inner.session.borrow_mut() = Some(session);
        result.map(Into::into).map_err(js_error)
    })
}

/// The prompt as ids, with the words read as `<unk>`.
fn encode_prompt(s: &Session, text: &str) -> Result<(Vec<u32>, Vec<String>)> {
    encode_prompt_as(s, text, s.cfg.tokens)
}

/// [`encode_prompt`] with the tokens of `tokens`.
fn encode_prompt_as(s: &Session, text: &str, tokens: Tokens) -> Result<(Vec<u32>, Vec<String>)> {
    let empty = match tokens {
        Tokens::Words | Tokens::WordsEos => text.split_whitespace().next().is_none(),
        Tokens::Chars => text.is_empty(),
    };
    if empty {
        bail!("the text is empty: type at least one word");
    }
    let e = encode_text_as(text, &s.corpus.vocab, tokens)?;
    Ok((e.ids, e.unknown))
}

/// The session's predictor (built on its parameter buffers at the first call, then kept
/// in `inner` between calls), fed `ids` from a zero state. Give it back with [`keep`].
fn fed_predictor(s: &Session, inner: &Inner, ids: &[u32]) -> Result<Predictor> {
    let mut p = match inner.predictor.borrow_mut().take() {
        Some(p) => p,
        None => s.predictor(MAX_TOPK.min(s.cfg.vocab_size))?,
    };
    p.reset(&s.gpu);
    for &id in ids {
        p.feed(&s.gpu, id)?;
    }
    Ok(p)
}

fn keep(inner: &Inner, p: Predictor) {
    *inner.predictor.borrow_mut() = Some(p);
}

#[wasm_bindgen]
impl Trainer {
    /// Train up to the next log point, at most `max_steps` steps, or run the next slice of
    /// the validation or test pass; resolves to the JSON array of what happened (`train` at
    /// log points, `progress` between them and during the passes, `epoch` with the
    /// validation perplexity, `finished` with the test perplexity).
    pub fn advance(&self, max_steps: usize) -> Promise {
        with_session(&self.inner, move |mut s, _| async move {
            let r = s.advance(max_steps).await.and_then(|events| {
                serde_json::to_string(&events).map_err(|e| anyhow!("events as JSON: {e}"))
            });
            (s, r)
        })
    }

    /// The next `max_batches` batches of a validation pass of the weights as they are (the
    /// first call starts it), as JSON `{"done", "total", "perplexity"}` with the
    /// perplexity null until the pass ends: for a page that shows the pass moving.
    pub fn validate_part(&self, max_batches: usize) -> Promise {
        with_session(&self.inner, move |mut s, _| async move {
            let r = s
                .validate_part(max_batches)
                .await
                .map(|(done, total, ppl)| {
                    serde_json::json!({"done": done, "total": total, "perplexity": ppl}).to_string()
                });
            (s, r)
        })
    }

    /// Validation perplexity of the weights as they are.
    pub fn validate(&self) -> Promise {
        with_session(&self.inner, |mut s, _| async move {
            let r = s.validate().await;
            (s, r)
        })
    }

    /// Each kernel of a training step timed alone by the wall clock, as JSON
    /// `{"baseline_ms", "rows": [{"label", "ms", "runs", "flops"}]}`: see
    /// `Session::time_kernels` (the weights stay as they are).
    pub fn time_kernels(&self) -> Promise {
        with_session(&self.inner, |mut s, _| async move {
            let r = s
                .time_kernels()
                .await
                .and_then(|t| Ok(serde_json::to_string(&t)?));
            (s, r)
        })
    }

    /// The model as a safetensors checkpoint (what `lstm-gpu eval --checkpoint` and
    /// `train --resume` read), as bytes.
    pub fn save(&self) -> Promise {
        with_session(&self.inner, |s, _| async move {
            let r = s.checkpoint().await.map(|b| Uint8Array::from(b.as_slice()));
            (s, r)
        })
    }

    /// Restart the words/s clock (after a pause).
    pub fn resume_clock(&self) -> Result<(), JsValue> {
        match self.inner.session.borrow_mut().as_mut() {
            Some(s) => {
                s.resume_clock();
                Ok(())
            }
            None => Err(JsValue::from_str("busy")),
        }
    }

    /// Report every `n` steps from now on.
    pub fn set_log_every(&self, n: usize) -> Result<(), JsValue> {
        match self.inner.session.borrow_mut().as_mut() {
            Some(s) => {
                s.log_every = n.max(1);
                Ok(())
            }
            None => Err(JsValue::from_str("busy")),
        }
    }

    /// End the run early once `n` epochs in a row ended without a new best validation
    /// perplexity (`train --patience N`); 0: never.
    pub fn set_patience(&self, n: usize) -> Result<(), JsValue> {
        match self.inner.session.borrow_mut().as_mut() {
            Some(s) => {
                s.patience = (n > 0).then_some(n);
                Ok(())
            }
            None => Err(JsValue::from_str("busy")),
        }
    }

    /// The page's tuning cache with the choices [`create`] measured on this adapter, to be
    /// kept in the browser's storage; `undefined` where it measured nothing.
    pub fn tuning_cache(&self) -> Option<String> {
        self.tuning.clone()
    }

    /// The configuration, position, corpus sizes and adapter, as JSON.
    pub fn info(&self) -> Result<String, JsValue> {
        let cell = self.inner.session.borrow();
        let s = cell.as_ref().ok_or_else(|| JsValue::from_str("busy"))?;
        let summary = lstm_gpu::gpu::context::AdapterSummary {
            index: 0,
            info: s.gpu.info.clone(),
            limits: s.gpu.limits.clone(),
            features: s.gpu.features,
        };
        Ok(serde_json::json!({
            "config": shortest(&s.cfg),
            "position": shortest(&s.pos),
            "epoch_size": s.epoch_size(),
            "finished": s.finished(),
            "phase": s.phase(),
            "log_every": s.log_every,
            "parameters": s.cfg.num_params(),
            "dispatches_per_step": s.dispatches(),
            "kernels": s.kernel_choices(),
            "words": {"train": s.corpus.train.len(), "valid": s.corpus.valid.len(), "test": s.corpus.test.len()},
            "vocab_size": s.corpus.vocab.len(),
            "adapter": adapter_json(&summary),
        })
        .to_string())
    }

    /// The `k` most probable next words after `text` with their probabilities, as JSON
    /// `{"context": [...], "unknown": [...], "next": [{"word", "probability"}]}`.
    pub fn predict(&self, text: String, k: usize) -> Promise {
        with_session(&self.inner, move |s, inner| async move {
            let r = async {
                let max = MAX_TOPK.min(s.cfg.vocab_size);
                if k == 0 || k > max {
                    bail!("show between 1 and {max} words");
                }
                let (ids, unknown) = encode_prompt(&s, &text)?;
                let p = fed_predictor(&s, &inner, &ids)?;
                let top = p.top_async(&s.gpu).await;
                keep(&inner, p);
                let top = top?;
                let vocab = &s.corpus.vocab;
                let next: Vec<_> = top
                    .iter()
                    .take(k)
                    .map(|&(i, p)| serde_json::json!({"word": vocab.word(i), "probability": p}))
                    .collect();
                let context: Vec<_> = ids.iter().map(|&i| vocab.word(i)).collect();
                Ok(
                    serde_json::json!({"context": context, "unknown": unknown, "next": next})
                        .to_string(),
                )
            }
            .await;
            (s, r)
        })
    }

    /// The `k` tokens whose embeddings point nearest to `word`'s (cosine similarity, most
    /// similar first), as `lstm-gpu embeddings --checkpoint PATH neighbors WORD -k K` prints
    /// them of a checkpoint: `{"word": w, "neighbors": [{"word": v, "cosine": c}, ...]}`.
    pub fn similar(&self, word: String, k: usize) -> Promise {
        with_session(&self.inner, move |s, _| async move {
            let r = async {
                let params = s.params().await?;
                let embeddings = Embeddings {
                    vocab: s.corpus.vocab.words(),
                    tokens: s.cfg.tokens,
                    rows: &params.embedding,
                    dim: s.cfg.embedding_size,
                };
                // A character model's tokens include the space.
                let word = match s.cfg.tokens {
                    Tokens::Chars => word.as_str(),
                    _ => word.trim(),
                };
                if word.is_empty() {
                    bail!("type a word to find the words nearest to it");
                }
                let neighbors: Vec<_> = embeddings
                    .neighbors(word, k)?
                    .into_iter()
                    .map(|(w, cosine)| serde_json::json!({"word": w, "cosine": cosine}))
                    .collect();
                Ok(serde_json::json!({"word": word, "neighbors": neighbors}).to_string())
            }
            .await;
            (s, r)
        })
    }

    /// How probable the model finds each word of `text` after the words before it, from a
    /// sentence start (`<eos>`, where the vocabulary has one), as `predict --score --json`
    /// gives it (`words` with `word`, `probability`, `rank`; `perplexity`; `start`), and
    /// the words it read as `<unk>` (`unknown`).
    pub fn score(&self, text: String) -> Promise {
        with_session(&self.inner, move |s, inner| async move {
            let r = async {
                // Read as `eval --text` reads a text: every line end its own <eos>.
                let (ids, unknown) = encode_prompt_as(&s, &text, s.cfg.tokens.line_ends_as_eos())?;
                let start = s.corpus.vocab.eos();
                let fed: Vec<u32> = start.iter().chain(&ids).copied().collect();
                let mut p = fed_predictor(&s, &inner, &[])?;
                let scored = p.score_async(&s.gpu, &fed).await;
                keep(&inner, p);
                let mut out =
                    lstm_gpu::model::predict::scored_json(&scored?, &s.corpus.vocab, start);
                out["unknown"] = serde_json::json!(unknown);
                Ok(out.to_string())
            }
            .await;
            (s, r)
        })
    }

    /// `count` tokens sampled after `prompt` at `temperature` (from the `top_k` most
    /// probable, 0: all; then from the fewest most probable that reach `top_p`, 1: all),
    /// with `seed`: the prompt and what followed, as text.
    pub fn generate(
        &self,
        prompt: String,
        count: usize,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        seed: u64,
    ) -> Promise {
        with_session(&self.inner, move |s, inner| async move {
            let r = async {
                let how = Sampling {
                    temperature,
                    top_k,
                    top_p,
                };
                if let Err((name, what)) = how.check(s.cfg.vocab_size) {
                    bail!("the {name} {what}");
                }
                let (ids, _) = encode_prompt(&s, &prompt)?;
                let mut p = fed_predictor(&s, &inner, &ids)?;
                let vocab = &s.corpus.vocab;
                let chars = s.cfg.tokens == Tokens::Chars;
                let sep = if chars { "" } else { " " };
                let mut out = if chars {
                    prompt.clone()
                } else {
                    prompt.trim().to_string()
                };
                let mut at_line_start = chars && prompt.ends_with('\n');
                let mut rng = SplitMix64::new(seed);
                for _ in 0..count {
                    let probs = match p.distribution_async(&s.gpu).await {
                        Ok(probs) => probs,
                        Err(e) => {
                            keep(&inner, p);
                            return Err(e);
                        }
                    };
                    let next = sample(&probs, &how, rng.next_f64()) as u32;
                    if Some(next) == vocab.eos() {
                        out.push('\n');
                        at_line_start = true;
                    } else {
                        if !at_line_start {
                            out.push_str(sep);
                        }
                        out.push_str(vocab.word(next));
                        at_line_start = false;
                    }
                    if let Err(e) = p.feed(&s.gpu, next) {
                        keep(&inner, p);
                        return Err(e);
                    }
                }
                keep(&inner, p);
                Ok(out)
            }
            .await;
            (s, r)
        })
    }
}
