//! The fused LSTM cell: launcher of `shaders/lstm_cell.wgsl`, whose CPU twins are
//! [`crate::reference::lstm_cell_forward`] and [`crate::reference::lstm_cell_backward`].
//!
//! One dispatch computes all gate nonlinearities and the cell update of one time step
//! (forward), or all gate gradients and the gradient of the previous cell state (backward).
//! The training step prepares one dispatch per layer and time step on windows of
//! `[T + 1, batch, hidden]` state buffers.

use anyhow::{bail, Result};
use bytemuck::Zeroable;

use super::half::HalfView;
use super::matmul::SplitPartials;
use super::{groups_1d, word_offset, Dispatch, Gpu, View};

use super::shaders::{LSTM_CELL as SHADER, LSTM_CELL_F16};

/// Invocations per workgroup (`WORKGROUP` in the shader): one per (row, unit).
const WORKGROUP: usize = 64;

/// Cells one launch may serve (`GROUPS` in the shader): the uniforms are an array of this
/// many parameter blocks, the grid's z choosing one.
pub const GROUPS: usize = 4;

/// The rows and units of one cell step: pre-activations are `[batch, 4 * hidden]`, states
/// `[batch, hidden]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellShape {
    pub batch: usize,
    pub hidden: usize,
}

impl CellShape {
    fn states(self) -> usize {
        self.batch * self.hidden
    }
}

/// The operands of [`LstmCell::prepare_forward`].
///
/// `c_prev` and `c` are windows of one buffer (the `[T + 1, batch, hidden]` states; disjoint,
/// or the same window for an update in place), which the kernel takes through one binding.
/// Every other operand has a buffer of its own: a dispatch binds each buffer once
/// ([`Gpu::bind`]).
#[derive(Clone, Copy, Debug)]
pub struct CellForwardViews<'a> {
    /// `[batch, 4 * hidden]` pre-activations `[x, h_prev] @ W + b`, gates i, j, f, o.
    pub pre: View<'a>,
    /// `[batch, hidden]` previous cell state.
    pub c_prev: View<'a>,
    /// Output `[batch, 4 * hidden]`: the gate activations, kept for the backward pass.
    pub act: View<'a>,
    /// Output `[batch, hidden]`: the new cell state.
    pub c: View<'a>,
    /// Output `[batch, hidden]`: the new hidden state.
    pub h: View<'a>,
}

/// The operands of [`LstmCell::prepare_backward`].
///
/// `c_prev` and `c` are windows of one buffer, taken through one binding; every other operand
/// has a buffer of its own ([`Gpu::bind`]), so `dc` comes in through one buffer and `dc_prev`
/// goes out through another.
#[derive(Clone, Copy, Debug)]
pub struct CellBackwardViews<'a> {
    /// `[batch, 4 * hidden]` activations saved by the forward pass.
    pub act: View<'a>,
    /// `[batch, hidden]` cell state before the step.
    pub c_prev: View<'a>,
    /// `[batch, hidden]` cell state after the step.
    pub c: View<'a>,
    /// `[batch, hidden]` gradient of the step's output h.
    pub dh: View<'a>,
    /// `[batch, hidden]` gradient of the cell state arriving from the next time step.
    pub dc: View<'a>,
    /// Output `[batch, 4 * hidden]`: gradient of the pre-activations.
    pub dpre: View<'a>,
    /// Output `[batch, hidden]`: gradient of `c_prev`.
    pub dc_prev: View<'a>,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ForwardParams {
    batch: u32,
    hidden: u32,
    pre: u32,
    c_prev: u32,
    act: u32,
    c: u32,
    h: u32,
    forget_bias: f32,
    h16: u32,
    slices: u32,
    slice_words: u32,
    partials: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct BackwardParams {
    batch: u32,
    hidden: u32,
    act: u32,
    c_prev: u32,
    c: u32,
    dh: u32,
    dc: u32,
    dpre: u32,
    dc_prev: u32,
    dpre16: u32,
    slices: u32,
    slice_words: u32,
    partials: u32,
    _pad: [u32; 3],
}

impl<'a> CellBackwardViews<'a> {
    /// The buffers of bindings 0 to 5.
    fn buffers(&self) -> [&'a wgpu::Buffer; 6] {
        [
            self.act.buffer,
            self.c.buffer,
            self.dh.buffer,
            self.dc.buffer,
            self.dpre.buffer,
            self.dc_prev.buffer,
        ]
    }
}

