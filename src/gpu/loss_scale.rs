//! Dynamic loss scaling of `--precision mixed` (issue 25): the launchers of
//! `shaders/loss_scale.wgsl` and the block they keep on the device. CPU twin:
//! [`crate::reference::step::LossScale`].

use anyhow::{bail, Result};

use super::reduce::ClipStats;
use super::{groups_1d, word_offset, Dispatch, Gpu, View};

/// The loss-scale block on the device (4 words), written by `loss_scale_update` after each
/// mixed training step, read by the host at log points and saved in checkpoints.
#[repr(C)]
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    bytemuck::Pod,
    bytemuck::Zeroable,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct LossScale {
    /// S: the loss's gradient enters the f16 products multiplied by it (a power of two).
    pub scale: f32,
    /// Clean steps since S last changed.
    pub clean: u32,
    /// Steps whose f16 gradients overflowed (S halved, update skipped) since the block was
    /// written.
    pub overflows: u32,
    /// Clean steps in a row after which S doubles.
    pub growth_interval: u32,
}

impl LossScale {
    /// Words of the block.
    pub const WORDS: usize = 4;
    /// The scale a run starts from (PyTorch's `GradScaler` starts there too).
    pub const INITIAL: f32 = 65536.0;
    /// Clean steps before S doubles (PyTorch's default).
    pub const GROWTH_INTERVAL: u32 = 2000;

    /// A fresh block: S = [`LossScale::INITIAL`], growing every
    /// [`LossScale::GROWTH_INTERVAL`] clean steps.
    pub fn initial() -> LossScale {
        LossScale {
            scale: Self::INITIAL,
            clean: 0,
            overflows: 0,
            growth_interval: Self::GROWTH_INTERVAL,
        }
    }

    /// The twin of `loss_scale_update` in f32 (see `reference::step::LossScale`).
    pub fn to_reference(self) -> crate::reference::step::LossScale {
        crate::reference::step::LossScale {
            scale: self.scale,
            clean: self.clean,
            overflows: self.overflows,
            growth_interval: self.growth_interval,
        }
    }
}

impl Default for LossScale {
    fn default() -> Self {
        LossScale::initial()
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ApplyParams {
    n: u32,
    off: u32,
    groups_x: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct UpdateParams {
    step_loss: u32,
    clip: u32,
    max_norm: f32,
    pad: u32,
}

/// The compiled loss-scaling kernels.
pub struct LossScaleKernels {
    apply: wgpu::ComputePipeline,
    update: wgpu::ComputePipeline,
}

impl LossScaleKernels {
    pub fn new(gpu: &Gpu) -> Result<LossScaleKernels> {
        let module = gpu.shader("loss_scale", super::shaders::LOSS_SCALE)?;
        Ok(LossScaleKernels {
            apply: gpu.pipeline("loss_scale_apply", &module, "loss_scale_apply")?,
            update: gpu.pipeline("loss_scale_update", &module, "loss_scale_update")?,
        })
    }

    /// A dispatch multiplying the `n` words of `x` by the scale in `block`.
    pub fn apply(&self, gpu: &Gpu, x: View, n: usize, block: &wgpu::Buffer) -> Result<Dispatch> {
        let off = word_offset("loss_scale_apply", x, n)?;
        if x.buffer == block {
            bail!("loss_scale_apply: the tensor shares a buffer with the loss-scale block");
        }
        let (gx, gy) = groups_1d(n, 64);
        let label = "loss_scale_apply";
        let uniforms = gpu.uniform_from(
            label,
            &ApplyParams {
                n: n as u32,
                off,
                groups_x: gx,
                pad: 0,
            },
        );
        let bind_group = gpu.bind(label, &self.apply, &[x.buffer, block, &uniforms])?;
        Ok(Dispatch {
            label: label.to_string(),
            pipeline: self.apply.clone(),
            bind_group,
            groups: (gx, gy, 1),
            flops: n as f64,
            bytes: 8.0 * n as f64,
            uniforms: Some(uniforms),
            then: None,
        })
    }

    /// The dispatch of `loss_scale_update` (after `clip_scale`, before `step_guard`).
    pub fn update(
        &self,
        gpu: &Gpu,
        block: &wgpu::Buffer,
        step_loss: View,
        clip: View,
        max_norm: f32,
    ) -> Result<Dispatch> {
        let params = UpdateParams {
            step_loss: word_offset("loss_scale_update step loss", step_loss, 2)?,
            clip: word_offset("loss_scale_update clip", clip, ClipStats::WORDS)?,
            max_norm,
            pad: 0,
        };
        if [step_loss.buffer, clip.buffer].contains(&block) || step_loss.buffer == clip.buffer {
            bail!("loss_scale_update: the block, step loss and clip stats need their own buffers");
        }
        let label = "loss_scale_update";
        let uniforms = gpu.uniform_from(label, &params);
        let bind_group = gpu.bind(
            label,
            &self.update,
            &[block, step_loss.buffer, clip.buffer, &uniforms],
        )?;
        Ok(Dispatch {
            label: label.to_string(),
            pipeline: self.update.clone(),
            bind_group,
            groups: (1, 1, 1),
            flops: 8.0,
            bytes: 4.0 * (LossScale::WORDS + 1 + ClipStats::WORDS) as f64,
            uniforms: Some(uniforms),
            then: None,
        })
    }
}
