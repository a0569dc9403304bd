//! Checkpoints in safetensors: the parameters under the names and layouts of
//! [`crate::model`], the carried recurrent state under `state.{l}.c` / `state.{l}.h`, and in
//! the metadata the configuration, the whole vocabulary and the training position, so that a
//! checkpoint alone is enough to resume, evaluate, predict or generate.
//!
//! Metadata keys (all strings; JSON where structured):
//! - `format`: `lstm-gpu/1`
//! - `config`: [`Config`] as JSON
//! - `vocab`: the vocabulary as a JSON array of words, index = id
//! - `position`: [`Position`] as JSON
//! - `checksum`: FNV-1a 64 of every tensor's bytes in name order, hex (catches bit flips)
//!
//! Files are written to a temporary file beside the target, synced, then renamed, so a crash
//! or a full disk never leaves half a checkpoint under the real name.

use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use crate::config::Config;
use crate::data::CorpusOrigin;
use crate::model::{tensor_specs, Params, State};

pub const FORMAT: &str = "lstm-gpu/1";

/// Where training stands: enough to continue exactly.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Epoch in progress (counted from 0); equals `max_epoch` when training finished.
    pub epoch: usize,
    /// Training batches of this epoch already done.
    pub step_in_epoch: usize,
    /// Training steps done since the very start.
    pub global_step: u64,
    /// Learning rate of the epoch in progress.
    pub learning_rate: f32,
    /// The run's seed: initialisation and the dropout generator, whose state is the pair
    /// (seed, global_step) since it is counter-based.
    pub seed: u64,
    /// Sum of the batch losses of this epoch so far (for the epoch's perplexity).
    pub epoch_loss_sum: f64,
    /// Wall-clock seconds spent training so far.
    pub train_seconds: f64,
    /// Steps of this epoch skipped for a non-finite loss or gradient norm (`--on-nan
    /// skip`); their loss is not in `epoch_loss_sum`. Absent in older checkpoints: 0.
    #[serde(default)]
    pub epoch_skipped: usize,
    /// Steps skipped since the very start.
    #[serde(default)]
    pub skipped_steps: u64,
    /// `--precision mixed`: the dynamic loss scale where training stands. Absent in f32
    /// and older checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<crate::gpu::loss_scale::LossScale>,
    /// The epoch with the lowest validation perplexity so far (its checkpoint is the run's
    /// `best.safetensors`). Absent before the first epoch ends, and in older checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<BestEpoch>,
}

/// An epoch and its validation perplexity: the best of a run so far.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BestEpoch {
    /// Counted from 1, as the epoch lines and `epoch-N.safetensors` count.
    pub epoch: usize,
    pub valid_perplexity: f64,
}

impl BestEpoch {
    /// `valid` after `epoch` is better than `best` (a first finite perplexity always is; a
    /// NaN or infinite one never).
    pub fn improves(best: Option<BestEpoch>, valid: f64) -> bool {
        valid.is_finite() && best.is_none_or(|b| valid < b.valid_perplexity)
    }
}

/// What a checkpoint's header says ([`Checkpoint::read_header`]), without its tensors.
#[derive(Clone, Debug)]
pub struct CheckpointHeader {
    pub config: Config,
    pub vocab: Vec<String>,
    pub position: Position,
    /// The corpus it was trained on, where the command line named one.
    pub corpus: Option<CorpusOrigin>,
    /// The weights its run started from (`train --init`), where it did not start from a
    /// fresh initialisation.
    pub init: Option<String>,
}

/// Everything a checkpoint holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub config: Config,
    pub vocab: Vec<String>,
    pub params: Params<f32>,
    /// The state carried into the next batch (absent at epoch boundaries, where it is zero).
    pub state: Option<State<f32>>,
    pub position: Position,
    /// The corpus it was trained on, as the command line named it (`--data`, `--train`,
    /// ...): `eval` and `train --resume` read it again when given none. `None` for the
    /// default corpus, a page's text and older checkpoints.
    pub corpus: Option<CorpusOrigin>,
    /// The weights its run started from, as `train --init` named them (the path made
    /// absolute; kept across `--resume`): the model it was fine-tuned from. `None` for a run
    /// from a fresh initialisation, a page's model and older checkpoints.
    pub init: Option<String>,
}

