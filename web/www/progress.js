// What the page shows of a run: the status line, the progress line (steps, speed, the
// epoch's perplexity so far, time left), the epoch table, and the first steps' estimate of
// how long an epoch takes.
import { $, S, say, isCpuAdapter } from "./state.js";

// "; loss scale S (N steps skipped for f16 overflows)" in mixed precision, else nothing.
export function lossScaleText() {
  const ls = S.lossScale;
  if (!ls) return "";
  const skipped = ls.overflows > 0 ? ` (${ls.overflows} steps skipped for f16 overflows)` : "";
  return `; loss scale ${ls.scale}${skipped}`;
}

// A row of the epoch table; the run's best so far starred, as `lstm-gpu info` marks it.
export function epochRow(e) {
  const row = $("epochs").tBodies[0].insertRow();
  const valid = e.valid_perplexity.toFixed(2) + (e.best ? " *" : "");
  for (const v of [e.epoch, e.learning_rate, e.train_perplexity.toFixed(2), valid, e.seconds.toFixed(1)])
    row.insertCell().textContent = v;
}

export function setStatus(text) {
  S.status = text;
  if (text) S.statusLog.push(text);
  progress();
}

// Once per model, from the speed of the first few seconds after the first step (which
// waits for the kernels to compile): how long an epoch and the whole run take here. At
// least 3 seconds of steps: many on a GPU, one where a step takes seconds (a CPU adapter
// says it after its second step instead of waiting for a fourth).
export function estimate(timing, ran) {
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

export function progress() {
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
export function gradNormText(last) {
  if (last.grad_norm === undefined) return "";
  const clipped = last.clipped_fraction > 0 ? ` (clipped: ${(100 * last.clipped_fraction).toFixed(0)}% of steps)` : "";
  return `, gradient norm ${last.grad_norm.toFixed(3)}${clipped}`;
}

// The speed of the last few seconds of training (both kinds of training events).
export function smoothedSpeed() {
  const t = S.points.filter((e) => e.words_per_second > 0).slice(-5);
  return t.reduce((s, e) => s + e.words_per_second, 0) / Math.max(t.length, 1);
}

export function fmtTime(s) {
  if (!isFinite(s)) return "?";
  if (s < 90) return `${s.toFixed(0)} s`;
  if (s < 5400) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
