//! A whole training step on the CPU (filled in by the reference-step work).
