// The training loop: slices of about a second (so that the page stays alive), each slice's
// events shown (progress.js, chart.js), the model kept at each epoch's end and when it stops
// (kept.js).
import { $, S, say, serial, CALL_SECONDS } from "./state.js";
import { epochRow, setStatus, estimate, progress } from "./progress.js";
import { draw } from "./chart.js";
import { keepModel } from "./kept.js";

function refreshInfo() {
  S.info = JSON.parse(S.trainer.info());
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

