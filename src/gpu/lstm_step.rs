//! A layer's time step in one dispatch: launcher of `shaders/lstm_step.wgsl`, whose CPU
//! twins are [`crate::reference::lstm_step_forward`] and
//! [`crate::reference::lstm_step_backward`].
//!
//! The unfused path runs each time step as two dispatches (the recurrent product, then the
//! cell, [`super::lstm_cell`]); on a GPU a seed step is then ~200 small launches, and
//! launches, not arithmetic, bound it. [`Recurrence`] says which path a training step takes.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use anyhow::{bail, Result};

use super::shaders::LSTM_STEP as SHADER;
use super::{word_offset, Dispatch, Gpu, View};

/// Rows of a workgroup's tile (`STEP_ROWS`), units of a forward tile (`FWD_UNITS`) and of a
/// backward tile (`BWD_UNITS`).
const STEP_ROWS: usize = 16;
const FWD_UNITS: usize = 16;
const BWD_UNITS: usize = 64;

/// How a training step runs each layer's time steps (`--recurrence`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Recurrence {
    /// One dispatch per layer and time step (`lstm_step_forward`, `lstm_step_backward`).
    Fused,
    /// A matmul and the cell kernel per layer and time step: the reference.
    Unfused,
    /// Unfused, with the layers' time steps in a wavefront's order (layer l + 1's chunk of
    /// time steps beside layer l's next one: `model::schedule`'s `wavefront_forward`). The
    /// same operations; the two layers' launches of a pair still run one after the other
    /// (wgpu's barriers) until a pair is one launch.
    Wavefront,
}

impl Recurrence {
    pub const ALL: [Recurrence; 3] = [
        Recurrence::Fused,
        Recurrence::Unfused,
        Recurrence::Wavefront,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Recurrence::Fused => "fused",
            Recurrence::Unfused => "unfused",
            Recurrence::Wavefront => "wavefront",
        }
    }
}

impl fmt::Display for Recurrence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Recurrence {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fused" => Ok(Recurrence::Fused),
            "unfused" => Ok(Recurrence::Unfused),
            "wavefront" => Ok(Recurrence::Wavefront),
            _ => Err(format!(
                "unknown recurrence {s:?}; choose fused, unfused or wavefront"
            )),
        }
    }
}

/// The operands of [`LstmStep::prepare_forward`]. `h_prev` and `h` are windows of one
/// buffer, and so are `c_prev` and `c` (the `[T + 1, batch, hidden]` states), disjoint.
#[derive(Clone, Copy, Debug)]
pub struct StepForwardViews<'a> {
    /// `[batch, 4 * hidden]` input projection and bias of this time step.
    pub zx: View<'a>,
    /// `[hidden, 4 * hidden]` recurrent weight `W_h`.
    pub w_h: View<'a>,
    pub h_prev: View<'a>,
    pub c_prev: View<'a>,
    /// Outputs: `[batch, 4 * hidden]` gate activations, `[batch, hidden]` states.
    pub act: View<'a>,
    pub c: View<'a>,
    pub h: View<'a>,
}

/// The operands of [`LstmStep::prepare_backward`]. `dz_next` and `dz` are windows of one
/// buffer (the pre-activations' gradients of all time steps), `c_prev` and `c` of another.
#[derive(Clone, Copy, Debug)]
pub struct StepBackwardViews<'a> {
    /// `[batch, 4 * hidden]` gradient of the next time step's pre-activations.
    pub dz_next: View<'a>,
    pub w_h: View<'a>,
    pub act: View<'a>,
    pub c_prev: View<'a>,
    pub c: View<'a>,
    /// `[batch, hidden]` gradient of h from above, left holding the step's whole d(h).
    pub dh: View<'a>,
    /// `[batch, hidden]` gradient of c from the next step (read) and to the previous one.
    pub dc: View<'a>,
    pub dc_prev: View<'a>,
    /// Output `[batch, 4 * hidden]`: this step's pre-activation gradient.
    pub dz: View<'a>,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ForwardParams {
    batch: u32,
    hidden: u32,
    zx: u32,
    w: u32,
    h_prev: u32,
    c_prev: u32,
    act: u32,
    c: u32,
    h: u32,
    forget_bias: f32,
    unit_blocks: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct BackwardParams {
    batch: u32,
    hidden: u32,
    dz_next: u32,
    w: u32,
    act: u32,
    c_prev: u32,
    c: u32,
    dh: u32,
    dc: u32,
    dz: u32,
    dc_prev: u32,
    unit_blocks: u32,
}

