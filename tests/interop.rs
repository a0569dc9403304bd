//! Interoperability: a checkpoint loads in Python with the `safetensors` package; an
//! independent NumPy forward pass written from the documented names and layouts
//! (`tests/python/forward.py`) gives the program's own next-word probabilities; and
//! independent NumPy training steps (`tests/python/train_steps.py`) train as the program
//! does; TensorBoard reads a run's event files. Needs `python3` with `numpy`, `safetensors`
//! and `tensorboard` (`.ci/run` installs them).

use lstm_gpu::config::Config;
use lstm_gpu::model::checkpoint::{Checkpoint, Position};
use lstm_gpu::model::Params;
use std::process::Command;

mod common;

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
    let (path, vocab) = small_checkpoint(dir.path(), tie_weights);
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

    let ours = predict(&path, &CONTEXT.join(" "));
    let mut args = vec![path.into_os_string()];
    args.extend(CONTEXT.iter().map(Into::into));
    let theirs = numpy("forward.py", &args);
    assert_same_top_10(&ours, &theirs, &vocab, 1e-4);
}

/// A context whose last word ("zebra") the small checkpoint's vocabulary lacks: `<unk>`.
const CONTEXT: [&str; 4] = ["the", "stock", "market", "zebra"];

/// A small random model (two layers of different widths, a forget bias, LSTM biases not
/// zero) with a vocabulary
/// that has "the", "stock", "market" and `<unk>`, saved in `dir`: its path and vocabulary.
fn small_checkpoint(dir: &std::path::Path, tie_weights: bool) -> (std::path::PathBuf, Vec<String>) {
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
    let mut params = Params::<f32>::init(&config, 21);
    // The LSTM biases start at zero; trained ones do not.
    for (l, layer) in params.lstm.iter_mut().enumerate() {
        for (i, b) in layer.bias.iter_mut().enumerate() {
            *b = ((i * 7 + l * 3) % 11) as f32 * 0.0137 - 0.07;
        }
    }
    let ck = Checkpoint {
        init: None,
        corpus: None,
        config,
        vocab: vocab.clone(),
        params,
        state: None,
        position: Position::default(),
    };
    let path = dir.join(if tie_weights {
        "tied.safetensors"
    } else {
        "model.safetensors"
    });
    ck.save(&path).unwrap();
    (path, vocab)
}

/// `lstm-gpu predict --json --top-k 10` of `checkpoint` after `context`.
fn predict(checkpoint: &std::path::Path, context: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_lstm-gpu"))
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .args(["predict", "--json", "--top-k", "10", "--checkpoint"])
        .arg(checkpoint)
        .arg(context)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The program's top 10 (`ours`, from [`predict`]) are the top 10 of the distribution
/// `theirs["probabilities"]` (over the whole vocabulary), each probability within `tol`.
fn assert_same_top_10(
    ours: &serde_json::Value,
    theirs: &serde_json::Value,
    vocab: &[String],
    tol: f64,
) {
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
            (p - probs[id]).abs() <= tol,
            "{}: program {p}, Python {}",
            vocab[id],
            probs[id]
        );
    }
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let ours_ids: Vec<usize> = next
        .iter()
        .map(|e| e["id"].as_u64().unwrap() as usize)
        .collect();
    assert_eq!(ours_ids, order[..10].to_vec());
}

