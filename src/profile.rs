//! `lstm-gpu profile`: where each millisecond of a training step goes, kernel by kernel.
//!
//! Three measurements of the same prepared training step:
//! 1. throughput: N steps submitted back to back exactly as `train` runs them (one submit
//!    each, no readback), timed on the wall clock, counting submits and readbacks;
//! 2. per kernel: N more steps with GPU timestamps around every dispatch (inside passes when
//!    the adapter allows it, otherwise one pass per dispatch), summed per entry point;
//! 3. the adapter's best matmul rate on the step's own matmul shapes, which turns the step's
//!    FLOPs into "percent of the matmul-bound limit".

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

use crate::config::Config;
use crate::data::Batches;
use crate::gpu::matmul::bench_matmul;
use crate::gpu::sgd::Hyper;
use crate::gpu::Gpu;
use crate::model::schedule::{Kernels, Mode, Op, ParamBuffers, Workspace};
use crate::model::Params;

/// One kernel (entry point) of the table.
#[derive(Clone, Debug, Serialize)]
pub struct KernelRow {
    pub kernel: String,
    pub calls_per_step: usize,
    pub ms_per_step: f64,
    /// Share of the summed kernel time.
    pub share: f64,
    pub gflops: Option<f64>,
    pub gb_per_second: Option<f64>,
}

/// Everything `profile` measures.
#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    pub adapter: String,
    pub backend: String,
    /// `per dispatch` (timestamps inside passes) or `per pass`.
    pub timing: String,
    pub steps: usize,
    pub batch_size: usize,
    pub num_steps: usize,
    pub dispatches_per_step: usize,
    pub submits_per_step: f64,
    pub readbacks_per_step: f64,
    /// Host time recording one step's ops into an encoder.
    pub host_encode_ms: f64,
    /// Host time in `queue.submit` (wgpu validation and the driver's submit; a driver
    /// that executes on submit, or waits for the previous step, shows it here).
    pub host_submit_ms: f64,
    pub gpu_ms: f64,
    pub wall_ms: f64,
    pub words_per_second: f64,
    /// Seconds of one training epoch of `epoch_tokens` tokens at this speed (PTB's
    /// training split unless the corpus said otherwise).
    pub epoch_seconds: f64,
    pub epoch_tokens: usize,
    pub flops_per_step: f64,
    pub mflop_per_token: f64,
    pub achieved_gflops: f64,
    pub matmul_gflops: f64,
    pub matmul_variant: String,
    /// How each layer's time steps run, and why (`fused (tuned)`).
    pub recurrence: String,
    /// Who adds the slices of split products per step: how many cell launches add a
    /// recurrent product's (`lstm_cell_*_split*`), how many `matmul_split_sum` passes the
    /// others (see `LSTM_GPU_SPLIT_SUMS`).
    pub split_sums_in_cell: usize,
    pub split_sum_passes: usize,
    /// Column sums (bias gradients) per step added in row slices, and in one pass per
    /// column (see `LSTM_GPU_COLUMN_SUMS`).
    pub column_sums_in_slices: usize,
    pub column_sums_one_pass: usize,
    /// Wavefront: the pairs (or more) of the layers' time steps run as one launch for their
    /// recurrent products and one for their cells, per step (see
    /// `LSTM_GPU_WAVEFRONT_GROUPS`); 0 for the other recurrences.
    pub wavefront_grouped_steps: usize,
    /// What each product runs and why: `MxKxN:NN variant (tuned|cached|default|forced)`.
    pub matmul_choices: Vec<String>,
    pub percent_of_matmul_limit: f64,
    /// Device memory of the step's buffers: parameters, gradients, activations, logits
    /// and the kernels' uniform blocks (see [`Gpu::buffer_bytes`]).
    pub gpu_buffer_bytes: u64,
    /// Of which the parameters.
    pub parameter_bytes: u64,
    pub kernels: Vec<KernelRow>,
    /// The last timed step on one timeline: host spans and each dispatch's GPU span
    /// ([`Profile::chrome_trace`]).
    #[serde(skip)]
    pub trace: Vec<TraceSpan>,
}

/// Where a span of the trace ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Host,
    Gpu,
}

/// One span of [`Profile::trace`]: microseconds from the start of the traced step.
#[derive(Clone, Debug)]
pub struct TraceSpan {
    pub name: String,
    pub lane: Lane,
    pub start_us: f64,
    pub dur_us: f64,
    pub args: serde_json::Value,
}

