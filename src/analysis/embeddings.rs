//! The learned word embeddings of a checkpoint: nearest neighbours by cosine similarity, and
//! a two-dimensional t-SNE map of the most frequent words, each point labelled with its word
//! (the picture of the TensorFlow word2vec tutorial).
//!
//! The map compares directions, as the neighbours do: t-SNE runs on the unit-length rows
//! with the Euclidean distance, which orders pairs exactly as the cosine does
//! (`|a - b|² = 2 - 2 cos(a, b)` for unit vectors) and, unlike `1 - cos`, is a metric, as
//! the Barnes-Hut tree needs. Its start is drawn from a fixed seed, so a checkpoint gives
//! the same map on every run (up to rounding: the crate re-centres the map with a parallel
//! sum whose order of addition may vary).

use anyhow::Result;
use bhtsne::tSNE;
use indicatif::{ProgressBar, ProgressStyle};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::io::IsTerminal;
use std::path::Path;

use super::{bounds, prepare_output, render, Figure};
use crate::data::{EOS, UNK};
use crate::error::usage;
use crate::model::checkpoint::Checkpoint;
use crate::model::similar::{norm, Embeddings};
use crate::rng::SplitMix64;

/// The fewest words a map can show: t-SNE needs a perplexity of at least one, and the
/// perplexity may be at most a third of the other points.
pub const MIN_MAP_WORDS: usize = 5;

/// Effective number of neighbours each point keeps close; the usual value, lowered to a
/// third of the other points on small maps (the crate's limit).
const TSNE_PERPLEXITY: usize = 30;
/// Gradient-descent iterations (the crate's and the original paper's default).
const TSNE_EPOCHS: usize = 1000;
/// Barnes-Hut accuracy: a cell this small relative to its distance counts as one point.
const TSNE_THETA: f32 = 0.5;
/// Seed of the starting layout.
const TSNE_SEED: u64 = 0x7453_4e45;
/// Spread of the starting layout: tiny, so that the early exaggeration forms the clusters.
const TSNE_INIT_SCALE: f64 = 1e-4;

/// The `k` words whose embeddings are nearest to `word`'s by cosine similarity, most similar
/// first, with that similarity ([`Embeddings::neighbors`] of the checkpoint's).
pub fn neighbors(ck: &Checkpoint, word: &str, k: usize) -> Result<Vec<(String, f32)>> {
    Embeddings::of(ck).neighbors(word, k)
}

/// Draw a t-SNE map of the `words` most frequent words of the checkpoint (leaving out
/// `<unk>` and `<eos>`) into `out`, an `.svg` or `.png` file, each point labelled with its
/// word. With `progress`, a bar on a terminal's stderr follows the t-SNE iterations.
///
/// Errors (usage): an output name without a `.svg`/`.png` extension or in a folder that does
/// not exist; fewer than [`MIN_MAP_WORDS`] words, or more than the vocabulary holds.
pub fn map(ck: &Checkpoint, out: &Path, words: usize, progress: bool) -> Result<()> {
    let format = prepare_output(out)?;
    let ids = most_frequent_words(ck, words)?;
    let dim = ck.config.embedding_size;
    let embeddings = Embeddings::of(ck);
    let unit_rows: Vec<f32> = ids
        .iter()
        .flat_map(|&id| {
            let row = embeddings.row(id);
            let n = norm(row);
            // An all-zero row stays at the origin of the sphere: equally far from all others.
            let scale = if n > 0.0 { (1.0 / n) as f32 } else { 0.0 };
            row.iter().map(move |v| v * scale)
        })
        .collect();
    let layout = tsne_layout(&unit_rows, dim, progress);
    let points = ids
        .iter()
        .zip(layout)
        .map(|(&id, position)| (ck.vocab[id].clone(), position))
        .collect();
    render(out, format, &WordMap { points })
}

