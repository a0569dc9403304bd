//! Parity of `shaders/embedding.wgsl` with its CPU twins `reference::embedding_gather` and
//! `reference::embedding_grad_rows`, with ids repeated as in real batches.
//!
//! Operands sit at non-zero word offsets; outputs are poisoned with NaN, and the words around
//! each output window (and, for the gradient, the rows past U) must keep the poison.

mod common;

use common::{assert_close, gpu, nan, random};
use lstm_gpu::gpu::embedding::{pack_segments, segments_words, Embedding};
use lstm_gpu::gpu::{Gpu, View};
use lstm_gpu::reference::{self, IdSegments};
use lstm_gpu::rng::SplitMix64;

/// Words before every window.
const GUARD: usize = 3;

/// `n` ids below `vocab`, drawn from a small range half of the time so that ids repeat.
fn ids(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut r = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let range = if r.next_f64() < 0.5 {
                vocab.min(7)
            } else {
                vocab
            };
            (r.next_u64() % range as u64) as u32
        })
        .collect()
}

fn with_guard<T: bytemuck::Pod>(guard: T, data: &[T]) -> Vec<T> {
    let mut words = vec![guard; GUARD];
    words.extend_from_slice(data);
    words.extend(std::iter::repeat_n(guard, GUARD));
    words
}

fn read_all(gpu: &Gpu, buffer: &wgpu::Buffer) -> Vec<f32> {
    gpu.read(buffer, 0, (buffer.size() / 4) as usize).unwrap()
}