/// The compiled fused forward and backward pipelines.
pub struct LstmStep {
    forward: wgpu::ComputePipeline,
    backward: wgpu::ComputePipeline,
    /// The subgroup kernels (forward, backward), where they are used: compiled on first
    /// use, as llvmpipe spends minutes on each on a cold shader cache.
    subgroup: Option<[OnceLock<wgpu::ComputePipeline>; 2]>,
}

/// Workgroups of `rows` by `units` tiles covering `batch` by `hidden`: (count, unit blocks).
fn tiles(
    gpu: &Gpu,
    what: &str,
    (batch, rows): (usize, usize),
    hidden: usize,
    units: usize,
) -> Result<(u32, u32)> {
    let unit_blocks = hidden.div_ceil(units);
    let groups = batch.div_ceil(rows) * unit_blocks;
    if groups > gpu.limits.max_compute_workgroups_per_dimension as usize {
        bail!("{what}: {groups} workgroups are more than one dispatch holds; lower --batch-size");
    }
    Ok((groups as u32, unit_blocks as u32))
}

fn disjoint(what: &str, a: (View, usize), b: (View, usize)) -> Result<()> {
    if a.0.buffer == b.0.buffer && a.0.offset < b.0.offset + b.1 && b.0.offset < a.0.offset + a.1 {
        bail!("{what}: two operands overlap in one buffer");
    }
    Ok(())
}

impl LstmStep {
    /// The workgroup-tile kernels, and the subgroup ones when `subgroups` (the blocking of
    /// the subgroup-broadcast matmul: what CPU adapters run fastest) and the adapter has
    /// subgroups of at least 8 invocations.
    ///
    /// `None` where the driver refuses to build them (the fused recurrence is optional:
    /// the unfused one runs), with a warning ([`Gpu::optional_pipeline`]).
    pub fn new(gpu: &Gpu, subgroups: bool) -> Option<LstmStep> {
        let what = Recurrence::Fused.name();
        let module = gpu.optional(what, gpu.shader("lstm_step", SHADER))?;
        let capable = gpu.has_subgroups() && gpu.info.subgroup_min_size >= 8;
        let pipeline = |entry: &str| gpu.optional_pipeline(what, entry, &module, entry, &[]);
        Some(LstmStep {
            forward: pipeline("lstm_step_forward")?,
            backward: pipeline("lstm_step_backward")?,
            subgroup: (subgroups && capable).then(|| std::array::from_fn(|_| OnceLock::new())),
        })
    }

    /// The subgroup pipeline (forward or backward) when these kernels use it and every
    /// offset and the hidden size are multiples of 4 words.
    fn subgroup_pipeline(
        &self,
        gpu: &Gpu,
        backward: bool,
        hidden: usize,
        offsets: &[u32],
    ) -> Result<Option<&wgpu::ComputePipeline>> {
        let Some(cells) = &self.subgroup else {
            return Ok(None);
        };
        if hidden % 4 != 0 || offsets.iter().any(|o| o % 4 != 0) {
            return Ok(None);
        }
        let cell = &cells[usize::from(backward)];
        if let Some(p) = cell.get() {
            return Ok(Some(p));
        }
        let entry = if backward {
            "lstm_step_backward_subgroup"
        } else {
            "lstm_step_forward_subgroup"
        };
        let module = gpu.shader(entry, &subgroup_source(backward))?;
        let _ = cell.set(gpu.pipeline(entry, &module, entry)?);
        Ok(cell.get())
    }