/// `python/lstm_gpu_torch.py`'s mapping to PyTorch's tensors, without PyTorch
/// (`tests/python/torch_layout.py`): run through PyTorch's documented `nn.LSTM`, `nn.Linear`
/// and `nn.Embedding` equations in NumPy, the mapped tensors give the program's next-word
/// probabilities (gate order, the forget bias, the transposes, tied weights); mapped back
/// and written as an lstm-gpu checkpoint, they are the original tensors bit for bit, and
/// the program reads that file (its checksum) and predicts exactly as from the original.
#[test]
fn the_pytorch_mapping_gives_the_programs_probabilities_and_maps_back_exactly() {
    for tie_weights in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (path, vocab) = small_checkpoint(dir.path(), tie_weights);
        let ours = predict(&path, &CONTEXT.join(" "));
        let back = dir.path().join("back.safetensors");
        let mut args = vec![path.into_os_string(), back.clone().into_os_string()];
        args.extend(CONTEXT.iter().map(Into::into));
        let theirs = numpy("torch_layout.py", &args);
        assert_same_top_10(&ours, &theirs, &vocab, 1e-4);
        assert_eq!(theirs["round_trip_exact"], true, "tied {tie_weights}");
        assert_eq!(
            predict(&back, &CONTEXT.join(" ")),
            ours,
            "tied {tie_weights}"
        );
    }
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
    let tiny = tiny_corpus();
    let corpus = lstm_gpu::data::Corpus::load(&tiny, 60).unwrap();
    // Into the second epoch (2 rows of 5 steps), whose rate is halved.
    let epoch_steps = (corpus.train.len() / 2 - 1) / 5;
    let total_steps = epoch_steps + 4;
    let embedding = if tie_weights { 6 } else { 8 };
    let init = tiny_init(dir.path(), &corpus, tie_weights, keep, CLIP, 3);

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
    succeed(
        lstm_gpu()
            .args(args)
            .arg("--data")
            .arg(&tiny)
            .arg("--init")
            .arg(&init)
            .arg("--run-dir")
            .arg(&run),
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
        // One step per log point: its gradient norm (before clipping), as the largest too,
        // and whether it was clipped.
        let (norm, theirs_norm) = (
            ours["grad_norm"].as_f64().unwrap(),
            theirs["grad_norm"].as_f64().unwrap(),
        );
        assert!(
            (norm - theirs_norm).abs() <= 1e-4 * theirs_norm,
            "tied {tie_weights}, keep {keep}, step {s}: gradient norm {norm} (program) vs {theirs_norm} (NumPy)"
        );
        assert!((ours["grad_norm_max"].as_f64().unwrap() - norm).abs() <= 1e-6 * norm);
        let clipped = if theirs_norm > CLIP as f64 { 1.0 } else { 0.0 };
        assert_eq!(
            ours["clipped_fraction"].as_f64(),
            Some(clipped),
            "tied {tie_weights}, keep {keep}, step {s}: clipped at norm {theirs_norm}"
        );
    }

    // Every weight after the last step.
    let context =
        format!("tied {tie_weights}, keep {keep}, after {total_steps} steps, program vs NumPy");
    assert_same_weights(&ours, &numpy_out, tie_weights, &context);

    let checkpoint = run.join("last.safetensors");
    for (split, shape) in [("test", None), ("valid", Some(("2", "3")))] {
        let mut eval = lstm_gpu();
        eval.args(["eval", "--split", split, "--checkpoint"])
            .arg(&checkpoint)
            .arg("--data")
            .arg(&tiny);
        let (batch, steps) = shape.unwrap_or(("1", "1"));
        if shape.is_some() {
            eval.args(["--batch-size", batch, "--num-steps", steps]);
        }
        let ours = printed_perplexity(&succeed(&mut eval));
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

/// TensorBoard itself (its event reader, which checks every record's CRCs) reads from a
/// training run's folder the scalars `metrics.jsonl` holds, at the same global steps: a run
/// stopped by `--max-steps` and resumed, so two event files, one per sitting.
#[test]
fn tensorboard_reads_a_runs_scalars_as_metrics_jsonl_holds_them() {
    use lstm_gpu::analysis::tensorboard::scalars_of;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let train = |extra: &[&str]| {
        let mut c = lstm_gpu();
        c.arg("train")
            .arg("--data")
            .arg(tiny_corpus())
            .arg("--run-dir")
            .arg(&run)
            .args(common::TINY_MODEL)
            .args(["--max-epoch", "3"])
            .args(["--no-progress", "--log-every", "4"])
            .args(extra);
        succeed(&mut c);
    };
    train(&["--max-steps", "25"]);
    train(&["--resume", run.join("last.safetensors").to_str().unwrap()]);
    let mut expected: std::collections::BTreeMap<String, Vec<(u64, f32)>> = Default::default();
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    for line in metrics.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let (step, scalars) = scalars_of(&record).unwrap();
        for (tag, value) in scalars {
            expected
                .entry(tag.to_string())
                .or_default()
                .push((step, value));
        }
    }
    let read = numpy("tensorboard_scalars.py", &[run.clone().into()]);
    assert_eq!(read["files"], 2, "one event file per sitting: {read}");
    let theirs: std::collections::BTreeMap<String, Vec<(u64, f64)>> =
        serde_json::from_value(read["tags"].clone()).unwrap();
    let theirs: std::collections::BTreeMap<String, Vec<(u64, f32)>> = theirs
        .into_iter()
        .map(|(tag, points)| {
            (
                tag,
                points.into_iter().map(|(s, v)| (s, v as f32)).collect(),
            )
        })
        .collect();
    assert_eq!(theirs, expected);
    // What a user looks for is there: every epoch's validation perplexity and the stop's,
    // the test's, the running training perplexity at every log point of both sittings.
    assert_eq!(theirs["perplexity/valid"].len(), 4, "{theirs:?}");
    assert_eq!(theirs["perplexity/test"].len(), 1);
    assert!(theirs["perplexity/train"].iter().any(|&(s, _)| s < 25));
    assert!(theirs["perplexity/train"].iter().any(|&(s, _)| s > 25));
    assert!(theirs.contains_key("speed/words_per_second") && theirs.contains_key("learning_rate"));
    for tag in [
        "gradient/norm",
        "gradient/norm_max",
        "gradient/clipped_fraction",
    ] {
        assert_eq!(theirs[tag].len(), theirs["perplexity/train"].len(), "{tag}");
    }
}

