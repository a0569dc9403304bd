//! Kernels chosen by measuring them on the adapter they run on, once, and remembered.
//!
//! Which matmul kernel is fastest differs by a factor of several between a CPU rasteriser,
//! an integrated GPU and a discrete one, and so does whether the fused recurrent step pays.
//! [`tune_model`] builds the workspaces a model runs, collects every matrix product they
//! prepare, times every available variant on each (GPU timestamps where the adapter has
//! them), times a training step with the fused, the unfused and the wavefront recurrence,
//! and keeps the fastest of each; a kernel or recurrence that computes wrong results on the
//! adapter (held to its CPU twin first, by [`crate::check`]) is never chosen. The choices are cached in the platform cache folder
//! ([`cache_path`]), keyed by adapter name, backend, driver and program version
//! ([`adapter_key`]), so that a later run reads them instead of measuring again. The fixed
//! rule of [`crate::gpu::matmul::Matmul::new`] is only the fallback.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use web_time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::lstm_step::Recurrence;
use super::matmul::{shape_key, Matmul, MatmulVariant};
use super::matmul_f16::{half_key, HalfKernels, HalfVariant, HalfView};
use super::{Dispatch, Gpu, View};
use crate::config::{Config, Precision};
use crate::gpu::sgd::Hyper;
use crate::model::schedule::{model_key, Kernels, Mode, ParamBuffers, Workspace};
use crate::model::Params;
use crate::reference::MatmulShape;

pub use super::ChoiceSource;

/// What is known of one adapter: a kernel per product and a recurrence per model.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AdapterTuning {
    /// Product (`MxKxN:NN`; a mixed step's `f16 MxKxN:NN`) -> matmul kernel name.
    pub matmul: BTreeMap<String, String>,
    /// Milliseconds of every variant timed on each product.
    pub matmul_ms: BTreeMap<String, BTreeMap<String, f64>>,
    /// Model (see [`model_key`]) -> its products and recurrence.
    pub models: BTreeMap<String, ModelTuning>,
}

/// One model's tuned step.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ModelTuning {
    /// The products its workspaces run (all in [`AdapterTuning::matmul`]).
    pub products: Vec<String>,
    /// `fused` or `unfused`.
    pub recurrence: String,
    /// Milliseconds of a training step with each recurrence.
    pub step_ms: BTreeMap<String, f64>,
}

/// The choices a device runs with: what [`Matmul::new`] and workspaces read.
#[derive(Clone, Debug)]
pub struct Tuned {
    pub source: ChoiceSource,
    pub matmul: HashMap<String, MatmulVariant>,
    /// Product of a mixed step ([`half_key`]) -> f16 kernel.
    pub half: HashMap<String, HalfVariant>,
    /// Model key -> recurrence.
    pub recurrence: HashMap<String, Recurrence>,
}

impl Tuned {
    fn from_entry(entry: &AdapterTuning, source: ChoiceSource) -> Tuned {
        Tuned {
            source,
            matmul: entry
                .matmul
                .iter()
                .filter_map(|(k, v)| v.parse().ok().map(|v| (k.clone(), v)))
                .collect(),
            half: entry
                .matmul
                .iter()
                .filter(|(k, _)| k.starts_with("f16 "))
                .filter_map(|(k, v)| v.parse().ok().map(|v| (k.clone(), v)))
                .collect(),
            recurrence: entry
                .models
                .iter()
                .filter_map(|(k, m)| m.recurrence.parse().ok().map(|r| (k.clone(), r)))
                .collect(),
        }
    }
}

/// The tuned choices of every adapter a program has tuned on (by adapter, driver, program
/// version and changed kernel files, [`adapter_key`] and more): natively
/// the file at [`cache_path`], in the page the browser's local storage.
#[derive(Default, Serialize, Deserialize)]
pub struct TuningCache {
    format: String,
    adapters: BTreeMap<String, AdapterTuning>,
}

impl TuningCache {
    /// The cache in `json`; empty where it is not one (another format, or damaged: the
    /// choices are then measured again).
    pub fn from_json(json: &[u8]) -> TuningCache {
        serde_json::from_slice::<TuningCache>(json)
            .ok()
            .filter(|c| c.format == CACHE_FORMAT)
            .unwrap_or_default()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the tuning cache is JSON")
    }

    /// The entry of `gpu`'s kernels on its adapter, if any.
    pub fn entry(&self, gpu: &Gpu) -> Option<&AdapterTuning> {
        self.adapters.get(&cache_key(gpu))
    }

    /// Add `entry`'s choices to those of `gpu`'s kernels (a product or model measured again
    /// takes the new measurement).
    pub fn merge(&mut self, gpu: &Gpu, entry: &AdapterTuning) {
        self.format = CACHE_FORMAT.to_string();
        let slot = self.adapters.entry(cache_key(gpu)).or_default();
        slot.matmul.extend(entry.matmul.clone());
        slot.matmul_ms.extend(entry.matmul_ms.clone());
        slot.models.extend(entry.models.clone());
    }
}

