//! TensorBoard event files: a training run's scalars, written as it logs them to
//! `metrics.jsonl`, so that `tensorboard --logdir runs` shows every run's curves as it does
//! for PyTorch's `SummaryWriter` and TensorFlow's summaries.
//!
//! The format is TensorFlow's `TFRecord` of `Event` protocol buffers, written by hand (a few
//! fields need no protobuf library):
//! - a record: the data's length (u64, little-endian), the masked CRC-32C of those 8 bytes
//!   (u32), the data, the masked CRC-32C of the data; masked as `rotate_right(crc, 15) +
//!   0xa282ead8`;
//! - `Event`: `wall_time` (field 1, double), `step` (2, int64), `file_version` (3, string;
//!   the first event of a file, `brain.Event:2`), `summary` (5, message);
//! - `Summary`: repeated `value` (1), each a `tag` (1, string) and a `simple_value` (2, float).
//!
//! The file is `events.out.tfevents.<seconds>.<host>.<pid>` in the run's folder (TensorBoard
//! reads every file whose name holds `tfevents`, in name order: a resumed run adds its own).

use anyhow::{Context, Result};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One event file of a run, appended to as the run logs.
pub struct EventWriter {
    file: std::fs::File,
    path: PathBuf,
}

impl EventWriter {
    /// A new event file in `dir`, with its version event written.
    pub fn create(dir: &Path) -> Result<EventWriter> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!(
            "events.out.tfevents.{}.{}.{}",
            now.as_secs(),
            host_name(),
            std::process::id()
        );
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("could not create {}", path.display()))?;
        let mut w = EventWriter { file, path };
        let mut event = Vec::new();
        put_double(&mut event, 1, wall_time());
        put_bytes(&mut event, 3, b"brain.Event:2");
        w.record(&event)?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Scalars at `step`, one event holding them all (nothing where `scalars` is empty).
    pub fn scalars(&mut self, step: u64, scalars: &[(&str, f32)]) -> Result<()> {
        if scalars.is_empty() {
            return Ok(());
        }
        let mut summary = Vec::new();
        for (tag, value) in scalars {
            let mut v = Vec::new();
            put_bytes(&mut v, 1, tag.as_bytes());
            put_float(&mut v, 2, *value);
            put_bytes(&mut summary, 1, &v);
        }
        let mut event = Vec::new();
        put_double(&mut event, 1, wall_time());
        put_varint_field(&mut event, 2, step);
        put_bytes(&mut event, 5, &summary);
        self.record(&event)
    }

    /// The scalars of one `metrics.jsonl` record ([`scalars_of`]), at its global step.
    pub fn metrics_record(&mut self, record: &Value) -> Result<()> {
        match scalars_of(record) {
            Some((step, scalars)) => {
                let named: Vec<(&str, f32)> = scalars.iter().map(|(t, v)| (*t, *v)).collect();
                self.scalars(step, &named)
            }
            None => Ok(()),
        }
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut bytes = Vec::with_capacity(data.len() + 16);
        bytes.extend_from_slice(&len);
        bytes.extend_from_slice(&masked_crc(&len).to_le_bytes());
        bytes.extend_from_slice(data);
        bytes.extend_from_slice(&masked_crc(data).to_le_bytes());
        self.file
            .write_all(&bytes)
            .and_then(|_| self.file.flush())
            .map_err(crate::model::checkpoint::explain_write_error)
            .with_context(|| format!("could not append to {}", self.path.display()))
    }
}

/// The TensorBoard scalars of a `metrics.jsonl` record and its global step: progress points
/// (`train`) give the running training perplexity, the speed, the learning rate, the loss
/// scale, and the mean and largest global gradient norm (before clipping) and the share of
/// steps clipped since the previous point; epochs the epoch's training and validation perplexity; a `--max-steps` stop
/// its validation perplexity; the test pass its perplexity. Values that are null (not
/// measured, or not finite) are left out.
pub fn scalars_of(record: &Value) -> Option<(u64, Vec<(&'static str, f32)>)> {
    let step = record["global_step"].as_u64()?;
    let fields: &[(&str, &'static str)] = match record["kind"].as_str()? {
        "train" => &[
            ("perplexity", "perplexity/train"),
            ("words_per_second", "speed/words_per_second"),
            ("learning_rate", "learning_rate"),
            ("loss_scale", "loss_scale"),
            ("grad_norm", "gradient/norm"),
            ("grad_norm_max", "gradient/norm_max"),
            ("clipped_fraction", "gradient/clipped_fraction"),
        ],
        "epoch" => &[
            ("train_perplexity", "perplexity/train_epoch"),
            ("valid_perplexity", "perplexity/valid"),
        ],
        "stop" => &[("valid_perplexity", "perplexity/valid")],
        "test" => &[("test_perplexity", "perplexity/test")],
        _ => return None,
    };
    let scalars = fields
        .iter()
        .filter_map(|(key, tag)| Some((*tag, record[*key].as_f64()? as f32)))
        .collect();
    Some((step, scalars))
}

fn wall_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// This machine's name for the file name (as TensorFlow names its event files), made safe
/// for a file name; `localhost` where it cannot be found.
fn host_name() -> String {
    let name = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let safe: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() {
        "localhost".into()
    } else {
        safe
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A protobuf field key: the field number and its wire type.
fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, 0);
    put_varint(out, v);
}

fn put_double(out: &mut Vec<u8>, field: u32, v: f64) {
    put_key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_float(out: &mut Vec<u8>, field: u32, v: f32) {
    put_key(out, field, 5);
    out.extend_from_slice(&v.to_le_bytes());
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit: records are small.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// TFRecord's masked CRC: stored CRCs of data that holds CRCs stay distinguishable.
fn masked_crc(data: &[u8]) -> u32 {
    crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crc32c_gives_the_standard_check_values() {
        // The check value of CRC-32C (RFC 3720's iSCSI CRC) over "123456789".
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        // RFC 3720 B.4: 32 bytes of zeros, and of 0xff.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
    }

    #[test]
    fn varints_and_keys_are_protobufs() {
        let mut v = Vec::new();
        put_varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        let mut v = Vec::new();
        put_float(&mut v, 2, 1.0);
        assert_eq!(v, [0x15, 0, 0, 0x80, 0x3f]);
        let mut v = Vec::new();
        put_bytes(&mut v, 1, b"ab");
        assert_eq!(v, [0x0a, 2, b'a', b'b']);
    }

    #[test]
    fn metrics_records_map_to_tags_at_their_global_step() {
        let (step, s) = scalars_of(
            &json!({"kind": "train", "global_step": 40, "perplexity": 300.5,
            "words_per_second": 2000.0, "learning_rate": 1.0}),
        )
        .unwrap();
        assert_eq!(step, 40);
        assert_eq!(
            s,
            [
                ("perplexity/train", 300.5),
                ("speed/words_per_second", 2000.0),
                ("learning_rate", 1.0)
            ]
        );
        let (_, s) =
            scalars_of(&json!({"kind": "stop", "global_step": 5, "valid_perplexity": null}))
                .unwrap();
        assert!(s.is_empty(), "not measured: left out");
        assert!(scalars_of(&json!({"kind": "other", "global_step": 5})).is_none());
        assert!(scalars_of(&json!({"kind": "train"})).is_none());
    }
}
