// The page: corpus, model, training loop, chart, prediction and generation, all through the
// `lstm-gpu-web` module (wasm), which runs the lstm-gpu crate's kernels on WebGPU.
//
// Everything the page knows is in `window.lstm` (what the browser test reads), and every
// action is a function of `window.lstm.api` that the buttons call too. Calls into the model
// run one after another (`serial`); a failed action shows one line and changes nothing.
import init, { adapter, create, check_text, check_kernels, model_config, shader_files } from "./pkg/lstm_gpu_web.js";

const $ = (id) => document.getElementById(id);

const S = (window.lstm = {
  ready: false, // the module is loaded and the adapter question answered
  adapter: null, // the adapter's JSON, or null
  noWebgpu: null, // the message when there is no WebGPU
  corpus: null, // { name, train, valid, test } as Uint8Arrays
  trainer: null,
  info: null, // the trainer's info() JSON
  running: false, // the training loop is on
  trainEvents: [], // every `train` event (the log points), in order
  progressEvents: [], // every `progress` event: between log points, and during evaluation
  points: [], // the chart's points: the training events of both kinds, in order
  status: "", // what the run is doing now, when that is not a step count
  statusLog: [], // every such status shown, in order
  estimate: null, // what the first steps' speed says of an epoch (said once per model)
  epochs: [], // every `epoch` event
  finished: null,
  messages: [], // every message shown: { kind, text }
  lastSave: null, // the bytes of the last checkpoint saved
  prediction: null,
  generated: null,
  lossScale: null, // mixed precision: { scale, overflows } from the last log point
  served: [], // the server's models: { route, file, bytes, about } each
  kept: null, // the kept model offered: { corpus, saved, position, model }, or null
  keptAll: [], // every model kept in this browser (the same, no weights), the most recent first
  keptStep: null, // the global step of the last model kept
  keepAtMost: 4, // models kept in this browser, one per text: the oldest beyond are forgotten
  keepRefused: false, // the browser refused to keep one (said once)
  similar: null, // the last "Similar words": { word, neighbors: [{ word, cosine }] }
  earlyStop: null, // the run's early_stop event, if it stopped early
  normChart: null, // the gradient-norm chart as drawn: { points, clip, lo, hi }, or null
  checks: [], // the kernel checks' rows, as they finish
  checked: null, // the kernel check's summary: { adapter, checks, passed, changed }
  shaderFiles: [], // the built-in WGSL files: { name, text }
  kernels: {}, // the user's changed files: name -> text (used by the check and new models)
});

// ---- messages ----------------------------------------------------------------------------

function say(text, kind = "info") {
  const m = $("message");
  m.textContent = text;
  m.className = text ? kind : "";
  if (text) S.messages.push({ kind, text });
}

function errorText(e) {
  if (typeof e === "string") return e;
  if (e && e.message) return e.message;
  return String(e);
}

// Run model calls one at a time, in order.
let chain = Promise.resolve();
function serial(fn) {
  const p = chain.then(fn);
  chain = p.catch(() => {});
  return p;
}

// ---- corpus -------------------------------------------------------------------------------

function corpusLine() {
  const c = S.corpus;
  if (!c) return "No text loaded.";
  const kb = (b) => (b.length / 1024).toFixed(0) + " KiB";
  return `${c.name}: train ${kb(c.train)}, valid ${kb(c.valid)}, test ${kb(c.test)}`;
}

// The last `fraction` of the bytes, cut at a line boundary, as [before, after].
function cutAtLine(bytes, fraction) {
  let at = Math.floor(bytes.length * (1 - fraction));
  while (at < bytes.length && bytes[at - 1] !== 10) at++;
  return [bytes.subarray(0, at), bytes.subarray(at)];
}

// Check each text with the library's own reader (the same one `create` uses), so that a file
// that is not text is refused when it is picked and the corpus in use stays.
function checked(name, bytes) {
  check_text(name, bytes);
  return bytes;
}

// The server's models ({ route, file, bytes, about } each): one is offered by a button that
// names it, several by a list (each with what it is) and a button.
function offerServed(models) {
  S.served = models;
  const b = $("load-served"), list = $("served-model");
  b.hidden = models.length === 0;
  list.hidden = models.length < 2;
  list.innerHTML = "";
  for (const m of models) {
    const o = document.createElement("option");
    o.value = m.route;
    o.textContent = `${m.file}: ${m.about}`;
    list.appendChild(o);
  }
  if (models.length === 1) {
    b.textContent = `or the server's model (${models[0].file})`;
    b.title = models[0].about;
  } else if (models.length > 1) {
    b.textContent = "load this model";
    b.title = "";
  }
}

async function loadServer() {
  const index = await fetch("data/index.json");
  if (!index.ok) throw new Error(`the server has no corpus (HTTP ${index.status}): start it with lstm-gpu serve --data DIR, or pick files`);
  const meta = await index.json();
  const get = async (split) => {
    const r = await fetch(`data/${split}`);
    if (!r.ok) throw new Error(`could not fetch the ${split} split: HTTP ${r.status}`);
    return new Uint8Array(await r.arrayBuffer());
  };
  // Models the server offers too (`lstm-gpu serve --checkpoint PATH...`): a button loads
  // the one, or the one chosen in a list of them.
  offerServed(meta.checkpoints || []);
  if (!meta.splits) throw new Error("the server offers a model but no corpus: pick the text files");
  const [train, valid, test] = await Promise.all(["train", "valid", "test"].map(get));
  S.corpus = {
    name: meta.name || "the server's corpus",
    train: checked("the training text", train),
    valid: checked("the validation text", valid),
    test: checked("the test text", test),
  };
  $("corpus-status").textContent = corpusLine();
  await offerKept();
  return corpusLine();
}

async function loadFiles() {
  const pick = (id) => $(id).files[0] || null;
  const [ft, fv, fs] = [pick("file-train"), pick("file-valid"), pick("file-test")];
  if (!ft) throw new Error("pick a training file first");
  const read = async (f) => new Uint8Array(await f.arrayBuffer());
  const train = checked(`${ft.name}`, await read(ft));
  let valid = fv ? checked(fv.name, await read(fv)) : null;
  let test = fs ? checked(fs.name, await read(fs)) : null;
  let rest = train;
  if (!test) [rest, test] = cutAtLine(rest, 0.05);
  if (!valid) [rest, valid] = cutAtLine(rest, 0.05);
  S.corpus = { name: ft.name, train: rest, valid, test };
  $("corpus-status").textContent = corpusLine();
  await offerKept();
  return corpusLine();
}

// ---- model --------------------------------------------------------------------------------

const PRESETS = {
  seed: { preset: "seed" },
  small: { preset: "small" },
  quick: { preset: "seed", config: { embedding_size: 64, hidden: [64, 64], batch_size: 20, num_steps: 20 } },
  tiny: { preset: "seed", config: { embedding_size: 32, hidden: [32, 32], batch_size: 4, num_steps: 10 } },
};

// On an adapter that is a CPU (Chromium's SwiftShader, a software rasteriser) the seed model
// trains at a few hundred words/s: about an hour an epoch. A newcomer's first model there is
// one that learns within minutes.
function isCpuAdapter() {
  return !!(S.adapter && S.adapter.device_type === "Cpu");
}

