// The training loop (slices of about a second, so that the page stays alive), the epoch
// table, the progress line and the first steps' estimate of an epoch.
import { $, S, say, serial } from "./state.js";
import { isCpuAdapter } from "./model.js";
import { draw } from "./chart.js";
import { keepModel } from "./kept.js";

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
export function epochRow(e) {
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
export const CALL_SECONDS = 1.0;

// Train `steps` steps (Infinity: until paused or done); resolves to the events. An epoch's
// validation pass (and the test pass after the last) runs before the loop stops.
export async function train(steps = Infinity) {
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

export function pause() {
  S.running = false;
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

export function fmtTime(s) {
  if (!isFinite(s)) return "?";
  if (s < 90) return `${s.toFixed(0)} s`;
  if (s < 5400) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