    /// `lstm_step_forward`: `z = zx + h_prev @ W_h`, then the cell, for `batch` rows of
    /// `hidden` units.
    pub fn prepare_forward(
        &self,
        gpu: &Gpu,
        (batch, hidden): (usize, usize),
        forget_bias: f32,
        v: &StepForwardViews,
    ) -> Result<Dispatch> {
        let (gates, states) = (batch * 4 * hidden, batch * hidden);
        let what = "lstm_step_forward";
        let zx = word_offset(&format!("{what} zx"), v.zx, gates)?;
        let w = word_offset(&format!("{what} w_h"), v.w_h, hidden * 4 * hidden)?;
        let h_prev = word_offset(&format!("{what} h_prev"), v.h_prev, states)?;
        let c_prev = word_offset(&format!("{what} c_prev"), v.c_prev, states)?;
        let act = word_offset(&format!("{what} act"), v.act, gates)?;
        let c = word_offset(&format!("{what} c"), v.c, states)?;
        let h = word_offset(&format!("{what} h"), v.h, states)?;
        if v.h_prev.buffer != v.h.buffer || v.c_prev.buffer != v.c.buffer {
            bail!("{what}: h_prev and h (and c_prev and c) must be windows of one buffer");
        }
        disjoint(what, (v.h_prev, states), (v.h, states))?;
        disjoint(what, (v.c_prev, states), (v.c, states))?;
        let inputs = [v.zx.buffer, v.w_h.buffer];
        if [v.act.buffer, v.c.buffer, v.h.buffer]
            .iter()
            .any(|o| inputs.contains(o))
        {
            bail!("{what}: an output shares a buffer with zx or W_h");
        }
        let sg = self.subgroup_pipeline(gpu, false, hidden, &[zx, w, h_prev, c_prev, act, c, h])?;
        let (pipeline, label, rows, units) = match sg {
            Some(p) => (p, "lstm_step_forward_subgroup", SG_FWD_ROWS, SG_FWD_UNITS),
            None => (&self.forward, what, STEP_ROWS, FWD_UNITS),
        };
        let (groups, unit_blocks) = tiles(gpu, what, (batch, rows), hidden, units)?;
        let params = ForwardParams {
            batch: batch as u32,
            hidden: hidden as u32,
            zx,
            w,
            h_prev,
            c_prev,
            act,
            c,
            h,
            forget_bias,
            unit_blocks,
            _pad: 0,
        };
        let uniforms = gpu.uniform_from(label, &params);
        let bind_group = gpu.bind(
            label,
            pipeline,
            &[
                v.zx.buffer,
                v.w_h.buffer,
                v.h.buffer,
                v.c.buffer,
                v.act.buffer,
                &uniforms,
            ],
        )?;
        let n = states as f64;
        Ok(Dispatch {
            label: label.to_string(),
            pipeline: pipeline.clone(),
            bind_group,
            groups: (groups, 1, 1),
            // The product's multiply-adds, then the cell as lstm_cell_forward counts it.
            flops: 2.0 * n * 4.0 * hidden as f64 + 14.0 * n,
            // Read zx, W_h, h_prev, c_prev; write act, c, h.
            bytes: 4.0 * (n * 4.0 + (hidden * 4 * hidden) as f64 + 2.0 * n + n * 4.0 + 2.0 * n),
            uniforms: Some(uniforms),
            then: None,
        })
    }