// The adapter's name, where the browser gives one.
function adapterName(a) {
  return a && a.name && !a.name.startsWith("(") ? a.name : "this browser's adapter";
}

function suggestPreset() {
  if (!isCpuAdapter()) {
    $("preset-note").textContent = "";
    return;
  }
  $("preset").value = "quick";
  const known = S.adapter.name && !S.adapter.name.startsWith("(");
  $("preset-note").textContent =
    `This browser runs WebGPU on the CPU${known ? ` (${S.adapter.name})` : ""}, so the quick model is the default: its perplexity falls within minutes here. ` +
    `The course's seed model takes about an hour an epoch on this adapter: pick "seed" in the list for it, or open the page in a browser with a GPU. ` +
    `Tuning the kernels takes minutes on this adapter, so the page asks for it only with the box checked.`;
}

// A preset's options with the page's choices: tokens, seed, precision, and the learning-rate
// schedule ("plateau": times 0.25 after an epoch without a new best, as --lr-schedule plateau
// --decay 0.25).
function optionsFor(preset, tokens, seed, precision = "f32", schedule = "tutorial") {
  const o = structuredClone(PRESETS[preset] || PRESETS.seed);
  o.config = Object.assign({}, o.config, { tokens, precision });
  if (schedule === "plateau") Object.assign(o.config, { lr_schedule: "plateau", decay: 0.25 });
  o.seed = seed;
  return o;
}

// ---- settings ------------------------------------------------------------------------------

// The settings a student changes before New model, as the course's notebook has them: a field
// of the model's configuration each, with lstm-gpu train's flag of the same name (which the
// library's error messages name). The chosen preset's values fill them; a changed one (bold)
// is set over the preset when a model is made, and stays when another preset is picked.
// `offset`: shown that much above the field's value (epochs counted from 1, not 0).
const SETTINGS = [
  { field: "embedding_size", flag: "--embedding-size", label: "embedding", kind: "int" },
  { field: "hidden", flag: "--hidden", label: "LSTM layers", kind: "list", title: "units of each layer, bottom first: 256, 128" },
  { field: "batch_size", flag: "--batch-size", label: "batch", kind: "int", title: "rows of the text read side by side" },
  { field: "num_steps", flag: "--num-steps", label: "steps", kind: "int", title: "time steps a batch unrolls (truncated back-propagation)" },
  { field: "vocab_size", flag: "--vocab-size", label: "vocabulary", kind: "int", title: "the most frequent tokens kept, the rest read as <unk> (at most as many as the text has)" },
  { field: "max_epoch", flag: "--max-epoch", label: "epochs", kind: "int", title: "epochs to train" },
  { field: "learning_rate", flag: "--learning-rate", label: "learning rate", kind: "num", title: "plain SGD's rate of the first epochs" },
  { field: "max_epoch_decay_lr", flag: "--max-epoch-decay-lr", label: "for", unit: "epochs", kind: "int", offset: 1, title: "epochs at the full rate (the tutorial's schedule; --max-epoch-decay-lr is one less)" },
  { field: "decay", flag: "--decay", label: "then times", kind: "num", title: "the rate's factor per epoch after those (the tutorial's schedule), or after each epoch without a new best (on a plateau)" },
  { field: "keep_prob", flag: "--keep-prob", label: "keep prob", kind: "num", title: "dropout: the probability that a unit of the embedding's or a layer's output is kept (1: no dropout)" },
  { field: "max_grad_norm", flag: "--max-grad-norm", label: "clip norm", kind: "num", title: "the gradients are scaled down to this global norm where it is larger" },
  { field: "init_scale", flag: "--init-scale", label: "init scale", kind: "num", title: "the weights start uniform in [-s, s]" },
];

const settingInput = (s) => $(`set-${s.field}`);

function buildSettings() {
  const row = $("settings-fields");
  for (const s of SETTINGS) {
    const label = document.createElement("label");
    label.title = `${s.title ? s.title + "; " : ""}lstm-gpu train ${s.flag}`;
    const input = document.createElement("input");
    input.id = `set-${s.field}`;
    input.type = "text";
    input.inputMode = s.kind === "num" ? "decimal" : "numeric";
    if (s.kind === "list") input.className = "list";
    input.oninput = () => input.classList.add("edited");
    label.append(`${s.label} `, input, ...(s.unit ? [` ${s.unit}`] : []));
    row.appendChild(label);
  }
  $("settings-reset").onclick = resetSettings;
  $("preset").onchange = fillSettings;
  $("lr-schedule").onchange = fillSettings;
}

// The configuration the chosen preset and schedule give (before any setting changed).
function presetConfig() {
  const o = optionsFor($("preset").value, $("tokens").value, 1, "f32", $("lr-schedule").value);
  return JSON.parse(model_config(JSON.stringify(o)));
}

// Show the chosen preset's values in every setting not changed by hand.
function fillSettings() {
  const c = presetConfig();
  for (const s of SETTINGS) {
    const input = settingInput(s);
    if (input.classList.contains("edited")) continue;
    const v = c[s.field];
    input.value = s.kind === "list" ? v.join(", ") : String(v + (s.offset || 0));
  }
}

function resetSettings() {
  for (const s of SETTINGS) settingInput(s).classList.remove("edited");
  fillSettings();
}

// The settings changed by hand, as configuration fields; a value that is not a number (or a
// list of whole numbers) is an error naming the setting. The library checks the ranges.
function changedSettings() {
  const out = {};
  for (const s of SETTINGS) {
    const input = settingInput(s);
    if (input.classList.contains("edited")) out[s.field] = settingValue(s, input.value);
  }
  return out;
}

function settingValue(s, text) {
  const t = text.trim();
  const whole = (x) => (/^\d+$/.test(x) ? Number(x) : null);
  if (s.kind === "list") {
    const v = t.split(/[\s,+]+/).filter(Boolean).map(whole);
    if (!v.length || v.includes(null)) throw new Error(`${s.label}: "${text}" is not a list of layer sizes (whole numbers: 256, 128)`);
    return v;
  }
  if (s.kind === "int") {
    const v = whole(t);
    const least = s.offset || 0;
    if (v === null || v < least) throw new Error(`${s.label}: "${text}" is not a whole number${least ? ` of at least ${least}` : ""}`);
    return v - least;
  }
  const v = t === "" ? NaN : Number(t);
  if (!Number.isFinite(v)) throw new Error(`${s.label}: "${text}" is not a number`);
  return v;
}

// A message of the library in the page's words: the flags it names are the settings' labels
// (the longest flag first: --max-epoch is a part of --max-epoch-decay-lr).
function inPageWords(text) {
  const byLength = [...SETTINGS].sort((a, b) => b.flag.length - a.flag.length);
  for (const s of byLength) text = text.split(s.flag).join(`"${s.label}"`);
  return text;
}

// New model as the page's controls say: the preset, tokens, seed, precision and schedule, and
// the settings changed by hand.
async function createFromPage() {
  const o = optionsFor($("preset").value, $("tokens").value, Number($("seed").value), $("precision").value, $("lr-schedule").value);
  Object.assign(o.config, changedSettings());
  try {
    return await newTrainer(o);
  } catch (e) {
    throw new Error(inPageWords(errorText(e)));
  }
}

// ---- tuning -------------------------------------------------------------------------------