/// `python/lstm_gpu_torch.py`'s sampler draws what the program's draws
/// (`predict::sample`) from the same distribution and generator: temperature, top-k and
/// top-p (nucleus) together, on random distributions, with ties and zeros among them.
#[test]
fn python_samples_as_the_program_samples() {
    use lstm_gpu::model::predict::{sample, Sampling};
    use lstm_gpu::rng::SplitMix64;
    let mut rng = SplitMix64::new(11);
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for case in 0..300u64 {
        let n = 1 + (rng.next_f64() * 40.0) as usize;
        let mut probs: Vec<f32> = (0..n).map(|_| rng.next_f64() as f32).collect();
        // Ties and zeros, which the order breaks by id.
        if n > 3 {
            probs[1] = probs[2];
            probs[3] = 0.0;
        }
        let total: f32 = probs.iter().sum();
        probs
            .iter_mut()
            .for_each(|p| *p /= total.max(f32::MIN_POSITIVE));
        let how = Sampling {
            temperature: [1.0, 0.7, 1.6][case as usize % 3],
            top_k: if case % 4 == 0 {
                (rng.next_f64() * n as f64) as usize
            } else {
                0
            },
            top_p: if case % 2 == 0 {
                1.0
            } else {
                (0.05 + 0.95 * rng.next_f64()) as f32
            },
        };
        let mut draw = SplitMix64::new(case);
        ours.push(
            (0..25)
                .map(|_| sample(&probs, &how, draw.next_f64()))
                .collect::<Vec<_>>(),
        );
        cases.push(
            serde_json::json!({"probs": probs, "temperature": how.temperature,
            "top_k": how.top_k, "top_p": how.top_p, "seed": case, "n": 25}),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cases.json");
    std::fs::write(&file, serde_json::to_string(&cases).unwrap()).unwrap();
    let theirs: Vec<Vec<usize>> =
        serde_json::from_value(numpy("sample.py", &[file.into()])["draws"].clone()).unwrap();
    for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(o, t, "case {i}: {}", cases[i]);
    }
    assert_eq!(theirs.len(), cases.len());
    // The cases cut the distributions (so that the comparison covers the cuts).
    let narrowed = ours.iter().filter(|d| d.iter().all(|&x| x == d[0])).count();
    assert!(narrowed > 20, "{narrowed} cases drew one token only");
}

/// `python/lstm_gpu_torch.py` reads a file into the program's tokens in every mode: glued
/// and separate line ends, `\r\n`, tabs, Unicode blanks (and the separators Python splits
/// on), a last line without a newline, characters outside ASCII. Python's tokens, as a
/// vocabulary without `<unk>`, encode the same text in the program back to themselves.
#[test]
fn python_reads_a_text_into_the_programs_tokens() {
    use lstm_gpu::data::{encode_text_as, Tokens, Vocab};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("text.txt");
    let text = " a b\nc\r\nd\te  f\u{a0}g\u{1f}h\u{2003}i\n\n j K \nÜber 日本\u{200b}語\nlast";
    std::fs::write(&path, text).unwrap();
    for kind in [Tokens::Words, Tokens::WordsEos, Tokens::Chars] {
        let theirs: Vec<String> = serde_json::from_value(
            numpy("tokens.py", &[kind.name().into(), path.clone().into()])["tokens"].clone(),
        )
        .unwrap();
        let mut distinct = theirs.clone();
        distinct.sort();
        distinct.dedup();
        let vocab = Vocab::from_tokens(distinct, kind).unwrap();
        let ours = encode_text_as(text, &vocab, kind)
            .unwrap_or_else(|e| panic!("{}: {e:#} (Python's tokens: {theirs:?})", kind.name()));
        let ours: Vec<&str> = ours.ids.iter().map(|&id| vocab.word(id)).collect();
        assert_eq!(ours, theirs, "{}", kind.name());
    }
    // The modes differ where they should (so that the loop above compares three readings).
    let words = numpy("tokens.py", &["words".into(), path.clone().into()]);
    assert!(words["tokens"]
        .as_array()
        .unwrap()
        .contains(&"b<eos>c".into()));
}

/// `python/lstm_gpu_torch.py` in PyTorch itself, against the program: a model trained a
/// few steps on the tiny corpus (with dropout, separate and tied softmax weights) loaded as
/// a PyTorch `nn.Module` scores the test split at batch 1 and the valid split in 2 rows of
/// 3 steps as `lstm-gpu eval` does, predicts the next word as `lstm-gpu predict` does, and
/// saved back from PyTorch is a checkpoint the program scores exactly as the original.
/// Ignored by default: PyTorch is a large install that CI does without. Run it with
/// `LSTM_GPU_PYTHON` naming an interpreter that has PyTorch (else `python3`).
#[test]
#[ignore = "needs PyTorch: LSTM_GPU_PYTHON=python-with-torch cargo test --release --test interop -- --ignored"]
fn pytorch_scores_and_predicts_as_the_program_does() {
    for tie_weights in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let tiny = tiny_corpus();
        let run = dir.path().join("run");
        let mut train = lstm_gpu();
        train
            .args([
                "train",
                "--hidden",
                "12,8",
                "--batch-size",
                "2",
                "--num-steps",
                "4",
            ])
            .args([
                "--keep-prob",
                "0.7",
                "--forget-bias",
                "0.5",
                "--max-steps",
                "12",
            ])
            .args(["--no-eval-at-stop", "--no-progress", "--data"])
            .arg(&tiny)
            .arg("--run-dir")
            .arg(&run);
        if tie_weights {
            train.args(["--tie-weights", "--embedding-size", "8"]);
        }
        succeed(&mut train);
        let checkpoint = run.join("last.safetensors");
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/lstm_gpu_torch.py");

        for (split, shape) in [("test", None), ("valid", Some(["2", "3"]))] {
            let text = tiny.join(format!("ptb.{split}.txt"));
            let mut eval = lstm_gpu();
            eval.args(["eval", "--split", split, "--checkpoint"])
                .arg(&checkpoint)
                .arg("--data")
                .arg(&tiny);
            let mut args = vec!["perplexity".into(), checkpoint.clone().into(), text.into()];
            if let Some([batch, steps]) = shape {
                eval.args(["--batch-size", batch, "--num-steps", steps]);
                args.extend(["--batch-size", batch, "--num-steps", steps].map(Into::into));
            }
            let ours = printed_perplexity(&succeed(&mut eval));
            let theirs = python(&script, &args)["perplexity"].as_f64().unwrap();
            // The program prints three decimals.
            assert!(
                (ours - theirs).abs() <= 5e-4 + 1e-5 * theirs,
                "tied {tie_weights}: {split} perplexity {ours} (lstm-gpu eval) vs {theirs} (PyTorch)"
            );
        }

        // A text of one's own, as `eval --text` reads it: line ends touching the words,
        // capitals, a word the model never saw.
        let text = dir.path().join("own.txt");
        std::fs::write(&text, "The market fell\nA zyzzyva said the N traders\n").unwrap();
        let mut eval = lstm_gpu();
        eval.args(["eval", "--checkpoint"])
            .arg(&checkpoint)
            .arg("--text")
            .arg(&text);
        let ours = printed_perplexity(&succeed(&mut eval));
        let theirs = python(
            &script,
            &["perplexity".into(), checkpoint.clone().into(), text.into()],
        )["perplexity"]
            .as_f64()
            .unwrap();
        assert!(
            (ours - theirs).abs() <= 5e-4 + 1e-5 * theirs,
            "tied {tie_weights}: --text perplexity {ours} (lstm-gpu eval) vs {theirs} (PyTorch)"
        );

        let context = "The market";
        let ours = predict(&checkpoint, context);
        let theirs = python(
            &script,
            &[
                "predict".into(),
                checkpoint.clone().into(),
                context.into(),
                "--json".into(),
            ],
        );
        let vocab: Vec<String> = lstm_gpu::model::checkpoint::Checkpoint::load(&checkpoint)
            .unwrap()
            .vocab;
        assert_same_top_10(&ours, &theirs, &vocab, 1e-5);

        // The same sampler and generator: the same text for the same seed.
        for flags in [
            vec!["--seed", "1"],
            vec!["--seed", "7", "--temperature", "0.7", "--top-k", "5"],
            vec![
                "--seed",
                "5",
                "--temperature",
                "0.8",
                "--top-k",
                "40",
                "--top-p",
                "0.6",
            ],
        ] {
            let mut ours = lstm_gpu();
            ours.args([
                "generate",
                "--words",
                "25",
                "--prompt",
                "the market",
                "--checkpoint",
            ])
            .arg(&checkpoint)
            .args(&flags);
            let ours = succeed(&mut ours);
            let interpreter =
                std::env::var_os("LSTM_GPU_PYTHON").unwrap_or_else(|| "python3".into());
            let mut theirs = Command::new(&interpreter);
            theirs
                .arg(&script)
                .args(["generate", "--words", "25"])
                .arg(&checkpoint)
                .arg("the market")
                .args(&flags);
            let theirs = succeed(&mut theirs);
            assert_eq!(ours, theirs, "tied {tie_weights}, {flags:?}");
        }

        // Bad input: one line and a non-zero exit, no traceback.
        let interpreter = std::env::var_os("LSTM_GPU_PYTHON").unwrap_or_else(|| "python3".into());
        let readme = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        for (args, needle) in [
            (
                vec![dir.path().join("missing.safetensors"), readme.clone()],
                "No such file",
            ),
            (
                vec![readme.clone(), readme.clone()],
                "not a safetensors file",
            ),
            (
                vec![checkpoint.clone(), dir.path().join("missing.txt")],
                "No such file",
            ),
        ] {
            let out = Command::new(&interpreter)
                .arg(&script)
                .arg("perplexity")
                .args(&args)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{err}");
            assert_eq!(err.trim().lines().count(), 1, "{err}");
            assert!(
                err.starts_with("lstm_gpu_torch.py: ") && err.contains(needle),
                "{err}"
            );
        }

        // Saved back from PyTorch: the same model to the program.
        let back = dir.path().join("back.safetensors");
        let code = "import sys; sys.path.insert(0, sys.argv[1]); import lstm_gpu_torch as lg; \
                    w, v, c, p = lg.read(sys.argv[2]); m, _, _ = lg.load(sys.argv[2]); \
                    lg.save(m, v, c, sys.argv[3], p); print('{}')";
        let mut args: Vec<std::ffi::OsString> = vec!["-c".into(), code.into()];
        args.push(script.parent().unwrap().into());
        args.extend([checkpoint.clone().into(), back.clone().into()]);
        python_with(&args);
        let eval = |path: &std::path::Path| {
            let mut eval = lstm_gpu();
            eval.args(["eval", "--split", "test", "--checkpoint"])
                .arg(path)
                .arg("--data")
                .arg(&tiny);
            printed_perplexity(&succeed(&mut eval))
        };
        assert_eq!(eval(&back), eval(&checkpoint), "tied {tie_weights}");
    }
}

