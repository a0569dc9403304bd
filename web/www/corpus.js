// The text to train on: from the server (`lstm-gpu serve`) or from picked files, each checked
// by the library's own reader; and the models the server offers.
import { check_text } from "./pkg/lstm_gpu_web.js";
import { $, S } from "./state.js";
import { offerKept } from "./kept.js";

function corpusLine() {
  const c = S.corpus;
  if (!c) return "No text loaded.";
  const kb = (b) => (b.length / 1024).toFixed(0) + " KiB";
  return `${c.name}: train ${kb(c.train)}, valid ${kb(c.valid)}, test ${kb(c.test)}`;
}

// The last `fraction` of the bytes, cut at a line boundary, as [before, after].
function cutAtLine(bytes, fraction) {
  let at = Math.floor(bytes.length * (1 - fraction));
  while (at < bytes.length && bytes[at - 1] !== 10) at++;
  return [bytes.subarray(0, at), bytes.subarray(at)];
}

// Check each text with the library's own reader (the same one `create` uses), so that a file
// that is not text is refused when it is picked and the corpus in use stays.
function checked(name, bytes) {
  check_text(name, bytes);
  return bytes;
}

// The server's models ({ route, file, bytes, about } each): one is offered by a button that
// names it, several by a list (each with what it is) and a button.
function offerServed(models) {
  S.served = models;
  const b = $("load-served"), list = $("served-model");
  b.hidden = models.length === 0;
  list.hidden = models.length < 2;
  list.innerHTML = "";
  for (const m of models) {
    const o = document.createElement("option");
    o.value = m.route;
    o.textContent = `${m.file}: ${m.about}`;
    list.appendChild(o);
  }
  if (models.length === 1) {
    b.textContent = `or the server's model (${models[0].file})`;
    b.title = models[0].about;
  } else if (models.length > 1) {
    b.textContent = "load this model";
    b.title = "";
  }
}

export async function loadServer() {
  const index = await fetch("data/index.json");
  if (!index.ok) throw new Error(`the server has no corpus (HTTP ${index.status}): start it with lstm-gpu serve --data DIR, or pick files`);
  const meta = await index.json();
  const get = async (split) => {
    const r = await fetch(`data/${split}`);
    if (!r.ok) throw new Error(`could not fetch the ${split} split: HTTP ${r.status}`);
    return new Uint8Array(await r.arrayBuffer());
  };
  // Models the server offers too (`lstm-gpu serve --checkpoint PATH...`): a button loads
  // the one, or the one chosen in a list of them.
  offerServed(meta.checkpoints || []);
  if (!meta.splits) throw new Error("the server offers a model but no corpus: pick the text files");
  const [train, valid, test] = await Promise.all(["train", "valid", "test"].map(get));
  return useCorpus({
    name: meta.name || "the server's corpus",
    train: checked("the training text", train),
    valid: checked("the validation text", valid),
    test: checked("the test text", test),
  });
}

// Make `corpus` ({ name, train, valid, test }, checked) the text in use: shown, the kept
// models offered for it; returns the line that describes it.
export async function useCorpus(corpus) {
  S.corpus = corpus;
  $("corpus-status").textContent = corpusLine();
  await offerKept();
  return corpusLine();
}

export async function loadFiles() {
  const pick = (id) => $(id).files[0] || null;
  const [ft, fv, fs] = [pick("file-train"), pick("file-valid"), pick("file-test")];
  if (!ft) throw new Error("pick a training file first");
  const read = async (f) => new Uint8Array(await f.arrayBuffer());
  const train = checked(`${ft.name}`, await read(ft));
  let valid = fv ? checked(fv.name, await read(fv)) : null;
  let test = fs ? checked(fs.name, await read(fs)) : null;
  let rest = train;
  if (!test) [rest, test] = cutAtLine(rest, 0.05);
  if (!valid) [rest, valid] = cutAtLine(rest, 0.05);
  return useCorpus({ name: ft.name, train: rest, valid, test });
}