/// Words of `all` outside `[from, from + len)` must still be NaN.
fn assert_untouched(what: &str, all: &[f32], from: usize, len: usize) {
    for (i, v) in all.iter().enumerate() {
        if i < from || i >= from + len {
            assert!(
                v.is_nan(),
                "{what}: word {i} outside the output window was written: {v}"
            );
        }
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// (positions, width, vocab): small odd shapes and the model's n = 60 * 20, e = 200.
const SHAPES: [(usize, usize, usize); 5] = [
    (1, 1, 1),
    (7, 33, 5),
    (33, 7, 40),
    (129, 60, 300),
    (1200, 200, 10000),
];

#[test]
fn gather_matches_reference() {
    let gpu = gpu();
    let emb = Embedding::new(&gpu).unwrap();
    for (k, &(n, e, vocab)) in SHAPES.iter().enumerate() {
        let id = ids(n, vocab, 10 + k as u64);
        let table = random(vocab * e, 0.1, 20 + k as u64);
        let mut want = vec![0.0f64; n * e];
        let table64: Vec<f64> = table.iter().map(|&v| v as f64).collect();
        reference::embedding_gather(e, &id, &table64, &mut want);

        let ids_buf = gpu.storage_from("ids", &with_guard(u32::MAX, &id));
        let table_buf = gpu.storage_from("table", &with_guard(f32::NAN, &table));
        let out = gpu.storage_from("out", &nan(n * e + 2 * GUARD));
        let d = emb
            .prepare_gather(
                &gpu,
                n,
                e,
                View::at(&ids_buf, GUARD, n),
                View::at(&table_buf, GUARD, vocab * e),
                View::at(&out, GUARD, n * e),
            )
            .unwrap();
        assert_eq!(d.label, "embedding_gather");
        gpu.run(&[&d]).unwrap();
        let all = read_all(&gpu, &out);
        assert_untouched("gather", &all, GUARD, n * e);
        let got = &all[GUARD..GUARD + n * e];
        // A copy: exact.
        assert_close(&format!("gather n={n} e={e}"), got, &want, 0.0);
    }
}

#[test]
fn gather_of_an_id_outside_the_table_is_nan() {
    let gpu = gpu();
    let emb = Embedding::new(&gpu).unwrap();
    let (e, vocab) = (5, 4);
    let id = [3u32, 4, 0];
    let table = random(vocab * e, 0.1, 1);
    let ids_buf = gpu.storage_from("ids", &id);
    let table_buf = gpu.storage_from("table", &table);
    let out = gpu.storage_from("out", &vec![0.0f32; 3 * e]);
    let d = emb
        .prepare_gather(
            &gpu,
            3,
            e,
            View::all(&ids_buf),
            View::all(&table_buf),
            View::all(&out),
        )
        .unwrap();
    gpu.run(&[&d]).unwrap();
    let got = read_all(&gpu, &out);
    assert_eq!(&got[..e], &table[3 * e..]);
    assert!(got[e..2 * e].iter().all(|v| v.is_nan()));
    assert_eq!(&got[2 * e..], &table[..e]);
}

#[test]
fn pack_segments_layout() {
    let seg = IdSegments::new(&[5, 2, 5, 9, 2, 5]);
    let w = pack_segments(&seg, 8);
    assert_eq!(w.len(), segments_words(8));
    assert_eq!(w[0], 3);
    assert_eq!(&w[1..4], &[2, 5, 9]);
    assert_eq!(&w[1 + 8..1 + 8 + 4], &[0, 2, 5, 6]);
    assert_eq!(&w[2 + 16..2 + 16 + 6], &[1, 4, 0, 2, 5, 3]);
}

/// Run embedding_grad_rows for `id`, with the dispatch prepared for `capacity` positions
/// (at least `id.len()`); returns all words of the rows buffer.
fn run_grad_rows(
    gpu: &Gpu,
    emb: &Embedding,
    e: usize,
    capacity: usize,
    id: &[u32],
    dout: &[f32],
) -> Vec<f32> {
    let seg = IdSegments::new(id);
    let seg_buf = gpu.storage_from(
        "segments",
        &with_guard(u32::MAX, &pack_segments(&seg, capacity)),
    );
    let mut dout_words = dout.to_vec();
    dout_words.resize(capacity * e, f32::NAN);
    let dout_buf = gpu.storage_from("dout", &with_guard(f32::NAN, &dout_words));
    let rows = gpu.storage_from("rows", &nan(capacity * e + 2 * GUARD));
    let d = emb
        .prepare_grad_rows(
            gpu,
            e,
            capacity,
            View::at(&seg_buf, GUARD, segments_words(capacity)),
            View::at(&dout_buf, GUARD, capacity * e),
            View::at(&rows, GUARD, capacity * e),
        )
        .unwrap();
    assert_eq!(d.label, "embedding_grad_rows");
    gpu.run(&[&d]).unwrap();
    read_all(gpu, &rows)
}

#[test]
fn grad_rows_match_reference() {
    let gpu = gpu();
    let emb = Embedding::new(&gpu).unwrap();
    for (k, &(n, e, vocab)) in SHAPES.iter().enumerate() {
        let id = ids(n, vocab, 40 + k as u64);
        let dout = random(n * e, 1.0, 50 + k as u64);
        let seg = IdSegments::new(&id);
        let unique = seg.unique.len();
        assert!(n < 7 || unique < n, "the test needs repeated ids");

        let mut want = vec![0.0f64; unique * e];
        let dout64: Vec<f64> = dout.iter().map(|&v| v as f64).collect();
        reference::embedding_grad_rows(e, &seg, &dout64, &mut want);
        let mut want32 = vec![0.0f32; unique * e];
        reference::embedding_grad_rows(e, &seg, &dout, &mut want32);

        let all = run_grad_rows(&gpu, &emb, e, n, &id, &dout);
        // Rows past U are not written.
        assert_untouched("grad rows", &all, GUARD, unique * e);
        let got = &all[GUARD..GUARD + unique * e];
        let what = format!("grad rows n={n} e={e} unique={unique}");
        assert_close(&what, got, &want, 1e-5);
        // Same summation order as the CPU twin in f32: same bits.
        assert_eq!(
            bits(got),
            bits(&want32),
            "{what}: differs from the f32 twin"
        );

        let again = run_grad_rows(&gpu, &emb, e, n, &id, &dout);
        assert_eq!(bits(&again), bits(&all), "{what}: differs between runs");
    }
}

/// A batch shorter than the capacity the dispatch was prepared for (U read at run time).
#[test]
fn grad_rows_use_the_unique_count_of_the_step() {
    let gpu = gpu();
    let emb = Embedding::new(&gpu).unwrap();
    let (e, capacity) = (9, 50);
    let id = [4u32, 4, 4, 1, 4];
    let dout = random(id.len() * e, 1.0, 3);
    let seg = IdSegments::new(&id);
    let mut want = vec![0.0f64; 2 * e];
    let dout64: Vec<f64> = dout.iter().map(|&v| v as f64).collect();
    reference::embedding_grad_rows(e, &seg, &dout64, &mut want);
    let all = run_grad_rows(&gpu, &emb, e, capacity, &id, &dout);
    assert_untouched("short batch", &all, GUARD, 2 * e);
    assert_close("short batch", &all[GUARD..GUARD + 2 * e], &want, 1e-6);
}

#[test]
fn prepare_rejects_short_views() {
    let gpu = gpu();
    let emb = Embedding::new(&gpu).unwrap();
    let buf = gpu.storage("b", 1000);
    let out = gpu.storage("out", 1000);
    let seg = gpu.storage("seg", segments_words(10));
    assert!(emb
        .prepare_gather(
            &gpu,
            10,
            5,
            View::at(&buf, 0, 10),
            View::at(&buf, 10, 50),
            View::at(&out, 0, 49)
        )
        .is_err());
    assert!(emb
        .prepare_grad_rows(
            &gpu,
            5,
            10,
            View::at(&seg, 1, segments_words(10) - 1),
            View::at(&buf, 0, 50),
            View::at(&out, 0, 50)
        )
        .is_err());
    assert!(emb
        .prepare_grad_rows(
            &gpu,
            5,
            10,
            View::all(&seg),
            View::at(&buf, 0, 50),
            View::at(&buf, 50, 50)
        )
        .is_err());
    assert!(emb
        .prepare_grad_rows(
            &gpu,
            5,
            10,
            View::all(&seg),
            View::at(&buf, 0, 50),
            View::at(&out, 0, 50)
        )
        .is_ok());
}

/// Tied embeddings: `embedding_scatter_add_rows` adds the gradient rows of the distinct ids
/// into a dense `[vocab, e]` gradient exactly as its CPU twin does (one add per element, so
/// the same bits), leaves every other row and the words around the window alone, and reads
/// only the U rows of the step.
#[test]
fn scatter_add_rows_match_reference() {
    let gpu = gpu();
    let emb = Embedding::new(&gpu).unwrap();
    for (k, &(n, e, vocab)) in SHAPES.iter().enumerate() {
        let id = ids(n, vocab, 60 + k as u64);
        let seg = IdSegments::new(&id);
        let unique = seg.unique.len();
        let rows = random(unique * e, 1.0, 70 + k as u64);
        let dense = random(vocab * e, 1.0, 80 + k as u64);

        let mut want32 = dense.clone();
        reference::embedding_scatter_add_rows(e, &seg.unique, &rows, &mut want32);
        let mut want = common::to_f64(&dense);
        reference::embedding_scatter_add_rows(e, &seg.unique, &common::to_f64(&rows), &mut want);

        let seg_buf = gpu.storage_from("segments", &with_guard(u32::MAX, &pack_segments(&seg, n)));
        // Rows past U are NaN: reading one would poison the result.
        let mut row_words = rows.clone();
        row_words.resize(n * e, f32::NAN);
        let rows_buf = gpu.storage_from("rows", &with_guard(f32::NAN, &row_words));
        let dense_buf = gpu.storage_from("dense", &with_guard(f32::NAN, &dense));
        let d = emb
            .prepare_scatter_add_rows(
                &gpu,
                e,
                n,
                View::at(&seg_buf, GUARD, segments_words(n)),
                View::at(&rows_buf, GUARD, n * e),
                View::at(&dense_buf, GUARD, vocab * e),
            )
            .unwrap();
        assert_eq!(d.label, "embedding_scatter_add_rows");
        gpu.run(&[&d]).unwrap();
        let all = read_all(&gpu, &dense_buf);
        assert_untouched("scatter", &all, GUARD, vocab * e);
        let got = &all[GUARD..GUARD + vocab * e];
        let what = format!("scatter n={n} e={e} vocab={vocab} unique={unique}");
        assert_close(&what, got, &want, 1e-6);
        assert_eq!(
            bits(got),
            bits(&want32),
            "{what}: differs from the f32 twin"
        );
        // The rows of ids outside the batch are what they were.
        let absent = (0..vocab as u32).find(|i| !seg.unique.contains(i));
        if let Some(a) = absent {
            let a = a as usize;
            assert_eq!(
                bits(&got[a * e..(a + 1) * e]),
                bits(&dense[a * e..(a + 1) * e])
            );
        }
    }
}
