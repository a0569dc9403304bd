// The kernels measured on this browser's adapter, kept in its storage as the native program
// keeps them in its cache folder.
import { $, say } from "./state.js";

// The kernels measured on this browser's adapter (the library's tuning cache, as JSON), kept in
// the browser's storage as the native program keeps them in its cache folder.
const TUNING_KEY = "lstm-gpu tuning";

export function storedTuning() {
  try {
    return localStorage.getItem(TUNING_KEY) || "";
  } catch (e) {
    return "";
  }
}

export function keepTuning(json) {
  try {
    localStorage.setItem(TUNING_KEY, json);
    return true;
  } catch (e) {
    return false;
  }
}

// How many models' tuned choices this browser keeps (on any adapter).
function tunedModels() {
  try {
    const c = JSON.parse(storedTuning() || "{}");
    return Object.values(c.adapters || {}).reduce((n, a) => n + Object.keys(a.models || {}).length, 0);
  } catch (e) {
    return 0;
  }
}

export function showTuning() {
  const n = tunedModels();
  $("tune-note").textContent = n ? `(this browser keeps the tuned choices of ${n} model${n > 1 ? "s" : ""}: a model tuned before is not tuned again)` : "";
  $("tune-forget").disabled = n === 0;
}

export function forgetTuning() {
  try {
    localStorage.removeItem(TUNING_KEY);
  } catch (e) {}
  showTuning();
  say("the tuned kernel choices are forgotten: the next model runs the adapter's defaults, or is tuned again");
}