/// What [`Timer::run`] saw of one step: each dispatch's (start, end) on the GPU's clock
/// from its first timestamp, and the host's spans from the start of recording.
struct TimedStep {
    kernels: Vec<(f64, f64)>,
    /// (name, start, end) in seconds.
    host: Vec<(&'static str, f64, f64)>,
    /// Seconds from the start of recording at which the GPU's clock starts: the end of
    /// the submit (the GPU cannot start earlier; its clock is not the host's).
    gpu_origin: f64,
}

/// Profile `steps` training steps of `cfg` on the first batches of `data`.
pub fn profile(
    gpu: &Gpu,
    cfg: &Config,
    data: &[u32],
    steps: usize,
    measure_matmul: bool,
) -> Result<Profile> {
    if steps == 0 {
        bail!("--steps must be at least 1");
    }
    let batches = Batches::new(data, cfg.batch_size, cfg.num_steps).context("training split")?;
    let kernels = Kernels::new(gpu)?;
    let bytes0 = gpu.buffer_bytes();
    let params = ParamBuffers::upload(gpu, cfg, &Params::<f32>::init(cfg, 1))?;
    let parameter_bytes = gpu.buffer_bytes() - bytes0;
    let mut ws = Workspace::new(
        gpu,
        &kernels,
        cfg,
        &params,
        cfg.batch_size,
        cfg.num_steps,
        Mode::Train,
    )?;
    let gpu_buffer_bytes = gpu.buffer_bytes() - bytes0;
    let batch = |i: usize| batches.batch(i % batches.len());
    let hyper = |i: usize| Hyper {
        learning_rate: 1.0,
        step: i as u32,
        seed: 1,
    };
    ws.zero_state(gpu);

    // Warm-up: pipelines compiled lazily by the driver, first-touch allocations.
    let (x, y) = batch(0);
    ws.step(gpu, &x, &y, hyper(0))?;
    gpu.wait()?;

    // 1. Throughput, exactly as training runs.
    let (submits0, readbacks0) = gpu.counters();
    let (mut encode, mut submit) = (0.0, 0.0);
    let t0 = Instant::now();
    for i in 0..steps {
        let (x, y) = batch(i + 1);
        ws.upload(gpu, &x, &y, hyper(i + 1))?;
        let e0 = Instant::now();
        let enc = ws.encode(gpu);
        let e1 = Instant::now();
        gpu.submit(enc);
        encode += (e1 - e0).as_secs_f64();
        submit += e1.elapsed().as_secs_f64();
    }
    gpu.wait()?;
    let wall = t0.elapsed().as_secs_f64() / steps as f64;
    let (submits1, readbacks1) = gpu.counters();

    // 2. Per-kernel timestamps.
    let timer = Timer::new(gpu, &ws.ops)?;
    let mut per_kernel: BTreeMap<String, (usize, f64, f64, f64)> = BTreeMap::new();
    let mut gpu_total = 0.0;
    let mut trace = Vec::new();
    for i in 0..steps {
        let (x, y) = batch(i + 1 + steps);
        let u0 = Instant::now();
        ws.upload(gpu, &x, &y, hyper(i + 1 + steps))?;
        let upload = u0.elapsed().as_secs_f64();
        let timed = timer.run(gpu, &ws.ops)?;
        if i + 1 == steps {
            trace = step_trace(&timed, upload, &ws.ops);
        }
        let times = timed.kernels.iter().map(|(a, b)| b - a);
        for (op, secs) in ws
            .ops
            .iter()
            .filter_map(|o| {
                if let Op::Dispatch(d) = o {
                    Some(d)
                } else {
                    None
                }
            })
            .zip(times)
        {
            let e = per_kernel.entry(op.label.clone()).or_default();
            e.0 += 1;
            e.1 += secs;
            e.2 += op.flops;
            e.3 += op.bytes;
            gpu_total += secs;
        }
    }
    let gpu_per_step = gpu_total / steps as f64;
    let mut kernels_rows: Vec<KernelRow> = per_kernel
        .into_iter()
        .map(|(name, (calls, secs, flops, bytes))| KernelRow {
            kernel: name,
            calls_per_step: calls / steps,
            ms_per_step: secs / steps as f64 * 1e3,
            share: secs / gpu_total.max(1e-12),
            gflops: (flops > 0.0 && secs > 0.0).then(|| flops / secs / 1e9),
            gb_per_second: (bytes > 0.0 && secs > 0.0).then(|| bytes / secs / 1e9),
        })
        .collect();
    kernels_rows.sort_by(|a, b| b.ms_per_step.total_cmp(&a.ms_per_step));

    let flops_per_step: f64 = ws
        .ops
        .iter()
        .filter_map(|o| {
            if let Op::Dispatch(d) = o {
                Some(d.flops)
            } else {
                None
            }
        })
        .sum();

    // 3. The adapter's best matmul rate, on the step's own product shapes, with the
    // kernels the step runs (tuned per product, or the default): the f32 family's, or in
    // mixed precision the f16 ones.
    let half = kernels
        .half
        .as_ref()
        .filter(|_| cfg.precision == crate::config::Precision::Mixed);
    let (variant, matmul_gflops) = match half {
        Some(hk) => {
            let shapes = hk.products();
            let mut chosen: Vec<String> = Vec::new();
            for &s in &shapes {
                let name = hk.bench_name(hk.choice(s));
                if !chosen.contains(&name) {
                    chosen.push(name);
                }
            }
            let gflops = if measure_matmul {
                let rows = crate::gpu::matmul_f16::bench_matmul_f16(gpu, &shapes, 3, |r| {
                    log::info!("{}", r.line())
                })?;
                rows.iter()
                    .filter(|r| chosen.iter().any(|c| r.variant.starts_with(c.as_str())))
                    .map(|r| r.gflops)
                    .fold(0.0, f64::max)
            } else {
                f64::NAN
            };
            (chosen.join("/"), gflops)
        }
        None => {
            let mut chosen: Vec<crate::gpu::matmul::MatmulVariant> = Vec::new();
            for s in kernels.matmul.products() {
                let v = kernels.matmul.choice(s).0;
                if !chosen.contains(&v) {
                    chosen.push(v);
                }
            }
            let variant = chosen
                .iter()
                .map(|v| v.name())
                .collect::<Vec<_>>()
                .join("/");
            let gflops = if measure_matmul {
                // The step's own products, as its workspace prepared them.
                let shapes = kernels.matmul.products();
                let rows = bench_matmul(gpu, &shapes, Some(&chosen), 3, |r| {
                    log::info!("{}", r.line())
                })?;
                rows.iter().map(|r| r.gflops).fold(0.0, f64::max)
            } else {
                f64::NAN
            };
            (variant, gflops)
        }
    };
    let (recurrence, source) =
        crate::model::schedule::recurrence_for(gpu, &kernels, cfg, (cfg.batch_size, cfg.num_steps));
    let tokens = (cfg.batch_size * cfg.num_steps) as f64;
    let limit_seconds = flops_per_step / (matmul_gflops * 1e9);
    Ok(Profile {
        adapter: gpu.info.name.clone(),
        backend: format!("{:?}", gpu.info.backend),
        timing: timer.mode().to_string(),
        steps,
        batch_size: cfg.batch_size,
        num_steps: cfg.num_steps,
        dispatches_per_step: ws.dispatches(),
        submits_per_step: (submits1 - submits0) as f64 / steps as f64,
        readbacks_per_step: (readbacks1 - readbacks0) as f64 / steps as f64,
        host_encode_ms: encode / steps as f64 * 1e3,
        host_submit_ms: submit / steps as f64 * 1e3,
        gpu_ms: gpu_per_step * 1e3,
        wall_ms: wall * 1e3,
        words_per_second: tokens / wall,
        epoch_tokens: data.len(),
        epoch_seconds: crate::data::epoch_size(data.len(), cfg.batch_size, cfg.num_steps) as f64
            * wall,
        flops_per_step,
        mflop_per_token: flops_per_step / tokens / 1e6,
        achieved_gflops: flops_per_step / wall / 1e9,
        matmul_gflops,
        matmul_variant: variant,
        recurrence: format!("{recurrence} ({})", source.name()),
        split_sums_in_cell: ws
            .launches_labeled(|k| k.starts_with("lstm_cell_") && k.contains("_split")),
        split_sum_passes: ws.launches_labeled(|k| k == "matmul_split_sum"),
        column_sums_in_slices: ws.launches_labeled(|k| k == "column_slice_sum"),
        column_sums_one_pass: ws
            .launches_labeled(|k| k == "column_sum" || k == "softmax_xent_backward_columns"),
        wavefront_grouped_steps: ws
            .launches_labeled(|k| k.starts_with("matmul_") && k.ends_with("_group")),
        matmul_choices: match (&kernels.half, cfg.precision) {
            (Some(h), crate::config::Precision::Mixed) => h.report(),
            _ => crate::gpu::tune::report(&kernels.matmul),
        },
        percent_of_matmul_limit: 100.0 * limit_seconds / wall,
        gpu_buffer_bytes,
        parameter_bytes,
        kernels: kernels_rows,
        trace,
    })
}

/// The traced step's spans: the upload of its batch, then the host's recording, submit
/// and wait, and each dispatch on the GPU from the end of the submit.
fn step_trace(timed: &TimedStep, upload: f64, ops: &[Op]) -> Vec<TraceSpan> {
    let us = |s: f64| s * 1e6;
    let mut spans = vec![TraceSpan {
        name: "upload ids and hyperparameters".to_string(),
        lane: Lane::Host,
        start_us: 0.0,
        dur_us: us(upload),
        args: serde_json::Value::Null,
    }];
    for &(name, a, b) in &timed.host {
        spans.push(TraceSpan {
            name: name.to_string(),
            lane: Lane::Host,
            start_us: us(upload + a),
            dur_us: us(b - a),
            args: serde_json::Value::Null,
        });
    }
    let dispatches = ops.iter().filter_map(|o| match o {
        Op::Dispatch(d) => Some(d),
        Op::Copy { .. } => None,
    });
    for (d, &(a, b)) in dispatches.zip(&timed.kernels) {
        let secs = b - a;
        spans.push(TraceSpan {
            name: d.label.clone(),
            lane: Lane::Gpu,
            start_us: us(upload + timed.gpu_origin + a),
            dur_us: us(secs),
            args: serde_json::json!({
                "MFLOP": d.flops / 1e6,
                "MB": d.bytes / 1e6,
                "GFLOP/s": if secs > 0.0 { d.flops / secs / 1e9 } else { 0.0 },
            }),
        });
    }
    spans
}

impl Profile {
    /// The traced step in Chrome's trace-event format (JSON), which Perfetto
    /// (ui.perfetto.dev) and chrome://tracing open: the host's spans on one track, each
    /// dispatch's GPU time on another, with the profile's figures as metadata.
    pub fn chrome_trace(&self) -> serde_json::Value {
        let (pid, host, gpu) = (1, 1, 2);
        let mut events = vec![
            serde_json::json!({"name": "process_name", "ph": "M", "pid": pid,
                "args": {"name": format!("lstm-gpu profile: {} ({})", self.adapter, self.backend)}}),
            serde_json::json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": host,
                "args": {"name": "host"}}),
            serde_json::json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": gpu,
                "args": {"name": format!("GPU, {}", self.timing)}}),
        ];
        for span in &self.trace {
            let (tid, cat) = match span.lane {
                Lane::Host => (host, "host"),
                Lane::Gpu => (gpu, "gpu"),
            };
            let mut e = serde_json::json!({"name": span.name, "cat": cat, "ph": "X",
                "ts": span.start_us, "dur": span.dur_us, "pid": pid, "tid": tid});
            if !span.args.is_null() {
                e["args"] = span.args.clone();
            }
            events.push(e);
        }
        let mut summary = serde_json::to_value(self).unwrap_or_default();
        if let Some(m) = summary.as_object_mut() {
            m.remove("kernels");
        }
        serde_json::json!({
            "traceEvents": events,
            "displayTimeUnit": "ms",
            "otherData": summary,
        })
    }

    /// The table `lstm-gpu profile` prints.
    pub fn table(&self) -> String {
        let mut s = String::new();
        use std::fmt::Write;
        let _ = writeln!(
            s,
            "adapter: {} ({}), kernel times {}",
            self.adapter, self.backend, self.timing
        );
        // The kernel column as wide as its longest name.
        let w = self
            .kernels
            .iter()
            .map(|k| k.kernel.len())
            .fold(28, usize::max);
        let _ = writeln!(
            s,
            "{:<w$} {:>6} {:>10} {:>7} {:>9} {:>8}",
            "kernel", "calls", "ms/step", "share", "GFLOP/s", "GB/s"
        );
        for k in &self.kernels {
            let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.1}"));
            let _ = writeln!(
                s,
                "{:<w$} {:>6} {:>10.3} {:>6.1}% {:>9} {:>8}",
                k.kernel,
                k.calls_per_step,
                k.ms_per_step,
                100.0 * k.share,
                f(k.gflops),
                f(k.gb_per_second)
            );
        }
        let _ = writeln!(
            s,
            "per step ({} steps of {}x{}):",
            self.steps, self.batch_size, self.num_steps
        );
        let _ = writeln!(
            s,
            "  dispatches {}, submits {:.2}, host readbacks {:.2}",
            self.dispatches_per_step, self.submits_per_step, self.readbacks_per_step
        );
        let _ = writeln!(
            s,
            "  GPU buffers {:.1} MiB ({:.1} MiB of parameters)",
            mib(self.gpu_buffer_bytes),
            mib(self.parameter_bytes)
        );
        let _ = writeln!(
            s,
            "  host encoding {:.2} ms, submit {:.1} ms, GPU {:.1} ms, wall {:.1} ms",
            self.host_encode_ms, self.host_submit_ms, self.gpu_ms, self.wall_ms
        );
        let _ = writeln!(
            s,
            "  {:.0} words/s, {:.2} MFLOP/token, {:.1} GFLOP/s achieved",
            self.words_per_second, self.mflop_per_token, self.achieved_gflops
        );
        let _ = writeln!(
            s,
            "  an epoch of {} tokens: {:.0} s at this speed",
            self.epoch_tokens, self.epoch_seconds
        );
        let _ = writeln!(
            s,
            "  recurrence {}; matmul {}",
            self.recurrence,
            self.matmul_choices.join(", ")
        );
        if self.split_sums_in_cell + self.split_sum_passes > 0 {
            let _ = writeln!(
                s,
                "  split-K slices added by the LSTM cell {} times, by a pass of their own {} times",
                self.split_sums_in_cell, self.split_sum_passes
            );
        }
        if self.column_sums_in_slices + self.column_sums_one_pass > 0 {
            let _ = writeln!(
                s,
                "  column sums (bias gradients): {} in row slices, {} in one pass per column",
                self.column_sums_in_slices, self.column_sums_one_pass
            );
        }
        if self.wavefront_grouped_steps > 0 {
            let _ = writeln!(
                s,
                "  wavefront: {} times the layers' time steps ran as one launch for their recurrent products and one for their cells",
                self.wavefront_grouped_steps
            );
        }
        if self.matmul_gflops.is_finite() {
            let _ = writeln!(
                s,
                "  best matmul ({}) {:.1} GFLOP/s: the step runs at {:.1}% of its matmul-bound limit",
                self.matmul_variant, self.matmul_gflops, self.percent_of_matmul_limit
            );
        } else {
            let _ = writeln!(
                s,
                "  best matmul ({}): not measured (--no-matmul-peak), so no matmul-bound limit",
                self.matmul_variant
            );
        }
        s
    }
}

