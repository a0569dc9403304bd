// The settings a student changes before New model (the course notebook's knobs), in the
// words of `lstm-gpu train`'s flags.
import { model_config } from "./pkg/lstm_gpu_web.js";
import { $, errorText } from "./state.js";
import { optionsFor, newTrainer } from "./model.js";

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

export function buildSettings() {
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
export function fillSettings() {
  const c = presetConfig();
  for (const s of SETTINGS) {
    const input = settingInput(s);
    if (input.classList.contains("edited")) continue;
    const v = c[s.field];
    input.value = s.kind === "list" ? v.join(", ") : String(v + (s.offset || 0));
  }
}

export function resetSettings() {
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
export async function createFromPage() {
  const o = optionsFor($("preset").value, $("tokens").value, Number($("seed").value), $("precision").value, $("lr-schedule").value);
  Object.assign(o.config, changedSettings());
  try {
    return await newTrainer(o);
  } catch (e) {
    throw new Error(inPageWords(errorText(e)));
  }
}