/// Training in PyTorch as `python/lstm_gpu_torch.py` documents it (its module with the
/// second LSTM bias frozen, `batches`, `loss`, `clip_grad_norm_`, `optim.SGD`;
/// `tests/python/torch_train.py`) is the program's training: from the same initial weights,
/// 8 steps on the tiny corpus without dropout, some clipped and some not, give the same
/// perplexity after every step and the same weights, with separate and tied softmax
/// weights. Ignored with the test above (it needs PyTorch).
#[test]
#[ignore = "needs PyTorch: LSTM_GPU_PYTHON=python-with-torch cargo test --release --test interop -- --ignored"]
fn pytorch_trains_as_the_program_does() {
    const STEPS: usize = 8;
    for tie_weights in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let tiny = tiny_corpus();
        let corpus = lstm_gpu::data::Corpus::load(&tiny, 60).unwrap();
        let embedding = if tie_weights { 6 } else { 8 };
        let init = tiny_init(dir.path(), &corpus, tie_weights, 1.0, 2.0, 5);
        let run = dir.path().join("run");
        let mut train = lstm_gpu();
        train
            .args([
                "train",
                "--vocab-size",
                "60",
                "--hidden",
                "8,6",
                "--batch-size",
                "2",
            ])
            .args([
                "--num-steps",
                "5",
                "--forget-bias",
                "0.5",
                "--max-grad-norm",
                "2",
            ])
            .args(["--embedding-size", &embedding.to_string()])
            .args(["--max-steps", &STEPS.to_string(), "--log-every", "1"])
            .args(["--no-eval-at-stop", "--no-progress", "--data"])
            .arg(&tiny)
            .arg("--init")
            .arg(&init)
            .arg("--run-dir")
            .arg(&run);
        if tie_weights {
            train.arg("--tie-weights");
        }
        succeed(&mut train);

        let torch_out = dir.path().join("torch.safetensors");
        let theirs = numpy(
            "torch_train.py",
            &[
                init.clone().into(),
                run.join("last.safetensors").into(),
                tiny.join("ptb.train.txt").into(),
                STEPS.to_string().into(),
                torch_out.clone().into(),
            ],
        );
        let logged: Vec<f64> = std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|m| m["kind"] == "train")
            .map(|m| m["perplexity"].as_f64().unwrap())
            .collect();
        let steps = theirs["steps"].as_array().unwrap();
        let norms: Vec<f64> = steps
            .iter()
            .map(|s| s["grad_norm"].as_f64().unwrap())
            .collect();
        assert!(
            norms.iter().any(|&n| n > 2.0) && norms.iter().any(|&n| n < 2.0),
            "tied {tie_weights}: the gradient norms {norms:?} should lie on both sides of the clip"
        );
        let theirs: Vec<f64> = steps
            .iter()
            .map(|s| s["perplexity"].as_f64().unwrap())
            .collect();
        assert_eq!(logged.len(), STEPS);
        for (s, (ours, theirs)) in logged.iter().zip(&theirs).enumerate() {
            assert!(
                (ours - theirs).abs() <= 1e-5 * theirs,
                "tied {tie_weights}, step {s}: perplexity so far {ours} (program) vs {theirs} (PyTorch)"
            );
        }
        let context = format!("tied {tie_weights}, after {STEPS} steps, program vs PyTorch");
        assert_same_weights(
            &run.join("last.safetensors"),
            &torch_out,
            tie_weights,
            &context,
        );
    }
}