const CACHE_FORMAT: &str = "lstm-gpu-tuning/1";

/// The environment variable naming the cache folder (tests point it at a temporary one).
pub const CACHE_DIR_ENV: &str = "LSTM_GPU_CACHE_DIR";
/// `off` keeps runs from tuning by themselves (they still read the cache); `on` lets them
/// tune on a CPU adapter too ([`auto_tune_allowed`]).
pub const AUTO_TUNE_ENV: &str = "LSTM_GPU_TUNE";

/// `$LSTM_GPU_CACHE_DIR/tuning.json`, else the platform cache folder's
/// (`$XDG_CACHE_HOME` or `~/.cache` on Linux, `~/Library/Caches` on macOS, `%LOCALAPPDATA%`
/// on Windows) `lstm-gpu/tuning.json`.
pub fn cache_path() -> PathBuf {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let dir = var(CACHE_DIR_ENV).unwrap_or_else(|| {
        let base = if cfg!(windows) {
            var("LOCALAPPDATA")
        } else if cfg!(target_os = "macos") {
            var("HOME").map(|h| h.join("Library/Caches"))
        } else {
            var("XDG_CACHE_HOME")
                .filter(|d| d.is_absolute())
                .or_else(|| var("HOME").map(|h| h.join(".cache")))
        };
        base.unwrap_or_else(std::env::temp_dir).join("lstm-gpu")
    });
    dir.join("tuning.json")
}

/// Whether a run may tune by itself on an adapter of `device_type`: never with
/// `LSTM_GPU_TUNE=off`, always with `on`; unset, on every adapter but a CPU one (lavapipe,
/// WARP, SwiftShader). There the kernels compile and run on the CPU, so tuning takes
/// minutes (the seed model on lavapipe: 53 s, 4.6 minutes on a cold shader cache) for
/// little: a seed step ran at 2,550-3,190 words/s tuned and 2,940-3,150 with the defaults
/// (`profile --synthetic`, alternating, 2026-12-07). `lstm-gpu tune` measures them when
/// asked, as the page's "tune" box does.
pub fn auto_tune_allowed(device_type: wgpu::DeviceType) -> bool {
    match std::env::var(AUTO_TUNE_ENV).as_deref().map(str::trim) {
        Ok("off") => false,
        Ok("on") => true,
        _ => device_type != wgpu::DeviceType::Cpu,
    }
}

/// The cache key of an adapter: name, backend, driver and this program's version (a new
/// version may bring new kernels).
pub fn adapter_key(info: &wgpu::AdapterInfo) -> String {
    format!(
        "{} | {:?} | {} {} | lstm-gpu {}",
        info.name,
        info.backend,
        info.driver,
        info.driver_info,
        env!("CARGO_PKG_VERSION")
    )
}

/// The cache key of `gpu`'s kernels: its adapter's ([`adapter_key`]), and where `--shaders`
/// changes kernels, a fingerprint of the changed files (choices measured on other kernels
/// are not these ones').
fn cache_key(gpu: &Gpu) -> String {
    let mut key = adapter_key(&gpu.info);
    if let Some(dir) = gpu.shader_dir.as_ref().filter(|d| !d.changed().is_empty()) {
        key.push_str(&format!(" | shaders {}", dir.fingerprint()));
    }
    key
}

fn read_cache() -> TuningCache {
    std::fs::read(cache_path())
        .map(|b| TuningCache::from_json(&b))
        .unwrap_or_default()
}

/// This adapter's cached entry, if any.
pub fn cached(gpu: &Gpu) -> Option<AdapterTuning> {
    read_cache().adapters.remove(&cache_key(gpu))
}

/// Merge `entry` into the cache file (written atomically; a failure is a warning: the
/// choices still apply to this run).
pub fn store(gpu: &Gpu, entry: &AdapterTuning) -> Result<PathBuf> {
    let path = cache_path();
    let mut file = read_cache();
    file.merge(gpu, entry);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
    }
    crate::model::checkpoint::write_atomic(&path, file.to_json().as_bytes())
        .with_context(|| format!("could not write {}", path.display()))?;
    Ok(path)
}

/// How a command gets its kernel choices for `cfg` at the workspace shapes `shapes` (the
/// first one the training step when there is one): `--matmul`/`--recurrence` win; else the
/// cache, when it covers this model; else a measurement now when `auto` (and
/// `LSTM_GPU_TUNE` allows it); else the adapter's defaults. Installs the choices on `gpu`
/// and says where they came from.
#[cfg(not(target_arch = "wasm32"))]
pub fn choose(
    gpu: &mut Gpu,
    cfg: &Config,
    shapes: &[(usize, usize, Mode)],
    auto: bool,
) -> Result<ChoiceSource> {
    let kept = cache_path().display().to_string();
    let allowed = auto_tune_allowed(gpu.info.device_type);
    let (source, measured) = pollster::block_on(choose_async(
        gpu,
        cfg,
        shapes,
        auto && allowed,
        cached(gpu),
        &kept,
        &mut |line| log::info!("{line}"),
    ))?;
    let asked_off = std::env::var(AUTO_TUNE_ENV).is_ok_and(|v| v.trim() == "off");
    if auto && !allowed && !asked_off && source == ChoiceSource::Default {
        log::info!(
            "kernels: the adapter's defaults, untuned: {} is a CPU adapter, where tuning takes minutes and gains little (`lstm-gpu tune` measures them; LSTM_GPU_TUNE=on tunes on a first run)",
            gpu.info.name
        );
    }
    if let Some(entry) = measured {
        if let Err(e) = store(gpu, &entry) {
            log::warn!("the tuned choices apply to this run only: {e:#}");
        }
    }
    Ok(source)
}

