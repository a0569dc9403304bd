//! The parameters on the device.

use anyhow::Result;

use crate::config::Config;
use crate::gpu::Gpu;
use crate::model::{tensor_specs, Params};

/// The parameters on the device, one buffer per tensor in the order of [`tensor_specs`].
/// Buffers are reference-counted handles: training and evaluation workspaces share them.
#[derive(Clone)]
pub struct ParamBuffers {
    pub embedding: wgpu::Buffer,
    pub lstm_weight: Vec<wgpu::Buffer>,
    pub lstm_bias: Vec<wgpu::Buffer>,
    /// `None` when the weights are tied: the softmax reads `embedding` transposed.
    pub softmax_w: Option<wgpu::Buffer>,
    pub softmax_b: wgpu::Buffer,
}

impl ParamBuffers {
    /// Check every tensor fits the adapter, then upload.
    pub fn upload(gpu: &Gpu, cfg: &Config, p: &Params<f32>) -> Result<ParamBuffers> {
        for (name, shape) in tensor_specs(cfg) {
            gpu.check_buffer_fits(
                &format!("parameter {name}"),
                shape.iter().product::<usize>() as u64 * 4,
            )?;
        }
        Ok(ParamBuffers {
            embedding: gpu.storage_from("embedding", &p.embedding),
            lstm_weight: p
                .lstm
                .iter()
                .enumerate()
                .map(|(l, x)| gpu.storage_from(&format!("lstm.{l}.weight"), &x.weight))
                .collect(),
            lstm_bias: p
                .lstm
                .iter()
                .enumerate()
                .map(|(l, x)| gpu.storage_from(&format!("lstm.{l}.bias"), &x.bias))
                .collect(),
            softmax_w: (!cfg.tie_weights).then(|| gpu.storage_from("softmax.weight", &p.softmax_w)),
            softmax_b: gpu.storage_from("softmax.bias", &p.softmax_b),
        })
    }

    /// Overwrite with host values (same shapes).
    pub fn write(&self, gpu: &Gpu, p: &Params<f32>) {
        gpu.write(&self.embedding, 0, &p.embedding);
        for (l, x) in p.lstm.iter().enumerate() {
            gpu.write(&self.lstm_weight[l], 0, &x.weight);
            gpu.write(&self.lstm_bias[l], 0, &x.bias);
        }
        if let Some(w) = &self.softmax_w {
            gpu.write(w, 0, &p.softmax_w);
        }
        gpu.write(&self.softmax_b, 0, &p.softmax_b);
    }

    /// Read back to the host.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(&self, gpu: &Gpu, cfg: &Config) -> Result<Params<f32>> {
        crate::gpu::block_on(self.read_async(gpu, cfg))
    }

    /// [`ParamBuffers::read`] awaited.
    pub async fn read_async(&self, gpu: &Gpu, cfg: &Config) -> Result<Params<f32>> {
        let mut p = Params::<f32>::zeros(cfg);
        p.embedding = gpu
            .read_async(&self.embedding, 0, p.embedding.len())
            .await?;
        for (l, x) in p.lstm.iter_mut().enumerate() {
            x.weight = gpu
                .read_async(&self.lstm_weight[l], 0, x.weight.len())
                .await?;
            x.bias = gpu.read_async(&self.lstm_bias[l], 0, x.bias.len()).await?;
        }
        if let Some(w) = &self.softmax_w {
            p.softmax_w = gpu.read_async(w, 0, p.softmax_w.len()).await?;
        }
        p.softmax_b = gpu
            .read_async(&self.softmax_b, 0, p.softmax_b.len())
            .await?;
        Ok(p)
    }
}
