//! `Session`, the step-by-step training run the browser page drives, run natively: timing its
//! kernels one by one leaves the model, the position and the next log point as they were.

mod common;

use lstm_gpu::config::{Config, Preset};
use lstm_gpu::data::{Corpus, Tokens};
use lstm_gpu::gpu::block_on;
use lstm_gpu::model::Params;
use lstm_gpu::session::{self, Event, Session};

fn text(words: usize, seed: usize) -> String {
    (0..words)
        .map(|i| format!("w{}", (i * 7 + seed) % 23))
        .collect::<Vec<_>>()
        .chunks(12)
        .map(|l| format!(" {} \n", l.join(" ")))
        .collect()
}

fn session() -> Session {
    let (train, valid, test) = (text(3000, 1), text(300, 2), text(300, 3));
    let names = ["train", "valid", "test"];
    let corpus =
        Corpus::from_texts(names, [&train, &valid, &test], Tokens::Words, None, None).unwrap();
    let mut cfg = Config::preset(Preset::Seed);
    cfg.embedding_size = 8;
    cfg.hidden = vec![8, 8];
    cfg.batch_size = 4;
    cfg.num_steps = 5;
    cfg.vocab_size = corpus.vocab.len();
    let params = Params::<f32>::init(&cfg, 3);
    let pos = session::start(&cfg, 3);
    Session::new(common::gpu(), cfg, corpus, &params, pos, None).unwrap()
}

fn losses(events: &[Event]) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Train { loss, .. } => Some(*loss),
            _ => None,
        })
        .collect()
}

#[test]
fn timing_kernels_changes_no_weight_position_or_log_point() {
    let mut s = session();
    s.log_every = 1;
    block_on(s.advance(1)).unwrap();
    let before = block_on(s.params()).unwrap();
    let pos = s.pos.clone();
    let t = block_on(s.time_kernels()).unwrap();
    let runs: usize = t
        .rows
        .iter()
        .filter(|r| r.label != "copy")
        .map(|r| r.runs)
        .sum();
    assert_eq!(
        runs,
        s.dispatches(),
        "every dispatch of the step is timed once"
    );
    assert!(t.rows.iter().all(|r| r.ms >= 0.0) && t.baseline_ms >= 0.0);
    assert!(t.rows.iter().any(|r| r.label.starts_with("matmul")));
    assert_eq!(block_on(s.params()).unwrap(), before, "learning rate 0");
    assert_eq!(s.pos.global_step, pos.global_step);
    assert_eq!(s.pos.step_in_epoch, pos.step_in_epoch);
    // The next log point holds one step's loss, not two: near the one before it.
    let next = losses(&block_on(s.advance(1)).unwrap());
    assert_eq!(next.len(), 1);
    assert_eq!(s.pos.global_step, pos.global_step + 1);
    assert!(
        next[0] > 0.5 * (s.cfg.vocab_size as f64).ln()
            && next[0] < 1.5 * (s.cfg.vocab_size as f64).ln(),
        "one step's mean loss, near ln(V): {next:?}"
    );
}
