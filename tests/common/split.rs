//! Two training steps with the recurrent products' split-K sums added by the cell or by
//! their own pass (`Kernels::fuse_split_sums`), or with another recurrence, for comparing
//! the two bit for bit.

use super::{random_ids, random_state};
use lstm_gpu::config::Config;
use lstm_gpu::gpu::lstm_step::Recurrence;
use lstm_gpu::gpu::sgd::Hyper;
use lstm_gpu::gpu::Gpu;
use lstm_gpu::model::schedule::{Kernels, Mode, ParamBuffers, Workspace};
use lstm_gpu::model::Params;

/// Two steps of `cfg` (unfused recurrence) from fixed parameters, state and batch: the
/// step's launches, the loss's bits, and the bits of every parameter and state tensor.
pub fn two_steps(gpu: &Gpu, cfg: &Config, fuse: bool) -> (usize, u64, Vec<Vec<u32>>) {
    two_steps_with(gpu, cfg, Recurrence::Unfused, fuse)
}

/// [`two_steps`] with `recurrence`.
pub fn two_steps_with(
    gpu: &Gpu,
    cfg: &Config,
    recurrence: Recurrence,
    fuse: bool,
) -> (usize, u64, Vec<Vec<u32>>) {
    let mut kernels = Kernels::new(gpu).unwrap();
    kernels.recurrence = Some(recurrence);
    kernels.fuse_split_sums = fuse;
    two_steps_of(gpu, cfg, &kernels)
}

/// [`two_steps`] with `kernels` as they are.
pub fn two_steps_of(gpu: &Gpu, cfg: &Config, kernels: &Kernels) -> (usize, u64, Vec<Vec<u32>>) {
    let params = Params::<f32>::init(cfg, 5);
    let pbuf = ParamBuffers::upload(gpu, cfg, &params).unwrap();
    let mut ws = Workspace::new(
        gpu,
        kernels,
        cfg,
        &pbuf,
        cfg.batch_size,
        cfg.num_steps,
        Mode::Train,
    )
    .unwrap();
    ws.write_state(gpu, &random_state(cfg, 6)).unwrap();
    ws.take_loss(gpu).unwrap();
    let n = cfg.batch_size * cfg.num_steps;
    let (x, y) = (
        random_ids(n, cfg.vocab_size, 7),
        random_ids(n, cfg.vocab_size, 8),
    );
    for step in 0..2 {
        let hyper = Hyper {
            learning_rate: 0.9,
            step,
            seed: 11,
        };
        ws.step(gpu, &x, &y, hyper).unwrap();
    }
    let (loss, _) = ws.take_loss(gpu).unwrap();
    let p = pbuf.read(gpu, cfg).unwrap();
    let s = ws.read_state(gpu).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let mut all: Vec<Vec<u32>> = p.tensors().into_iter().map(|(_, t)| bits(t)).collect();
    all.extend(s.c.iter().chain(&s.h).map(|t| bits(t)));
    (ws.dispatches(), loss.to_bits(), all)
}

/// Two steps with the cell adding the split sums and two with the sum passes: `saved`
/// launches fewer per step, and the same loss, parameters and state bit for bit.
pub fn assert_the_cell_adds_the_sums(gpu: &Gpu, cfg: &Config, saved: usize) {
    let (fused_launches, fused_loss, fused) = two_steps(gpu, cfg, true);
    let (summed_launches, summed_loss, summed) = two_steps(gpu, cfg, false);
    assert_eq!(
        summed_launches - fused_launches,
        saved,
        "launches: {fused_launches} fused, {summed_launches} with sum passes"
    );
    assert_eq!(fused_loss, summed_loss, "loss");
    assert!(
        fused == summed,
        "parameters or state differ between the two"
    );
}