fn fnv1a(hash: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *hash ^= b as u64;
        *hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
}

fn state_specs(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    let mut v = Vec::new();
    for (l, &h) in cfg.hidden.iter().enumerate() {
        v.push((format!("state.{l}.c"), vec![cfg.batch_size, h]));
        v.push((format!("state.{l}.h"), vec![cfg.batch_size, h]));
    }
    v
}

fn checksum<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut sorted: Vec<_> = tensors.collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for (name, bytes) in sorted {
        fnv1a(&mut h, name.as_bytes());
        fnv1a(&mut h, bytes);
    }
    format!("{h:016x}")
}

impl Checkpoint {
    /// Serialise to safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut named: Vec<(String, Vec<usize>, &[f32])> = Vec::new();
        for ((name, shape), (_, data)) in tensor_specs(&self.config)
            .into_iter()
            .zip(self.params.tensors())
        {
            named.push((name, shape, data));
        }
        if let Some(state) = &self.state {
            let specs = state_specs(&self.config);
            for (l, (c, h)) in state.c.iter().zip(&state.h).enumerate() {
                named.push((specs[2 * l].0.clone(), specs[2 * l].1.clone(), c));
                named.push((specs[2 * l + 1].0.clone(), specs[2 * l + 1].1.clone(), h));
            }
        }
        let mut views = Vec::new();
        for (name, shape, data) in &named {
            let bytes: &[u8] = bytemuck::cast_slice(data);
            views.push((
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), bytes)?,
            ));
        }
        let sum = checksum(
            named
                .iter()
                .map(|(n, _, d)| (n.as_str(), bytemuck::cast_slice::<f32, u8>(d))),
        );
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), FORMAT.to_string());
        meta.insert("config".to_string(), serde_json::to_string(&self.config)?);
        meta.insert("vocab".to_string(), serde_json::to_string(&self.vocab)?);
        meta.insert(
            "position".to_string(),
            serde_json::to_string(&self.position)?,
        );
        if let Some(corpus) = &self.corpus {
            meta.insert("corpus".to_string(), serde_json::to_string(corpus)?);
        }
        if let Some(init) = &self.init {
            meta.insert("init".to_string(), init.clone());
        }
        meta.insert("checksum".to_string(), sum);
        Ok(safetensors::serialize(views, Some(meta))?)
    }

    /// Write atomically: temporary file in the same folder, fsync, rename.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        write_atomic(path, &bytes)
            .with_context(|| format!("could not write checkpoint {}", path.display()))
    }

    /// Read and check a checkpoint written by [`Checkpoint::save`].
    pub fn load(path: &Path) -> Result<Checkpoint> {
        checkpoint_file(path, "checkpoint")?;
        let bytes = std::fs::read(path)
            .with_context(|| format!("could not read checkpoint {}", path.display()))?;
        Self::from_bytes(&bytes).with_context(|| format!("checkpoint {}", path.display()))
    }

    /// The training position of a checkpoint file, from its header alone (the tensors are
    /// neither read nor checked).
    pub fn read_position(path: &Path) -> Result<Position> {
        let meta = read_metadata(path)?;
        let position = meta["position"]
            .as_str()
            .ok_or_else(|| anyhow!("checkpoint {}: no training position", path.display()))?;
        serde_json::from_str(position).with_context(|| {
            format!(
                "checkpoint {}: metadata `position` is malformed",
                path.display()
            )
        })
    }

    /// A checkpoint's model, vocabulary and where its training stood, from its header alone
    /// (the tensors are neither read nor checked): what a command needs to know of several
    /// checkpoints before it opens the adapter. A missing path or a folder is a usage error,
    /// as for [`Checkpoint::load`].
    pub fn read_header(path: &Path) -> Result<CheckpointHeader> {
        Self::read_header_if_any(path)?.ok_or_else(|| {
            anyhow!(
                "checkpoint {}: no lstm-gpu metadata: not written by lstm-gpu (use --init to load bare weights)",
                path.display()
            )
        })
    }

    /// [`read_header`](Self::read_header), or `None` where the file is a valid safetensors
    /// file without lstm-gpu's metadata (bare weights, as `--init` also reads).
    pub fn read_header_if_any(path: &Path) -> Result<Option<CheckpointHeader>> {
        checkpoint_file(path, "checkpoint")?;
        let (mut header, data_start, file_len) = read_header_json(path)?;
        // What loading it would find first, in the order it would: a file shorter than its
        // tensors, no lstm-gpu metadata, another format.
        let wrong = |why: String| anyhow!("checkpoint {}: {why}", path.display());
        let tensors_end = header
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(name, _)| *name != "__metadata__")
            .filter_map(|(_, t)| t["data_offsets"][1].as_u64())
            .max()
            .unwrap_or(0);
        if data_start.saturating_add(tensors_end) > file_len {
            return Err(wrong(format!(
                "not a valid safetensors file (truncated or corrupt?): its tensors need {tensors_end} bytes after the header, the file has {}",
                file_len.saturating_sub(data_start)
            )));
        }
        let meta = header["__metadata__"].take();
        if meta.is_null() {
            return Ok(None);
        }
        parse_metadata(|k| meta[k].as_str())
            .map(Some)
            .with_context(|| format!("checkpoint {}", path.display()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Checkpoint> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| anyhow!("not a valid safetensors file (truncated or corrupt?): {e}"))?;
        let (_, header) =
            SafeTensors::read_metadata(bytes).map_err(|e| anyhow!("unreadable header: {e}"))?;
        let meta = header.metadata().clone().ok_or_else(|| {
            anyhow!(
                "no lstm-gpu metadata: not written by lstm-gpu (use --init to load bare weights)"
            )
        })?;
        let CheckpointHeader {
            config,
            vocab,
            position,
            corpus,
            init,
        } = parse_metadata(|k| meta.get(k).map(String::as_str))?;

        let mut seen = Vec::new();
        let params = read_params(&st, &config, &mut seen)?;
        let state = if st.names().iter().any(|n| n.starts_with("state.")) {
            for (name, shape) in state_specs(&config) {
                check_tensor(&st, &name, &shape)?;
            }
            let mut s = State::<f32>::zeros(&config, config.batch_size);
            for (l, (c, h)) in s.c.iter_mut().zip(s.h.iter_mut()).enumerate() {
                *c = read_tensor(
                    &st,
                    &format!("state.{l}.c"),
                    &[config.batch_size, config.hidden[l]],
                    &mut seen,
                )?;
                *h = read_tensor(
                    &st,
                    &format!("state.{l}.h"),
                    &[config.batch_size, config.hidden[l]],
                    &mut seen,
                )?;
            }
            Some(s)
        } else {
            None
        };
        let want = meta
            .get("checksum")
            .ok_or_else(|| anyhow!("metadata has no `checksum`: not an lstm-gpu checkpoint"))?;
        let got = checksum(seen.iter().map(|(n, d): &(String, &[u8])| (n.as_str(), *d)));
        if &got != want {
            bail!("checksum mismatch (stored {want}, computed {got}): the file is corrupt");
        }
        Ok(Checkpoint {
            config,
            vocab,
            params,
            state,
            position,
            corpus,
            init,
        })
    }
}

