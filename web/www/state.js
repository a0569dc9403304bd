// What the page knows (`window.lstm`, which the browser test reads), its messages, the
// one-at-a-time chain of calls into the model, and what the adapter is. Every other module
// reads it; it reads none.

export const $ = (id) => document.getElementById(id);

export const S = (window.lstm = {
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

export function say(text, kind = "info") {
  const m = $("message");
  m.textContent = text;
  m.className = text ? kind : "";
  if (text) S.messages.push({ kind, text });
}

export function errorText(e) {
  if (typeof e === "string") return e;
  if (e && e.message) return e.message;
  return String(e);
}

// Run model calls one at a time, in order.
export let chain = Promise.resolve();
export function serial(fn) {
  const p = chain.then(fn);
  chain = p.catch(() => {});
  return p;
}

// Each call into the model runs about this long, so that the progress line, the speed, the
// perplexity and the chart move at least this often whatever the log interval.
export const CALL_SECONDS = 1.0;

// Stop the training loop after its current slice.
export function pause() {
  S.running = false;
}

// On an adapter that is a CPU (Chromium's SwiftShader, a software rasteriser) the seed model
// trains at a few hundred words/s: about an hour an epoch. A newcomer's first model there is
// one that learns within minutes.
export function isCpuAdapter() {
  return !!(S.adapter && S.adapter.device_type === "Cpu");
}

// The adapter's name, where the browser gives one.
export function adapterName(a) {
  return a && a.name && !a.name.startsWith("(") ? a.name : "this browser's adapter";
}