/// The program's weights in `ours` are those in `theirs` (F32 or F64), every tensor within
/// 1e-5 relative L2.
fn assert_same_weights(
    ours: &std::path::Path,
    theirs: &std::path::Path,
    tie_weights: bool,
    context: &str,
) {
    let ours = std::fs::read(ours).unwrap();
    let ours = safetensors::SafeTensors::deserialize(&ours).unwrap();
    let theirs = std::fs::read(theirs).unwrap();
    let theirs = safetensors::SafeTensors::deserialize(&theirs).unwrap();
    let mut names = theirs.names();
    names.sort();
    assert_eq!(
        names.len(),
        if tie_weights { 6 } else { 7 },
        "{context}: {names:?}"
    );
    for name in names {
        let got: Vec<f32> = bytemuck::pod_collect_to_vec(ours.tensor(name).unwrap().data());
        let want = theirs.tensor(name).unwrap();
        let want: Vec<f64> = match want.dtype() {
            safetensors::Dtype::F64 => bytemuck::pod_collect_to_vec(want.data()),
            _ => bytemuck::pod_collect_to_vec::<u8, f32>(want.data())
                .into_iter()
                .map(f64::from)
                .collect(),
        };
        let num: f64 = got
            .iter()
            .zip(&want)
            .map(|(&g, w)| (g as f64 - w).powi(2))
            .sum();
        let den: f64 = want.iter().map(|w| w * w).sum();
        let rel = (num / den).sqrt();
        assert!(
            got.len() == want.len() && rel <= 1e-5,
            "{context}: {name}: relative L2 error {rel:e}"
        );
    }
}