/// The tensor `name`, checked to be F32 of `shape`.
fn check_tensor<'a>(st: &SafeTensors<'a>, name: &str, shape: &[usize]) -> Result<TensorView<'a>> {
    let t = st
        .tensor(name)
        .map_err(|_| anyhow!("tensor `{name}` is missing"))?;
    if t.dtype() != Dtype::F32 {
        bail!("tensor `{name}` is {:?}, expected F32", t.dtype());
    }
    if t.shape() != shape {
        bail!(
            "tensor `{name}` has shape {:?}, the configuration needs {:?}",
            t.shape(),
            shape
        );
    }
    Ok(t)
}

fn read_tensor<'a>(
    st: &SafeTensors<'a>,
    name: &str,
    shape: &[usize],
    seen: &mut Vec<(String, &'a [u8])>,
) -> Result<Vec<f32>> {
    let t = check_tensor(st, name, shape)?;
    seen.push((name.to_string(), t.data()));
    Ok(bytemuck::pod_collect_to_vec(t.data()))
}

fn read_params<'a>(
    st: &SafeTensors<'a>,
    cfg: &Config,
    seen: &mut Vec<(String, &'a [u8])>,
) -> Result<Params<f32>> {
    // Check every shape before allocating: the configuration comes from the file too, and
    // only tensors that are really there may bound what is allocated.
    for (name, shape) in tensor_specs(cfg) {
        check_tensor(st, &name, &shape)?;
    }
    let mut p = Params::<f32>::zeros(cfg);
    for ((name, shape), (_, dst)) in tensor_specs(cfg).into_iter().zip(p.tensors_mut()) {
        *dst = read_tensor(st, &name, &shape, seen)?;
    }
    Ok(p)
}