// The kernels measured on this browser's adapter (the library's tuning cache, as JSON), kept in
// the browser's storage as the native program keeps them in its cache folder.
const TUNING_KEY = "lstm-gpu tuning";

function storedTuning() {
  try {
    return localStorage.getItem(TUNING_KEY) || "";
  } catch (e) {
    return "";
  }
}

function keepTuning(json) {
  try {
    localStorage.setItem(TUNING_KEY, json);
    return true;
  } catch (e) {
    return false;
  }
}

// How many models' tuned choices this browser keeps (on any adapter).
function tunedModels() {
  try {
    const c = JSON.parse(storedTuning() || "{}");
    return Object.values(c.adapters || {}).reduce((n, a) => n + Object.keys(a.models || {}).length, 0);
  } catch (e) {
    return 0;
  }
}

function showTuning() {
  const n = tunedModels();
  $("tune-note").textContent = n ? `(this browser keeps the tuned choices of ${n} model${n > 1 ? "s" : ""}: a model tuned before is not tuned again)` : "";
  $("tune-forget").disabled = n === 0;
}

function forgetTuning() {
  try {
    localStorage.removeItem(TUNING_KEY);
  } catch (e) {}
  showTuning();
  say("the tuned kernel choices are forgotten: the next model runs the adapter's defaults, or is tuned again");
}

// ---- model (continued) ---------------------------------------------------------------------

// Build a trainer; the one in use stays until the new one is ready. With "tune" checked, a
// model not tuned on this adapter before has its kernels measured first (each line of the
// tuning shown as it comes), and the choices are kept for the next time.
async function newTrainer(options, checkpoint) {
  if (!S.ready) throw new Error(S.noWebgpu || "the page is still starting");
  if (!S.corpus) throw new Error("load a text first (from the server, or pick files)");
  const c = S.corpus;
  setStatus("compiling the kernels and uploading the model");
  const lines = [];
  const onLine = (line) => {
    lines.push(line);
    $("kernel-list").textContent = lines.join("\n");
    setStatus(line.trim().split(" (")[0].replace(/\s+/g, " "));
  };
  let t;
  try {
    // The kernels are built from the user's changed files, where there are any.
    const o = Object.assign({ kernels: S.kernels, tune: $("tune").checked, tuning: storedTuning() }, options || {});
    t = await serial(() => create(JSON.stringify(o), c.train, c.valid, c.test, checkpoint || undefined, onLine));
  } finally {
    setStatus("");
  }
  const measured = t.tuning_cache();
  if (measured && !keepTuning(measured)) say("the tuned choices apply to this model only: this browser does not let the page keep them", "error");
  S.tuneLines = lines;
  showTuning();
  pause();
  await chain;
  if (S.trainer) S.trainer.free();
  S.trainer = t;
  S.info = JSON.parse(t.info());
  S.trainEvents = [];
  S.progressEvents = [];
  S.points = [];
  S.epochs = [];
  S.finished = null;
  S.earlyStop = null;
  S.estimate = null;
  S.lossScale = null;
  S.keptStep = null;
  $("epochs").tBodies[0].innerHTML = "";
  showModel();
  draw();
  return S.info;
}

// Where the kernel choices came from: "recurrence unfused (tuned)" and "MxKxN:NN strip (default)".
function kernelSummary(kernels) {
  const from = (k) => (k.match(/\((\w+)\)$/) || [])[1];
  const sources = new Set(kernels.map(from));
  const how = sources.has("tuned")
    ? "kernels tuned on this GPU now"
    : sources.has("cached")
      ? "kernels tuned on this GPU before"
      : sources.has("forced")
        ? "kernels as asked"
        : "the adapter's default kernels";
  return `${how} (${kernels[0].replace(/ \(\w+\)$/, "")})`;
}

// The learning-rate schedule in words.
function rateText(c) {
  if (c.lr_schedule === "plateau") return `learning rate ${c.learning_rate} times ${c.decay} after an epoch without a new best`;
  const full = c.max_epoch_decay_lr + 1;
  return `learning rate ${c.learning_rate}` + (full < c.max_epoch ? ` times ${c.decay} an epoch after the first ${full}` : "");
}

function showModel() {
  const i = S.info;
  if (!i) return;
  const c = i.config;
  $("model-info").textContent =
    `${(i.parameters / 1e6).toFixed(2)} M parameters: vocabulary ${c.vocab_size} ${c.tokens}, embedding ${c.embedding_size}, ` +
    `LSTM ${c.hidden.join("+")}, batch ${c.batch_size} x ${c.num_steps} steps, ${c.max_epoch} epochs, ` +
    `${i.epoch_size} steps an epoch, ${i.dispatches_per_step} dispatches a step` +
    (c.precision === "mixed" ? ", mixed precision (f16 products, f32 sums, loss scaling)" : "") +
    `, ${rateText(c)}` +
    (c.keep_prob < 1 ? `, dropout keeping ${c.keep_prob}` : "") +
    `, gradients clipped at norm ${c.max_grad_norm}` +
    `; ${kernelSummary(i.kernels)}`;
  $("kernel-list").textContent = [...(S.tuneLines || []), ...(S.tuneLines && S.tuneLines.length ? [""] : []), ...i.kernels].join("\n");
  for (const id of ["train", "validate", "save", "predict", "generate", "score", "similar"]) $(id).disabled = false;
  progress();
}

// ---- training -----------------------------------------------------------------------------

function refreshInfo() {
  S.info = JSON.parse(S.trainer.info());
}

// "; loss scale S (N steps skipped for f16 overflows)" in mixed precision, else nothing.
function lossScaleText() {
  const ls = S.lossScale;
  if (!ls) return "";
  const skipped = ls.overflows > 0 ? ` (${ls.overflows} steps skipped for f16 overflows)` : "";
  return `; loss scale ${ls.scale}${skipped}`;
}

// A row of the epoch table; the run's best so far starred, as `lstm-gpu info` marks it.
function epochRow(e) {
  const row = $("epochs").tBodies[0].insertRow();
  const valid = e.valid_perplexity.toFixed(2) + (e.best ? " *" : "");
  for (const v of [e.epoch, e.learning_rate, e.train_perplexity.toFixed(2), valid, e.seconds.toFixed(1)])
    row.insertCell().textContent = v;
}

function handle(events) {
  for (const e of events) {
    if (e.kind === "train") {
      S.trainEvents.push(e);
      S.points.push(e);
      // Mixed precision only: the loss scale and the f16 overflows so far.
      if (e.loss_scale !== undefined) S.lossScale = { scale: e.loss_scale, overflows: e.overflow_steps };
    } else if (e.kind === "progress") {
      S.progressEvents.push(e);
      if (e.phase === "training" && isFinite(e.perplexity)) S.points.push(e);
    } else if (e.kind === "epoch") {
      S.epochs.push(e);
      epochRow(e);
    } else if (e.kind === "early_stop") {
      S.earlyStop = e;
      say(`stopping early after epoch ${e.epoch}: no lower validation perplexity for ${e.patience} epochs; the best is epoch ${e.best_epoch}'s ${e.best_valid_perplexity.toFixed(2)} (the test pass follows)`);
    } else if (e.kind === "finished") {
      S.finished = e;
      say(`Training finished: test perplexity ${e.test_perplexity.toFixed(2)}` + (e.published ? `; ${e.published}` : ""));
    }
  }
}

