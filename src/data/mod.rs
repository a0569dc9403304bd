//! Corpus reading, vocabulary, batching and download, with TensorFlow's PTB reader semantics.
//!
//! - [`tokenize`]: `text.replace("\n", "<eos>").split()`, exactly;
//! - [`Vocab`]: the train split's words by (descending count, word), capped with `<unk>`;
//! - [`Tokens`]: words (TensorFlow's reader) or every character;
//! - [`CorpusSource`]: where the three splits are (a folder in one of [`LAYOUTS`], named files,
//!   a split cut from the end of the training text);
//! - [`Corpus`]: the three splits as ids, streamed from their files, checked with clear errors;
//! - [`Batches`]: the `[batch_size, num_steps]` windows of an epoch and their shifted targets;
//! - [`fetch`]: downloading the corpus for users, verified and written atomically.

mod batch;
mod corpus;
#[cfg(not(target_arch = "wasm32"))]
pub mod fetch;
mod reader;
mod vocab;

pub use batch::{epoch_size, BatchIter, Batches};
pub use corpus::{
    encode_file, encode_text, encode_text_as, find_split, glues_line_ends, info, info_of,
    read_text, text_of_bytes, Corpus, CorpusOrigin, CorpusSource, DataInfo, EncodedText, Split,
    SplitInfo, SplitSource, UnknownToken, LAYOUTS,
};
pub use vocab::{tokenize, Tokens, Vocab, VocabBuilder, EOS, UNK};
