//! Parity of `shaders/dropout.wgsl` with its CPU twin `reference::dropout`: the same
//! elements dropped (the generator of `src/rng.rs` ported bit for bit) and the same values,
//! with the seed and the step read from the hyperparameter block at run time.

mod common;

use common::{assert_close, gpu, nan, random};
use lstm_gpu::gpu::dropout::{dropout_stream, Dropout};
use lstm_gpu::gpu::sgd::Hyper;
use lstm_gpu::gpu::{Gpu, View};
use lstm_gpu::reference;

/// Words before and after every window.
const GUARD: usize = 3;

fn with_guard(data: &[f32]) -> Vec<f32> {
    let mut words = nan(GUARD);
    words.extend_from_slice(data);
    words.extend(nan(GUARD));
    words
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A hyperparameter block at word 1 of its buffer.
fn hyper_buffer(gpu: &Gpu, step: u32, seed: u32) -> wgpu::Buffer {
    let hyper = Hyper {
        learning_rate: 1.0,
        step,
        seed,
    };
    let mut words = vec![0u32];
    words.extend_from_slice(bytemuck::cast_slice(&[hyper]));
    gpu.storage_from("hyper", &words)
}

fn write_hyper(gpu: &Gpu, buffer: &wgpu::Buffer, step: u32, seed: u32) {
    let hyper = Hyper {
        learning_rate: 1.0,
        step,
        seed,
    };
    gpu.write(buffer, 1, bytemuck::cast_slice::<Hyper, u32>(&[hyper]));
}

/// The CPU twin in f32 (for bits) and the f64 reference.
fn reference_dropout(x: &[f32], keep: f32, seed: u32, stream: u32) -> (Vec<f32>, Vec<f64>) {
    let mut y32 = vec![0f32; x.len()];
    reference::dropout(x, keep, seed, stream, &mut y32);
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let mut y64 = vec![0f64; x.len()];
    reference::dropout(&x64, keep, seed, stream, &mut y64);
    (y32, y64)
}

fn check(what: &str, got: &[f32], x: &[f32], keep: f32, seed: u32, stream: u32) {
    let (y32, y64) = reference_dropout(x, keep, seed, stream);
    let zeros = |v: &[f32]| v.iter().map(|&y| y == 0.0).collect::<Vec<_>>();
    assert_eq!(
        zeros(got),
        zeros(&y32),
        "{what}: the dropped elements differ"
    );
    assert_eq!(
        bits(got),
        bits(&y32),
        "{what}: values differ from the f32 twin"
    );
    assert_close(what, got, &y64, 1e-6);
    let kept = got.iter().filter(|&&y| y != 0.0).count() as f64 / got.len() as f64;
    if got.len() > 10_000 {
        assert!(
            (kept - keep as f64).abs() < 0.02,
            "{what}: kept {kept}, expected {keep}"
        );
    }
}

#[test]
fn dropout_matches_cpu_mask_bit_for_bit() {
    let gpu = gpu();
    let dropout = Dropout::new(&gpu).unwrap();
    let sites = 3;
    for (k, &(len, keep, site)) in [
        (1usize, 0.5f32, 0u32),
        (7, 0.35, 1),
        (33, 0.9, 2),
        (60 * 200 + 1, 0.5, 0),
        (1200 * 256, 0.35, 2),
    ]
    .iter()
    .enumerate()
    {
        let x = random(len, 2.0, 10 + k as u64);
        let seed = 0x1234_5678 + k as u32;
        let x_buf = gpu.storage_from("x", &with_guard(&x));
        let y_buf = gpu.storage_from("y", &nan(len + 2 * GUARD));
        let hyper = hyper_buffer(&gpu, 5, seed);
        let d = dropout
            .prepare(
                &gpu,
                len,
                View::at(&x_buf, GUARD, len),
                View::at(&y_buf, GUARD, len),
                keep,
                site,
                sites,
                View::at(&hyper, 1, Hyper::WORDS),
            )
            .unwrap();
        assert_eq!(d.label, "dropout");
        let what = format!("dropout len={len} keep={keep} site={site}");
        for step in [5u32, 6, u32::MAX] {
            write_hyper(&gpu, &hyper, step, seed);
            gpu.run(&[&d]).unwrap();
            let all: Vec<f32> = gpu.read(&y_buf, 0, len + 2 * GUARD).unwrap();
            for i in (0..GUARD).chain(GUARD + len..all.len()) {
                assert!(
                    all[i].is_nan(),
                    "{what}: word {i} outside the output was written"
                );
            }
            let got = &all[GUARD..GUARD + len];
            let stream = dropout_stream(step, sites, site);
            check(&format!("{what} step={step}"), got, &x, keep, seed, stream);
        }
    }
}

/// A tensor dropped part by part (`prepare_part`, each part knowing the index of its
/// first element: the wavefront step drops each chunk of time steps on its own) is
/// dropped exactly as in one pass: the parts' outputs joined are the whole's, bit for bit,
/// out of place and in place.
#[test]
fn dropout_in_parts_matches_one_pass() {
    let gpu = gpu();
    let dropout = Dropout::new(&gpu).unwrap();
    let (len, keep, site, sites, seed) = (1200 * 48 + 7, 0.6f32, 1u32, 3u32, 99u32);
    let x = random(len, 2.0, 77);
    let hyper = hyper_buffer(&gpu, 4, seed);
    let x_buf = gpu.storage_from("x", &x);
    let whole_buf = gpu.storage("whole", len);
    let whole = dropout
        .prepare(
            &gpu,
            len,
            View::all(&x_buf),
            View::all(&whole_buf),
            keep,
            site,
            sites,
            View::at(&hyper, 1, Hyper::WORDS),
        )
        .unwrap();
    gpu.run(&[&whole]).unwrap();
    let want: Vec<f32> = gpu.read(&whole_buf, 0, len).unwrap();
    for in_place in [false, true] {
        let parts_buf = gpu.storage_from("parts", &x);
        let mut bounds = vec![0, 1, 960, 961, 20_000, len];
        bounds.dedup();
        let parts: Vec<_> = bounds
            .windows(2)
            .map(|w| {
                let (from, words) = (w[0], w[1] - w[0]);
                let src = if in_place { &parts_buf } else { &x_buf };
                let hyper = View::at(&hyper, 1, Hyper::WORDS);
                dropout
                    .prepare_part(
                        &gpu,
                        words,
                        View::at(src, from, words),
                        View::at(&parts_buf, from, words),
                        keep,
                        (site, sites),
                        hyper,
                        from,
                    )
                    .unwrap()
            })
            .collect();
        gpu.run(&parts.iter().collect::<Vec<_>>()).unwrap();
        let got: Vec<f32> = gpu.read(&parts_buf, 0, len).unwrap();
        assert_eq!(bits(&got), bits(&want), "in place: {in_place}");
    }
}

/// Applied in place, as to a gradient in the backward pass: same result as out of place.
#[test]
fn dropout_in_place_matches() {
    let gpu = gpu();
    let dropout = Dropout::new(&gpu).unwrap();
    let len = 1000;
    let x = random(len, 1.0, 3);
    let buf = gpu.storage_from("x", &with_guard(&x));
    let hyper = hyper_buffer(&gpu, 11, 77);
    let view = View::at(&buf, GUARD, len);
    let d = dropout
        .prepare(
            &gpu,
            len,
            view,
            view,
            0.6,
            1,
            2,
            View::at(&hyper, 1, Hyper::WORDS),
        )
        .unwrap();
    gpu.run(&[&d]).unwrap();
    let all: Vec<f32> = gpu.read(&buf, 0, len + 2 * GUARD).unwrap();
    check(
        "in place",
        &all[GUARD..GUARD + len],
        &x,
        0.6,
        77,
        dropout_stream(11, 2, 1),
    );
}

#[test]
fn streams_separate_sites_and_steps() {
    assert_eq!(dropout_stream(4, 3, 2), 14);
    assert_eq!(
        dropout_stream(u32::MAX, 3, 2),
        u32::MAX.wrapping_mul(3).wrapping_add(2)
    );
    let x = random(4096, 1.0, 1);
    let mask = |stream| reference_dropout(&x, 0.5, 1, stream).0;
    assert_ne!(mask(dropout_stream(4, 3, 1)), mask(dropout_stream(4, 3, 2)));
    assert_ne!(mask(dropout_stream(4, 3, 1)), mask(dropout_stream(5, 3, 1)));
}

#[test]
fn prepare_rejects_bad_arguments() {
    let gpu = gpu();
    let dropout = Dropout::new(&gpu).unwrap();
    let a = gpu.storage("a", 100);
    let hyper = hyper_buffer(&gpu, 0, 0);
    let h = View::at(&hyper, 1, Hyper::WORDS);
    let x = View::at(&a, 0, 50);
    let y = View::at(&a, 50, 50);
    assert!(dropout.prepare(&gpu, 50, x, y, 0.5, 0, 1, h).is_ok());
    assert!(dropout.prepare(&gpu, 50, x, y, 0.0, 0, 1, h).is_err());
    assert!(dropout.prepare(&gpu, 50, x, y, 1.5, 0, 1, h).is_err());
    assert!(dropout.prepare(&gpu, 50, x, y, 0.5, 1, 1, h).is_err());
    assert!(dropout.prepare(&gpu, 51, x, y, 0.5, 0, 1, h).is_err());
    assert!(dropout
        .prepare(&gpu, 50, x, View::at(&a, 25, 50), 0.5, 0, 1, h)
        .is_err());
    assert!(dropout
        .prepare(&gpu, 50, x, y, 0.5, 0, 1, View::at(&a, 0, 3))
        .is_err());
}
