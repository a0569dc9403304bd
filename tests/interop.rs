//! Interoperability: a checkpoint loads in Python with the `safetensors` package; an
//! independent NumPy forward pass written from the documented names and layouts
//! (`tests/python/forward.py`) gives the program's own next-word probabilities; and
//! independent NumPy training steps (`tests/python/train_steps.py`) train as the program
//! does. Needs `python3` with `numpy` and `safetensors` (`.ci/run` installs them).

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

    let mut args = vec![path.into_os_string()];
    args.extend(context.iter().map(Into::into));
    let theirs = numpy("forward.py", &args);
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

/// The program's training, checked against an independent NumPy implementation written
/// from the TensorFlow tutorial's semantics and the documented checkpoint layout only
/// (`tests/python/train_steps.py`: its own reader, batch layout, LSTM, backpropagation
/// through time, dropout where the tutorial applies it, global-norm clipping and SGD, in
/// f64; only the dropout masks' generator is the program's, as documented): from the same
/// initial weights, `lstm-gpu train` on the tiny corpus gives NumPy's perplexity and rate
/// at every step into the second epoch (its rate halved, its state from zero) and its
/// weights after the last, some steps clipped and some not, with separate and with tied
/// softmax weights, with and without dropout. The trained model's
/// perplexity on the test split (`lstm-gpu eval`, batch 1 as the tutorial scores it) and on
/// the valid split (2 rows of 3 steps) is NumPy's too (`tests/python/perplexity.py`: no
/// dropout in evaluation, the state carried through the split).
#[test]
fn numpy_training_steps_match_the_programs_training() {
    numpy_trains_alike(false, 1.0);
    numpy_trains_alike(true, 1.0);
    numpy_trains_alike(false, 0.7);
    numpy_trains_alike(true, 0.6);
}

