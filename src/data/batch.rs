//! TensorFlow's PTB batcher: the id stream reshaped row-major into `[batch_size, batch_len]`
//! (the remainder dropped), cut into windows of `num_steps` columns; the targets are the
//! same window shifted one column right.

use crate::error::usage;
use anyhow::Result;
use std::ops::Range;

/// Batches per epoch of a stream of `tokens` ids: `(tokens / batch_size - 1) / num_steps`,
/// 0 when that is not positive (or a size is 0).
pub fn epoch_size(tokens: usize, batch_size: usize, num_steps: usize) -> usize {
    if batch_size == 0 || num_steps == 0 {
        return 0;
    }
    (tokens / batch_size).saturating_sub(1) / num_steps
}

/// The batches of one epoch over a borrowed id stream.
#[derive(Clone, Copy, Debug)]
pub struct Batches<'a> {
    data: &'a [u32],
    batch_size: usize,
    num_steps: usize,
    /// Columns of the reshaped stream: `data.len() / batch_size`.
    batch_len: usize,
    len: usize,
}

impl<'a> Batches<'a> {
    /// Cut `data` into batches of `batch_size` rows by `num_steps` steps. A shape the data
    /// cannot fill once is a usage error naming the token count and both flags.
    pub fn new(data: &'a [u32], batch_size: usize, num_steps: usize) -> Result<Batches<'a>> {
        if batch_size == 0 || num_steps == 0 {
            return Err(usage(format!(
                "--batch-size and --num-steps must be at least 1, got {batch_size} and \
                 {num_steps}"
            )));
        }
        let tokens = data.len();
        let len = epoch_size(tokens, batch_size, num_steps);
        if len == 0 {
            // One batch needs num_steps + 1 ids per row (the targets run one id ahead).
            let widest = tokens / (num_steps + 1);
            let fix = if widest == 0 {
                "lower --num-steps".to_string()
            } else {
                format!("use --batch-size {widest} or less, or lower --num-steps")
            };
            return Err(usage(format!(
                "{tokens} tokens are too few for --batch-size {batch_size} with --num-steps \
                 {num_steps}: each row gets {} tokens and one batch needs {}; {fix}",
                tokens / batch_size,
                num_steps + 1
            )));
        }
        Ok(Batches {
            data,
            batch_size,
            num_steps,
            batch_len: tokens / batch_size,
            len,
        })
    }

    /// Batches per epoch (at least 1).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: construction refuses an empty epoch.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    pub fn num_steps(&self) -> usize {
        self.num_steps
    }

    /// Batch `i` as `(inputs, targets)`, each row-major `[batch_size, num_steps]`:
    /// `x = data[:, i*T .. (i+1)*T]`, `y = data[:, i*T+1 .. (i+1)*T+1]`. Panics when
    /// `i >= len()`.
    pub fn batch(&self, i: usize) -> (Vec<u32>, Vec<u32>) {
        assert!(i < self.len, "batch {i} of an epoch of {}", self.len);
        let steps = self.num_steps;
        let mut x = Vec::with_capacity(self.batch_size * steps);
        let mut y = Vec::with_capacity(self.batch_size * steps);
        for row in 0..self.batch_size {
            let start = row * self.batch_len + i * steps;
            x.extend_from_slice(&self.data[start..start + steps]);
            y.extend_from_slice(&self.data[start + 1..start + steps + 1]);
        }
        (x, y)
    }

    /// The batches in order.
    pub fn iter(&self) -> BatchIter<'a> {
        BatchIter {
            batches: *self,
            next: 0..self.len,
        }
    }
}

impl<'a> IntoIterator for &Batches<'a> {
    type Item = (Vec<u32>, Vec<u32>);
    type IntoIter = BatchIter<'a>;

    fn into_iter(self) -> BatchIter<'a> {
        self.iter()
    }
}

/// Iterator over the batches of an epoch, in order.
#[derive(Clone, Debug)]
pub struct BatchIter<'a> {
    batches: Batches<'a>,
    next: Range<usize>,
}

impl Iterator for BatchIter<'_> {
    type Item = (Vec<u32>, Vec<u32>);

    fn next(&mut self) -> Option<Self::Item> {
        self.next.next().map(|i| self.batches.batch(i))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.next.size_hint()
    }
}

impl ExactSizeIterator for BatchIter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn windows_match_a_manual_reshape() {
        // 103 ids into 4 rows: 25 columns, 3 ids dropped; 3 steps give (25 - 1) / 3 = 8 batches.
        let data: Vec<u32> = (0..103).map(|i| 1000 + i * 7 % 101).collect();
        let batches = Batches::new(&data, 4, 3).unwrap();
        assert_eq!(batches.len(), 8);
        let all: Vec<_> = batches.iter().collect();
        assert_eq!(all.len(), 8);
        for (i, (x, y)) in all.iter().enumerate() {
            for r in 0..4 {
                for t in 0..3 {
                    assert_eq!(x[r * 3 + t], data[r * 25 + i * 3 + t]);
                    assert_eq!(y[r * 3 + t], data[r * 25 + i * 3 + t + 1]);
                }
            }
        }
        assert_eq!(all[7], batches.batch(7));
    }

    #[test]
    fn every_id_of_a_row_is_an_input_once() {
        let mut rng = SplitMix64::new(7);
        let data: Vec<u32> = (0..601).map(|_| rng.next_u64() as u32).collect();
        // 601 / 5 = 120 columns; (120 - 1) / 7 = 17 batches use columns 0..119 as inputs.
        let batches = Batches::new(&data, 5, 7).unwrap();
        assert_eq!(batches.iter().len(), 17);
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); 5];
        for (x, _) in &batches {
            for (r, row) in rows.iter_mut().enumerate() {
                row.extend_from_slice(&x[r * 7..(r + 1) * 7]);
            }
        }
        for (r, row) in rows.iter().enumerate() {
            assert_eq!(row[..], data[r * 120..r * 120 + 119]);
        }
    }

    #[test]
    fn impossible_shapes_are_usage_errors() {
        let data = vec![3u32; 100];
        // Exactly enough: 100 / 4 = 25 columns = 24 steps + 1.
        assert_eq!(Batches::new(&data, 4, 24).unwrap().len(), 1);
        for (b, t) in [(5, 20), (101, 1), (0, 3), (4, 0), (1, 100)] {
            let err = Batches::new(&data, b, t).unwrap_err();
            assert_eq!(crate::error::exit_code(&err), 2, "{err}");
            let line = err.to_string();
            assert!(
                line.contains("--batch-size") && line.contains("--num-steps"),
                "{line}"
            );
        }
        let line = Batches::new(&data, 5, 20).unwrap_err().to_string();
        assert!(
            line.contains("100 tokens") && line.contains("--batch-size 4 or less"),
            "{line}"
        );
        assert_eq!(epoch_size(100, 5, 20), 0);
        assert_eq!(epoch_size(100, 0, 20), 0);
    }
}
