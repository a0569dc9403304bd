// The model kept in the browser (IndexedDB), one per text with that text, offered back after
// a reload.
import { $, S, say, errorText, serial } from "./state.js";
import { epochRow, progress, fmtTime } from "./progress.js";
import { draw } from "./chart.js";
import { loadCheckpoint } from "./ask.js";

// The model is kept in the browser's storage (IndexedDB) at every epoch's end and whenever
// training stops, so that a closed tab, a reload or a crash loses at most the epoch that ran:
// the page offers it back ("Resume ..."). One model is kept per text (the last one trained on
// it), with the text itself, so that a model of another text than the one loaded resumes too
// (its text loaded again: a picked file is not to be picked again); the `keepAtMost` most
// recently kept texts' in all (the oldest forgotten); "Forget it" removes the one offered.
// Models kept before the texts were (no `texts`) resume where their text is loaded.
//
// Two stores, keyed by the text (`corpusKey()`): `models` holds the checkpoints with their
// history, `kept` what the offer shows of each (no weights), so that listing them reads no
// checkpoint. Version 1 kept one model under the key "last": it moves to its text's key.
const KEPT = { db: "lstm-gpu", version: 2, models: "models", index: "kept" };

// Run `fn({ models, index })` in a transaction over both stores: the result of the request
// it returns (if any) once the transaction is done.
function keptStore(mode, fn) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(KEPT.db, KEPT.version);
    open.onupgradeneeded = (ev) => {
      const db = open.result;
      if (!db.objectStoreNames.contains(KEPT.models)) db.createObjectStore(KEPT.models);
      if (!db.objectStoreNames.contains(KEPT.index)) db.createObjectStore(KEPT.index);
      if (ev.oldVersion === 1) {
        const tx = open.transaction;
        const [models, index] = [tx.objectStore(KEPT.models), tx.objectStore(KEPT.index)];
        const last = models.get("last");
        last.onsuccess = () => {
          const r = last.result;
          if (!r || !r.corpus) return;
          models.delete("last");
          models.put(r, r.corpus);
          index.put(keptSummary(r), r.corpus);
        };
      }
    };
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      const tx = db.transaction([KEPT.models, KEPT.index], mode);
      const req = fn({ models: tx.objectStore(KEPT.models), index: tx.objectStore(KEPT.index) });
      tx.oncomplete = () => {
        db.close();
        resolve(req ? req.result : undefined);
      };
      tx.onerror = tx.onabort = () => {
        db.close();
        reject(tx.error || new Error("the browser's storage refused"));
      };
    };
  });
}

// What the offer shows of a kept model: its record without the weights and the history.
function keptSummary(r) {
  return { corpus: r.corpus, saved: r.saved, position: r.position, model: r.model, hasText: !!r.texts };
}

// Which text a model was trained on: the name and the sizes of its three splits.
export function corpusKey() {
  const c = S.corpus;
  return c ? `${c.name}:${c.train.length}:${c.valid.length}:${c.test.length}` : null;
}

// A text's name, from its key.
const keptText = (k) => k.corpus.split(":")[0];

// "epoch 2, step 0, 3 min ago" of a kept model.
function keptWhere(k) {
  const p = k.position;
  return `epoch ${p.epoch + 1}, step ${p.step_in_epoch}, ${fmtTime((Date.now() - k.saved) / 1000)} ago`;
}

// Keep the model where it stands (a checkpoint, as Save checkpoint writes it) as this text's,
// forget the oldest texts' beyond `keepAtMost`, and offer what is kept now. A browser that refuses (no storage, a full
// quota) is said once; training goes on.
export async function keepModel() {
  if (!S.trainer || !window.indexedDB || !S.corpus) return;
  try {
    const bytes = await serial(() => S.trainer.save());
    const i = S.info;
    const record = {
      bytes,
      saved: Date.now(),
      position: i.position,
      model: `LSTM ${i.config.hidden.join("+")}, ${(i.parameters / 1e6).toFixed(2)} M parameters`,
      corpus: corpusKey(),
      // The text itself (its three splits), to load again with the model.
      texts: { name: S.corpus.name, train: S.corpus.train, valid: S.corpus.valid, test: S.corpus.test },
      // What the chart and the epoch table showed, to show again when it is resumed.
      history: { trainEvents: S.trainEvents, points: S.points, epochs: S.epochs },
    };
    await keptStore("readwrite", ({ models, index }) => {
      models.put(record, record.corpus);
      index.put(keptSummary(record), record.corpus);
      const all = index.getAll();
      all.onsuccess = () => {
        const old = all.result.sort((a, b) => b.saved - a.saved).slice(Math.max(1, S.keepAtMost));
        for (const k of old) {
          models.delete(k.corpus);
          index.delete(k.corpus);
        }
      };
    });
    S.keptStep = i.position.global_step;
    // The offer names what is kept now, not what the page found when it loaded.
    await offerKept();
  } catch (e) {
    if (!S.keepRefused) say(`this browser does not let the page keep the model (${errorText(e)}): Save checkpoint keeps it as a file`);
    S.keepRefused = true;
  }
}