// Each call into the model runs about this long, so that the progress line, the speed, the
// perplexity and the chart move at least this often whatever the log interval.
const CALL_SECONDS = 1.0;

// Train `steps` steps (Infinity: until paused or done); resolves to the events. An epoch's
// validation pass (and the test pass after the last) runs before the loop stops.
async function train(steps = Infinity) {
  if (!S.trainer) throw new Error("make or load a model first");
  if (S.running) throw new Error("already training");
  const patience = patienceSetting();
  await serial(() => S.trainer.set_patience(patience));
  S.running = true;
  $("train").textContent = "Pause";
  const out = [];
  const start = S.info.position.global_step;
  say("training: Pause stops after the step that is running");
  let budget = 1; // steps per call: one at first, then sized to CALL_SECONDS
  let first = S.points.length === 0 && start === 0;
  const timing = { t0: null, s0: 0 };
  try {
    await serial(() => S.trainer.resume_clock());
    while (S.running && !S.info.finished) {
      const left = steps - (S.info.position.global_step - start);
      if (left <= 0 && S.info.phase === "training") break;
      if (first) setStatus("first step: the browser compiles each kernel at its first use");
      const before = S.info.position.global_step;
      const t = performance.now();
      const events = JSON.parse(await serial(() => S.trainer.advance(Math.max(1, Math.min(left, budget)))));
      const secs = (performance.now() - t) / 1000;
      first = false;
      setStatus("");
      refreshInfo();
      const ran = S.info.position.global_step - before;
      if (ran > 0 && secs > 0) budget = Math.max(1, Math.min(1 << 20, Math.round((budget * CALL_SECONDS) / secs)));
      estimate(timing, ran);
      out.push(...events);
      handle(events);
      progress();
      draw();
      if (events.some((e) => e.kind === "epoch")) await keepModel();
      if (events.length === 0) break;
      await new Promise((r) => setTimeout(r, 0)); // let the page paint
    }
  } finally {
    S.running = false;
    setStatus("");
    $("train").textContent = "Train";
  }
  if (S.info.position.global_step !== S.keptStep) await keepModel();
  if (S.info.finished) $("train").disabled = true;
  else say(`stopped at epoch ${S.info.position.epoch + 1}, step ${S.info.position.step_in_epoch}: Train goes on from there`);
  return out;
}

// "stop after N epochs without a new best" (train --patience N): N, or 0 where it is empty.
function patienceSetting() {
  const t = $("patience").value.trim();
  if (t === "") return 0;
  if (!/^\d+$/.test(t) || Number(t) < 1) throw new Error(`stop after: "${t}" is not a whole number of epochs (leave it empty to train every epoch)`);
  return Number(t);
}

function pause() {
  S.running = false;
}

function setStatus(text) {
  S.status = text;
  if (text) S.statusLog.push(text);
  progress();
}

// Once per model, from the speed of the first few seconds after the first step (which
// waits for the kernels to compile): how long an epoch and the whole run take here. At
// least 3 seconds of steps: many on a GPU, one where a step takes seconds (a CPU adapter
// says it after its second step instead of waiting for a fourth).
function estimate(timing, ran) {
  if (S.estimate || !S.info || S.info.phase !== "training") return;
  const now = performance.now();
  if (timing.t0 === null) {
    if (ran > 0) [timing.t0, timing.s0] = [now, S.info.position.global_step];
    return;
  }
  const steps = S.info.position.global_step - timing.s0;
  const secs = (now - timing.t0) / 1000;
  if (steps < 1 || secs < 3) return;
  const c = S.info.config;
  const wps = (steps * c.batch_size * c.num_steps) / secs;
  const epoch = (S.info.epoch_size * secs) / steps;
  S.estimate = { words_per_second: wps, epoch_seconds: epoch, run_seconds: epoch * c.max_epoch };
  let text = `At ${wps.toFixed(0)} words/s an epoch takes about ${fmtTime(epoch)} here, all ${c.max_epoch} epochs about ${fmtTime(epoch * c.max_epoch)}.`;
  if (isCpuAdapter()) text += " This adapter is a CPU: a GPU runs it tens of times faster.";
  say(text);
}

function progress() {
  const i = S.info;
  if (S.status) {
    $("progress-text").textContent = S.status;
    return;
  }
  if (!i) return;
  const step = i.position.step_in_epoch;
  const last = S.points[S.points.length - 1];
  const pass = S.progressEvents[S.progressEvents.length - 1];
  let frac = i.epoch_size ? step / i.epoch_size : 0;
  let text = `epoch ${Math.min(i.position.epoch + 1, i.config.max_epoch)}/${i.config.max_epoch}, step ${step}/${i.epoch_size}`;
  if (i.phase !== "training" && pass && pass.phase === i.phase && pass.batches > 0) {
    frac = pass.batches_done / pass.batches;
    const what = i.phase === "validating" ? `validating epoch ${pass.epoch}` : "the test pass";
    text = `${what}: batch ${pass.batches_done}/${pass.batches}`;
  } else if (last && smoothedSpeed() > 0) {
    const words = (i.epoch_size - step) * i.config.batch_size * i.config.num_steps;
    text += `, ${fmtTime(words / smoothedSpeed())} left in the epoch`;
  }
  if (last && smoothedSpeed() > 0) {
    $("speed").textContent =
      `${smoothedSpeed().toFixed(0)} words/s; train perplexity ${last.perplexity.toFixed(2)} (epoch so far), learning rate ${last.learning_rate}` +
      gradNormText(last) +
      lossScaleText();
  }
  if (i.finished) {
    frac = 1;
    text = "all epochs done";
  } else if (step === 0 && i.position.global_step === 0 && !last) {
    text = "ready: press Train";
  }
  $("progress-bar").style.width = `${(100 * frac).toFixed(1)}%`;
  $("progress-text").textContent = text;
}

// The global gradient norm (before clipping) of the last log point's steps, and how many
// of them were clipped, as `lstm-gpu train` prints them.
function gradNormText(last) {
  if (last.grad_norm === undefined) return "";
  const clipped = last.clipped_fraction > 0 ? ` (clipped: ${(100 * last.clipped_fraction).toFixed(0)}% of steps)` : "";
  return `, gradient norm ${last.grad_norm.toFixed(3)}${clipped}`;
}

// The speed of the last few seconds of training (both kinds of training events).
function smoothedSpeed() {
  const t = S.points.filter((e) => e.words_per_second > 0).slice(-5);
  return t.reduce((s, e) => s + e.words_per_second, 0) / Math.max(t.length, 1);
}