/// GPU timestamps around every dispatch of a step; on an adapter without timestamp
/// queries, the wall-clock time of each dispatch submitted and awaited on its own.
struct Timer {
    /// `None`: no timestamp queries, wall clock per dispatch.
    set: Option<wgpu::QuerySet>,
    resolve: Option<wgpu::Buffer>,
    count: u32,
    inside_passes: bool,
    period_ns: f64,
}

impl Timer {
    fn new(gpu: &Gpu, ops: &[Op]) -> Result<Timer> {
        if !gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            // Said once when the device was opened (`Gpu`'s fallback note).
            return Ok(Timer {
                set: None,
                resolve: None,
                count: 0,
                inside_passes: false,
                period_ns: 0.0,
            });
        }
        let dispatches = ops.iter().filter(|o| matches!(o, Op::Dispatch(_))).count();
        let count = (2 * dispatches) as u32;
        if count > wgpu::QUERY_SET_MAX_QUERIES {
            bail!("a step has {dispatches} dispatches, more than the timestamp queries allow");
        }
        let (set, resolve) = gpu.timestamp_queries("profile timestamps", count);
        Ok(Timer {
            set: Some(set),
            resolve: Some(resolve),
            count,
            inside_passes: gpu.has_timestamps_in_passes(),
            period_ns: gpu.queue.get_timestamp_period() as f64,
        })
    }

    fn mode(&self) -> &'static str {
        if self.set.is_none() {
            "per dispatch (wall clock, one submit each: no timestamp queries)"
        } else if self.inside_passes {
            "per dispatch (timestamps inside passes)"
        } else {
            "per dispatch (one pass each)"
        }
    }

    /// Record the step with timestamps, submit, and return each dispatch's span with the
    /// host's.
    fn run(&self, gpu: &Gpu, ops: &[Op]) -> Result<TimedStep> {
        let (Some(set), Some(resolve)) = (&self.set, &self.resolve) else {
            return Self::run_wall_clock(gpu, ops);
        };
        let t0 = Instant::now();
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("profiled step"),
            });
        let mut q = 0u32;
        let mut i = 0;
        while i < ops.len() {
            match &ops[i] {
                Op::Copy { .. } => {
                    crate::model::schedule::record(&mut enc, &ops[i..i + 1]);
                    i += 1;
                }
                Op::Dispatch(d) if !self.inside_passes => {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(&d.label),
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: set,
                            beginning_of_pass_write_index: Some(q),
                            end_of_pass_write_index: Some(q + 1),
                        }),
                    });
                    d.record(&mut pass);
                    q += 2;
                    i += 1;
                }
                Op::Dispatch(_) => {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("profiled"),
                        timestamp_writes: None,
                    });
                    while let Some(Op::Dispatch(d)) = ops.get(i) {
                        pass.write_timestamp(set, q);
                        d.record(&mut pass);
                        pass.write_timestamp(set, q + 1);
                        q += 2;
                        i += 1;
                    }
                }
            }
        }
        enc.resolve_query_set(set, 0..self.count, resolve, 0);
        let recorded = t0.elapsed().as_secs_f64();
        gpu.submit(enc);
        let submitted = t0.elapsed().as_secs_f64();
        let ticks = gpu.read_ticks(resolve, self.count as usize)?;
        let waited = t0.elapsed().as_secs_f64();
        let first = ticks.iter().copied().min().unwrap_or(0);
        let secs = |t: u64| t.saturating_sub(first) as f64 * self.period_ns * 1e-9;
        Ok(TimedStep {
            kernels: ticks
                .chunks_exact(2)
                .map(|t| (secs(t[0]), secs(t[0].max(t[1]))))
                .collect(),
            host: vec![
                ("record the step's commands", 0.0, recorded),
                ("submit", recorded, submitted),
                ("wait for the GPU (timestamps read back)", submitted, waited),
            ],
            gpu_origin: submitted,
        })
    }

    /// The fallback: every op submitted on its own, each dispatch awaited and timed (its
    /// span includes the submit and the wait, on the host's clock).
    fn run_wall_clock(gpu: &Gpu, ops: &[Op]) -> Result<TimedStep> {
        gpu.wait()?;
        let origin = Instant::now();
        let mut kernels = Vec::new();
        for op in ops {
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            crate::model::schedule::record(&mut enc, std::slice::from_ref(op));
            let t0 = origin.elapsed().as_secs_f64();
            gpu.submit(enc);
            gpu.wait()?;
            if matches!(op, Op::Dispatch(_)) {
                kernels.push((t0, origin.elapsed().as_secs_f64()));
            }
        }
        let end = origin.elapsed().as_secs_f64();
        Ok(TimedStep {
            kernels,
            host: vec![("every dispatch submitted and awaited alone", 0.0, end)],
            gpu_origin: 0.0,
        })
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// `len` ids of a `vocab`-word vocabulary drawn with Zipf-like frequencies (a word's rank
/// r comes up about as often as 1/r), as a stand-in corpus for timing: the kernels' times
/// depend on the shapes, and the sparse embedding update a little on how often ids repeat.
pub fn synthetic_ids(len: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut r = crate::rng::SplitMix64::new(seed);
    let h = (vocab as f64).ln() + 0.5772;
    (0..len)
        .map(|_| {
            // Inverse of the harmonic CDF, approximately: rank = exp(u * H_vocab).
            let rank = (r.next_f64() * h).exp() as usize;
            (rank.clamp(1, vocab) - 1) as u32
        })
        .collect()
}
