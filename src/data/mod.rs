//! Corpus reading, vocabulary, batching and download (TensorFlow's PTB reader semantics).