/// A checkpoint's lstm-gpu metadata (`get` reads a key's string), checked as loading it
/// checks it: the format, then the configuration, the vocabulary against it, the position,
/// the corpus where it names one, and the weights its run started from where it names them.
fn parse_metadata<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<CheckpointHeader> {
    let field = |k: &str| {
        get(k).ok_or_else(|| anyhow!("metadata has no `{k}`: not an lstm-gpu checkpoint"))
    };
    let format = field("format")?;
    if format != FORMAT {
        bail!("format `{format}` is not {FORMAT}: written by another program or version");
    }
    let config: Config =
        serde_json::from_str(field("config")?).context("metadata `config` is malformed")?;
    config.validate().context("metadata `config` is invalid")?;
    let vocab: Vec<String> =
        serde_json::from_str(field("vocab")?).context("metadata `vocab` is malformed")?;
    if vocab.len() != config.vocab_size {
        bail!(
            "its vocabulary has {} words but its config says {}",
            vocab.len(),
            config.vocab_size
        );
    }
    let position: Position =
        serde_json::from_str(field("position")?).context("metadata `position` is malformed")?;
    let corpus = get("corpus")
        .map(serde_json::from_str)
        .transpose()
        .context("metadata `corpus` is malformed")?;
    let init = get("init").map(str::to_string);
    Ok(CheckpointHeader {
        config,
        vocab,
        position,
        corpus,
        init,
    })
}

/// The `__metadata__` of a safetensors file's header, read without its tensors.
fn read_metadata(path: &Path) -> Result<serde_json::Value> {
    let (mut header, _, _) = read_header_json(path)?;
    Ok(header["__metadata__"].take())
}

/// A safetensors file's JSON header, read without its tensors; where its tensors' data
/// starts, and the file's length.
fn read_header_json(path: &Path) -> Result<(serde_json::Value, u64, u64)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("could not read checkpoint {}", path.display()))?;
    let file_len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut len = [0u8; 8];
    if file_len < 8 {
        bail!(
            "checkpoint {}: not a safetensors file ({file_len} bytes: too short for a header)",
            path.display()
        );
    }
    f.read_exact(&mut len)
        .with_context(|| format!("checkpoint {}: no header", path.display()))?;
    let len = u64::from_le_bytes(len);
    // safetensors' own bound on a header.
    if len > 100_000_000 {
        bail!(
            "checkpoint {}: not a safetensors file (its first 8 bytes give no header length)",
            path.display()
        );
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header)
        .with_context(|| format!("checkpoint {}: header cut short", path.display()))?;
    let header: serde_json::Value = serde_json::from_slice(&header)
        .with_context(|| format!("checkpoint {}: unreadable header", path.display()))?;
    Ok((header, 8 + len, file_len))
}