/// The ids of the `words` most frequent words but `<unk>` and `<eos>`: the vocabulary's
/// first ids, since ids are in order of descending frequency.
fn most_frequent_words(ck: &Checkpoint, words: usize) -> Result<Vec<usize>> {
    let candidates = (0..ck.vocab.len()).filter(|&id| ck.vocab[id] != UNK && ck.vocab[id] != EOS);
    let candidates: Vec<usize> = candidates.collect();
    if words < MIN_MAP_WORDS {
        return Err(usage(format!(
            "a t-SNE map needs at least {MIN_MAP_WORDS} words, not {words}"
        )));
    }
    if words > candidates.len() {
        return Err(usage(format!(
            "cannot map {words} words: the checkpoint's vocabulary has {} besides {UNK} and {EOS}",
            candidates.len()
        )));
    }
    Ok(candidates[..words].to_vec())
}

/// Barnes-Hut t-SNE of the `dim`-wide rows of `rows` into the plane.
fn tsne_layout(rows: &[f32], dim: usize, progress: bool) -> Vec<(f64, f64)> {
    let samples: Vec<&[f32]> = rows.chunks(dim).collect();
    let n = samples.len();
    let perplexity = TSNE_PERPLEXITY.min((n - 1) / 3) as f32;
    // bhtsne starts from the thread's random generator; a seeded start of our own makes
    // the map repeatable.
    let mut rng = SplitMix64::new(TSNE_SEED);
    let start: Vec<f32> = (0..2 * n)
        .map(|_| rng.uniform(-TSNE_INIT_SCALE, TSNE_INIT_SCALE) as f32)
        .collect();
    let bar = progress_bar(progress, TSNE_EPOCHS as u64);
    let epochs_done = bar.clone();
    let mut tsne: tSNE<f32, &[f32]> = tSNE::new(&samples);
    tsne.perplexity(perplexity)
        .epochs(TSNE_EPOCHS)
        .initial_embedding(start)
        .epoch_callback(move |epoch, _| epochs_done.set_position(epoch as u64 + 1))
        .barnes_hut(TSNE_THETA, |a, b| {
            let squared: f32 = a.iter().zip(b.iter()).map(|(x, y)| (x - y) * (x - y)).sum();
            squared.sqrt()
        });
    bar.finish_and_clear();
    let layout = tsne.embedding();
    layout
        .chunks(2)
        .map(|p| (p[0] as f64, p[1] as f64))
        .collect()
}

