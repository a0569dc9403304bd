//! The commands that read what training wrote, without a GPU: `info` and `plot`.

use anyhow::Result;
use std::path::PathBuf;

use lstm_gpu::error::usage;

/// `info`: what checkpoints and run folders hold; several run folders side by side.
pub(crate) fn info(paths: Vec<PathBuf>, json: bool) -> Result<()> {
    use lstm_gpu::analysis::info::{compare_runs, CheckpointInfo, RunInfo};
    if let Some(missing) = paths.iter().find(|p| !p.exists()) {
        return Err(usage(format!("{} does not exist", missing.display())));
    }
    let runs_only = paths.len() > 1 && paths.iter().all(|p| p.is_dir());
    let mut shown = Vec::new();
    let mut runs = Vec::new();
    for path in &paths {
        if path.is_dir() {
            let info = RunInfo::read(path)?;
            shown.push((info.json(), info.text()));
            runs.push(info);
        } else {
            let info = CheckpointInfo::read(path)?;
            shown.push((info.json(), info.text()));
        }
    }
    if json {
        let all: Vec<serde_json::Value> = shown.into_iter().map(|(j, _)| j).collect();
        match all.as_slice() {
            [one] => println!("{one}"),
            _ => println!("{}", serde_json::Value::Array(all)),
        }
    } else if runs_only {
        print!("{}", compare_runs(&runs));
    } else {
        let texts: Vec<String> = shown.into_iter().map(|(_, t)| t).collect();
        print!("{}", texts.join("\n"));
    }
    Ok(())
}

/// `plot`: the learning curves of one or several runs.
pub(crate) fn plot(metrics: Vec<PathBuf>, out: PathBuf) -> Result<()> {
    lstm_gpu::analysis::plot::plot_metrics(&metrics, &out)?;
    println!("plot written to {}", out.display());
    Ok(())
}