/// The tiny model of the training comparisons on the tiny corpus (its 60 words, embedding 8
/// or, tied, 6, layers of 8 and 6, 2 rows of 5 steps, forget bias 0.5), its initial
/// weights drawn uniform in +-0.5 from `seed`, saved as `dir/init.safetensors`.
fn tiny_init(
    dir: &std::path::Path,
    corpus: &lstm_gpu::data::Corpus,
    tie_weights: bool,
    keep: f32,
    clip: f32,
    seed: u64,
) -> std::path::PathBuf {
    let config = Config {
        vocab_size: corpus.vocab.len(),
        embedding_size: if tie_weights { 6 } else { 8 },
        tie_weights,
        hidden: vec![8, 6],
        batch_size: 2,
        num_steps: 5,
        init_scale: 0.5,
        forget_bias: 0.5,
        keep_prob: keep,
        max_grad_norm: clip,
        ..Config::default()
    };
    let init = dir.join("init.safetensors");
    Checkpoint {
        init: None,
        corpus: None,
        params: Params::<f32>::init(&config, seed),
        config,
        vocab: corpus.vocab.words().to_vec(),
        state: None,
        position: Position::default(),
    }
    .save(&init)
    .unwrap();
    init
}

/// The tiny corpus of the tests (`data/tiny`).
fn tiny_corpus() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/tiny"))
}