/// A bar over the t-SNE iterations on stderr, when asked for and stderr is a terminal.
fn progress_bar(wanted: bool, epochs: u64) -> ProgressBar {
    if !(wanted && std::io::stderr().is_terminal()) {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "t-SNE {wide_bar} {pos}/{len} iterations [{elapsed_precise}, {eta} left]",
    )
    .expect("the template is valid");
    let bar = ProgressBar::new(epochs).with_style(style);
    // The neighbour search before the first iteration takes a while on big maps.
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// Labelled points in the plane.
struct WordMap {
    points: Vec<(String, (f64, f64))>,
}

impl Figure for WordMap {
    /// Square, growing with the number of words so that labels keep room: 1600 pixels for
    /// 500 words.
    fn size(&self) -> (u32, u32) {
        let side = (72.0 * (self.points.len() as f64).sqrt()).clamp(800.0, 4000.0) as u32;
        (side, side)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let (x_lo, x_hi) = bounds(self.points.iter().map(|(_, p)| p.0)).unwrap_or((0.0, 1.0));
        let (y_lo, y_hi) = bounds(self.points.iter().map(|(_, p)| p.1)).unwrap_or((0.0, 1.0));
        let x_span = (x_hi - x_lo).max(1e-9);
        let y_span = (y_hi - y_lo).max(1e-9);
        // Labels run to the right of their point: more room on that side.
        let x_range = (x_lo - 0.02 * x_span)..(x_hi + 0.08 * x_span);
        let y_range = (y_lo - 0.03 * y_span)..(y_hi + 0.03 * y_span);
        let title = format!(
            "Word embeddings: t-SNE map of the {} most frequent words",
            self.points.len()
        );
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 28))
            .margin(20)
            .build_cartesian_2d(x_range, y_range)?;
        let point = RGBColor(31, 119, 180).filled();
        let label = ("sans-serif", 13)
            .into_font()
            .color(&RGBColor(40, 40, 40))
            .pos(Pos::new(HPos::Left, VPos::Center));
        chart.draw_series(self.points.iter().map(|(word, position)| {
            EmptyElement::at(*position)
                + Circle::new((0, 0), 3, point)
                + Text::new(word.clone(), (5, 0), label.clone())
        }))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::Params;

    fn checkpoint(words: &[&str], dim: usize) -> Checkpoint {
        let config = Config {
            vocab_size: words.len(),
            embedding_size: dim,
            hidden: vec![3],
            batch_size: 2,
            ..Config::default()
        };
        Checkpoint {
            init: None,
            corpus: None,
            params: Params::<f32>::init(&config, 11),
            config,
            vocab: words.iter().map(|w| w.to_string()).collect(),
            state: None,
            position: Default::default(),
        }
    }

    #[test]
    fn map_words_skip_special_tokens() {
        let ck = checkpoint(&["the", "<unk>", "<eos>", "a", "of", "to", "in", "and"], 4);
        assert_eq!(most_frequent_words(&ck, 5).unwrap(), vec![0, 3, 4, 5, 6]);
        assert_eq!(most_frequent_words(&ck, 6).unwrap(), vec![0, 3, 4, 5, 6, 7]);
        for words in [0, 4, 7] {
            let err = most_frequent_words(&ck, words).unwrap_err();
            assert_eq!(crate::error::exit_code(&err), 2, "{words}: {err:#}");
        }
    }

    #[test]
    fn unknown_word_suggests_lower_case() {
        let ck = checkpoint(&["the", "cat", "sat"], 4);
        let err = format!("{:#}", Embeddings::of(&ck).word_id("Cat").unwrap_err());
        assert!(
            err.contains("`Cat` is not in") && err.contains("`cat`"),
            "{err}"
        );
        let err = format!("{:#}", Embeddings::of(&ck).word_id("dog").unwrap_err());
        assert!(
            err.contains("vocabulary of 3 words") && !err.contains("mean"),
            "{err}"
        );
    }

    /// Two well separated groups of directions stay apart in the map: every point's nearest
    /// map neighbour is from its own group. The map is also the same on a second run.
    #[test]
    fn tsne_keeps_clusters_apart_and_repeats() {
        let (groups, per_group, dim) = (2, 12, 6);
        let mut rng = SplitMix64::new(5);
        let mut rows = Vec::new();
        for g in 0..groups {
            for _ in 0..per_group {
                for d in 0..dim {
                    let centre = if d == g { 1.0 } else { 0.0 };
                    rows.push(centre + rng.uniform(-0.15, 0.15) as f32);
                }
            }
        }
        let layout = tsne_layout(&rows, dim, false);
        assert_eq!(layout.len(), groups * per_group);
        assert!(layout.iter().all(|p| p.0.is_finite() && p.1.is_finite()));
        for (i, a) in layout.iter().enumerate() {
            let distance = |b: &(f64, f64)| (a.0 - b.0).hypot(a.1 - b.1);
            let nearest = (0..layout.len())
                .filter(|&j| j != i)
                .min_by(|&j, &k| distance(&layout[j]).total_cmp(&distance(&layout[k])))
                .unwrap();
            assert_eq!(nearest / per_group, i / per_group, "point {i}");
        }
        // The crate re-centres the map each iteration with a parallel sum, whose rounding
        // may differ between runs: the same map up to a whisker, not bit for bit.
        let extent = layout
            .iter()
            .fold(0.0_f64, |m, p| m.max(p.0.abs()).max(p.1.abs()));
        for (again, first) in tsne_layout(&rows, dim, false).iter().zip(&layout) {
            let moved = (again.0 - first.0).hypot(again.1 - first.1);
            assert!(moved <= 1e-3 * extent, "{again:?} vs {first:?}");
        }
    }
}