/// Load bare weights (any safetensors file with the documented names, shapes and F32 data,
/// e.g. exported from another framework) for `--init`.
pub fn load_weights(path: &Path, cfg: &Config) -> Result<Params<f32>> {
    checkpoint_file(path, "weights")?;
    let bytes = std::fs::read(path)
        .with_context(|| format!("could not read weights {}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| {
        anyhow!(
            "weights {}: not a valid safetensors file: {e}",
            path.display()
        )
    })?;
    read_params(&st, cfg, &mut Vec::new()).with_context(|| format!("weights {}", path.display()))
}

/// The checkpoints a training run keeps in its folder, newest use first.
pub const RUN_CHECKPOINTS: [(&str, &str); 2] = [
    (
        "best.safetensors",
        "the epoch with the lowest validation perplexity",
    ),
    ("last.safetensors", "where training stopped"),
];

/// `path` names a file that can be read as a checkpoint: a missing path or a folder is a
/// usage error (exit 2), a run folder's one naming the checkpoints in it.
fn checkpoint_file(path: &Path, what: &str) -> Result<()> {
    if path.is_dir() {
        let inside: Vec<String> = RUN_CHECKPOINTS
            .iter()
            .filter(|(name, _)| path.join(name).is_file())
            .map(|(name, why)| format!("{} ({why})", path.join(name).display()))
            .collect();
        return Err(crate::error::usage(if inside.is_empty() {
            format!(
                "{what} {} is a folder; give a .safetensors file",
                path.display()
            )
        } else {
            format!(
                "{what} {} is a run folder; give one of its checkpoints: {}",
                path.display(),
                inside.join(" or ")
            )
        }));
    }
    if !path.exists() {
        return Err(crate::error::usage(format!(
            "{what} {} does not exist",
            path.display()
        )));
    }
    Ok(())
}

/// An I/O error of a write as one clear cause: a full disk or a file size limit says what
/// to do about it.
pub fn explain_write_error(e: std::io::Error) -> anyhow::Error {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::StorageFull | ErrorKind::FileTooLarge | ErrorKind::QuotaExceeded => anyhow!(
            "{e}: the disk is full or a file size limit was reached; free some space or raise the limit"
        ),
        _ => e.into(),
    }
}