/// One cell of a grouped launch ([`LstmCell::prepare_forward_group`]): its shape, views,
/// the split recurrent product's partial sums it adds (if split) and where it writes its
/// f16 output (in a mixed step).
pub type GroupMember<'a, V> = (
    CellShape,
    V,
    Option<&'a SplitPartials>,
    Option<HalfView<'a>>,
);

/// What a cell dispatch does beside the plain step.
#[derive(Clone, Copy)]
enum Extra<'a> {
    Plain,
    /// Also write the f16 copy of h (forward) or d(pre) (backward) there.
    Half(HalfView<'a>),
    /// Add the recurrent product's partial sums (left there by a split product) to pre
    /// (forward) or dh (backward) first.
    Split(&'a SplitPartials),
    /// Both.
    SplitHalf(&'a SplitPartials, HalfView<'a>),
}

impl<'a> Extra<'a> {
    /// The kernel's entry point (also its label), for the direction's plain name.
    fn entry(&self, plain: &'static str) -> &'static str {
        match (self, plain) {
            (Extra::Plain, p) => p,
            (Extra::Half(_), "lstm_cell_forward") => "lstm_cell_forward_f16",
            (Extra::Half(_), _) => "lstm_cell_backward_f16",
            (Extra::Split(_), "lstm_cell_forward") => "lstm_cell_forward_split",
            (Extra::Split(_), _) => "lstm_cell_backward_split",
            (Extra::SplitHalf(..), "lstm_cell_forward") => "lstm_cell_forward_split_f16",
            (Extra::SplitHalf(..), _) => "lstm_cell_backward_split_f16",
        }
    }

    /// The f16 copy it writes, and the partial sums it reads.
    /// The extra of a cell adding `partials` (when split) and writing `half` (when mixed).
    fn of(partials: Option<&'a SplitPartials>, half: Option<HalfView<'a>>) -> Extra<'a> {
        match (partials, half) {
            (None, None) => Extra::Plain,
            (None, Some(h)) => Extra::Half(h),
            (Some(p), None) => Extra::Split(p),
            (Some(p), Some(h)) => Extra::SplitHalf(p, h),
        }
    }

    fn parts(&self) -> (Option<HalfView<'_>>, Option<&SplitPartials>) {
        match *self {
            Extra::Plain => (None, None),
            Extra::Half(h) => (Some(h), None),
            Extra::Split(p) => (None, Some(p)),
            Extra::SplitHalf(p, h) => (Some(h), Some(p)),
        }
    }
}

/// The compiled forward and backward pipelines.
pub struct LstmCell {
    forward: wgpu::ComputePipeline,
    backward: wgpu::ComputePipeline,
    /// `lstm_cell_forward_split` and `lstm_cell_backward_split`: the steps that first add
    /// the recurrent product's split-K partial sums.
    split: [wgpu::ComputePipeline; 2],
    /// `lstm_cell_forward_f16` and `lstm_cell_backward_f16` (`shaders/lstm_cell_f16.wgsl`):
    /// the same steps also writing the f16 copy of h, of d(pre); then their split forms
    /// (`_split_f16`); `None` without `SHADER_F16`.
    half: Option<[wgpu::ComputePipeline; 4]>,
}

impl LstmCell {
    pub fn new(gpu: &Gpu) -> Result<LstmCell> {
        let module = gpu.shader("lstm_cell", SHADER)?;
        let half = if gpu.features.contains(wgpu::Features::SHADER_F16) {
            let m = gpu.shader("lstm_cell_f16", LSTM_CELL_F16)?;
            let pipeline = |entry: &str| gpu.pipeline(entry, &m, entry);
            Some([
                pipeline("lstm_cell_forward_f16")?,
                pipeline("lstm_cell_backward_f16")?,
                pipeline("lstm_cell_forward_split_f16")?,
                pipeline("lstm_cell_backward_split_f16")?,
            ])
        } else {
            None
        };
        let pipeline = |entry: &str| gpu.pipeline(entry, &module, entry);
        Ok(LstmCell {
            forward: pipeline("lstm_cell_forward")?,
            backward: pipeline("lstm_cell_backward")?,
            split: [
                pipeline("lstm_cell_forward_split")?,
                pipeline("lstm_cell_backward_split")?,
            ],
            half,
        })
    }

    /// Whether the f16-writing kernels are built (the device has `SHADER_F16`).
    pub fn has_half(&self) -> bool {
        self.half.is_some()
    }

    /// `lstm_cell_forward`: gate activations, new cell state and new hidden state of one
    /// step, with `forget_bias` added to the forget gate's pre-activation.
    pub fn prepare_forward(
        &self,
        gpu: &Gpu,
        shape: CellShape,
        forget_bias: f32,
        v: &CellForwardViews,
    ) -> Result<Dispatch> {
        self.forward_dispatch(gpu, forget_bias, &[(shape, *v, Extra::Plain)])
    }

    /// `lstm_cell_forward_f16`: [`LstmCell::prepare_forward`] that also writes h rounded
    /// to f16 into `h16` (`batch * hidden` elements), for the products of `--precision
    /// mixed`.
    pub fn prepare_forward_half(
        &self,
        gpu: &Gpu,
        shape: CellShape,
        forget_bias: f32,
        v: &CellForwardViews,
        h16: HalfView,
    ) -> Result<Dispatch> {
        self.forward_dispatch(gpu, forget_bias, &[(shape, *v, Extra::Half(h16))])
    }

    /// `lstm_cell_forward_split`: [`LstmCell::prepare_forward`] on `pre` plus the partial
    /// sums a split recurrent product left (`pre` itself is not written); with `h16`,
    /// `lstm_cell_forward_split_f16`, which also writes h's f16 copy there.
    pub fn prepare_forward_split(
        &self,
        gpu: &Gpu,
        shape: CellShape,
        forget_bias: f32,
        v: &CellForwardViews,
        partials: &SplitPartials,
        h16: Option<HalfView>,
    ) -> Result<Dispatch> {
        let extra = match h16 {
            Some(h) => Extra::SplitHalf(partials, h),
            None => Extra::Split(partials),
        };
        self.forward_dispatch(gpu, forget_bias, &[(shape, *v, extra)])
    }

    /// `lstm_cell_backward`: gradients of the pre-activations and of the previous cell
    /// state of one step.
    pub fn prepare_backward(
        &self,
        gpu: &Gpu,
        shape: CellShape,
        v: &CellBackwardViews,
    ) -> Result<Dispatch> {
        self.backward_dispatch(gpu, &[(shape, *v, Extra::Plain)])
    }

    /// `lstm_cell_backward_f16`: [`LstmCell::prepare_backward`] that also writes d(pre)
    /// rounded to f16 (infinite past f16's range) into `dpre16` (`batch * 4 * hidden`
    /// elements).
    pub fn prepare_backward_half(
        &self,
        gpu: &Gpu,
        shape: CellShape,
        v: &CellBackwardViews,
        dpre16: HalfView,
    ) -> Result<Dispatch> {
        self.backward_dispatch(gpu, &[(shape, *v, Extra::Half(dpre16))])
    }

    /// `lstm_cell_backward_split`: [`LstmCell::prepare_backward`] on `dh` plus the partial
    /// sums a split recurrent product left (`dh` itself is not written); with `dpre16`,
    /// `lstm_cell_backward_split_f16`, which also writes d(pre)'s f16 copy there.
    pub fn prepare_backward_split(
        &self,
        gpu: &Gpu,
        shape: CellShape,
        v: &CellBackwardViews,
        partials: &SplitPartials,
        dpre16: Option<HalfView>,
    ) -> Result<Dispatch> {
        let extra = match dpre16 {
            Some(d) => Extra::SplitHalf(partials, d),
            None => Extra::Split(partials),
        };
        self.backward_dispatch(gpu, &[(shape, *v, extra)])
    }

    /// The pipeline of `extra` in direction `which` (0 forward, 1 backward), with the
    /// plain one given; fails where the f16 kernels are not built.
    fn pipeline_for<'s>(
        &'s self,
        extra: &Extra,
        which: usize,
        plain: &'s wgpu::ComputePipeline,
    ) -> Result<&'s wgpu::ComputePipeline> {
        match (extra, &self.half) {
            (Extra::Plain, _) => Ok(plain),
            (Extra::Split(_), _) => Ok(&self.split[which]),
            (Extra::Half(_), Some(p)) => Ok(&p[which]),
            (Extra::SplitHalf(..), Some(p)) => Ok(&p[2 + which]),
            (Extra::Half(_) | Extra::SplitHalf(..), None) => {
                bail!("the cell's f16 kernels: the device has no 16-bit floats in shaders (shader-f16)")
            }
        }
    }

    /// `lstm_cell_forward` (or `_split` where the products left partial sums, `_f16` where
    /// the cells write h's f16 copy, at the member's [`HalfView`]) of up to [`GROUPS`] cells
    /// in one launch: the layers of a wavefront step (of one batch, their widths may
    /// differ), whose operands lie at their own offsets in the same buffers (each binding's
    /// buffer the same in every member, and the partial sums, if any, in one buffer). The
    /// grid, as large as the largest cell needs, has one layer per z; each computes exactly
    /// what its own launch would.
    pub fn prepare_forward_group(
        &self,
        gpu: &Gpu,
        forget_bias: f32,
        members: &[GroupMember<CellForwardViews>],
    ) -> Result<Dispatch> {
        let members: Vec<_> = members
            .iter()
            .map(|(shape, v, p, h)| (*shape, *v, Extra::of(*p, *h)))
            .collect();
        self.forward_dispatch(gpu, forget_bias, &members)
    }

    /// `lstm_cell_backward` (or `_split`, `_f16`: d(pre)'s f16 copy) of up to [`GROUPS`]
    /// cells in one launch, as [`LstmCell::prepare_forward_group`].
    pub fn prepare_backward_group(
        &self,
        gpu: &Gpu,
        members: &[GroupMember<CellBackwardViews>],
    ) -> Result<Dispatch> {
        let members: Vec<_> = members
            .iter()
            .map(|(shape, v, p, h)| (*shape, *v, Extra::of(*p, *h)))
            .collect();
        self.backward_dispatch(gpu, &members)
    }

    fn forward_dispatch(
        &self,
        gpu: &Gpu,
        forget_bias: f32,
        members: &[(CellShape, CellForwardViews, Extra)],
    ) -> Result<Dispatch> {
        let Some(&(_, first, extra)) = members.first() else {
            bail!("lstm_cell_forward: a launch of no cells");
        };
        let label = extra.entry("lstm_cell_forward");
        check_group(label, members.len())?;
        let operands = [
            first.pre.buffer,
            first.c.buffer,
            first.act.buffer,
            first.h.buffer,
        ];
        let pipeline = self.pipeline_for(&extra, 0, &self.forward)?;
        let mut blocks = [ForwardParams::zeroed(); GROUPS];
        let mut entries: Vec<(u32, &wgpu::Buffer)> = Vec::new();
        let (h16, partials) = extra.parts();
        if let Some(h16) = &h16 {
            if operands.contains(&h16.buffer) {
                bail!("{label}: the f16 copy of h shares a buffer with another operand");
            }
            entries.push((5, h16.buffer));
        }
        if let Some(p) = partials {
            entries.push((8, &p.buffer));
        }
        let outputs: Vec<[(View, usize); 3]> = members
            .iter()
            .map(|(s, v, _)| {
                [
                    (v.act, 4 * s.states()),
                    (v.c, s.states()),
                    (v.h, s.states()),
                ]
            })
            .collect();
        check_members_apart(label, &outputs)?;
        let mut extra_bytes = 0.0;
        for (block, (shape, v, member_extra)) in blocks.iter_mut().zip(members) {
            let (gates, states) = (4 * shape.states(), shape.states());
            let same_kind = member_extra.entry("lstm_cell_forward") == label;
            let same_buffers = [v.pre.buffer, v.c.buffer, v.act.buffer, v.h.buffer] == operands
                && member_extra.parts().0.map(|h| h.buffer) == h16.map(|h| h.buffer)
                && member_extra.parts().1.map(|p| &p.buffer) == partials.map(|p| &p.buffer);
            if !same_kind || !same_buffers {
                bail!("{label}: the cells of one launch must run one kernel on the same buffers");
            }
            *block = ForwardParams {
                batch: shape.batch as u32,
                hidden: shape.hidden as u32,
                pre: word_offset(&format!("{label} pre"), v.pre, gates)?,
                c_prev: word_offset(&format!("{label} c_prev"), v.c_prev, states)?,
                act: word_offset(&format!("{label} act"), v.act, gates)?,
                c: word_offset(&format!("{label} c"), v.c, states)?,
                h: word_offset(&format!("{label} h"), v.h, states)?,
                forget_bias,
                ..ForwardParams::zeroed()
            };
            if v.c_prev.buffer != v.c.buffer {
                bail!("{label}: c_prev and c must be windows of one state buffer");
            }
            same_or_disjoint(
                &format!("{label} c_prev and c"),
                (v.c_prev, states),
                (v.c, states),
            )?;
            let (h16, partials) = member_extra.parts();
            if let Some(h16) = &h16 {
                block.h16 = h16.check(&format!("{label} h16"), states)?;
                extra_bytes += 2.0 * states as f64;
            }
            if let Some(p) = partials {
                (block.slices, block.slice_words, block.partials) =
                    check_partials(label, p, gates)?;
                extra_bytes += 4.0 * (p.slices * gates) as f64;
            }
        }
        let launch = CellLaunch {
            label,
            pipeline,
            entries,
            operands: &operands,
            uniform_binding: 4,
            states: members.iter().map(|m| m.0.states()).collect(),
        };
        // Per state word: four gate nonlinearities, the cell update and tanh(c) * o
        // (counting a transcendental as one operation); read pre and c_prev, write act, c
        // and h (and h in f16, or read the partials).
        launch.dispatch(
            gpu,
            &blocks,
            14.0,
            4.0 * (4.0 + 1.0 + 4.0 + 1.0 + 1.0),
            extra_bytes,
        )
    }

    fn backward_dispatch(
        &self,
        gpu: &Gpu,
        members: &[(CellShape, CellBackwardViews, Extra)],
    ) -> Result<Dispatch> {
        let Some(&(_, first, extra)) = members.first() else {
            bail!("lstm_cell_backward: a launch of no cells");
        };
        let label = extra.entry("lstm_cell_backward");
        check_group(label, members.len())?;
        let operands = first.buffers();
        let pipeline = self.pipeline_for(&extra, 1, &self.backward)?;
        let mut blocks = [BackwardParams::zeroed(); GROUPS];
        let mut entries: Vec<(u32, &wgpu::Buffer)> = Vec::new();
        let (dpre16, partials) = extra.parts();
        if let Some(d16) = &dpre16 {
            if operands.contains(&d16.buffer) {
                bail!("{label}: the f16 copy of dpre shares a buffer with another operand");
            }
            entries.push((7, d16.buffer));
        }
        if let Some(p) = partials {
            entries.push((8, &p.buffer));
        }
        let outputs: Vec<[(View, usize); 2]> = members
            .iter()
            .map(|(s, v, _)| [(v.dpre, 4 * s.states()), (v.dc_prev, s.states())])
            .collect();
        check_members_apart(label, &outputs)?;
        let mut extra_bytes = 0.0;
        for (block, (shape, v, member_extra)) in blocks.iter_mut().zip(members) {
            let (gates, states) = (4 * shape.states(), shape.states());
            let same_kind = member_extra.entry("lstm_cell_backward") == label;
            let same_buffers = v.buffers() == operands
                && member_extra.parts().0.map(|h| h.buffer) == dpre16.map(|h| h.buffer)
                && member_extra.parts().1.map(|p| &p.buffer) == partials.map(|p| &p.buffer);
            if !same_kind || !same_buffers {
                bail!("{label}: the cells of one launch must run one kernel on the same buffers");
            }
            if v.c_prev.buffer != v.c.buffer {
                bail!("{label}: c_prev and c must be windows of one state buffer");
            }
            *block = BackwardParams {
                batch: shape.batch as u32,
                hidden: shape.hidden as u32,
                act: word_offset(&format!("{label} act"), v.act, gates)?,
                c_prev: word_offset(&format!("{label} c_prev"), v.c_prev, states)?,
                c: word_offset(&format!("{label} c"), v.c, states)?,
                dh: word_offset(&format!("{label} dh"), v.dh, states)?,
                dc: word_offset(&format!("{label} dc"), v.dc, states)?,
                dpre: word_offset(&format!("{label} dpre"), v.dpre, gates)?,
                dc_prev: word_offset(&format!("{label} dc_prev"), v.dc_prev, states)?,
                ..BackwardParams::zeroed()
            };
            let (dpre16, partials) = member_extra.parts();
            if let Some(d16) = &dpre16 {
                block.dpre16 = d16.check(&format!("{label} dpre16"), gates)?;
                extra_bytes += 2.0 * gates as f64;
            }
            if let Some(p) = partials {
                (block.slices, block.slice_words, block.partials) =
                    check_partials(label, p, states)?;
                extra_bytes += 4.0 * (p.slices * states) as f64;
            }
        }
        let launch = CellLaunch {
            label,
            pipeline,
            entries,
            operands: &operands,
            uniform_binding: 6,
            states: members.iter().map(|m| m.0.states()).collect(),
        };
        // Read act, c_prev, c, dh and dc; write dpre and dc_prev (and dpre in f16, or read
        // the partials).
        launch.dispatch(
            gpu,
            &blocks,
            26.0,
            4.0 * (4.0 + 4.0 + 4.0 + 1.0),
            extra_bytes,
        )
    }
}

