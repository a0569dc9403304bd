//! A bench for trying a matmul kernel without rebuilding the crate: read a WGSL file at run
//! time, run one entry point on random operands, check a sample of the output against an f64
//! product, and time it.
//!
//! ```sh
//! cargo run --release --example matmul_lab -- my_kernel.wgsl my_entry 1200 456 1024 \
//!     --block 64x64
//! ```
//!
//! The kernel uses the bindings of `shaders/matmul_params.wgsl` + `shaders/matmul.wgsl`:
//! A, B, bias, C as storage buffers at bindings 0-3 and `Params` as a uniform at binding 4,
//! one workgroup per `--block` of C (numbered as `block_index` does). The file must hold the
//! whole module (paste `shaders/matmul_params.wgsl` in front of your kernel). When the module
//! declares binding 1 as a `texture_2d<f32>` instead, B is uploaded as an rgba32float texture
//! whose texel (j / 4, p) holds B[p, j..j + 4] (row-major B, no transpose; n a multiple of 4).
//!
//! To read what llvmpipe makes of a kernel: `MESA_SHADER_CACHE_DISABLE=true
//! GALLIVM_DEBUG=asm` (with the cache on, a cached kernel is not compiled again, so not
//! dumped). Keep the shape small then: the dump is of the code, not of the run.

use anyhow::{bail, Context, Result};
use clap::Parser;
use lstm_gpu::gpu::matmul::Params;
use lstm_gpu::gpu::{groups_1d, AdapterChoice, BackendChoice, Dispatch, Gpu};
use lstm_gpu::rng::SplitMix64;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// The WGSL module.
    file: PathBuf,
    /// Its entry point.
    entry: String,
    m: usize,
    k: usize,
    n: usize,
    /// op(A) = A^T (A stored [k, m]).
    #[arg(long)]
    trans_a: bool,
    /// op(B) = B^T (B stored [n, k]).
    #[arg(long)]
    trans_b: bool,
    /// Rows x columns of C per workgroup, as the kernel computes them.
    #[arg(long, default_value = "64x64")]
    block: String,
    /// Timed runs; the best counts.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Adapter, as for `lstm-gpu --adapter`.
    #[arg(long, default_value = "auto")]
    adapter: AdapterChoice,
}

fn main() {
    if let Err(e) = lab(Args::parse()) {
        eprintln!("error: {}", lstm_gpu::error::one_line(&e));
        std::process::exit(1);
    }
}