    /// `lstm_step_backward`: `dh += dz_next @ W_h^T`, then the cell backward.
    pub fn prepare_backward(
        &self,
        gpu: &Gpu,
        (batch, hidden): (usize, usize),
        v: &StepBackwardViews,
    ) -> Result<Dispatch> {
        let (gates, states) = (batch * 4 * hidden, batch * hidden);
        let what = "lstm_step_backward";
        let dz_next = word_offset(&format!("{what} dz_next"), v.dz_next, gates)?;
        let w = word_offset(&format!("{what} w_h"), v.w_h, hidden * 4 * hidden)?;
        let act = word_offset(&format!("{what} act"), v.act, gates)?;
        let c_prev = word_offset(&format!("{what} c_prev"), v.c_prev, states)?;
        let c = word_offset(&format!("{what} c"), v.c, states)?;
        let dh = word_offset(&format!("{what} dh"), v.dh, states)?;
        let dc = word_offset(&format!("{what} dc"), v.dc, states)?;
        let dc_prev = word_offset(&format!("{what} dc_prev"), v.dc_prev, states)?;
        let dz = word_offset(&format!("{what} dz"), v.dz, gates)?;
        if v.dz_next.buffer != v.dz.buffer || v.c_prev.buffer != v.c.buffer {
            bail!("{what}: dz_next and dz (and c_prev and c) must be windows of one buffer");
        }
        disjoint(what, (v.dz_next, gates), (v.dz, gates))?;
        disjoint(what, (v.dc, states), (v.dc_prev, states))?;
        let read = [v.w_h.buffer, v.act.buffer, v.c.buffer];
        if [v.dz.buffer, v.dh.buffer, v.dc.buffer, v.dc_prev.buffer]
            .iter()
            .any(|o| read.contains(o))
        {
            bail!("{what}: a gradient shares a buffer with W_h, the activations or c");
        }
        let offsets = [dz_next, w, act, c_prev, c, dh, dc, dz, dc_prev];
        let (pipeline, label, rows, units) =
            match self.subgroup_pipeline(gpu, true, hidden, &offsets)? {
                Some(p) => (p, "lstm_step_backward_subgroup", SG_BWD_ROWS, SG_BWD_UNITS),
                None => (&self.backward, what, STEP_ROWS, BWD_UNITS),
            };
        let (groups, unit_blocks) = tiles(gpu, what, (batch, rows), hidden, units)?;
        let params = BackwardParams {
            batch: batch as u32,
            hidden: hidden as u32,
            dz_next,
            w,
            act,
            c_prev,
            c,
            dh,
            dc,
            dz,
            dc_prev,
            unit_blocks,
        };
        let uniforms = gpu.uniform_from(label, &params);
        let bind_group = gpu.bind(
            label,
            pipeline,
            &[
                v.dz.buffer,
                v.w_h.buffer,
                v.act.buffer,
                v.c.buffer,
                v.dh.buffer,
                v.dc.buffer,
                v.dc_prev.buffer,
                &uniforms,
            ],
        )?;
        let n = states as f64;
        Ok(Dispatch {
            label: label.to_string(),
            pipeline: pipeline.clone(),
            bind_group,
            groups: (groups, 1, 1),
            flops: 2.0 * n * 4.0 * hidden as f64 + 26.0 * n,
            bytes: 4.0 * (n * 4.0 + (hidden * 4 * hidden) as f64 + n * 4.0 + 5.0 * n + n * 4.0),
            uniforms: Some(uniforms),
            then: None,
        })
    }
}

/// Rows and units of a block of the subgroup kernels (`shaders/lstm_step_subgroup.wgsl`).
const SG_FWD_ROWS: usize = 32;
const SG_FWD_UNITS: usize = 32;
const SG_BWD_ROWS: usize = 64;
const SG_BWD_UNITS: usize = 64;

/// The fused time step's subgroup module, forward or backward, as the launcher compiles it:
/// the gate functions, `shaders/lstm_step_subgroup.wgsl` and the generated entry point.
pub fn subgroup_source(backward: bool) -> String {
    use super::shaders::{subgroup_module, LSTM_STEP_SUBGROUP};
    let entry = if backward {
        subgroup_backward_entry_point()
    } else {
        subgroup_forward_entry_point()
    };
    subgroup_module(std::borrow::Cow::Owned(format!(
        "{LSTM_STEP_SUBGROUP}\n{entry}"
    )))
    .into_owned()
}

