//! Errors: everything returns `anyhow::Result`; the binary prints the error chain on one
//! line. A [`UsageError`] anywhere in the chain (a bad flag or an impossible combination)
//! makes the exit code 2, everything else exits 1.

use std::fmt;

/// An error the user made on the command line: exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Build a usage error (exit code 2) from a message.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// The process exit code for an error: 2 when it is a usage error, 128 + the signal when
/// training was interrupted, 1 otherwise.
#[cfg(not(target_arch = "wasm32"))]
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if let Some(i) = err
        .chain()
        .find_map(|e| e.downcast_ref::<crate::signals::Interrupted>())
    {
        return 128 + i.signal;
    }
    if err.chain().any(|e| e.is::<UsageError>()) {
        2
    } else {
        1
    }
}

/// The error as one line: the outermost context first, causes after `: `, newlines folded.
pub fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}").replace('\n', " ")
}
