//! Corpus reading, vocabulary, batching and download, with TensorFlow's PTB reader semantics.
//!
//! - [`tokenize`]: `text.replace("\n", "<eos>").split()`, exactly;
//! - [`Vocab`]: the train split's words by (descending count, word), capped with `<unk>`;
//! - [`Corpus`]: the three splits of a folder as ids, every file checked with clear errors;
//! - [`Batches`]: the `[batch_size, num_steps]` windows of an epoch and their shifted targets;
//! - [`fetch`]: downloading the corpus for users, verified and written atomically.

mod batch;
mod corpus;
pub mod fetch;
mod vocab;

pub use batch::{epoch_size, BatchIter, Batches};
pub use corpus::{
    encode_file, encode_text, find_split, info, read_text, Corpus, DataInfo, EncodedText, Split,
    SplitInfo,
};
pub use vocab::{tokenize, Vocab, EOS, UNK};
