//! The CPU reference step learns: a small model trained on the start of the PTB training
//! text lowers its loss well below the uniform guess within a few dozen steps.

mod common;

use common::ptb_dir;
use lstm_gpu::config::Config;
use lstm_gpu::data::{Batches, Vocab};
use lstm_gpu::model::{Params, State};
use lstm_gpu::reference::step::train_step;

/// Tokens read from the start of `ptb.train.txt`.
const TOKENS: usize = 30_000;
const STEPS: usize = 60;

/// The start of the training text (whole lines, about `TOKENS` tokens) as ids of its
/// `vocab_size` most frequent words, through the project's own reader.
fn ptb_ids(vocab_size: usize) -> Vec<u32> {
    let path = ptb_dir().join("ptb.train.txt");
    let text = lstm_gpu::data::read_text(&path).unwrap_or_else(|e| {
        panic!("{e:#}; set LSTM_GPU_PTB_DIR to the folder that holds ptb.train.txt")
    });
    let mut lines = String::new();
    let mut tokens = 0;
    for line in text.lines() {
        if tokens >= TOKENS {
            break;
        }
        tokens += line.split_whitespace().count() + 1;
        lines.push_str(line);
        lines.push('\n');
    }
    let (vocab, ids): (Vocab, Vec<u32>) = Vocab::from_train(&lines, vocab_size).unwrap();
    assert!(vocab.unk().is_some());
    ids
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
    let batches = Batches::new(&data, cfg.batch_size, cfg.num_steps).unwrap();
    assert!(batches.len() >= STEPS, "{} batches", batches.len());

    let mut params = Params::<f32>::init(&cfg, 2024);
    let mut state = State::zeros(&cfg, cfg.batch_size);
    let losses: Vec<f32> = (0..STEPS)
        .map(|i| {
            let (x, y) = batches.batch(i);
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
