// The seed PTB LSTM (../../../shared/design.md section 1) in TensorFlow.js, trained on the
// corpus that `lstm-gpu serve` serves at /data/train. What it computes is lstm-gpu's
// training step: TensorFlow's BasicLSTMCell (gates i, j, f, o; forget bias 0), the loss summed
// over the 20 time steps and averaged over the 60 rows, SGD at learning rate 1 after scaling
// every gradient by min(1, 5 / global norm), the state carried from batch to batch.
"use strict";

const CFG = { vocab: 10000, embedding: 200, hidden: [256, 128], batch: 60, steps: 20, lr: 1.0, clip: 5, init: 0.1 };

function log(line) {
  document.getElementById("log").textContent += line + "\n";
}

// TensorFlow's PTB reader: words by descending count then the word, newline as <eos>.
function ids(text) {
  const words = text.replace(/\n/g, " <eos> ").split(/\s+/).filter((w) => w.length > 0);
  const counts = new Map();
  for (const w of words) counts.set(w, (counts.get(w) || 0) + 1);
  const vocab = [...counts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const id = new Map(vocab.slice(0, CFG.vocab).map(([w], i) => [w, i]));
  const unk = id.get("<unk>") ?? 0;
  return Int32Array.from(words, (w) => id.get(w) ?? unk);
}

// Batch i of the [batch, len / batch] id matrix: inputs and targets, each [batch, steps].
function batch(data, i) {
  const { batch: B, steps: T } = CFG;
  const rowLen = Math.floor(data.length / B);
  const x = new Int32Array(B * T), y = new Int32Array(B * T);
  for (let r = 0; r < B; r++)
    for (let t = 0; t < T; t++) {
      x[r * T + t] = data[r * rowLen + i * T + t];
      y[r * T + t] = data[r * rowLen + i * T + t + 1];
    }
  return [x, y];
}

function model() {
  const { vocab: V, embedding: E, hidden: H, init } = CFG;
  const u = (shape) => tf.variable(tf.randomUniform(shape, -init, init));
  const m = { emb: u([V, E]), w: [], b: [], sw: u([H[H.length - 1], V]), sb: u([V]) };
  let inp = E;
  for (const h of H) {
    m.w.push(u([inp + h, 4 * h]));
    m.b.push(tf.variable(tf.zeros([4 * h])));
    inp = h;
  }
  m.vars = [m.emb, ...m.w, ...m.b, m.sw, m.sb];
  m.state = H.map((h) => ({ c: tf.zeros([CFG.batch, h]), h: tf.zeros([CFG.batch, h]) }));
  return m;
}

function cell(x, s, w, b) {
  const z = tf.add(tf.matMul(tf.concat([x, s.h], 1), w), b);
  const [i, j, f, o] = tf.split(z, 4, 1);
  const c = tf.add(tf.mul(s.c, tf.sigmoid(f)), tf.mul(tf.sigmoid(i), tf.tanh(j)));
  return { c, h: tf.mul(tf.tanh(c), tf.sigmoid(o)) };
}

// One training step; resolves to its loss (summed over time steps, mean over rows).
async function step(m, x, y) {
  const { batch: B, steps: T, vocab: V } = CFG;
  let next = null;
  const { value, grads } = tf.variableGrads(() => {
    const xs = tf.gather(m.emb, tf.tensor2d(x, [B, T], "int32")); // [B, T, E]
    let state = m.state;
    const outs = [];
    for (let t = 0; t < T; t++) {
      let inp = tf.reshape(tf.slice(xs, [0, t, 0], [B, 1, CFG.embedding]), [B, CFG.embedding]);
      state = state.map((s, l) => {
        const n = cell(inp, s, m.w[l], m.b[l]);
        inp = n.h;
        return n;
      });
      outs.push(inp);
    }
    next = state.map((s) => ({ c: tf.keep(s.c), h: tf.keep(s.h) }));
    // Rows ordered (r, t), as the targets are.
    const hs = tf.reshape(tf.stack(outs, 1), [B * T, CFG.hidden[CFG.hidden.length - 1]]);
    const logits = tf.add(tf.matMul(hs, m.sw), m.sb);
    const target = tf.oneHot(tf.tensor1d(y, "int32"), V);
    const nll = tf.neg(tf.sum(tf.mul(target, tf.logSoftmax(logits))));
    return tf.div(nll, B);
  }, m.vars);
  tf.tidy(() => {
    const list = m.vars.map((v) => grads[v.name]);
    const norm = tf.sqrt(tf.addN(list.map((g) => tf.sum(tf.square(g)))));
    const scale = tf.minimum(1, tf.div(CFG.clip, norm));
    for (const v of m.vars) v.assign(tf.sub(v, tf.mul(grads[v.name], tf.mul(scale, CFG.lr))));
  });
  for (const g of Object.values(grads)) g.dispose();
  for (const s of m.state) {
    s.c.dispose();
    s.h.dispose();
  }
  m.state = next;
  const loss = (await value.data())[0];
  value.dispose();
  return loss;
}

// Train `steps` steps of the first epoch; per step its seconds, loss and words/s.
window.bench = async (steps) => {
  const ok = await tf.setBackend("webgpu");
  if (!ok) throw new Error("TensorFlow.js found no WebGPU backend");
  await tf.ready();
  const text = await (await fetch("/data/train")).text();
  const data = ids(text);
  const m = model();
  const out = [];
  for (let i = 0; i < steps; i++) {
    const [x, y] = batch(data, i);
    const t0 = performance.now();
    const loss = await step(m, x, y);
    const seconds = (performance.now() - t0) / 1000;
    const row = { step: i + 1, seconds, loss, words_per_second: (CFG.batch * CFG.steps) / seconds };
    log(JSON.stringify(row));
    out.push(row);
  }
  return { backend: tf.getBackend(), version: tf.version.tfjs, words: data.length, steps: out };
};
