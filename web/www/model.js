// Making a model: the presets, the options `create` takes, the trainer, and the line that
// says what the model is.
import { create } from "./pkg/lstm_gpu_web.js";
import { $, S, say, chain, serial, pause, isCpuAdapter } from "./state.js";
import { setStatus, progress } from "./progress.js";
import { draw } from "./chart.js";
import { storedTuning, keepTuning, showTuning } from "./tuning.js";

const PRESETS = {
  seed: { preset: "seed" },
  small: { preset: "small" },
  quick: { preset: "seed", config: { embedding_size: 64, hidden: [64, 64], batch_size: 20, num_steps: 20 } },
  tiny: { preset: "seed", config: { embedding_size: 32, hidden: [32, 32], batch_size: 4, num_steps: 10 } },
};

// On a CPU adapter the quick model is the default, with a note saying why: a newcomer's first
// model there should learn within minutes, and the seed model takes about an hour an epoch.
export function suggestPreset() {
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
export function optionsFor(preset, tokens, seed, precision = "f32", schedule = "tutorial") {
  const o = structuredClone(PRESETS[preset] || PRESETS.seed);
  o.config = Object.assign({}, o.config, { tokens, precision });
  if (schedule === "plateau") Object.assign(o.config, { lr_schedule: "plateau", decay: 0.25 });
  o.seed = seed;
  return o;
}

// Build a trainer; the one in use stays until the new one is ready. With "tune" checked, a
// model not tuned on this adapter before has its kernels measured first (each line of the
// tuning shown as it comes), and the choices are kept for the next time.
export async function newTrainer(options, checkpoint) {
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