fn numpy_trains_alike(tie_weights: bool, keep: f32) {
    const CLIP: f32 = 2.0;
    let dir = tempfile::tempdir().unwrap();
    let tiny = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/tiny"));
    let corpus = lstm_gpu::data::Corpus::load(&tiny, 60).unwrap();
    // Into the second epoch (2 rows of 5 steps), whose rate is halved.
    let epoch_steps = (corpus.train.len() / 2 - 1) / 5;
    let total_steps = epoch_steps + 4;
    let embedding = if tie_weights { 6 } else { 8 };
    let config = Config {
        vocab_size: corpus.vocab.len(),
        embedding_size: embedding,
        tie_weights,
        hidden: vec![8, 6],
        batch_size: 2,
        num_steps: 5,
        init_scale: 0.5,
        forget_bias: 0.5,
        keep_prob: keep,
        max_grad_norm: CLIP,
        ..Config::default()
    };
    let init = dir.path().join("init.safetensors");
    Checkpoint {
        params: Params::<f32>::init(&config, 3),
        config,
        vocab: corpus.vocab.words().to_vec(),
        state: None,
        position: Position::default(),
    }
    .save(&init)
    .unwrap();

    let run = dir.path().join("run");
    let embedding = embedding.to_string();
    let clip = CLIP.to_string();
    let steps = total_steps.to_string();
    let keep_flag = keep.to_string();
    let mut args = vec![
        "train",
        "--vocab-size",
        "60",
        "--embedding-size",
        &embedding,
        "--hidden",
        "8,6",
        "--batch-size",
        "2",
        "--num-steps",
        "5",
        "--keep-prob",
        &keep_flag,
        "--forget-bias",
        "0.5",
        "--max-grad-norm",
        &clip,
        "--max-epoch-decay-lr",
        "0",
        "--decay",
        "0.5",
        "--max-steps",
        &steps,
        "--log-every",
        "1",
        "--no-eval-at-stop",
        "--no-progress",
    ];
    if tie_weights {
        args.push("--tie-weights");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_lstm-gpu"))
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env("LSTM_GPU_TUNE", "off")
        .args(args)
        .arg("--data")
        .arg(&tiny)
        .arg("--init")
        .arg(&init)
        .arg("--run-dir")
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = run.join("last.safetensors");

    let numpy_out = dir.path().join("numpy.safetensors");
    let theirs = numpy(
        "train_steps.py",
        &[
            init.clone().into(),
            ours.clone().into(),
            tiny.join("ptb.train.txt").into(),
            steps.clone().into(),
            numpy_out.clone().into(),
        ],
    );
    let theirs = theirs["steps"].as_array().unwrap();
    assert_eq!(theirs.len(), total_steps);
    assert_eq!(
        theirs[total_steps - 1]["epoch"],
        2,
        "the steps reach the second epoch"
    );
    // Both paths of the clipping are exercised.
    let norms: Vec<f64> = theirs
        .iter()
        .map(|s| s["grad_norm"].as_f64().unwrap())
        .collect();
    assert!(
        norms.iter().any(|&n| n > CLIP as f64) && norms.iter().any(|&n| n < CLIP as f64),
        "tied {tie_weights}, keep {keep}: the steps' gradient norms {norms:?} should lie on both sides of the clip {CLIP}"
    );

    // The epoch's perplexity so far and the rate at every step, as the program logged them.
    let logged: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|m| m["kind"] == "train")
        .collect();
    assert_eq!(logged.len(), total_steps, "one log line per step");
    for (s, (ours, theirs)) in logged.iter().zip(theirs).enumerate() {
        let (ppl, theirs_ppl) = (
            ours["perplexity"].as_f64().unwrap(),
            theirs["perplexity"].as_f64().unwrap(),
        );
        assert!(
            (ppl - theirs_ppl).abs() <= 1e-5 * theirs_ppl,
            "tied {tie_weights}, keep {keep}, step {s}: perplexity so far {ppl} (program) vs {theirs_ppl} (NumPy)"
        );
        assert_eq!(
            ours["learning_rate"].as_f64().unwrap(),
            theirs["learning_rate"].as_f64().unwrap(),
            "tied {tie_weights}, keep {keep}, step {s}: learning rate"
        );
    }

    // Every weight after the last step.
    let ours = std::fs::read(&ours).unwrap();
    let ours = safetensors::SafeTensors::deserialize(&ours).unwrap();
    let theirs = std::fs::read(&numpy_out).unwrap();
    let theirs = safetensors::SafeTensors::deserialize(&theirs).unwrap();
    let mut names = theirs.names();
    names.sort();
    assert_eq!(names.len(), if tie_weights { 6 } else { 7 }, "{names:?}");
    for name in names {
        let got: Vec<f32> = bytemuck::pod_collect_to_vec(ours.tensor(name).unwrap().data());
        let want: Vec<f64> = bytemuck::pod_collect_to_vec(theirs.tensor(name).unwrap().data());
        let num: f64 = got
            .iter()
            .zip(&want)
            .map(|(&g, w)| (g as f64 - w).powi(2))
            .sum();
        let den: f64 = want.iter().map(|w| w * w).sum();
        let rel = (num / den).sqrt();
        assert!(
            got.len() == want.len() && rel <= 1e-5,
            "tied {tie_weights}, keep {keep}: {name} after {total_steps} steps: relative L2 error {rel:e} between the program and NumPy"
        );
    }

    let checkpoint = run.join("last.safetensors");
    for (split, shape) in [("test", None), ("valid", Some(("2", "3")))] {
        let mut eval = Command::new(env!("CARGO_BIN_EXE_lstm-gpu"));
        eval.env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .env("LSTM_GPU_TUNE", "off")
            .args(["eval", "--split", split, "--checkpoint"])
            .arg(&checkpoint)
            .arg("--data")
            .arg(&tiny);
        let (batch, steps) = shape.unwrap_or(("1", "1"));
        if shape.is_some() {
            eval.args(["--batch-size", batch, "--num-steps", steps]);
        }
        let out = eval.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // "test perplexity: 946.151 (37 batches of 1x1, ...)"
        let ours: f64 = stdout
            .split_once("perplexity: ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no perplexity in {stdout:?}"));
        let theirs = numpy(
            "perplexity.py",
            &[
                checkpoint.clone().into(),
                tiny.join(format!("ptb.{split}.txt")).into(),
                batch.into(),
                steps.into(),
            ],
        );
        let theirs = theirs["perplexity"].as_f64().unwrap();
        // The program prints three decimals.
        assert!(
            (ours - theirs).abs() <= 5e-4 + 1e-6 * theirs,
            "tied {tie_weights}, keep {keep}: {split} perplexity {ours} (lstm-gpu eval) vs {theirs} (NumPy)"
        );
    }
}

/// Run `tests/python/<script>` with `args` and read the JSON it prints.
fn numpy(script: &str, args: &[std::ffi::OsString]) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let py = Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is needed for the interoperability tests ({e}); install it with numpy and safetensors")
        });
    assert!(
        py.status.success(),
        "{script} failed (python3 -m pip install numpy safetensors): {}",
        String::from_utf8_lossy(&py.stderr)
    );
    serde_json::from_slice(&py.stdout).unwrap()
}