/// The generated entry point `lstm_step_forward_subgroup`: lane `l` owns units
/// `u0 + 4l .. + 4` of all four gates for 32 rows; accumulators `acc{r}_{g}`.
pub(crate) fn subgroup_forward_entry_point() -> String {
    let mut s = String::new();
    let mut line = |text: String| {
        s.push_str(&text);
        s.push('\n');
    };
    line("@compute @workgroup_size(8)".into());
    line("fn lstm_step_forward_subgroup(".into());
    line("    @builtin(workgroup_id) wg: vec3<u32>,".into());
    line("    @builtin(subgroup_invocation_id) lane: u32,".into());
    line(") {".into());
    line("    let hidden = sf.hidden;".into());
    line(format!(
        "    let r0 = (wg.x / sf.unit_blocks) * {SG_FWD_ROWS}u;"
    ));
    line(format!(
        "    let u0 = (wg.x % sf.unit_blocks) * {SG_FWD_UNITS}u;"
    ));
    line("    // h_prev[i, p]: lane l loads p .. p + 4 of rows r0 + 8g + l (clamped to the last row).".into());
    for g in 0..SG_FWD_ROWS / 8 {
        line(format!(
            "    let a_at{g} = (sf.h_prev + min(r0 + {}u + lane, sf.batch - 1u) * hidden) / 4u;",
            8 * g
        ));
    }
    line("    // W_h[p, g * hidden + u .. + 4]: this lane's units of gate g (rows of 4 hidden words).".into());
    line("    let u = min(u0 + 4u * lane, hidden - 4u);".into());
    for g in 0..4 {
        line(format!(
            "    let b_at{g} = (sf.w + {g}u * hidden + u) / 4u;"
        ));
    }
    for r in 0..SG_FWD_ROWS {
        for g in 0..4 {
            line(format!("    var acc{r}_{g} = vec4<f32>();"));
        }
    }
    line("    for (var p = 0u; p < hidden; p += 4u) {".into());
    for g in 0..SG_FWD_ROWS / 8 {
        line(format!("        let al{g} = sf_h[a_at{g} + p / 4u];"));
    }
    for q in 0..4 {
        for g in 0..4 {
            line(format!(
                "        let b{q}_{g} = sf_w[b_at{g} + (p + {q}u) * hidden];"
            ));
        }
    }
    for r in 0..SG_FWD_ROWS {
        for q in 0..4 {
            line(format!(
                "        let s{r}_{q} = vec4<f32>(subgroupBroadcast(al{}[{q}], {}u));",
                r / 8,
                r % 8
            ));
            for g in 0..4 {
                line(format!(
                    "        acc{r}_{g} = fma(s{r}_{q}, b{q}_{g}, acc{r}_{g});"
                ));
            }
        }
    }
    line("    }".into());
    line("    if u0 + 4u * lane >= hidden {".into());
    line("        return;".into());
    line("    }".into());
    // The cell once in a loop over rows, not unrolled: llvmpipe's compile time grows with
    // every inlined copy of its transcendentals (minutes for 32 copies).
    line(format!(
        "    var sums: array<vec4<f32>, {}>;",
        4 * SG_FWD_ROWS
    ));
    for r in 0..SG_FWD_ROWS {
        for g in 0..4 {
            line(format!("    sums[{}] = acc{r}_{g};", 4 * r + g));
        }
    }
    line(format!(
        "    for (var r = 0u; r < min({SG_FWD_ROWS}u, sf.batch - r0); r++) {{"
    ));
    line("        sf_cell(r0 + r, u0 + 4u * lane, sums[4u * r], sums[4u * r + 1u], sums[4u * r + 2u], sums[4u * r + 3u]);".into());
    line("    }".into());
    line("}".into());
    s
}