function fmtTime(s) {
  if (!isFinite(s)) return "?";
  if (s < 90) return `${s.toFixed(0)} s`;
  if (s < 5400) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

// ---- chart --------------------------------------------------------------------------------

// A canvas cleared for drawing at its shown size in CSS pixels (sharp on high-density
// screens): its context, width and height (`height` where it is not laid out yet).
function canvas2d(cv, height) {
  const dpr = window.devicePixelRatio || 1;
  const w = cv.clientWidth || 940, h = cv.clientHeight || height;
  cv.width = w * dpr;
  cv.height = h * dpr;
  const g = cv.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  g.font = "12px system-ui, sans-serif";
  return { g, w, h };
}

function draw() {
  const { g, w, h } = canvas2d($("chart"), 260);
  const pts = S.points;
  const L = 56, R = 64, T = 22, B = 28;
  g.strokeStyle = "#c9d0d8";
  g.strokeRect(L, T, w - L - R, h - T - B);
  if (pts.length === 0) {
    g.fillStyle = "#6b7785";
    g.fillText("training perplexity and words/s appear here", L + 12, T + 24);
    drawNorms(null);
    return;
  }
  const x0 = Math.min(0, pts[0].global_step), x1 = Math.max(pts[pts.length - 1].global_step, x0 + 1);
  const ppl = pts.map((p) => p.perplexity).concat(S.epochs.map((e) => e.valid_perplexity)).filter(isFinite);
  const lo = Math.log(Math.max(Math.min(...ppl) * 0.9, 1)), hi = Math.log(Math.max(...ppl) * 1.1);
  const wps = Math.max(...pts.map((p) => p.words_per_second)) * 1.15 || 1;
  const X = (s) => L + ((s - x0) / (x1 - x0)) * (w - L - R);
  const Y = (p) => T + (1 - (Math.log(p) - lo) / Math.max(hi - lo, 1e-9)) * (h - T - B);
  const Yw = (v) => T + (1 - v / wps) * (h - T - B);
  // axes labels
  g.fillStyle = "#3a7bd5";
  g.fillText("perplexity", 4, T - 8);
  for (let k = 0; k <= 4; k++) {
    const p = Math.exp(lo + ((hi - lo) * k) / 4);
    g.fillText(p.toFixed(p < 100 ? 1 : 0), 4, Y(p) + 4);
  }
  g.fillStyle = "#d58a3a";
  g.fillText("words/s", w - R + 6, T - 8);
  for (let k = 0; k <= 4; k++) {
    const v = (wps * k) / 4;
    g.fillText(v.toFixed(0), w - R + 6, Yw(v) + 4);
  }
  g.fillStyle = "#6b7785";
  g.fillText(`step ${x1}`, w - R - 50, h - 8);
  g.fillText("0", L, h - 8);
  const line = (color, ys) => {
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.beginPath();
    pts.forEach((p, i) => (i ? g.lineTo(X(p.global_step), ys(p)) : g.moveTo(X(p.global_step), ys(p))));
    g.stroke();
  };
  line("#d58a3a", (p) => Yw(p.words_per_second));
  line("#3a7bd5", (p) => Y(p.perplexity));
  g.fillStyle = "#1b8a3a";
  for (const e of S.epochs) {
    const at = pts.filter((p) => p.epoch === e.epoch).pop();
    if (!at) continue;
    g.beginPath();
    g.arc(X(at.global_step), Y(e.valid_perplexity), 4, 0, 7);
    g.fill();
    g.fillText(`valid ${e.valid_perplexity.toFixed(1)}`, X(at.global_step) - 70, Y(e.valid_perplexity) - 8);
  }
  drawNorms({ x0, x1, L, R });
}

// The global gradient norm before clipping at each log point (the mean of its steps solid,
// the largest dashed) against the clipping threshold, on a log scale under the main chart and
// on its step axis: what `lstm-gpu plot` draws in its third panel. Hidden until a log point
// has a norm (`axis` null: nothing trained yet).
function drawNorms(axis) {
  const cv = $("norm-chart");
  const pts = axis ? S.points.filter((p) => p.grad_norm > 0 && isFinite(p.grad_norm)) : [];
  const clip = S.info ? S.info.config.max_grad_norm : null;
  cv.hidden = pts.length === 0;
  if (cv.hidden) {
    S.normChart = null;
    return;
  }
  const { g, w, h } = canvas2d(cv, 140);
  const { x0, x1, L, R } = axis;
  const T = 18, B = 10;
  g.strokeStyle = "#c9d0d8";
  g.strokeRect(L, T, w - L - R, h - T - B);
  const largest = (p) => (p.grad_norm_max > 0 && isFinite(p.grad_norm_max) ? p.grad_norm_max : p.grad_norm);
  const values = pts.map((p) => p.grad_norm).concat(pts.map(largest));
  if (clip > 0) values.push(clip);
  const lo = Math.log(Math.min(...values) * 0.8), hi = Math.log(Math.max(...values) * 1.25);
  const X = (s) => L + ((s - x0) / (x1 - x0)) * (w - L - R);
  const Y = (v) => T + (1 - (Math.log(v) - lo) / Math.max(hi - lo, 1e-9)) * (h - T - B);
  S.normChart = { points: pts.length, clip, lo: Math.exp(lo), hi: Math.exp(hi) };
  g.fillStyle = "#7a4fc9";
  g.fillText("gradient norm before clipping (mean of the steps; largest dashed)", L + 6, T - 5);
  for (let k = 0; k <= 2; k++) {
    const v = Math.exp(lo + ((hi - lo) * k) / 2);
    g.fillText(v < 10 ? v.toFixed(2) : v.toFixed(0), 4, Y(v) + 4);
  }
  const line = (ys, dash) => {
    g.setLineDash(dash);
    g.beginPath();
    pts.forEach((p, i) => (i ? g.lineTo(X(p.global_step), ys(p)) : g.moveTo(X(p.global_step), ys(p))));
    g.stroke();
  };
  g.strokeStyle = "#7a4fc9";
  g.lineWidth = 2;
  line((p) => Y(p.grad_norm), []);
  g.lineWidth = 1;
  line((p) => Y(largest(p)), [5, 4]);
  if (clip > 0) {
    g.strokeStyle = "#8a1111";
    g.setLineDash([2, 3]);
    g.beginPath();
    g.moveTo(L, Y(clip));
    g.lineTo(w - R, Y(clip));
    g.stroke();
    g.fillStyle = "#8a1111";
    g.fillText(`clip ${clip}`, w - R + 6, Y(clip) + 4);
  }
  g.setLineDash([]);
  const last = pts[pts.length - 1];
  if (last.clipped_fraction > 0) {
    g.fillStyle = "#6b7785";
    g.fillText(`clipped: ${(100 * last.clipped_fraction).toFixed(0)}% of the last steps`, w - R - 220, T - 5);
  }
}

// ---- asking the model ---------------------------------------------------------------------

async function predict(text, k = 10) {
  if (!S.trainer) throw new Error("make or load a model first");
  const r = JSON.parse(await serial(() => S.trainer.predict(text, k)));
  S.prediction = r;
  const top = r.next[0] ? r.next[0].probability : 1;
  drawBars("predict-out", r.next.map((n) => [n.word, (200 * n.probability) / top, n.probability.toFixed(4)]));
  if (r.unknown.length) say(`not in the vocabulary, read as <unk>: ${r.unknown.join(", ")}`);
  return r;
}

// A bar chart into the element `id`: a row per [word, bar width in pixels, figure].
function drawBars(id, rows) {
  const out = $(id);
  out.innerHTML = "";
  for (const [word, width, figure] of rows) {
    const row = document.createElement("div");
    row.innerHTML = `<span class="word"></span><span class="bar"></span><span class="p"></span>`;
    row.querySelector(".word").textContent = word;
    row.querySelector(".bar").style.width = `${Math.max(0, width)}px`;
    row.querySelector(".p").textContent = figure;
    out.appendChild(row);
  }
}

// The `k` words whose embeddings point nearest to `word`'s (cosine similarity), as `lstm-gpu
// embeddings neighbors` lists them of a checkpoint.
async function similar(word, k = 10) {
  if (!S.trainer) throw new Error("make or load a model first");
  const r = JSON.parse(await serial(() => S.trainer.similar(word, k)));
  S.similar = r;
  drawBars("similar-out", r.neighbors.map((n) => [n.word, 200 * n.cosine, n.cosine.toFixed(3)]));
  return r;
}

// Sampling as `lstm-gpu generate` does: the softmax at `temperature`, cut to the `topK` most
// probable (0: all), then to the fewest most probable that reach `topP` (1: all).
async function generate(prompt, count = 30, temperature = 1.0, seed = 1, topK = 0, topP = 1.0) {
  if (!S.trainer) throw new Error("make or load a model first");
  const text = await serial(() => S.trainer.generate(prompt, count, temperature, topK, topP, BigInt(seed)));
  S.generated = text;
  $("generate-out").textContent = text;
  return text;
}

// The validation pass in slices of about CALL_SECONDS, its progress shown; one serial call,
// so that nothing moves the weights while it runs.
// Each word of a text coloured by how probable the model found it after the words before it
// (from a sentence start): green where it expected the word, red where the word surprised it.
async function score(text) {
  if (!S.trainer) throw new Error("make or load a model first");
  const r = JSON.parse(await serial(() => S.trainer.score(text)));
  const chars = S.info.config.tokens === "chars";
  const out = $("score-out");
  out.textContent = "";
  for (const w of r.words) {
    const span = document.createElement("span");
    span.className = "scored";
    span.textContent = chars ? w.word.replace(/ /g, "\u00a0") : w.word;
    // A log scale: probability 1 is green, 1e-4 and below red.
    const x = Math.min(1, Math.max(0, -Math.log10(Math.max(w.probability, 1e-30)) / 4));
    span.style.background = `hsl(${Math.round(120 * (1 - x))}, 70%, 85%)`;
    span.title = `probability ${w.probability.toPrecision(3)}, rank ${w.rank} of ${S.info.vocab_size}`;
    out.appendChild(span);
    if (!chars) out.appendChild(document.createTextNode(" "));
  }
  const line = document.createElement("div");
  line.className = "muted";
  const unk = r.unknown.length ? `; read as <unk>: ${r.unknown.join(", ")}` : "";
  line.textContent =
    `perplexity ${r.perplexity.toFixed(2)} over ${r.words.length} ${chars ? "characters" : "words"}, each after the ones before it` +
    `${r.start ? ", from a sentence start" : " (the first is context only)"}${unk}. ` +
    "Green: what the model expected; red: what surprised it (hover for the probability and rank).";
  out.appendChild(line);
  S.scored = r;
  return r;
}

async function validate() {
  if (!S.trainer) throw new Error("make or load a model first");
  const v = await serial(async () => {
    let budget = 1;
    try {
      for (;;) {
        const t = performance.now();
        const r = JSON.parse(await S.trainer.validate_part(budget));
        if (r.perplexity !== null) return r.perplexity;
        setStatus(`validating: batch ${r.done}/${r.total}`);
        $("progress-bar").style.width = `${((100 * r.done) / r.total).toFixed(1)}%`;
        const secs = (performance.now() - t) / 1000;
        if (secs > 0) budget = Math.max(1, Math.min(1 << 20, Math.round((budget * CALL_SECONDS) / secs)));
        await new Promise((res) => setTimeout(res, 0)); // let the page paint
      }
    } finally {
      setStatus("");
    }
  });
  say(`validation perplexity ${v.toFixed(3)}`);
  return v;
}

async function save(download = true) {
  if (!S.trainer) throw new Error("make or load a model first");
  const bytes = await serial(() => S.trainer.save());
  S.lastSave = bytes;
  if (download) {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
    a.download = `lstm-gpu-step${S.info.position.global_step}.safetensors`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }
  return bytes;
}

async function loadCheckpoint(bytes) {
  const info = await newTrainer({}, bytes);
  say(`checkpoint loaded: epoch ${info.position.epoch + 1}, step ${info.position.step_in_epoch}, ${info.position.global_step} steps trained`);
  return info;
}

// ---- the model kept in the browser -----------------------------------------------------------

// The model is kept in the browser's storage (IndexedDB) at every epoch's end and whenever
// training stops, so that a closed tab, a reload or a crash loses at most the epoch that ran:
// the page offers it back ("Resume ...") once the same text is loaded. One model is kept per
// text (the last one trained on it), the `keepAtMost` most recently kept texts' in all (the
// oldest forgotten); "Forget it" removes the one offered.
//
// Two stores, keyed by the text (`corpusKey()`): `models` holds the checkpoints with their
// history, `kept` what the offer shows of each (no weights), so that listing them reads no
// checkpoint. Version 1 kept one model under the key "last": it moves to its text's key.
const KEPT = { db: "lstm-gpu", version: 2, models: "models", index: "kept" };

// Run `fn({ models, index })` in a transaction over both stores: the result of the request
// it returns (if any) once the transaction is done.
function keptStore(mode, fn) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(KEPT.db, KEPT.version);
    open.onupgradeneeded = (ev) => {
      const db = open.result;
      if (!db.objectStoreNames.contains(KEPT.models)) db.createObjectStore(KEPT.models);
      if (!db.objectStoreNames.contains(KEPT.index)) db.createObjectStore(KEPT.index);
      if (ev.oldVersion === 1) {
        const tx = open.transaction;
        const [models, index] = [tx.objectStore(KEPT.models), tx.objectStore(KEPT.index)];
        const last = models.get("last");
        last.onsuccess = () => {
          const r = last.result;
          if (!r || !r.corpus) return;
          models.delete("last");
          models.put(r, r.corpus);
          index.put(keptSummary(r), r.corpus);
        };
      }
    };
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      const tx = db.transaction([KEPT.models, KEPT.index], mode);
      const req = fn({ models: tx.objectStore(KEPT.models), index: tx.objectStore(KEPT.index) });
      tx.oncomplete = () => {
        db.close();
        resolve(req ? req.result : undefined);
      };
      tx.onerror = tx.onabort = () => {
        db.close();
        reject(tx.error || new Error("the browser's storage refused"));
      };
    };
  });
}

