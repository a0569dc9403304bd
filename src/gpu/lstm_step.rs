//! A layer's time step in one dispatch: launcher of `shaders/lstm_step.wgsl`, whose CPU
//! twins are [`crate::reference::lstm_step_forward`] and
//! [`crate::reference::lstm_step_backward`].
//!
//! The unfused path runs each time step as two dispatches (the recurrent product, then the
//! cell, [`super::lstm_cell`]); on a GPU a seed step is then ~200 small launches, and
//! launches, not arithmetic, bound it. [`Recurrence`] says which path a training step takes.

use std::fmt;
use std::str::FromStr;

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
}

impl Recurrence {
    pub const ALL: [Recurrence; 2] = [Recurrence::Fused, Recurrence::Unfused];

    pub fn name(self) -> &'static str {
        match self {
            Recurrence::Fused => "fused",
            Recurrence::Unfused => "unfused",
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
            _ => Err(format!("unknown recurrence {s:?}; choose fused or unfused")),
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
}

/// Workgroups of `rows` by `units` tiles covering `batch` by `hidden`: (count, unit blocks).
fn tiles(gpu: &Gpu, what: &str, batch: usize, hidden: usize, units: usize) -> Result<(u32, u32)> {
    let unit_blocks = hidden.div_ceil(units);
    let groups = batch.div_ceil(STEP_ROWS) * unit_blocks;
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
    pub fn new(gpu: &Gpu) -> Result<LstmStep> {
        let module = gpu.shader("lstm_step", SHADER)?;
        Ok(LstmStep {
            forward: gpu.pipeline("lstm_step_forward", &module, "lstm_step_forward")?,
            backward: gpu.pipeline("lstm_step_backward", &module, "lstm_step_backward")?,
        })
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
        let (groups, unit_blocks) = tiles(gpu, what, batch, hidden, FWD_UNITS)?;
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
        let uniforms = gpu.uniform_from(what, &params);
        let bind_group = gpu.bind(
            what,
            &self.forward,
            &[
                v.zx.buffer,
                v.w_h.buffer,
                v.h.buffer,
                v.c.buffer,
                v.act.buffer,
                &uniforms,
            ],
        );
        let n = states as f64;
        Ok(Dispatch {
            label: what.to_string(),
            pipeline: self.forward.clone(),
            bind_group,
            groups: (groups, 1, 1),
            // The product's multiply-adds, then the cell as lstm_cell_forward counts it.
            flops: 2.0 * n * 4.0 * hidden as f64 + 14.0 * n,
            // Read zx, W_h, h_prev, c_prev; write act, c, h.
            bytes: 4.0 * (n * 4.0 + (hidden * 4 * hidden) as f64 + 2.0 * n + n * 4.0 + 2.0 * n),
            uniforms: Some(uniforms),
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
        let (groups, unit_blocks) = tiles(gpu, what, batch, hidden, BWD_UNITS)?;
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
        let uniforms = gpu.uniform_from(what, &params);
        let bind_group = gpu.bind(
            what,
            &self.backward,
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
        );
        let n = states as f64;
        Ok(Dispatch {
            label: what.to_string(),
            pipeline: self.backward.clone(),
            bind_group,
            groups: (groups, 1, 1),
            flops: 2.0 * n * 4.0 * hidden as f64 + 26.0 * n,
            bytes: 4.0 * (n * 4.0 + (hidden * 4 * hidden) as f64 + n * 4.0 + 5.0 * n + n * 4.0),
            uniforms: Some(uniforms),
        })
    }
}