fn lab(args: Args) -> Result<()> {
    let (m, k, n) = (args.m, args.k, args.n);
    let (rows, cols) = args
        .block
        .split_once('x')
        .and_then(|(r, c)| Some((r.parse::<usize>().ok()?, c.parse::<usize>().ok()?)))
        .filter(|&(r, c)| r > 0 && c > 0)
        .context("--block must look like 64x64")?;
    if m == 0 || k == 0 || n == 0 {
        bail!("m, k and n must be at least 1");
    }
    let source = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let gpu = Gpu::new(&args.adapter, BackendChoice::Auto)?;

    let mut rng = SplitMix64::new(7);
    let a: Vec<f32> = (0..m * k).map(|_| rng.uniform(-0.5, 0.5) as f32).collect();
    let b: Vec<f32> = (0..k * n).map(|_| rng.uniform(-0.5, 0.5) as f32).collect();
    let a_buf = gpu.storage_from("A", &a);
    let b_buf = gpu.storage_from("B", &b);
    let bias_buf = gpu.storage_from("bias", &vec![0f32; n]);
    let c_buf = gpu.storage("C", m * n);

    let started = Instant::now();
    let module = gpu.shader(&args.entry, &source)?;
    let pipeline = gpu.pipeline(&args.entry, &module, &args.entry)?;

    let col_blocks = n.div_ceil(cols);
    let blocks = m.div_ceil(rows) * col_blocks;
    let (gx, gy) = groups_1d(blocks, 1);
    let (a_row, a_col) = if args.trans_a { (1, m) } else { (k, 1) };
    let (b_row, b_col) = if args.trans_b { (1, k) } else { (n, 1) };
    let params = Params {
        m: m as u32,
        k: k as u32,
        n: n as u32,
        flags: 0,
        a_off: 0,
        a_row: a_row as u32,
        a_col: a_col as u32,
        b_off: 0,
        b_row: b_row as u32,
        b_col: b_col as u32,
        bias_off: 0,
        c_off: 0,
        col_blocks: col_blocks as u32,
        blocks: blocks as u32,
        groups_x: gx,
        strip_width: 64,
        k_chunk: k as u32,
        k_slices: 1,
        member_slices: 0,
        pad1: 0,
    };
    let uniforms = gpu.uniform_from("params", &params);
    let texture_b = source.contains("texture_2d");
    let bind_group = if texture_b {
        if args.trans_b || n % 4 != 0 {
            bail!("a texture B must be row-major (no --trans-b) with n a multiple of 4");
        }
        let view = b_texture(&gpu, &b, k, n).create_view(&Default::default());
        gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("matmul lab"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[
                entry(0, a_buf.as_entire_binding()),
                entry(1, wgpu::BindingResource::TextureView(&view)),
                entry(2, bias_buf.as_entire_binding()),
                entry(3, c_buf.as_entire_binding()),
                entry(4, uniforms.as_entire_binding()),
            ],
        })
    } else {
        gpu.bind(
            "matmul lab",
            &pipeline,
            &[&a_buf, &b_buf, &bias_buf, &c_buf, &uniforms],
        )?
    };
    let dispatch = Dispatch {
        label: args.entry.clone(),
        pipeline,
        bind_group,
        groups: (gx, gy, 1),
        flops: 2.0 * (m * n * k) as f64,
        bytes: 0.0,
        uniforms: Some(uniforms),
        then: None,
    };
    gpu.run(&[&dispatch])?;
    let first_run = started.elapsed().as_secs_f64();

    // Check the four corners and a random sample against f64.
    let c: Vec<f32> = gpu.read(&c_buf, 0, m * n)?;
    let op_a = |i: usize, p: usize| {
        if args.trans_a {
            a[p * m + i]
        } else {
            a[i * k + p]
        }
    };
    let op_b = |p: usize, j: usize| {
        if args.trans_b {
            b[j * k + p]
        } else {
            b[p * n + j]
        }
    };
    let mut worst = 0f64;
    let corners = [(0, 0), (m - 1, n - 1), (0, n - 1), (m - 1, 0)];
    for s in 0..2000 {
        let (i, j) = corners.get(s).copied().unwrap_or_else(|| {
            (
                (rng.next_u64() % m as u64) as usize,
                (rng.next_u64() % n as u64) as usize,
            )
        });
        let exact: f64 = (0..k).map(|p| op_a(i, p) as f64 * op_b(p, j) as f64).sum();
        let err = (c[i * n + j] as f64 - exact).abs() / (1.0 + exact.abs());
        worst = if err.is_nan() {
            f64::INFINITY
        } else {
            worst.max(err)
        };
    }

    // f32 sums of k products drift from the f64 ones by about sqrt(k) roundings (a correct
    // tiled kernel: 1.3e-5 at k = 4096 on an NVIDIA H200); a wrong kernel is off by far more.
    let tolerance = 1e-5f64.max(2e-6 * (k as f64).sqrt());
    let mut best = f64::INFINITY;
    for _ in 0..args.runs.max(1) {
        let t = Instant::now();
        gpu.run(&[&dispatch])?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{} {m}x{k}x{n}{}{}: {:.3} ms, {:.1} GFLOP/s (wall, best of {}); first run {:.1} s \
         (compile included); worst error {worst:.2e}{}",
        args.entry,
        if args.trans_a { " A^T" } else { "" },
        if args.trans_b { " B^T" } else { "" },
        best * 1e3,
        dispatch.flops / best / 1e9,
        args.runs.max(1),
        first_run,
        if worst <= tolerance { "" } else { "  <- WRONG" },
    );
    if worst > tolerance {
        bail!("the kernel's output differs from the f64 product");
    }
    Ok(())
}

fn entry(binding: u32, resource: wgpu::BindingResource<'_>) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry { binding, resource }
}

/// Row-major B [k, n] as an rgba32float texture n / 4 texels wide and k high.
fn b_texture(gpu: &Gpu, b: &[f32], k: usize, n: usize) -> wgpu::Texture {
    let size = wgpu::Extent3d {
        width: (n / 4) as u32,
        height: k as u32,
        depth_or_array_layers: 1,
    };
    let texture = gpu.device.create_texture(&wgpu::TextureDescriptor {
        label: Some("B"),
        size,
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Float,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    gpu.queue.write_texture(
        wgpu::TexelCopyTextureInfo {
            texture: &texture,
            mip_level: 0,
            origin: wgpu::Origin3d::ZERO,
            aspect: wgpu::TextureAspect::All,
        },
        bytemuck::cast_slice(b),
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some((n * 4) as u32),
            rows_per_image: Some(k as u32),
        },
        size,
    );
    texture
}