/// What the forward and backward launches have in common once their parameter blocks are
/// made: the bind group (`entries`, then the operands at bindings 0, 1, ..., then the
/// uniforms), and a grid as large as the largest member's `states` needs, one member per z.
struct CellLaunch<'a> {
    label: &'static str,
    pipeline: &'a wgpu::ComputePipeline,
    entries: Vec<(u32, &'a wgpu::Buffer)>,
    operands: &'a [&'a wgpu::Buffer],
    uniform_binding: u32,
    states: Vec<usize>,
}

impl CellLaunch<'_> {
    fn dispatch<T: bytemuck::Pod>(
        self,
        gpu: &Gpu,
        blocks: &[T; GROUPS],
        flops_per_state: f64,
        bytes_per_state: f64,
        extra_bytes: f64,
    ) -> Result<Dispatch> {
        let CellLaunch {
            label,
            pipeline,
            mut entries,
            operands,
            uniform_binding,
            states,
        } = self;
        let uniforms = gpu.uniform_from(label, blocks);
        entries.extend((0u32..).zip(operands.iter().copied()));
        entries.push((uniform_binding, &uniforms));
        let bind_group = gpu.bind_at(label, pipeline, &entries)?;
        let (gx, gy) = groups_1d(states.iter().copied().max().unwrap_or(0), WORKGROUP);
        let n = states.iter().sum::<usize>() as f64;
        Ok(Dispatch {
            label: label.to_string(),
            pipeline: pipeline.clone(),
            bind_group,
            groups: (gx, gy, states.len() as u32),
            flops: flops_per_state * n,
            bytes: bytes_per_state * n + extra_bytes,
            uniforms: Some(uniforms),
            then: None,
        })
    }
}