// What the offer shows of a kept model: its record without the weights and the history.
function keptSummary(r) {
  return { corpus: r.corpus, saved: r.saved, position: r.position, model: r.model };
}

// Which text a model was trained on: the name and the sizes of its three splits.
function corpusKey() {
  const c = S.corpus;
  return c ? `${c.name}:${c.train.length}:${c.valid.length}:${c.test.length}` : null;
}

// A text's name, from its key.
const keptText = (k) => k.corpus.split(":")[0];

// "epoch 2, step 0, 3 min ago" of a kept model.
function keptWhere(k) {
  const p = k.position;
  return `epoch ${p.epoch + 1}, step ${p.step_in_epoch}, ${fmtTime((Date.now() - k.saved) / 1000)} ago`;
}

// Keep the model where it stands (a checkpoint, as Save checkpoint writes it) as this text's,
// and forget the oldest texts' beyond `keepAtMost`. A browser that refuses (no storage, a full
// quota) is said once; training goes on.
async function keepModel() {
  if (!S.trainer || !window.indexedDB || !S.corpus) return;
  try {
    const bytes = await serial(() => S.trainer.save());
    const i = S.info;
    const record = {
      bytes,
      saved: Date.now(),
      position: i.position,
      model: `LSTM ${i.config.hidden.join("+")}, ${(i.parameters / 1e6).toFixed(2)} M parameters`,
      corpus: corpusKey(),
      // What the chart and the epoch table showed, to show again when it is resumed.
      history: { trainEvents: S.trainEvents, points: S.points, epochs: S.epochs },
    };
    await keptStore("readwrite", ({ models, index }) => {
      models.put(record, record.corpus);
      index.put(keptSummary(record), record.corpus);
      const all = index.getAll();
      all.onsuccess = () => {
        const old = all.result.sort((a, b) => b.saved - a.saved).slice(Math.max(1, S.keepAtMost));
        for (const k of old) {
          models.delete(k.corpus);
          index.delete(k.corpus);
        }
      };
    });
    S.keptStep = i.position.global_step;
  } catch (e) {
    if (!S.keepRefused) say(`this browser does not let the page keep the model (${errorText(e)}): Save checkpoint keeps it as a file`);
    S.keepRefused = true;
  }
}