// Offer the model kept for the loaded text; where there is none, the most recently kept one,
// resumable with its text where the browser keeps that too, else saying which text to load.
// The button's tooltip lists every model kept.
export async function offerKept() {
  let all = [];
  try {
    all = window.indexedDB ? (await keptStore("readonly", ({ index }) => index.getAll())) || [] : [];
  } catch (e) {}
  all.sort((a, b) => b.saved - a.saved);
  S.keptAll = all;
  const key = corpusKey();
  const kept = all.find((k) => k.corpus === key) || all[0] || null;
  S.kept = kept;
  const [resume, forget] = [$("resume-kept"), $("forget-kept")];
  resume.hidden = forget.hidden = !kept;
  if (!kept) return;
  const same = kept.corpus === key;
  const withText = !same && kept.hasText;
  const others = all.length - 1;
  resume.textContent =
    `Resume the model kept in this browser for ${same ? "this text" : keptText(kept)} (${kept.model}; ${keptWhere(kept)})` +
    (withText ? ", with its text" : "") +
    (others > 0 ? `, ${others} more kept for other text${others > 1 ? "s" : ""}` : "");
  resume.disabled = !(same || withText) || !S.ready;
  const list = all.map((k) => `${keptText(k)}: ${k.model}, ${keptWhere(k)}`).join("\n");
  resume.title = same
    ? `the page keeps the last model trained on each text, with the text, at every epoch's end and whenever training stops; kept here:\n${list}`
    : withText
      ? `it was trained on another text (${keptText(kept)}), which the browser keeps with it: Resume loads that text in place of the one loaded, then the model; kept here:\n${list}`
      : `it was trained on another text (${keptText(kept)}): load that text to resume it; kept here:\n${list}`;
  forget.title = `forget the model kept for ${same ? "this text" : keptText(kept)}`;
}

// Resume the model offered; one of another text brings its text, which `useCorpus` (the
// corpus module's, passed in so that this module stays before it) loads first.
export async function resumeKept(useCorpus) {
  if (!S.kept) throw new Error("this browser keeps no model");
  const offered = S.kept;
  const kept = await keptStore("readonly", ({ models }) => models.get(offered.corpus));
  if (!kept) throw new Error("the browser no longer keeps that model");
  let info;
  if (kept.corpus === corpusKey()) {
    info = await loadCheckpoint(kept.bytes);
  } else {
    if (!kept.texts) throw new Error(`the kept model was trained on another text (${keptText(kept)}): load that text to resume it`);
    const before = S.corpus;
    say(`loaded ${await useCorpus(kept.texts)} (kept with the model)`);
    try {
      info = await loadCheckpoint(kept.bytes);
    } catch (e) {
      // A failed action changes nothing: the text that was loaded is again.
      if (before) await useCorpus(before);
      throw e;
    }
  }
  // The chart and the epoch table as they were.
  const h = kept.history || {};
  S.trainEvents = h.trainEvents || [];
  S.points = h.points || [];
  S.epochs = h.epochs || [];
  S.keptStep = kept.position.global_step;
  for (const e of S.epochs) epochRow(e);
  progress();
  draw();
  return info;
}

// Forget the model offered (the loaded text's, or the most recently kept one).
export async function forgetKept() {
  const kept = S.kept;
  if (!kept) throw new Error("this browser keeps no model");
  await keptStore("readwrite", ({ models, index }) => {
    models.delete(kept.corpus);
    index.delete(kept.corpus);
  });
  await offerKept();
  say(`the model kept in this browser for ${kept.corpus === corpusKey() ? "this text" : keptText(kept)} is forgotten`);
}
