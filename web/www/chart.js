// The learning curves: perplexity per step and per epoch, and the gradient norms.
import { $, S } from "./state.js";

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

export function draw() {
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