/// The program, with lavapipe's warning silenced and no tuning.
fn lstm_gpu() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lstm-gpu"));
    command
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env("LSTM_GPU_TUNE", "off");
    command
}

/// Run `command`, assert that it succeeded, and return its standard output.
fn succeed(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The figure of `lstm-gpu eval`'s "test perplexity: 946.151 (37 batches of 1x1, ...)".
fn printed_perplexity(stdout: &str) -> f64 {
    stdout
        .split_once("perplexity: ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no perplexity in {stdout:?}"))
}

/// Run `tests/python/<script>` with `args` and read the JSON it prints.
fn numpy(script: &str, args: &[std::ffi::OsString]) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    python(&path, args)
}

/// Run the Python script `path` with `args` and read the JSON it prints.
fn python(path: &std::path::Path, args: &[std::ffi::OsString]) -> serde_json::Value {
    let mut all = vec![path.as_os_str().to_owned()];
    all.extend(args.iter().cloned());
    python_with(&all)
}

/// Run Python (`LSTM_GPU_PYTHON`, else `python3`) with `args` and read the JSON it prints.
fn python_with(args: &[std::ffi::OsString]) -> serde_json::Value {
    let interpreter = std::env::var_os("LSTM_GPU_PYTHON").unwrap_or_else(|| "python3".into());
    let py = Command::new(&interpreter)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{interpreter:?} is needed for the interoperability tests ({e}); install python3 with numpy and safetensors")
        });
    assert!(
        py.status.success(),
        "{:?} failed (python3 -m pip install numpy safetensors tensorboard): {}",
        args.first(),
        String::from_utf8_lossy(&py.stderr)
    );
    serde_json::from_slice(&py.stdout).unwrap()
}
