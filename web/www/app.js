// The page: corpus, model, training loop, chart, prediction and generation, all through the
// `lstm-gpu-web` module (wasm), which runs the lstm-gpu crate's kernels on WebGPU.
//
// Everything the page knows is in `window.lstm` (what the browser test reads), and every
// action is a function of `window.lstm.api` that the buttons call too. Calls into the model
// run one after another (`serial`); a failed action shows one line and changes nothing.
//
// The page's modules, each importing only those before it: state.js (what it knows,
// messages, the call chain), progress.js, chart.js, tuning.js, model.js, ask.js, kept.js,
// training.js, corpus.js, settings.js and kernels.js; this one wires them to the buttons
// (`window.lstm.api`) and starts the page.
import init, { adapter } from "./pkg/lstm_gpu_web.js";
import { $, S, say, errorText, serial, pause, isCpuAdapter } from "./state.js";
import { draw } from "./chart.js";
import { showTuning, forgetTuning } from "./tuning.js";
import { loadServer, loadFiles, useCorpus } from "./corpus.js";
import { suggestPreset, optionsFor, newTrainer } from "./model.js";
import { buildSettings, fillSettings, resetSettings, createFromPage } from "./settings.js";
import { train } from "./training.js";
import { predict, similar, generate, score, validate, save, loadCheckpoint } from "./ask.js";
import { corpusKey, offerKept, resumeKept, forgetKept } from "./kept.js";
import { checkKernels, showKernel, useKernel, resetKernel, loadKernelFiles } from "./kernels.js";

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
  resumeKept: action(() => resumeKept(useCorpus)),
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