// Offer the model kept for the loaded text, resumable; where there is none, the most recently
// kept one, saying which text to load. The button's tooltip lists every model kept.
async function offerKept() {
  let all = [];
  try {
    all = window.indexedDB ? (await keptStore("readonly", ({ index }) => index.getAll())) || [] : [];
  } catch (e) {}
  all.sort((a, b) => b.saved - a.saved);
  S.keptAll = all;
  const key = corpusKey();
  const kept = all.find((k) => k.corpus === key) || all[0] || null;
  S.kept = kept;
  const [resume, forget] = [$("resume-kept"), $("forget-kept")];
  resume.hidden = forget.hidden = !kept;
  if (!kept) return;
  const same = kept.corpus === key;
  const others = all.length - 1;
  resume.textContent =
    `Resume the model kept in this browser for ${same ? "this text" : keptText(kept)} (${kept.model}; ${keptWhere(kept)})` +
    (others > 0 ? `, ${others} more kept for other text${others > 1 ? "s" : ""}` : "");
  resume.disabled = !same || !S.ready;
  const list = all.map((k) => `${keptText(k)}: ${k.model}, ${keptWhere(k)}`).join("\n");
  resume.title = same
    ? `the page keeps the last model trained on each text at every epoch's end and whenever training stops; kept here:\n${list}`
    : `it was trained on another text (${keptText(kept)}): load that text to resume it; kept here:\n${list}`;
  forget.title = `forget the model kept for ${same ? "this text" : keptText(kept)}`;
}

async function resumeKept() {
  const key = corpusKey();
  if (!S.kept) throw new Error("this browser keeps no model");
  if (S.kept.corpus !== key) throw new Error(`the kept model was trained on another text (${keptText(S.kept)}): load that text to resume it`);
  const kept = await keptStore("readonly", ({ models }) => models.get(key));
  if (!kept) throw new Error("the browser no longer keeps that model");
  const info = await loadCheckpoint(kept.bytes);
  // The chart and the epoch table as they were.
  const h = kept.history || {};
  S.trainEvents = h.trainEvents || [];
  S.points = h.points || [];
  S.epochs = h.epochs || [];
  S.keptStep = kept.position.global_step;
  for (const e of S.epochs) epochRow(e);
  progress();
  draw();
  return info;
}

// Forget the model offered (the loaded text's, or the most recently kept one).
async function forgetKept() {
  const kept = S.kept;
  if (!kept) throw new Error("this browser keeps no model");
  await keptStore("readwrite", ({ models, index }) => {
    models.delete(kept.corpus);
    index.delete(kept.corpus);
  });
  await offerKept();
  say(`the model kept in this browser for ${kept.corpus === corpusKey() ? "this text" : keptText(kept)} is forgotten`);
}

// ---- checking the kernels ------------------------------------------------------------------

const exp = (v) => (typeof v === "number" ? v.toExponential(1) : String(v));

// Every kernel against its CPU twin on a device of its own (the library's `check`), each row
// shown as it finishes. Runs beside training, not between its steps: it is its own device.
async function checkKernels() {
  const body = $("check-table").querySelector("tbody");
  body.textContent = "";
  S.checks = [];
  S.checked = null;
  $("check-kernels").disabled = true;
  $("check-status").textContent = "checking: the first run of each kernel compiles it…";
  try {
    const summary = JSON.parse(
      await check_kernels((json) => {
        const c = JSON.parse(json);
        S.checks.push(c);
        const tr = document.createElement("tr");
        for (const v of [c.check, c.cases, exp(c.error), exp(c.tolerance), c.passed ? "ok" : "FAILED", c.worst + (c.fault ? ` (${c.fault})` : "")]) {
          const td = document.createElement("td");
          td.textContent = v;
          tr.appendChild(td);
        }
        if (!c.passed) tr.className = "error";
        body.appendChild(tr);
        $("check-status").textContent = `checking: ${S.checks.length} done…`;
      }, JSON.stringify(S.kernels))
    );
    S.checked = summary;
    const failed = summary.checks.filter((c) => !c.passed).map((c) => c.check);
    const mine = summary.changed.length ? ` (with your ${summary.changed.join(", ")})` : "";
    $("check-status").textContent = failed.length
      ? `${failed.length} of ${summary.checks.length} checks failed${mine}: ${failed.join(", ")}`
      : `all ${summary.checks.length} checks passed on ${adapterName(summary.adapter)}${mine}`;
    return summary;
  } finally {
    $("check-kernels").disabled = false;
  }
}

// ---- the kernels' WGSL, to change ---------------------------------------------------------

const builtIn = (name) => {
  const f = S.shaderFiles.find((f) => f.name === name);
  if (!f) throw new Error(`${name} is not one of the kernels' WGSL files`);
  return f.text;
};

function showKernel() {
  const name = $("kernel-file").value;
  $("kernel-source").value = S.kernels[name] ?? builtIn(name);
}

function kernelStatus() {
  const changed = Object.keys(S.kernels);
  $("kernel-status").textContent = changed.length
    ? `your ${changed.join(", ")} in use: by "Check the kernels" and by the next "New model"`
    : "every kernel as built in";
  for (const o of $("kernel-file").options) o.textContent = o.value + (S.kernels[o.value] !== undefined ? " (changed)" : "");
}

// Use `text` (default: the editor's) as file `name` (default: the one shown); the built-in
// text again is no change. Resolves to the names of the changed files.
async function useKernel(name, text) {
  name = name ?? $("kernel-file").value;
  text = text ?? $("kernel-source").value;
  if (text === builtIn(name)) delete S.kernels[name];
  else S.kernels[name] = text;
  kernelStatus();
  return Object.keys(S.kernels);
}

async function resetKernel(name) {
  name = name ?? $("kernel-file").value;
  builtIn(name);
  delete S.kernels[name];
  if (name === $("kernel-file").value) showKernel();
  kernelStatus();
  return Object.keys(S.kernels);
}

