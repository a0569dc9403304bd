// The kernels: checked against their CPU twins on this adapter (`lstm-gpu check`), and their
// WGSL shown and changed in the page (`--shaders DIR`).
import { check_kernels, shader_files } from "./pkg/lstm_gpu_web.js";
import { $, S, adapterName } from "./state.js";

// ---- checking the kernels ------------------------------------------------------------------

const exp = (v) => (typeof v === "number" ? v.toExponential(1) : String(v));

// Every kernel against its CPU twin on a device of its own (the library's `check`), each row
// shown as it finishes. Runs beside training, not between its steps: it is its own device.
export async function checkKernels() {
  const body = $("check-table").querySelector("tbody");
  body.textContent = "";
  S.checks = [];
  S.checked = null;
  $("check-kernels").disabled = true;
  $("check-status").textContent = "checking: the first run of each kernel compiles it…";
  try {
    const summary = JSON.parse(
      await check_kernels((json) => {
        const c = JSON.parse(json);
        S.checks.push(c);
        const tr = document.createElement("tr");
        for (const v of [c.check, c.cases, exp(c.error), exp(c.tolerance), c.passed ? "ok" : "FAILED", c.worst + (c.fault ? ` (${c.fault})` : "")]) {
          const td = document.createElement("td");
          td.textContent = v;
          tr.appendChild(td);
        }
        if (!c.passed) tr.className = "error";
        body.appendChild(tr);
        $("check-status").textContent = `checking: ${S.checks.length} done…`;
      }, JSON.stringify(S.kernels))
    );
    S.checked = summary;
    const failed = summary.checks.filter((c) => !c.passed).map((c) => c.check);
    const mine = summary.changed.length ? ` (with your ${summary.changed.join(", ")})` : "";
    $("check-status").textContent = failed.length
      ? `${failed.length} of ${summary.checks.length} checks failed${mine}: ${failed.join(", ")}`
      : `all ${summary.checks.length} checks passed on ${adapterName(summary.adapter)}${mine}`;
    return summary;
  } finally {
    $("check-kernels").disabled = false;
  }
}

// ---- the kernels' WGSL, to change ---------------------------------------------------------

const builtIn = (name) => {
  const f = S.shaderFiles.find((f) => f.name === name);
  if (!f) throw new Error(`${name} is not one of the kernels' WGSL files`);
  return f.text;
};

export function showKernel() {
  const name = $("kernel-file").value;
  $("kernel-source").value = S.kernels[name] ?? builtIn(name);
}

function kernelStatus() {
  const changed = Object.keys(S.kernels);
  $("kernel-status").textContent = changed.length
    ? `your ${changed.join(", ")} in use: by "Check the kernels" and by the next "New model"`
    : "every kernel as built in";
  for (const o of $("kernel-file").options) o.textContent = o.value + (S.kernels[o.value] !== undefined ? " (changed)" : "");
}

// Use `text` (default: the editor's) as file `name` (default: the one shown); the built-in
// text again is no change. Resolves to the names of the changed files.
export async function useKernel(name, text) {
  name = name ?? $("kernel-file").value;
  text = text ?? $("kernel-source").value;
  if (text === builtIn(name)) delete S.kernels[name];
  else S.kernels[name] = text;
  kernelStatus();
  return Object.keys(S.kernels);
}

export async function resetKernel(name) {
  name = name ?? $("kernel-file").value;
  builtIn(name);
  delete S.kernels[name];
  if (name === $("kernel-file").value) showKernel();
  kernelStatus();
  return Object.keys(S.kernels);
}

export function loadKernelFiles() {
  S.shaderFiles = JSON.parse(shader_files());
  const select = $("kernel-file");
  for (const f of S.shaderFiles) {
    const o = document.createElement("option");
    o.value = f.name;
    o.textContent = f.name;
    select.appendChild(o);
  }
  select.value = "lstm_cell.wgsl";
  showKernel();
  kernelStatus();
}