/// Write `bytes` to `path` through a temporary file in the same folder and a rename; the
/// temporary file is removed on any failure.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        bail!("folder {} does not exist", dir.display());
    }
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        // Closed before the rename (a no-op type on wasm32, where nothing writes files).
        #[allow(clippy::drop_non_drop)]
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        // Never leave half a file behind, whatever failed (a full disk, a size limit).
        let _ = std::fs::remove_file(&tmp);
        return Err(explain_write_error(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Checkpoint {
        let config = Config {
            vocab_size: 6,
            embedding_size: 3,
            hidden: vec![4, 2],
            batch_size: 2,
            ..Config::default()
        };
        let params = Params::<f32>::init(&config, 3);
        let mut state = State::<f32>::zeros(&config, 2);
        state.c[1][0] = 0.5;
        let vocab = ["<eos>", "the", "a", "<unk>", "cat", "dog"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let position = Position {
            epoch: 1,
            step_in_epoch: 7,
            global_step: 20,
            learning_rate: 0.5,
            seed: 9,
            ..Default::default()
        };
        Checkpoint {
            init: None,
            corpus: None,
            config,
            vocab,
            params,
            state: Some(state),
            position,
        }
    }

    #[test]
    fn round_trip() {
        let ck = tiny();
        let back = Checkpoint::from_bytes(&ck.to_bytes().unwrap()).unwrap();
        assert_eq!(back, ck);
        let no_state = Checkpoint { state: None, ..ck };
        assert_eq!(
            Checkpoint::from_bytes(&no_state.to_bytes().unwrap()).unwrap(),
            no_state
        );
        // The corpus it was trained on, where named: in the file and in its header.
        let origin =
            CorpusOrigin::of_flags(None, Some(Path::new("story.txt")), None, None, Some(0.1));
        // And the weights its run started from (`--init`).
        let init = Some("/runs/ptb/best.safetensors".to_string());
        let named = Checkpoint {
            corpus: origin.clone(),
            init: init.clone(),
            ..no_state
        };
        let bytes = named.to_bytes().unwrap();
        assert_eq!(Checkpoint::from_bytes(&bytes).unwrap(), named);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        let header = Checkpoint::read_header(&path).unwrap();
        assert_eq!((header.corpus, header.init), (origin.clone(), init));
        let origin = origin.unwrap();
        assert!(origin.train.as_ref().unwrap().is_absolute());
        assert_eq!(
            origin.flags(),
            format!(
                "--train {} --valid-fraction 0.1",
                std::env::current_dir().unwrap().join("story.txt").display()
            )
        );
    }

    /// Tied weights: one tensor (`embedding`), no `softmax.weight`, and a config that says
    /// so; the file round-trips.
    #[test]
    fn tied_checkpoints_hold_the_embedding_once() {
        let mut ck = tiny();
        ck.config.embedding_size = 2;
        ck.config.tie_weights = true;
        ck.config.validate().unwrap();
        ck.params = Params::<f32>::init(&ck.config, 4);
        assert!(ck.params.softmax_w.is_empty());
        let bytes = ck.to_bytes().unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let names = st.names();
        assert!(!names.contains(&"softmax.weight"), "{names:?}");
        assert_eq!(st.tensor("embedding").unwrap().shape(), [6, 2]);
        let back = Checkpoint::from_bytes(&bytes).unwrap();
        assert!(back.config.tie_weights);
        assert_eq!(back, ck);
        // An untied configuration needs its softmax.weight.
        let mut untied = ck.clone();
        untied.config.tie_weights = false;
        untied.params.softmax_w = vec![0.5; 2 * 6];
        let err = load_weights_from(&bytes, &untied.config).unwrap_err();
        assert!(format!("{err:#}").contains("softmax.weight"), "{err:#}");
    }

    fn load_weights_from(bytes: &[u8], cfg: &Config) -> Result<Params<f32>> {
        let st = SafeTensors::deserialize(bytes).unwrap();
        read_params(&st, cfg, &mut Vec::new())
    }

    #[test]
    fn the_position_reads_from_the_header_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.safetensors");
        let mut ck = tiny();
        ck.position.best = Some(BestEpoch {
            epoch: 1,
            valid_perplexity: 123.5,
        });
        let bytes = ck.to_bytes().unwrap();
        write_atomic(&p, &bytes).unwrap();
        assert_eq!(Checkpoint::read_position(&p).unwrap(), ck.position);
        // The tensors are not read: a file cut after its header still gives its position.
        let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        std::fs::write(&p, &bytes[..header]).unwrap();
        assert_eq!(Checkpoint::read_position(&p).unwrap(), ck.position);
        assert!(Checkpoint::load(&p).is_err());
        // `read_header` is what a command reads before it opens the adapter: a file shorter
        // than its tensors is said so there, as loading it would say.
        let e = format!("{:#}", Checkpoint::read_header(&p).unwrap_err());
        assert!(e.contains("truncated"), "{e}");
        write_atomic(&p, &bytes).unwrap();
        let h = Checkpoint::read_header(&p).unwrap();
        assert_eq!(
            (h.config, h.vocab, h.position),
            (ck.config.clone(), ck.vocab.clone(), ck.position.clone())
        );
        std::fs::write(&p, &bytes[..header - 1]).unwrap();
        assert!(Checkpoint::read_position(&p).is_err());
        assert!(Checkpoint::read_header(&p).is_err());
        // A safetensors file of someone else's: no configuration, said as such.
        let other = safetensors::serialize(
            [(
                "w",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &[0u8; 4])
                    .unwrap(),
            )],
            None,
        )
        .unwrap();
        std::fs::write(&p, other).unwrap();
        let e = format!("{:#}", Checkpoint::read_header(&p).unwrap_err());
        assert!(e.contains("not written by lstm-gpu"), "{e}");
        // A few bytes of text: too short for a safetensors header, said as such.
        std::fs::write(&p, "hello\n").unwrap();
        let e = format!("{:#}", Checkpoint::read_header(&p).unwrap_err());
        assert!(e.contains("not a safetensors file (6 bytes"), "{e}");
        // A checkpoint written before `best` existed reads as none.
        let old = ck.position.clone();
        let json = serde_json::to_string(&Position { best: None, ..old }).unwrap();
        assert!(!json.contains("best"), "{json}");
        let back: Position = serde_json::from_str(&json).unwrap();
        assert_eq!(back.best, None);
    }

    #[test]
    fn a_better_epoch_is_a_lower_finite_perplexity() {
        let best = Some(BestEpoch {
            epoch: 2,
            valid_perplexity: 100.0,
        });
        assert!(BestEpoch::improves(None, 500.0));
        assert!(BestEpoch::improves(best, 99.9));
        assert!(!BestEpoch::improves(best, 100.0));
        assert!(!BestEpoch::improves(best, 100.1));
        assert!(!BestEpoch::improves(None, f64::NAN));
        assert!(!BestEpoch::improves(best, f64::INFINITY));
    }

    #[test]
    fn a_folder_or_a_missing_file_is_a_usage_error_naming_what_to_give() {
        let dir = tempfile::tempdir().unwrap();
        let is_usage = |e: &anyhow::Error| e.downcast_ref::<crate::error::UsageError>().is_some();
        let e = Checkpoint::load(dir.path()).unwrap_err();
        assert!(
            is_usage(&e) && format!("{e}").contains("is a folder; give a .safetensors file"),
            "{e}"
        );
        let e = Checkpoint::load(&dir.path().join("none.safetensors")).unwrap_err();
        assert!(
            is_usage(&e) && format!("{e}").contains("does not exist"),
            "{e}"
        );
        write_atomic(
            &dir.path().join("last.safetensors"),
            &tiny().to_bytes().unwrap(),
        )
        .unwrap();
        let e = format!("{}", Checkpoint::load(dir.path()).unwrap_err());
        assert!(
            e.contains("is a run folder")
                && e.contains("last.safetensors (where training stopped)"),
            "{e}"
        );
        assert!(!e.contains("best.safetensors"), "{e}");
        let e = format!("{}", load_weights(dir.path(), &tiny().config).unwrap_err());
        assert!(
            e.starts_with("weights ") && e.contains("is a run folder"),
            "{e}"
        );
    }

    #[test]
    fn corruption_is_detected() {
        let bytes = tiny().to_bytes().unwrap();
        let err = |b: &[u8]| format!("{:#}", Checkpoint::from_bytes(b).unwrap_err());
        assert!(err(&bytes[..bytes.len() - 5]).contains("safetensors"));
        let mut flipped = bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x10;
        assert!(err(&flipped).contains("checksum"), "{}", err(&flipped));
        assert!(err(b"hello world, not a checkpoint").contains("safetensors"));
    }

    #[test]
    fn atomic_write_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.safetensors");
        tiny().save(&p).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
        assert!(tiny()
            .save(&dir.path().join("missing/a.safetensors"))
            .is_err());
    }

    /// A write that fails after its temporary file exists (here the rename, onto a folder
    /// that is not empty) removes the temporary file and leaves what was there alone.
    #[test]
    fn a_failed_atomic_write_removes_its_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.safetensors");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), b"kept").unwrap();
        let err = tiny().save(&target).unwrap_err();
        assert!(format!("{err:#}").contains("a.safetensors"), "{err:#}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["a.safetensors".to_string()]);
        assert_eq!(std::fs::read(target.join("inside")).unwrap(), b"kept");
    }

    #[test]
    fn a_full_disk_is_named() {
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert!(format!("{}", explain_write_error(full)).contains("the disk is full"));
        let other = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(!format!("{}", explain_write_error(other)).contains("disk"));
    }
}