/// Fail where two cells of one launch would write overlapping windows: `outputs[g]` are
/// cell g's output windows, each `(view, words)`.
fn check_members_apart<const N: usize>(label: &str, outputs: &[[(View, usize); N]]) -> Result<()> {
    for (g, mine) in outputs.iter().enumerate() {
        for theirs in &outputs[..g] {
            if mine.iter().zip(theirs).any(|(&a, &b)| overlap(a, b)) {
                bail!("{label}: two cells of one launch write windows that overlap");
            }
        }
    }
    Ok(())
}

/// Fail unless a launch serves 1 to [`GROUPS`] cells.
fn check_group(label: &str, members: usize) -> Result<()> {
    if !(1..=GROUPS).contains(&members) {
        bail!("{label}: one launch serves 1 to {GROUPS} cells, not {members}");
    }
    Ok(())
}

/// The partials' `(slices, words per slice, first word)` for the kernel's uniforms,
/// checked: slices of exactly `words` words (the product's output is the window the cell
/// reads), inside the buffer.
fn check_partials(label: &str, p: &SplitPartials, words: usize) -> Result<(u32, u32, u32)> {
    if p.words != words || p.slices == 0 {
        bail!(
            "{label}: partial sums of {} slices of {} words, where the step has {words}",
            p.slices,
            p.words
        );
    }
    if ((p.offset + p.slices * words) * 4) as u64 > p.buffer.size() {
        bail!(
            "{label}: the partial sums' buffer holds fewer than {} slices from word {}",
            p.slices,
            p.offset
        );
    }
    Ok((p.slices as u32, words as u32, u32::try_from(p.offset)?))
}

/// Whether two windows of `words` words touch a common word.
fn overlap(a: (View, usize), b: (View, usize)) -> bool {
    a.0.buffer == b.0.buffer && a.0.offset < b.0.offset + b.1 && b.0.offset < a.0.offset + a.1
}

/// Fail unless the two windows are the same (an update in place) or disjoint.
fn same_or_disjoint(what: &str, a: (View, usize), b: (View, usize)) -> Result<()> {
    let same = a.0.buffer == b.0.buffer && a.0.offset == b.0.offset;
    if overlap(a, b) && !same {
        bail!("{what}: the windows overlap without being the same");
    }
    Ok(())
}