/// The generated entry point `lstm_step_backward_subgroup`: the NT product of the subgroup
/// matmul (lane `l` owns units `u0 + 4l + 32h + e`, h < 2, e < 4, for 64 rows; accumulators
/// `acc{r}_{h}`), each lane then running the cell backward on its outputs.
pub(crate) fn subgroup_backward_entry_point() -> String {
    let mut s = String::new();
    let mut line = |text: String| {
        s.push_str(&text);
        s.push('\n');
    };
    line("@compute @workgroup_size(8)".into());
    line("fn lstm_step_backward_subgroup(".into());
    line("    @builtin(workgroup_id) wg: vec3<u32>,".into());
    line("    @builtin(subgroup_invocation_id) lane: u32,".into());
    line(") {".into());
    line("    let hidden = sb.hidden;".into());
    line("    let gates = 4u * hidden;".into());
    line(format!(
        "    let r0 = (wg.x / sb.unit_blocks) * {SG_BWD_ROWS}u;"
    ));
    line(format!(
        "    let u0 = (wg.x % sb.unit_blocks) * {SG_BWD_UNITS}u;"
    ));
    line("    // dz_next[i, p]: lane l loads p .. p + 4 of rows r0 + 8g + l.".into());
    for g in 0..SG_BWD_ROWS / 8 {
        line(format!(
            "    let a_at{g} = (sb.dz_next + min(r0 + {}u + lane, sb.batch - 1u) * gates) / 4u;",
            8 * g
        ));
    }
    line(
        "    // W_h^T[p, u] = W_h[u, p]: lane l loads p .. p + 4 of each of its units' rows."
            .into(),
    );
    for h in 0..2 {
        for e in 0..4 {
            line(format!(
                "    let b_at{h}_{e} = (sb.w + min(u0 + 4u * lane + {}u, hidden - 1u) * gates) / 4u;",
                32 * h + e
            ));
        }
    }
    for r in 0..SG_BWD_ROWS {
        line(format!("    var acc{r}_0 = vec4<f32>();"));
        line(format!("    var acc{r}_1 = vec4<f32>();"));
    }
    line("    for (var p = 0u; p < gates; p += 4u) {".into());
    for g in 0..SG_BWD_ROWS / 8 {
        line(format!("        let al{g} = sb_dz[a_at{g} + p / 4u];"));
    }
    for h in 0..2 {
        for e in 0..4 {
            line(format!(
                "        let bt{h}_{e} = sb_w[b_at{h}_{e} + p / 4u];"
            ));
        }
    }
    for q in 0..4 {
        for h in 0..2 {
            line(format!(
                "        let b{q}_{h} = vec4<f32>(bt{h}_0[{q}], bt{h}_1[{q}], bt{h}_2[{q}], bt{h}_3[{q}]);"
            ));
        }
    }
    for r in 0..SG_BWD_ROWS {
        for q in 0..4 {
            line(format!(
                "        let s{r}_{q} = vec4<f32>(subgroupBroadcast(al{}[{q}], {}u));",
                r / 8,
                r % 8
            ));
            for h in 0..2 {
                line(format!(
                    "        acc{r}_{h} = fma(s{r}_{q}, b{q}_{h}, acc{r}_{h});"
                ));
            }
        }
    }
    line("    }".into());
    // The cell backward once in a loop (see the forward's epilogue).
    line(format!(
        "    var sums: array<vec4<f32>, {}>;",
        2 * SG_BWD_ROWS
    ));
    for r in 0..SG_BWD_ROWS {
        for h in 0..2 {
            line(format!("    sums[{}] = acc{r}_{h};", 2 * r + h));
        }
    }
    line(format!(
        "    for (var i = 0u; i < 2u * min({SG_BWD_ROWS}u, sb.batch - r0); i++) {{"
    ));
    line("        let u = u0 + 4u * lane + 32u * (i % 2u);".into());
    line("        if u < hidden {".into());
    line("            sb_cell(r0 + i / 2u, u, sums[i]);".into());
    line("        }".into());
    line("    }".into());
    line("}".into());
    s
}