/// [`choose`], awaiting the GPU, with this adapter's entry of the cache (`cached`) given
/// and the new one returned (where it measured) to be kept in `kept` (a place named in
/// what it says): what the page runs, with the browser's storage for a cache.
pub async fn choose_async(
    gpu: &mut Gpu,
    cfg: &Config,
    shapes: &[(usize, usize, Mode)],
    auto: bool,
    cached: Option<AdapterTuning>,
    kept: &str,
    say: &mut dyn FnMut(&str),
) -> Result<(ChoiceSource, Option<AdapterTuning>)> {
    let mixed = cfg.precision == crate::config::Precision::Mixed;
    if mixed {
        super::matmul_f16::check_asked(gpu)?;
    }
    let matmul_forced = if mixed {
        gpu.half_matmul.is_some()
    } else {
        gpu.matmul.is_some()
    };
    if matmul_forced && gpu.recurrence.is_some() {
        return Ok((ChoiceSource::Forced, None));
    }
    let keys: Vec<String> = shapes
        .iter()
        .map(|&(b, t, _)| model_key(cfg, b, t))
        .collect();
    if let Some(entry) = cached {
        let untuned: Vec<String> = shapes
            .iter()
            .zip(&keys)
            .filter(|(_, k)| !entry.models.contains_key(*k))
            .map(|(&(b, t, _), _)| format!("{b}x{t}"))
            .collect();
        if untuned.is_empty() {
            say(&format!(
                "kernels: the choices tuned earlier on {} ({kept})",
                gpu.info.name
            ));
            gpu.tuning = Some(Tuned::from_entry(&entry, ChoiceSource::Cached));
            return Ok((ChoiceSource::Cached, None));
        }
        // Not tuning now: what was tuned for some of the shapes (a cache from before a
        // version that adds a workspace) beats the defaults for all of them.
        if !auto && untuned.len() < keys.len() {
            say(&format!(
                "kernels: the choices tuned earlier on {} ({kept}), the defaults for what they lack (the workspaces at {}: `lstm-gpu tune` measures them)",
                gpu.info.name,
                untuned.join(", ")
            ));
            gpu.tuning = Some(Tuned::from_entry(&entry, ChoiceSource::Cached));
            return Ok((ChoiceSource::Cached, None));
        }
    }
    if !auto {
        return Ok((ChoiceSource::Default, None));
    }
    say(&format!(
        "kernels: tuning on {} (once per adapter and model; the choices are cached in {kept})",
        gpu.info.name
    ));
    let t0 = Instant::now();
    let entry = tune_model_async(gpu, cfg, shapes, say).await?;
    say(&format!(
        "kernels: tuned in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    gpu.tuning = Some(Tuned::from_entry(&entry, ChoiceSource::Tuned));
    Ok((ChoiceSource::Tuned, Some(entry)))
}

/// Measure, on `gpu`, every matmul variant on every product the workspaces of `cfg` at
/// `shapes` prepare, and a training step (when a shape is `Mode::Train`) with each
/// recurrence; returns the fastest of each (nothing is installed or stored).
///
/// Whatever this run forces (`--matmul`, `--recurrence`) is set aside while measuring:
/// the result is stored for later runs that force nothing, which must not read a forced
/// choice back as a measured one. The forced choices still win in this run.
#[cfg(not(target_arch = "wasm32"))]
pub fn tune_model(
    gpu: &mut Gpu,
    cfg: &Config,
    shapes: &[(usize, usize, Mode)],
    mut say: impl FnMut(&str),
) -> Result<AdapterTuning> {
    pollster::block_on(tune_model_async(gpu, cfg, shapes, &mut say))
}

/// [`tune_model`], awaiting the GPU (in a browser tab: the page tunes on its WebGPU).
pub async fn tune_model_async(
    gpu: &mut Gpu,
    cfg: &Config,
    shapes: &[(usize, usize, Mode)],
    say: &mut dyn FnMut(&str),
) -> Result<AdapterTuning> {
    let forced = (
        gpu.matmul.take(),
        gpu.half_matmul.take(),
        gpu.recurrence.take(),
    );
    let tuned = tune_unforced(gpu, cfg, shapes, say).await;
    (gpu.matmul, gpu.half_matmul, gpu.recurrence) = forced;
    tuned
}

async fn tune_unforced(
    gpu: &mut Gpu,
    cfg: &Config,
    shapes: &[(usize, usize, Mode)],
    say: &mut dyn FnMut(&str),
) -> Result<AdapterTuning> {
    let mut entry = AdapterTuning::default();
    gpu.tuning = None;
    let mut kernels = Kernels::new(gpu)?;
    let params = Params::<f32>::init(cfg, 1);
    let pbuf = ParamBuffers::upload(gpu, cfg, &params)?;
    let products = model_products(gpu, &mut kernels, cfg, &pbuf, shapes)?;
    let mixed = cfg.precision == crate::config::Precision::Mixed;
    // One timed run of every variant, then the best of three for those within 30% of the
    // fastest: a variant several times slower is not timed again (tuning the seed model
    // on lavapipe takes about half a minute).
    let (once, thrice) = (
        super::matmul::Timer::new(gpu, 1),
        super::matmul::Timer::new(gpu, 3),
    );
    // A kernel that computes wrong results here (a driver's miscompile) is left out as one
    // the driver refuses is: each candidate is first held to its CPU twin.
    let screened = match &kernels.half {
        Some(hk) if mixed => hk.variants_available().len(),
        _ => kernels.matmul.variants_available().len(),
    };
    say(&format!(
        "  checking {screened} matmul kernels against their CPU twins first, then timing them on {} products of the model",
        products.len()
    ));
    let wrong = wrong_kernels(gpu, &kernels, mixed).await?;
    for &s in &products {
        let (key, candidates, fallback) = match &kernels.half {
            Some(hk) if mixed => (
                half_key(s),
                half_candidates(gpu, hk, &kernels.matmul, s)?,
                hk.choice(s).name(),
            ),
            _ => (
                shape_key(s),
                f32_candidates(gpu, &kernels.matmul, s)?,
                kernels.matmul.variant().name(),
            ),
        };
        let mut timed = Vec::new();
        for (name, d) in candidates {
            if wrong.contains(&name) {
                continue;
            }
            gpu.run_async(&[&d]).await?;
            let (secs, _) = once.best_async(gpu, &d).await?;
            timed.push((name, d, secs));
        }
        let fastest = timed.iter().map(|c| c.2).fold(f64::INFINITY, f64::min);
        let mut times = BTreeMap::new();
        for (name, d, secs) in &timed {
            let secs = if *secs <= 1.3 * fastest {
                thrice.best_async(gpu, d).await?.0.min(*secs)
            } else {
                *secs
            };
            times.insert(name.clone(), secs * 1e3);
        }
        let best = times
            .iter()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(v, _)| v.clone())
            .unwrap_or_else(|| fallback.to_string());
        say(&format!(
            "  {key:<20} {best:<18} ({})",
            times
                .iter()
                .map(|(v, ms)| format!("{v} {ms:.3} ms"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        entry.matmul.insert(key.clone(), best);
        entry.matmul_ms.insert(key, times);
    }

    // The recurrence, on the tuned products: a training step each way, alternating.
    gpu.tuning = Some(Tuned::from_entry(&entry, ChoiceSource::Tuned));
    let tuned: &Gpu = gpu;
    let (batch, steps) = shapes
        .iter()
        .find(|s| s.2 == Mode::Train)
        .map_or((shapes[0].0, shapes[0].1), |s| (s.0, s.1));
    let mut step_ms = BTreeMap::new();
    let recurrence = if shapes.iter().any(|s| s.2 == Mode::Train) {
        let (mut kernels, mut ws) = (Vec::new(), Vec::new());
        for r in Recurrence::ALL {
            let mut k = Kernels::new(tuned)?;
            k.recurrence = Some(r);
            ws.push(Workspace::new(
                tuned,
                &k,
                cfg,
                &pbuf,
                batch,
                steps,
                Mode::Train,
            )?);
            kernels.push(k);
        }
        let Ok(mut ws) = <[Workspace; Recurrence::ALL.len()]>::try_from(ws) else {
            unreachable!("one workspace per recurrence")
        };
        let mut best = time_steps(tuned, cfg, &mut ws).await?;
        // The fused step kernels have no f16 form, and a driver may refuse them: a step
        // asked to fuse then runs unfused (`recurrence_for`), so that timing is not a
        // choice of its own.
        if mixed || kernels[0].lstm_step.is_none() {
            best[0] = f64::INFINITY;
        }
        // A recurrence whose training step computes wrong results here (a driver's
        // miscompile of its own kernels: the fused step, the wavefront's launches) is left
        // out as a wrong matmul is.
        let mut wrong = [false; Recurrence::ALL.len()];
        for (i, (&r, k)) in Recurrence::ALL.iter().zip(&kernels).enumerate() {
            if best[i].is_finite() && recurrence_is_wrong(tuned, k, r, cfg.precision).await {
                (best[i], wrong[i]) = (f64::INFINITY, true);
            }
        }
        if best.iter().all(|ms| !ms.is_finite()) {
            log::warn!(
                "every recurrence's training step computes wrong results on {}: training will too (`lstm-gpu check` shows where)",
                tuned.info.name
            );
        }
        drop((ws, kernels));
        for (r, ms) in Recurrence::ALL.iter().zip(best) {
            if ms.is_finite() {
                step_ms.insert(r.name().to_string(), ms * 1e3);
            }
        }
        // The wavefront runs its pairs of time steps as one launch each only where all
        // layers' recurrent products of a direction run one kernel with a grouped form:
        // where the tuned ones are not that, it is timed again with the grouped kernel of
        // least total time per direction, kept where it is faster.
        let grouped = groupable_recurrent_products(cfg, batch, &entry);
        if !grouped.is_empty() && !wrong[2] {
            let mut alt = entry.clone();
            alt.matmul.extend(grouped.clone());
            gpu.tuning = Some(Tuned::from_entry(&alt, ChoiceSource::Tuned));
            let mut k = Kernels::new(gpu)?;
            k.recurrence = Some(Recurrence::Wavefront);
            let w = Workspace::new(gpu, &k, cfg, &pbuf, batch, steps, Mode::Train)?;
            let [ms] = time_steps(gpu, cfg, &mut [w]).await?;
            gpu.tuning = Some(Tuned::from_entry(&entry, ChoiceSource::Tuned));
            step_ms.insert("wavefront (grouped kernels)".to_string(), ms * 1e3);
            say(&format!(
                "  wavefront with grouped kernels for the recurrent products ({}): {:.1} ms",
                grouped
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                ms * 1e3
            ));
            if ms < best[2] {
                best[2] = ms;
                step_ms.insert(Recurrence::Wavefront.name().to_string(), ms * 1e3);
                if choose_recurrence(&best) == Recurrence::Wavefront {
                    entry.matmul.extend(grouped);
                }
            }
        }
        let r = choose_recurrence(&best);
        let timing = |i: usize| {
            if wrong[i] {
                "wrong results".to_string()
            } else if i == 0 && mixed {
                "none in f16".to_string()
            } else if best[i].is_finite() {
                format!("{:.1} ms", best[i] * 1e3)
            } else {
                "not built".to_string()
            }
        };
        say(&format!(
            "  recurrence {r} (a {batch}x{steps} training step{}: fused {}, unfused {}, wavefront {})",
            if mixed { " in mixed precision" } else { "" },
            timing(0),
            timing(1),
            timing(2)
        ));
        r
    } else {
        crate::model::schedule::default_recurrence(gpu)
    };
    let tuned: &Gpu = gpu;
    tuned.wait_async().await?;
    let product_keys: Vec<String> = products
        .iter()
        .map(|&s| if mixed { half_key(s) } else { shape_key(s) })
        .collect();
    for &(b, t, _) in shapes {
        entry.models.insert(
            model_key(cfg, b, t),
            ModelTuning {
                products: product_keys.clone(),
                recurrence: recurrence.name().to_string(),
                step_ms: step_ms.clone(),
            },
        );
    }
    Ok(entry)
}

/// The best of two timed training steps (after one that compiles and warms up) of each of
/// `ws`, in seconds, alternating between them.
async fn time_steps<const N: usize>(
    gpu: &Gpu,
    cfg: &Config,
    ws: &mut [Workspace; N],
) -> Result<[f64; N]> {
    let (batch, steps) = (ws[0].batch, ws[0].steps);
    let n = batch * steps;
    let ids: Vec<u32> = (0..n).map(|i| (i * 7 % cfg.vocab_size) as u32).collect();
    let mut best = [f64::INFINITY; N];
    for round in 0..3 {
        for (i, w) in ws.iter_mut().enumerate() {
            let hyper = Hyper {
                learning_rate: 0.0,
                step: round,
                seed: 1,
            };
            w.zero_state(gpu);
            let t = Instant::now();
            w.step(gpu, &ids, &ids, hyper)?;
            gpu.wait_async().await?;
            // Round 0 compiles and warms up; it does not count.
            if round > 0 {
                best[i] = best[i].min(t.elapsed().as_secs_f64());
            }
        }
    }
    Ok(best)
}

/// Kernels for the recurrent products of `cfg`'s layers at `batch` rows (`[batch, h] @
/// [h, 4h]` forward, `[batch, 4h] @ [4h, h]^T` backward) under which the wavefront's pairs
/// can share launches: one kernel with a grouped form for all layers' products of a
/// direction (a launch serves one kernel), the one of least total time over them among
/// those measured on every one; for each direction whose tuned kernels are not already one
/// grouped kernel, the products whose choice that changes. Empty where nothing changes (or
/// nothing was measured, or a single layer has no pairs). In mixed precision, of the f16
/// kernels (keys [`half_key`]).
pub fn groupable_recurrent_products(
    cfg: &Config,
    batch: usize,
    entry: &AdapterTuning,
) -> BTreeMap<String, String> {
    let mixed = cfg.precision == crate::config::Precision::Mixed;
    let groupable = |v: &str| {
        if mixed {
            v.parse::<HalfVariant>().is_ok_and(|v| v.has_group_form())
        } else {
            v.parse::<MatmulVariant>().is_ok_and(|v| v.has_group_form())
        }
    };
    let mut out = BTreeMap::new();
    if cfg.hidden.len() < 2 {
        return out;
    }
    for backward in [false, true] {
        let mut keys: Vec<String> = Vec::new();
        for &h in &cfg.hidden {
            let (k, n) = if backward { (4 * h, h) } else { (h, 4 * h) };
            let shape = MatmulShape {
                m: batch,
                k,
                n,
                trans_a: false,
                trans_b: backward,
            };
            let key = if mixed {
                half_key(shape)
            } else {
                shape_key(shape)
            };
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let chosen: Vec<Option<&String>> = keys.iter().map(|k| entry.matmul.get(k)).collect();
        let one_grouped =
            chosen[0].is_some_and(|v| groupable(v)) && chosen.iter().all(|v| *v == chosen[0]);
        if one_grouped {
            continue;
        }
        let Some(times) = keys
            .iter()
            .map(|k| entry.matmul_ms.get(k))
            .collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        let best = times[0]
            .keys()
            .filter(|v| groupable(v))
            .filter_map(|v| {
                let total: Option<f64> = times.iter().map(|t| t.get(v).copied()).sum();
                total.map(|t| (v, t))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(v, _)| v.clone());
        if let Some(v) = best {
            for (key, chosen) in keys.iter().zip(&chosen) {
                if *chosen != Some(&v) {
                    out.insert(key.clone(), v.clone());
                }
            }
        }
    }
    out
}

/// The recurrence of the step times `best` (in the order of [`Recurrence::ALL`]: fused,
/// unfused, wavefront). The wavefront runs the unfused step's work in another order with a
/// few more launches: it is kept only where it is 5% faster than the unfused step (one
/// step's timing is that noisy on a shared CPU adapter, which runs one launch at a time
/// anyway); and within 5% of the better of those two the fused step wins (fewer launches
/// are what a busier device rewards).
pub fn choose_recurrence(best: &[f64; 3]) -> Recurrence {
    // None ran right (or none was timed): the reference.
    if best.iter().all(|ms| !ms.is_finite()) {
        return Recurrence::Unfused;
    }
    debug_assert_eq!(
        Recurrence::ALL,
        [
            Recurrence::Fused,
            Recurrence::Unfused,
            Recurrence::Wavefront
        ]
    );
    let (unfused, ms) = if best[2] < 0.95 * best[1] {
        (Recurrence::Wavefront, best[2])
    } else {
        (Recurrence::Unfused, best[1])
    };
    if best[0] <= 1.05 * ms {
        Recurrence::Fused
    } else {
        unfused
    }
}

/// Every matrix product the workspaces of `cfg` at `shapes` prepare with `kernels` (both
/// recurrences' products: the unfused path's per-time-step products too), in order.
pub fn model_products(
    gpu: &Gpu,
    kernels: &mut Kernels,
    cfg: &Config,
    params: &ParamBuffers,
    shapes: &[(usize, usize, Mode)],
) -> Result<Vec<MatmulShape>> {
    let asked = kernels.recurrence;
    for &(b, t, mode) in shapes {
        for r in Recurrence::ALL {
            kernels.recurrence = Some(r);
            Workspace::new(gpu, kernels, cfg, params, b, t, mode)?;
        }
    }
    kernels.recurrence = asked;
    match &kernels.half {
        Some(hk) if cfg.precision == crate::config::Precision::Mixed => Ok(hk.products()),
        _ => Ok(kernels.matmul.products()),
    }
}

/// The matmul kernels (f16 ones for a mixed model) that fail their parity check on this
/// adapter (`lstm_gpu::check`, `lstm-gpu check`'s matmul rows: 32 awkward cases each,
/// milliseconds on a GPU once compiled), each warned of once.
async fn wrong_kernels(
    gpu: &Gpu,
    kernels: &Kernels,
    mixed: bool,
) -> Result<std::collections::HashSet<String>> {
    // The launchers tuning times, so that no kernel is built twice.
    let outcomes = match &kernels.half {
        Some(hk) if mixed => crate::check::half_matmuls(gpu, hk, &mut |_| {}).await,
        _ => crate::check::matmuls(gpu, &kernels.matmul, &mut |_| {}).await,
    }?;
    let mut wrong = std::collections::HashSet::new();
    for o in outcomes.iter().filter(|o| !o.passed()) {
        log::warn!(
            "kernel {} left out: it computes wrong results on {} ({}; `lstm-gpu check` shows every case)",
            o.kernel,
            gpu.info.name,
            o.why()
        );
        wrong.insert(o.kernel.clone());
    }
    Ok(wrong)
}

/// Whether a training step on `kernels` (recurrence `r`) fails its check against the f64
/// reference step (`lstm_gpu::check`, `lstm-gpu check`'s training-step rows: two steps of a
/// small model), warned of once.
async fn recurrence_is_wrong(
    gpu: &Gpu,
    kernels: &Kernels,
    r: Recurrence,
    precision: Precision,
) -> bool {
    let mut o =
        crate::check::Outcome::new(format!("training step {} {r}", precision.name()), r.name());
    crate::check::recurrence_steps_async(gpu, kernels, precision, &mut o).await;
    if !o.passed() {
        log::warn!(
            "recurrence {r} left out: its training step computes wrong results on {} ({}; `lstm-gpu check` shows every case)",
            gpu.info.name,
            o.why()
        );
    }
    !o.passed()
}

/// Every f32 variant the adapter has that is worth timing on `s`, prepared on scratch
/// operands (a variant that falls back on this shape, as subgroup-broadcast off multiples
/// of 4, is the kernel it falls back to: not a choice of its own).
fn f32_candidates(gpu: &Gpu, matmul: &Matmul, s: MatmulShape) -> Result<Vec<(String, Dispatch)>> {
    let a = gpu.storage("tune A", s.m * s.k);
    let b = gpu.storage("tune B", s.k * s.n);
    let c = gpu.storage("tune C", s.m * s.n);
    let mut out = Vec::new();
    for v in matmul.variants_available() {
        if !v.candidate_for_rows(s.m) {
            continue;
        }
        let d = matmul.prepare_with(
            v,
            gpu,
            s,
            View::all(&a),
            View::all(&b),
            None,
            View::all(&c),
            false,
        );
        // A kernel compiled on first use that the driver refuses is not a candidate.
        let Some(d) = gpu.optional(v.name(), d) else {
            continue;
        };
        if d.label == v.entry_point(s) {
            out.push((v.name().to_string(), d));
        }
    }
    Ok(out)
}

/// Every f16 kernel the adapter has that is worth timing on `s` (a mixed step's product),
/// on scratch operands, with k split where the step splits it (as `family` splits).
fn half_candidates(
    gpu: &Gpu,
    hk: &HalfKernels,
    family: &Matmul,
    s: MatmulShape,
) -> Result<Vec<(String, Dispatch)>> {
    let a = gpu.storage("tune A (f16)", (s.m * s.k).div_ceil(2));
    let b = gpu.storage("tune B (f16)", (s.k * s.n).div_ceil(2));
    let c = gpu.storage("tune C", s.m * s.n);
    let mut out = Vec::new();
    for v in hk.variants_available() {
        if !v.candidate_for_rows(s.m) {
            continue;
        }
        let d = hk.matmul_with(
            v,
            gpu,
            s,
            HalfView::at(&a, 0, s.m * s.k),
            HalfView::at(&b, 0, s.k * s.n),
            None,
            View::all(&c),
            false,
            Some(family),
        );
        let Some(d) = gpu.optional(v.name(), d) else {
            continue;
        };
        out.push((v.name().to_string(), d));
    }
    Ok(out)
}

/// The products of one training step of `cfg` on `gpu` (and its evaluation step), as
/// `bench kernels` times them by default.
pub fn training_products(gpu: &Gpu, cfg: &Config) -> Result<Vec<MatmulShape>> {
    let mut kernels = Kernels::new(gpu)?;
    let params = ParamBuffers::upload(gpu, cfg, &Params::<f32>::init(cfg, 1))?;
    let (b, t) = (cfg.batch_size, cfg.num_steps);
    model_products(gpu, &mut kernels, cfg, &params, &[(b, t, Mode::Train)])
}

/// What each product of `matmul` runs and why, one line per product, for the logs.
pub fn report(matmul: &Matmul) -> Vec<String> {
    matmul
        .products()
        .into_iter()
        .map(|s| {
            let (v, source) = matmul.choice(s);
            format!("{} {} ({})", shape_key(s), v.name(), source.name())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page's cache round-trips through its JSON; anything else (another format, a
    /// damaged or foreign value) reads as an empty cache, so that the kernels are measured
    /// again rather than read wrong.
    #[test]
    fn the_tuning_cache_reads_back_what_it_wrote_and_nothing_else() {
        let mut entry = AdapterTuning::default();
        entry.matmul.insert("60x256x1024:NN".into(), "strip".into());
        let mut cache = TuningCache {
            format: CACHE_FORMAT.into(),
            ..Default::default()
        };
        cache.adapters.insert("gpu | Vulkan".into(), entry);
        let back = TuningCache::from_json(cache.to_json().as_bytes());
        assert_eq!(back.adapters.len(), 1);
        assert_eq!(
            back.adapters["gpu | Vulkan"].matmul["60x256x1024:NN"],
            "strip"
        );
        let other = cache.to_json().replace(CACHE_FORMAT, "lstm-gpu-tuning/0");
        for bad in [other.as_str(), "", "null", "{\"adapters\": 3}", "\u{0}"] {
            assert!(
                TuningCache::from_json(bad.as_bytes()).adapters.is_empty(),
                "{bad:?}"
            );
        }
    }

    /// The wavefront only where it beats the unfused step by 5%; the fused step within 5%
    /// of the better of those.
    #[test]
    fn the_recurrence_rule() {
        use Recurrence::*;
        assert_eq!(choose_recurrence(&[10.0, 10.0, 9.0]), Wavefront);
        assert_eq!(choose_recurrence(&[11.0, 10.0, 9.6]), Unfused);
        assert_eq!(choose_recurrence(&[10.0, 10.0, 10.0]), Fused);
        assert_eq!(choose_recurrence(&[9.7, 10.0, 9.0]), Wavefront);
        assert_eq!(choose_recurrence(&[9.4, 10.0, 9.0]), Fused);
        assert_eq!(choose_recurrence(&[25.0, 12.8, 12.9]), Unfused);
        assert_eq!(choose_recurrence(&[25.0, 12.8, 10.0]), Wavefront);
    }

    /// The recurrent products tuned to a kernel without a grouped form get the fastest
    /// measured one that has one; those tuned to one already, and those with no grouped
    /// kernel measured, are left out.
    #[test]
    fn recurrent_products_get_one_grouped_kernel_per_direction() {
        let ms = |pairs: &[(&str, f64)]| -> BTreeMap<String, f64> {
            pairs.iter().map(|&(v, t)| (v.to_string(), t)).collect()
        };
        let entry_of = |rows: &[(&str, &str, BTreeMap<String, f64>)]| {
            let mut entry = AdapterTuning::default();
            for (key, chosen, times) in rows {
                entry.matmul.insert(key.to_string(), chosen.to_string());
                entry.matmul_ms.insert(key.to_string(), times.clone());
            }
            entry
        };
        let want = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|&(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let cfg = Config {
            hidden: vec![8, 4],
            ..Config::default()
        };
        let entry = entry_of(&[
            // Forward: block wins on layer 0, panel-split on layer 1; of the grouped
            // kernels panel-split has the least total (1.5 + 0.5 against strip's 2.0 +
            // 0.2): layer 0 changes to it.
            (
                "3x8x32:NN",
                "block-64x64-split",
                ms(&[
                    ("block-64x64-split", 1.0),
                    ("panel-split", 1.5),
                    ("strip", 2.0),
                ]),
            ),
            (
                "3x4x16:NN",
                "panel-split",
                ms(&[("panel-split", 0.5), ("strip", 0.2), ("tiled", 0.1)]),
            ),
            // Backward: two different grouped kernels, which cannot share a launch;
            // panel has the least total (1.2 + 0.9) of those measured on both.
            (
                "3x32x8:NT",
                "strip-quad-split",
                ms(&[("strip-quad-split", 1.0), ("panel", 1.2)]),
            ),
            (
                "3x16x4:NT",
                "subgroup-broadcast",
                ms(&[
                    ("subgroup-broadcast", 0.5),
                    ("strip-split", 0.7),
                    ("panel", 0.9),
                    ("strip-quad-split", 1.5),
                ]),
            ),
            // Not a recurrent product (the batch differs).
            ("4x8x32:NN", "tiled", ms(&[("tiled", 1.0), ("strip", 2.0)])),
        ]);
        assert_eq!(
            groupable_recurrent_products(&cfg, 3, &entry),
            want(&[
                ("3x8x32:NN", "panel-split"),
                ("3x32x8:NT", "panel"),
                ("3x16x4:NT", "panel"),
            ])
        );
        // Already one grouped kernel a direction (equal widths: one product each), or no
        // grouped kernel measured on every product: nothing changes.
        let equal = Config {
            hidden: vec![8, 8],
            ..Config::default()
        };
        let entry = entry_of(&[
            ("3x8x32:NN", "strip", ms(&[("strip", 1.0), ("tiled", 2.0)])),
            ("3x32x8:NT", "tiled", ms(&[("tiled", 1.0)])),
        ]);
        assert_eq!(groupable_recurrent_products(&equal, 3, &entry), want(&[]));
        // One layer: no pairs.
        let one = Config {
            hidden: vec![8],
            ..Config::default()
        };
        let entry = entry_of(&[("3x8x32:NN", "tiled", ms(&[("tiled", 1.0), ("strip", 2.0)]))]);
        assert_eq!(groupable_recurrent_products(&one, 3, &entry), want(&[]));
        // Mixed precision: the f16 kernels under their own keys; the matrix units' has no
        // grouped form.
        let mixed = Config {
            hidden: vec![8, 4],
            precision: crate::config::Precision::Mixed,
            ..Config::default()
        };
        let entry = entry_of(&[
            (
                "f16 3x8x32:NN",
                "f16-coop",
                ms(&[("f16-coop", 1.0), ("f16-panel", 1.5), ("f16-scalar", 3.0)]),
            ),
            (
                "f16 3x4x16:NN",
                "f16-coop",
                ms(&[("f16-coop", 0.2), ("f16-panel", 0.4), ("f16-scalar", 0.3)]),
            ),
            // The f32 family's key of the same shape is not a mixed step's.
            ("3x8x32:NN", "tiled", ms(&[("tiled", 1.0), ("strip", 2.0)])),
        ]);
        assert_eq!(
            groupable_recurrent_products(&mixed, 3, &entry),
            want(&[
                ("f16 3x8x32:NN", "f16-panel"),
                ("f16 3x4x16:NN", "f16-panel")
            ])
        );
    }
}
