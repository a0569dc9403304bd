//! The words whose learned embeddings point nearest to a word's, by cosine similarity: what
//! `lstm-gpu embeddings neighbors` prints of a checkpoint and the page's "Similar words" shows
//! of the model it trains.

use anyhow::{bail, Result};

use super::checkpoint::Checkpoint;
use crate::data::Tokens;
use crate::error::usage;

/// A vocabulary and its embedding matrix (`[vocab, dim]`, row `id` the word's vector).
pub struct Embeddings<'a> {
    pub vocab: &'a [String],
    pub tokens: Tokens,
    pub rows: &'a [f32],
    pub dim: usize,
}

impl<'a> Embeddings<'a> {
    /// A checkpoint's embeddings.
    pub fn of(ck: &'a Checkpoint) -> Embeddings<'a> {
        Embeddings {
            vocab: &ck.vocab,
            tokens: ck.config.tokens,
            rows: &ck.params.embedding,
            dim: ck.config.embedding_size,
        }
    }

    /// Row `id` of the embedding matrix.
    pub fn row(&self, id: usize) -> &'a [f32] {
        &self.rows[id * self.dim..(id + 1) * self.dim]
    }

    /// The id of `word`, or a usage error saying that the vocabulary lacks it (and where it
    /// holds the word in lower case, that one).
    pub fn word_id(&self, word: &str) -> Result<usize> {
        if let Some(id) = self.vocab.iter().position(|w| w == word) {
            return Ok(id);
        }
        let lower = word.to_lowercase();
        let hint = if lower != word && self.vocab.contains(&lower) {
            format!(" (did you mean `{lower}`? the vocabulary is lower-case)")
        } else {
            String::new()
        };
        if self.tokens == Tokens::Chars {
            return Err(usage(format!(
                "`{word}` is not in the model's character-level vocabulary of {} characters: \
                 give one character it holds",
                self.vocab.len()
            )));
        }
        Err(usage(format!(
            "`{word}` is not in the model's vocabulary of {} words{hint}",
            self.vocab.len()
        )))
    }

    /// The `k` words whose embeddings are nearest to `word`'s by cosine similarity, most
    /// similar first (ties by frequency), with that similarity; the word itself is left out,
    /// so at most `vocab - 1` come back.
    ///
    /// Errors: `k = 0` and a word outside the vocabulary are usage errors; a word whose
    /// embedding is all zeros or not finite has no direction to compare.
    pub fn neighbors(&self, word: &str, k: usize) -> Result<Vec<(String, f32)>> {
        if k == 0 {
            return Err(usage("the number of neighbours must be at least 1"));
        }
        let id = self.word_id(word)?;
        let target = self.row(id);
        let target_norm = norm(target);
        if !(target_norm.is_finite() && target_norm > 0.0) {
            bail!(
                "the embedding of `{word}` is all zeros or not finite: it has no direction to compare"
            );
        }
        let mut scored: Vec<(usize, f64)> = (0..self.vocab.len())
            .filter(|&other| other != id)
            .map(|other| {
                let row = self.row(other);
                let row_norm = norm(row);
                let similarity = if row_norm > 0.0 {
                    dot(target, row) / (target_norm * row_norm)
                } else {
                    0.0
                };
                (other, similarity)
            })
            .filter(|(_, similarity)| similarity.is_finite())
            .collect();
        // Ids are in order of frequency, so ties go to the more frequent word.
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(k);
        Ok(scored
            .into_iter()
            .map(|(other, similarity)| (self.vocab[other].clone(), similarity as f32))
            .collect())
    }
}

/// The dot product, summed in f64.
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// The Euclidean length, in f64.
pub fn norm(a: &[f32]) -> f64 {
    dot(a, a).sqrt()
}
