//! Buffers: storage and uniform buffers made and counted, writes, readbacks (blocking
//! natively, awaited in a browser) and timestamp queries.

use anyhow::{anyhow, Result};
use std::sync::atomic::Ordering;
use wgpu::util::DeviceExt;

use super::Gpu;

impl Gpu {
    /// A storage buffer of `len` f32/u32 words, also usable as copy source and destination.
    pub fn storage(&self, label: &str, words: usize) -> wgpu::Buffer {
        self.count_buffer(words.max(1) * 4);
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (words.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A storage buffer initialised from `data` (never empty: zero-length gets one word).
    pub fn storage_from<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> wgpu::Buffer {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let padded;
        let contents = if bytes.is_empty() {
            padded = [0u8; 4];
            &padded[..]
        } else {
            bytes
        };
        self.count_buffer(contents.len());
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// A uniform buffer initialised from `data`, also a copy destination for updates.
    pub fn uniform_from<T: bytemuck::Pod>(&self, label: &str, data: &T) -> wgpu::Buffer {
        self.count_buffer(std::mem::size_of::<T>());
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::bytes_of(data),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// Write host data into a buffer at a word offset.
    pub fn write<T: bytemuck::Pod>(&self, buffer: &wgpu::Buffer, word_offset: usize, data: &[T]) {
        if !data.is_empty() {
            self.queue
                .write_buffer(buffer, (word_offset * 4) as u64, bytemuck::cast_slice(data));
        }
    }

    /// Read `words` 4-byte words of a buffer back to the host (waits for the queue).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        word_offset: usize,
        words: usize,
    ) -> Result<Vec<T>> {
        pollster::block_on(self.read_async(buffer, word_offset, words))
    }

    /// A set of `count` timestamp queries and the buffer they resolve into (8 bytes each),
    /// for [`Gpu::read_ticks_async`].
    pub fn timestamp_queries(&self, label: &str, count: u32) -> (wgpu::QuerySet, wgpu::Buffer) {
        let set = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some(label),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let resolved = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: count as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        (set, resolved)
    }

    /// [`Gpu::read_ticks_async`], blocking (natively).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_ticks(&self, resolved: &wgpu::Buffer, count: usize) -> Result<Vec<u64>> {
        pollster::block_on(self.read_ticks_async(resolved, count))
    }

    /// The first `count` timestamps resolved into `resolved` (by
    /// `CommandEncoder::resolve_query_set`), in ticks of `Queue::get_timestamp_period` ns.
    pub async fn read_ticks_async(
        &self,
        resolved: &wgpu::Buffer,
        count: usize,
    ) -> Result<Vec<u64>> {
        let words: Vec<u32> = self.read_async(resolved, 0, 2 * count).await?;
        Ok(words
            .chunks_exact(2)
            .map(|w| w[0] as u64 | (w[1] as u64) << 32)
            .collect())
    }

    /// Read `words` 4-byte words of a buffer back to the host once the queue has run: the
    /// one place the program waits for the GPU. Natively the wait is a `poll` and
    /// [`Gpu::read`] blocks on this future; in a browser tab it is awaited (the page's event
    /// loop maps the buffer), and the errors wgpu reported meanwhile are checked after.
    pub async fn read_async<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        word_offset: usize,
        words: usize,
    ) -> Result<Vec<T>> {
        assert_eq!(std::mem::size_of::<T>(), 4);
        if words == 0 {
            return Ok(Vec::new());
        }
        let size = (words * 4) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buffer, (word_offset * 4) as u64, &staging, 0, size);
        self.submit(enc);
        self.readbacks.fetch_add(1, Ordering::Relaxed);
        let slice = staging.slice(..);
        let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        // Natively nothing maps until the device is polled; a browser maps by itself.
        #[cfg(not(target_arch = "wasm32"))]
        self.wait()?;
        let mapped = rx
            .receive()
            .await
            .ok_or_else(|| anyhow!("GPU readback channel closed"));
        self.check()?;
        mapped?.map_err(|e| anyhow!("could not map a GPU buffer for reading: {e}"))?;
        let out = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| anyhow!("could not read a mapped GPU buffer: {e}"))?;
            bytemuck::pod_collect_to_vec::<u8, T>(&view)
        };
        staging.unmap();
        Ok(out)
    }
}
