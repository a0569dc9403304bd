//! The run folder's checkpoint files: `epoch-N` and `step-N` (the newest kept, the rest
//! pruned), `last` and `best`, and the model a resumed run must match.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::config::Config;
use crate::error::usage;
use crate::model::checkpoint::{write_atomic, BestEpoch, Checkpoint};

/// The newest checkpoint of a run folder.
pub const LAST: &str = "last.safetensors";
/// The checkpoint of the epoch with the lowest validation perplexity so far.
pub const BEST: &str = "best.safetensors";

/// The `{kind}-K.safetensors` files of `dir` (`kind` `epoch` or `step`) and their K.
pub fn numbered_checkpoints(dir: &Path, kind: &str) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let number = name
            .to_str()
            .and_then(|n| n.strip_prefix(kind)?.strip_prefix('-'))
            .and_then(|n| n.strip_suffix(".safetensors"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(k) = number {
            found.push((k, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// The checkpoints of a run in `dir` (`last`, `best`, then `epoch-N` and `step-N` in order):
/// what a new run there would overwrite or mix its own with. Empty where there are none.
pub fn run_checkpoints(dir: &Path) -> Vec<String> {
    let mut held: Vec<String> = [LAST, BEST]
        .into_iter()
        .filter(|name| dir.join(name).is_file())
        .map(String::from)
        .collect();
    for kind in ["epoch", "step"] {
        let numbered = numbered_checkpoints(dir, kind).unwrap_or_default();
        held.extend(
            numbered
                .iter()
                .map(|(k, _)| format!("{kind}-{k}.safetensors")),
        );
    }
    held
}

/// Of `found` (numbered files), those to remove so that the newest `keep` numbered up to
/// `newest` stay; files numbered past `newest` are not touched.
pub fn beyond_newest(found: Vec<(u64, PathBuf)>, newest: u64, keep: usize) -> Vec<PathBuf> {
    let mut upto: Vec<(u64, PathBuf)> = found.into_iter().filter(|(k, _)| *k <= newest).collect();
    upto.sort_by_key(|(k, _)| std::cmp::Reverse(*k));
    upto.into_iter().skip(keep).map(|(_, p)| p).collect()
}

/// The run's best epoch so far (`pos.best` of the starting point) has its checkpoint as
/// `best.safetensors` in `run_dir`: there already, or copied from the best or the epoch
/// checkpoint of that epoch, in `run_dir` or the folder of the checkpoint resumed from (a
/// run resumed into another folder, or from before a later history overwrote its best). A
/// file holds it when the position in its header names that best. Where none does (deleted,
/// pruned), the best is counted again from the epochs to come.
pub(super) fn settle_best(
    run_dir: &Path,
    resume: Option<&Path>,
    best: Option<BestEpoch>,
) -> Result<Option<BestEpoch>> {
    let Some(b) = best else {
        return Ok(None);
    };
    let holds =
        |p: &Path| p.is_file() && Checkpoint::read_position(p).is_ok_and(|pos| pos.best == Some(b));
    let here = run_dir.join(BEST);
    if holds(&here) {
        return Ok(best);
    }
    let resumed_from = resume.and_then(|r| r.parent()).map(|d| {
        if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        }
    });
    let epoch_file = format!("epoch-{}.safetensors", b.epoch);
    let found = [Some(run_dir), resumed_from]
        .into_iter()
        .flatten()
        .flat_map(|d| [d.join(BEST), d.join(&epoch_file)])
        .find(|p| holds(p));
    if let Some(there) = found {
        let bytes =
            std::fs::read(&there).with_context(|| format!("could not read {}", there.display()))?;
        write_atomic(&here, &bytes)
            .with_context(|| format!("could not write checkpoint {}", here.display()))?;
        log::info!(
            "the run's best epoch so far ({}, valid perplexity {:.3}): {} copied to {}",
            b.epoch,
            b.valid_perplexity,
            there.display(),
            here.display()
        );
        return Ok(best);
    }
    log::info!(
        "the run's best epoch so far ({}, valid perplexity {:.3}) has no checkpoint in {} or where it resumed from: the best is counted again from the epochs to come",
        b.epoch,
        b.valid_perplexity,
        run_dir.display()
    );
    Ok(None)
}

/// Flags that change the model's shape cannot differ from the checkpoint's.
pub fn check_same_model(ck: &Config, flags: &Config, path: &Path) -> Result<()> {
    refuse_diffs(
        model_diffs(ck, flags, true),
        &format!("checkpoint {}", path.display()),
        "resume",
    )
}

/// Flags that change the shapes of the weights `--init` starts from (or the tokens its
/// vocabulary reads) cannot differ from its checkpoint's; the batches can.
pub fn check_same_weights(ck: &Config, flags: &Config, path: &Path) -> Result<()> {
    refuse_diffs(
        model_diffs(ck, flags, false),
        &format!("the model of --init {}", path.display()),
        "start from its weights",
    )
}

/// One usage line naming every flag of `diffs` that contradicts `what`, where there are any.
fn refuse_diffs(diffs: Vec<String>, what: &str, to: &str) -> Result<()> {
    if diffs.is_empty() {
        return Ok(());
    }
    Err(usage(format!(
        "flags contradict {what}: {}; drop them to {to}",
        diffs.join(", ")
    )))
}

/// `--flag value (checkpoint: value)` for each shape flag where `flags` differs from `ck`,
/// the batch's shape among them where `with_batch`.
fn model_diffs(ck: &Config, flags: &Config, with_batch: bool) -> Vec<String> {
    let mut pairs = vec![
        (
            "--vocab-size",
            ck.vocab_size.to_string(),
            flags.vocab_size.to_string(),
        ),
        (
            "--embedding-size",
            ck.embedding_size.to_string(),
            flags.embedding_size.to_string(),
        ),
        (
            "--hidden",
            format!("{:?}", ck.hidden),
            format!("{:?}", flags.hidden),
        ),
    ];
    if with_batch {
        pairs.push((
            "--batch-size",
            ck.batch_size.to_string(),
            flags.batch_size.to_string(),
        ));
        pairs.push((
            "--num-steps",
            ck.num_steps.to_string(),
            flags.num_steps.to_string(),
        ));
    }
    // `--init` reads a text in the checkpoint's vocabulary: as characters or as words, with
    // a line end glued on (`words`) or its own `<eos>` (`words-eos`) as the text needs.
    let same_tokens = if with_batch {
        ck.tokens == flags.tokens
    } else {
        ck.tokens.is_chars() == flags.tokens.is_chars()
    };
    if !same_tokens {
        pairs.push(("--tokens", ck.tokens.to_string(), flags.tokens.to_string()));
    }
    pairs.push((
        "--tie-weights",
        ck.tie_weights.to_string(),
        flags.tie_weights.to_string(),
    ));
    pairs
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(f, a, b)| format!("{f} {b} (checkpoint: {a})"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::checkpoint::Position;
    use crate::model::Params;

    #[test]
    fn only_the_newest_numbered_checkpoints_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "epoch-1.safetensors",
            "epoch-2.safetensors",
            "epoch-10.safetensors",
            "epoch-11.safetensors",
            "epoch-x.safetensors",
            "epoch-3.safetensors.tmp",
            "step-5.safetensors",
            "best.safetensors",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let found = numbered_checkpoints(dir.path(), "epoch").unwrap();
        let numbers: Vec<u64> = found.iter().map(|(k, _)| *k).collect();
        assert_eq!(numbers, [1, 2, 10, 11], "sorted by number, not by name");
        let names = |paths: Vec<PathBuf>| -> Vec<String> {
            paths
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            names(beyond_newest(found.clone(), 11, 2)),
            ["epoch-2.safetensors", "epoch-1.safetensors"]
        );
        // Resumed at epoch 2 of an earlier, longer history: 10 and 11 are not touched.
        assert_eq!(
            names(beyond_newest(found.clone(), 2, 1)),
            ["epoch-1.safetensors"]
        );
        assert!(beyond_newest(found, 11, 4).is_empty());
        assert_eq!(numbered_checkpoints(dir.path(), "step").unwrap().len(), 1);
    }

    /// A checkpoint file whose position says `best`.
    fn checkpoint_with_best(path: &Path, best: Option<BestEpoch>) {
        let config = Config {
            vocab_size: 4,
            embedding_size: 2,
            hidden: vec![2],
            batch_size: 1,
            ..Config::default()
        };
        let ck = Checkpoint {
            init: None,
            corpus: None,
            params: Params::<f32>::init(&config, 1),
            vocab: ["<eos>", "a", "b", "<unk>"].map(String::from).to_vec(),
            config,
            state: None,
            position: Position {
                best,
                ..Default::default()
            },
        };
        write_atomic(path, &ck.to_bytes().unwrap()).unwrap();
    }

    #[test]
    fn the_best_checkpoint_follows_a_run_into_another_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("old"), dir.path().join("new"));
        std::fs::create_dir_all(&old).unwrap();
        std::fs::create_dir_all(&new).unwrap();
        let b = |epoch| {
            Some(BestEpoch {
                epoch,
                valid_perplexity: 120.0 + epoch as f64,
            })
        };
        let resume = old.join("step-30.safetensors");
        // No best yet: nothing to settle.
        assert_eq!(settle_best(&new, Some(&resume), None).unwrap(), None);
        // The folder holds it already.
        checkpoint_with_best(&new.join(BEST), b(1));
        assert_eq!(settle_best(&new, Some(&resume), b(1)).unwrap(), b(1));
        // Another history's best (epoch 3) is not this run's (epoch 2), nor is one in the
        // folder resumed from: the best starts over.
        checkpoint_with_best(&new.join(BEST), b(3));
        checkpoint_with_best(&old.join(BEST), b(3));
        assert_eq!(settle_best(&new, Some(&resume), b(2)).unwrap(), None);
        // The folder resumed from holds it: copied, byte for byte.
        checkpoint_with_best(&old.join(BEST), b(2));
        assert_eq!(settle_best(&new, Some(&resume), b(2)).unwrap(), b(2));
        assert_eq!(
            std::fs::read(new.join(BEST)).unwrap(),
            std::fs::read(old.join(BEST)).unwrap()
        );
        // Resumed from epoch 4 in its own folder, whose best.safetensors a later history
        // (epoch 6) overwrote: the epoch checkpoint of the best epoch (3) is the best.
        checkpoint_with_best(&new.join(BEST), b(6));
        checkpoint_with_best(&new.join("epoch-3.safetensors"), b(3));
        let resume_here = new.join("epoch-4.safetensors");
        assert_eq!(settle_best(&new, Some(&resume_here), b(3)).unwrap(), b(3));
        assert_eq!(
            std::fs::read(new.join(BEST)).unwrap(),
            std::fs::read(new.join("epoch-3.safetensors")).unwrap()
        );
        // An epoch file of another history (its best another epoch) is not taken.
        checkpoint_with_best(&new.join("epoch-5.safetensors"), b(4));
        assert_eq!(settle_best(&new, Some(&resume_here), b(5)).unwrap(), None);
    }
}
