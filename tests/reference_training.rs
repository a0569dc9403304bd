//! The CPU reference step learns: a small model trained on the start of the PTB training
//! text lowers its loss well below the uniform guess within a few dozen steps.

use std::collections::HashMap;
use std::path::PathBuf;

use lstm_gpu::config::Config;
use lstm_gpu::model::{Params, State};
use lstm_gpu::reference::step::train_step;

/// Tokens read from the start of `ptb.train.txt`.
const TOKENS: usize = 30_000;
const STEPS: usize = 60;

fn ptb_dir() -> PathBuf {
    std::env::var_os("LSTM_GPU_PTB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/ptb").into())
}

/// The first `TOKENS` tokens of the training text (`<eos>` ends every line) as ids of the
/// `vocab_size` most frequent of them, ranked by (descending count, word); every other word
/// becomes PTB's own `<unk>`.
fn ptb_ids(vocab_size: usize) -> Vec<u32> {
    let path = ptb_dir().join("ptb.train.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the PTB corpus at {} ({e}); set LSTM_GPU_PTB_DIR to the folder that \
             holds ptb.train.txt",
            path.display()
        )
    });
    let words: Vec<&str> = text
        .lines()
        .flat_map(|line| line.split_whitespace().chain(["<eos>"]))
        .take(TOKENS)
        .collect();
    assert_eq!(words.len(), TOKENS, "{} is too short", path.display());

    let mut counts: HashMap<&str, usize> = HashMap::new();
    for &w in &words {
        *counts.entry(w).or_default() += 1;
    }
    let mut ranked: Vec<(&str, usize)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let ids: HashMap<&str, u32> = ranked
        .iter()
        .take(vocab_size)
        .enumerate()
        .map(|(id, &(w, _))| (w, id as u32))
        .collect();
    let unk = *ids
        .get("<unk>")
        .expect("<unk> is among the most frequent words");
    words
        .iter()
        .map(|w| ids.get(w).copied().unwrap_or(unk))
        .collect()
}

/// Batch `i` of TensorFlow's reader: the ids cut into `batch` rows, `x` and `y` the columns
/// `i * steps ..` and one further, each `[batch, steps]` row-major.
fn reader_batch(data: &[u32], batch: usize, steps: usize, i: usize) -> (Vec<u32>, Vec<u32>) {
    let row_len = data.len() / batch;
    let cut = |offset: usize| -> Vec<u32> {
        (0..batch)
            .flat_map(|b| {
                let start = b * row_len + i * steps + offset;
                data[start..start + steps].to_vec()
            })
            .collect()
    };
    (cut(0), cut(1))
}

#[test]
fn reference_step_lowers_the_loss_on_ptb() {
    let cfg = Config {
        vocab_size: 2000,
        embedding_size: 32,
        hidden: vec![32, 32],
        batch_size: 8,
        num_steps: 10,
        learning_rate: 1.0,
        max_grad_norm: 5.0,
        ..Config::default()
    };
    cfg.validate().unwrap();
    let data = ptb_ids(cfg.vocab_size);
    let epoch_size = (data.len() / cfg.batch_size - 1) / cfg.num_steps;
    assert!(epoch_size >= STEPS, "{epoch_size} batches");

    let mut params = Params::<f32>::init(&cfg, 2024);
    let mut state = State::zeros(&cfg, cfg.batch_size);
    let losses: Vec<f32> = (0..STEPS)
        .map(|i| {
            let (x, y) = reader_batch(&data, cfg.batch_size, cfg.num_steps, i);
            let out = train_step(&cfg, &mut params, &mut state, &x, &y, 1.0, None);
            assert!(
                out.loss.is_finite() && out.grad_norm.is_finite() && out.grad_norm > 0.0,
                "step {i}: {out:?}"
            );
            out.loss
        })
        .collect();

    // Small initial weights give nearly uniform predictions.
    let uniform = cfg.num_steps as f32 * (cfg.vocab_size as f32).ln();
    assert!(
        (losses[0] - uniform).abs() < 0.02 * uniform,
        "first loss {} vs uniform {uniform}",
        losses[0]
    );
    let last: f32 = losses[STEPS - 5..].iter().sum::<f32>() / 5.0;
    eprintln!("first loss {}, mean of the last 5 {last}", losses[0]);
    assert!(
        last < 0.9 * losses[0],
        "loss did not fall: first {}, last five {:?}",
        losses[0],
        &losses[STEPS - 5..]
    );
}
