//! What a run tells its user: result lines on standard output, `metrics.jsonl` and the
//! TensorBoard event file beside it, the progress bar and the up-front time estimate.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::analysis::span;
use crate::error::usage;

/// One line of the run's results on standard output. Where its reader went away (a closed
/// pipe) the line is dropped and the run goes on to its checkpoints: `println!` would panic.
pub fn say(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// Append-only JSON lines, flushed per record so that a crash keeps what was measured, and
/// the same scalars in a TensorBoard event file beside them (made at the first record, so
/// that a folder only checked gets none).
pub struct Metrics {
    file: std::fs::File,
    path: PathBuf,
    events: Option<crate::analysis::tensorboard::EventWriter>,
}

impl Metrics {
    fn open(dir: &Path) -> Result<Metrics> {
        let path = dir.join("metrics.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("could not open {}", path.display()))?;
        Ok(Metrics {
            file,
            path,
            events: None,
        })
    }

    pub(super) fn write(&mut self, v: serde_json::Value) -> Result<()> {
        writeln!(self.file, "{v}")
            .and_then(|_| self.file.flush())
            .map_err(crate::model::checkpoint::explain_write_error)
            .with_context(|| format!("could not append to {}", self.path.display()))?;
        let events = match &mut self.events {
            Some(events) => events,
            None => {
                let dir = self.path.parent().unwrap_or(Path::new("."));
                let events = crate::analysis::tensorboard::EventWriter::create(dir)?;
                log::info!("TensorBoard events: {}", events.path().display());
                self.events.insert(events)
            }
        };
        events.metrics_record(&v)
    }
}

/// Create the run folder and open its `metrics.jsonl` for appending. The folder is the
/// user's choice (`--run-dir`): one that cannot be made or written is a usage error, found
/// before any training (`train` checks it before opening the adapter, after the model was
/// found to fit, so that an impossible model leaves no folder).
pub fn prepare_run_dir(dir: &Path) -> Result<Metrics> {
    std::fs::create_dir_all(dir).map_err(|e| {
        usage(format!(
            "--run-dir {}: cannot create the folder ({e}); choose a folder you can write to",
            dir.display()
        ))
    })?;
    Metrics::open(dir).map_err(|e| {
        usage(format!(
            "--run-dir {}: {e:#}; choose a folder you can write to",
            dir.display()
        ))
    })
}

/// The progress bar's message: the epoch's perplexity so far and the speed.
pub(super) fn bar_message(ppl: f64, wps: f64) -> String {
    format!("ppl {ppl:.1}, {wps:.0} words/s")
}

/// What the first steps' speed says of the run: an epoch's time and all `epochs`' (the
/// evaluation passes not counted); on a CPU adapter, also what finishes sooner.
pub fn epoch_estimate(
    adapter: &wgpu::AdapterInfo,
    words_per_second: f64,
    epoch_secs: f64,
    epochs: usize,
) -> String {
    let mut line = format!(
        "at {words_per_second:.0} words/s on {} an epoch takes about {}, {epochs} epochs about {}",
        adapter.name,
        span(epoch_secs),
        span(epoch_secs * epochs as f64)
    );
    if adapter.device_type == wgpu::DeviceType::Cpu {
        line += " (a CPU adapter: a GPU runs this tens of times faster; --max-steps N, or smaller --hidden and --embedding-size, end sooner)";
    }
    line
}

pub(super) fn progress_bar(
    enabled: bool,
    len: u64,
    pos: u64,
    epoch: usize,
) -> Option<indicatif::ProgressBar> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} {msg} (eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(epoch.to_string());
    bar.set_position(pos);
    Some(bar)
}

/// A validation perplexity for the stop line, or why there is none.
pub(super) fn valid_text(valid: Option<f64>, interrupted: bool) -> String {
    match valid {
        Some(v) => format!("{v:.3}"),
        None if interrupted => "not measured (interrupted)".into(),
        None => "not measured (--no-eval-at-stop)".into(),
    }
}