function loadKernelFiles() {
  S.shaderFiles = JSON.parse(shader_files());
  const select = $("kernel-file");
  for (const f of S.shaderFiles) {
    const o = document.createElement("option");
    o.value = f.name;
    o.textContent = f.name;
    select.appendChild(o);
  }
  select.value = "lstm_cell.wgsl";
  showKernel();
  kernelStatus();
}

// ---- wiring -------------------------------------------------------------------------------

// Run an action from a button: its error is the one message, and nothing else changes.
function action(fn) {
  return async (...args) => {
    try {
      return await fn(...args);
    } catch (e) {
      say(errorText(e), "error");
      throw e;
    }
  };
}

const api = (S.api = {
  loadServer: action(loadServer),
  loadFiles: action(loadFiles),
  create: action((options) => newTrainer(options)),
  createPreset: action((preset, tokens = "words", seed = 1, precision = "f32", schedule = "tutorial") =>
    newTrainer(optionsFor(preset, tokens, seed, precision, schedule)),
  ),
  // What New model does: the page's controls and settings.
  createFromPage: action(createFromPage),
  resetSettings,
  loadCheckpoint: action(loadCheckpoint),
  // The server's model `i` (from 0; default: the one chosen in the list).
  loadServed: action((i = $("served-model").selectedIndex) => {
    const model = S.served[Math.max(i, 0)];
    if (!model) throw new Error("the server offers no such model");
    S.pendingCheckpoint = model.route;
    return loadPendingCheckpoint();
  }),
  train: action(train),
  pause,
  validate: action(validate),
  save: action(save),
  predict: action(predict),
  generate: action(generate),
  similar: action(similar),
  resumeKept: action(resumeKept),
  forgetKept: action(forgetKept),
  score: action(score),
  setLogEvery: action((n) => serial(() => S.trainer.set_log_every(n))),
  checkKernels: action(checkKernels),
  useKernel: action(useKernel),
  resetKernel: action(resetKernel),
  forgetTuning,
});

const quiet = (p) => p.catch(() => {});
$("load-server").onclick = () => quiet(api.loadServer().then((l) => say(`loaded ${l}`)));
for (const id of ["file-train", "file-valid", "file-test"])
  $(id).onchange = () => quiet(api.loadFiles().then((l) => say(`loaded ${l}`)).then(loadPendingCheckpoint));
$("create").onclick = () =>
  quiet(
    api
      .createFromPage()
      .then(() => say("new model ready: press Train" + (S.kept && S.kept.corpus === corpusKey() ? " (once it trains, it takes the place of the model kept for this text)" : ""))),
  );
$("file-checkpoint").onchange = async () => {
  const f = $("file-checkpoint").files[0];
  if (f) await quiet(api.loadCheckpoint(new Uint8Array(await f.arrayBuffer())));
  $("file-checkpoint").value = "";
};
$("load-served").onclick = () => quiet(api.loadServed());
$("resume-kept").onclick = () => quiet(api.resumeKept());
$("forget-kept").onclick = () => quiet(api.forgetKept());
$("train").onclick = () => (S.running ? pause() : quiet(api.train()));
$("validate").onclick = () => quiet(api.validate());
$("save").onclick = () => quiet(api.save());
$("predict").onclick = () => quiet(api.predict($("predict-text").value, 10));
$("check-kernels").onclick = () => quiet(api.checkKernels());
$("kernel-file").onchange = showKernel;
$("kernel-use").onclick = () => quiet(api.useKernel());
$("kernel-reset").onclick = () => quiet(api.resetKernel());
$("tune-forget").onclick = forgetTuning;
$("predict-text").onkeydown = (e) => e.key === "Enter" && $("predict").click();
$("score").onclick = () => quiet(api.score($("score-text").value));
$("similar").onclick = () => quiet(api.similar($("similar-word").value, 10));
$("similar-word").onkeydown = (e) => e.key === "Enter" && $("similar").click();
$("score-text").onkeydown = (e) => e.key === "Enter" && $("score").click();
$("generate").onclick = () =>
  quiet(api.generate($("generate-prompt").value, Number($("generate-count").value), Number($("generate-temperature").value),
                     1, Number($("generate-top-k").value), Number($("generate-top-p").value)));

async function start() {
  draw();
  await init();
  loadKernelFiles();
  buildSettings();
  try {
    S.adapter = JSON.parse(await adapter());
    const a = S.adapter;
    $("adapter").textContent = `WebGPU adapter: ${a.name} (${a.backend}${a.driver ? ", " + a.driver : ""}; ${a.max_storage_binding_mib} MiB per storage binding${a.subgroups ? ", subgroups" : ""}${a.f16 ? ", shader-f16" : ""})`;
    // Mixed precision needs f16 in shaders: offered only where the adapter has it.
    const mixed = $("precision").querySelector('option[value="mixed"]');
    mixed.disabled = !a.f16;
    if (!a.f16) mixed.textContent = "mixed (needs shader-f16, which this adapter lacks)";
  } catch (e) {
    // Browsers give WebGPU only to secure pages (https://, localhost): a page served over
    // http:// to another machine (`serve --listen 0.0.0.0`) has none, whatever the browser.
    S.noWebgpu = window.isSecureContext
      ? errorText(e)
      : `browsers give WebGPU only to https:// pages and to localhost, and this page is ${location.origin}: ` +
        `open it on the machine that serves it (http://localhost:${location.port || 80}/), ` +
        `or put it on an https:// host (lstm-gpu serve --export DIR writes it as a static site)`;
    $("adapter").textContent = "No WebGPU adapter.";
    say(S.noWebgpu, "error");
  }
  S.ready = S.adapter !== null;
  $("check-kernels").disabled = !S.ready;
  suggestPreset();
  fillSettings();
  // A GPU tunes in seconds; a CPU adapter (SwiftShader) takes minutes, so there it is asked for.
  $("tune").checked = S.ready && !isCpuAdapter();
  showTuning();
  if (!S.ready) {
    for (const id of ["create", "file-checkpoint", "served-model", "load-served"]) $(id).disabled = true;
    S.started = true;
    return;
  }
  // The server's corpus, when it has one.
  const params = new URLSearchParams(location.search);
  if (!params.has("nodata")) {
    try {
      say(`loaded ${await loadServer()}; choose a preset and press New model`);
    } catch (e) {
      say("pick the text files to train on (the server has no corpus)");
    }
  }
  if (!S.corpus) await offerKept();
  // A checkpoint the address names (`?checkpoint=data/model.safetensors`, as `lstm-gpu serve
  // --checkpoint` prints it): loaded once there is a text, to ask it or train on from it.
  S.pendingCheckpoint = params.get("checkpoint");
  await loadPendingCheckpoint();
  S.started = true;
}

async function loadPendingCheckpoint() {
  const url = S.pendingCheckpoint;
  if (!url) return;
  if (!S.corpus) {
    say(`the model at ${url} loads once a text is loaded: pick the text files`);
    return;
  }
  S.pendingCheckpoint = null;
  try {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`could not fetch the checkpoint ${url}: HTTP ${r.status}`);
    await loadCheckpoint(new Uint8Array(await r.arrayBuffer()));
  } catch (e) {
    say(errorText(e), "error");
  }
}

start();
