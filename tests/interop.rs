//! Interoperability: a checkpoint loads in Python with the `safetensors` package, and an
//! independent NumPy forward pass written from the documented names and layouts
//! (`tests/python/forward.py`) gives the program's own next-word probabilities.
//! Needs `python3` with `numpy` and `safetensors` (`.ci/run` installs them).

use lstm_gpu::config::Config;
use lstm_gpu::model::checkpoint::{Checkpoint, Position};
use lstm_gpu::model::Params;
use std::process::Command;

#[test]
fn numpy_forward_pass_matches_the_programs_probabilities() {
    numpy_matches(false);
}

/// Tied weights: the checkpoint holds the embedding only (no `softmax.weight`), and NumPy
/// reads the softmax weight as its transpose.
#[test]
fn numpy_forward_pass_of_tied_weights_matches_the_programs_probabilities() {
    numpy_matches(true);
}

fn numpy_matches(tie_weights: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut vocab: Vec<String> = ["the", "<unk>", "<eos>", "stock", "market", "fell", "rose"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    vocab.extend((0..33).map(|i| format!("w{i}")));
    let config = Config {
        vocab_size: vocab.len(),
        embedding_size: if tie_weights { 7 } else { 9 },
        tie_weights,
        hidden: vec![12, 7],
        batch_size: 3,
        num_steps: 4,
        init_scale: 0.8,
        forget_bias: 0.5,
        ..Config::default()
    };
    let params = Params::<f32>::init(&config, 21);
    let ck = Checkpoint {
        config,
        vocab: vocab.clone(),
        params,
        state: None,
        position: Position::default(),
    };
    let path = dir.path().join("model.safetensors");
    ck.save(&path).unwrap();
    let names = safetensors::SafeTensors::deserialize(&std::fs::read(&path).unwrap())
        .unwrap()
        .names()
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>();
    assert_eq!(
        names.contains(&"softmax.weight".to_string()),
        !tie_weights,
        "{names:?}"
    );
    assert!(names.contains(&"embedding".to_string()));

    let context = ["the", "stock", "market", "zebra"]; // "zebra" is read as <unk>
    let out = Command::new(env!("CARGO_BIN_EXE_lstm-gpu"))
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .args(["predict", "--json", "--top-k", "10", "--checkpoint"])
        .arg(&path)
        .arg(context.join(" "))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/forward.py");
    let py = Command::new("python3").arg(script).arg(&path).args(context).output().unwrap_or_else(|e| {
        panic!("python3 is needed for the interoperability test ({e}); install it with numpy and safetensors")
    });
    assert!(
        py.status.success(),
        "the NumPy forward pass failed (pip install numpy safetensors): {}",
        String::from_utf8_lossy(&py.stderr)
    );
    let theirs: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    let probs: Vec<f64> = theirs["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(probs.len(), vocab.len());

    let next = ours["next"].as_array().unwrap();
    assert_eq!(next.len(), 10);
    for entry in next {
        let id = entry["id"].as_u64().unwrap() as usize;
        let p = entry["probability"].as_f64().unwrap();
        assert_eq!(entry["word"].as_str().unwrap(), vocab[id]);
        assert!(
            (p - probs[id]).abs() <= 1e-4,
            "{}: program {p}, NumPy {}",
            vocab[id],
            probs[id]
        );
    }
    // The program's top 10 are NumPy's top 10.
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let ours_ids: Vec<usize> = next
        .iter()
        .map(|e| e["id"].as_u64().unwrap() as usize)
        .collect();
    assert_eq!(ours_ids, order[..10].to_vec());
}
