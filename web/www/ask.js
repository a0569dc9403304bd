// Asking the model: next words, similar words, generation, how surprising a text is,
// validation, and checkpoints saved and loaded.
import { $, S, say, serial, CALL_SECONDS } from "./state.js";
import { setStatus } from "./progress.js";
import { newTrainer } from "./model.js";

export async function predict(text, k = 10) {
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
export async function similar(word, k = 10) {
  if (!S.trainer) throw new Error("make or load a model first");
  const r = JSON.parse(await serial(() => S.trainer.similar(word, k)));
  S.similar = r;
  drawBars("similar-out", r.neighbors.map((n) => [n.word, 200 * n.cosine, n.cosine.toFixed(3)]));
  return r;
}

// Sampling as `lstm-gpu generate` does: the softmax at `temperature`, cut to the `topK` most
// probable (0: all), then to the fewest most probable that reach `topP` (1: all).
export async function generate(prompt, count = 30, temperature = 1.0, seed = 1, topK = 0, topP = 1.0) {
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
export async function score(text) {
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

export async function validate() {
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

export async function save(download = true) {
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

export async function loadCheckpoint(bytes) {
  const info = await newTrainer({}, bytes);
  say(`checkpoint loaded: epoch ${info.position.epoch + 1}, step ${info.position.step_in_epoch}, ${info.position.global_step} steps trained`);
  return info;
}
