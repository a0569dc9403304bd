//! Interruption: SIGINT (Ctrl-C) and SIGTERM set a flag that the training loop checks after
//! each step, and its validation and test passes every quarter of a second or so; it then
//! saves a checkpoint and the program exits 128 + the signal number (130 or 143). A second
//! Ctrl-C while saving is ignored so that the checkpoint completes. Where the program has
//! not ended a second after the signal (a slow adapter's step, a cold shader cache's first
//! one), it says on standard error that it heard it and what it is waiting for.

use std::fmt;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a signal goes unanswered before the program says it heard it.
const NOTICE_AFTER: Duration = Duration::from_secs(1);

/// The signal that asked training to stop (0: none yet).
#[derive(Clone, Debug, Default)]
pub struct Interrupt {
    signal: Arc<AtomicI32>,
}

impl Interrupt {
    /// Install handlers for SIGINT and SIGTERM: on Unix; on Windows through the C runtime's
    /// `signal`, where a console's Ctrl-C arrives as SIGINT (and SIGTERM never comes).
    /// Where the program is still running a second after the first signal, standard error
    /// gets `SIGINT received: ` and `waiting` (what the program finishes before it stops).
    pub fn install(waiting: &'static str) -> anyhow::Result<Interrupt> {
        let it = Interrupt::default();
        #[cfg(any(unix, windows))]
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            let flag = it.signal.clone();
            // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
            unsafe {
                signal_hook::low_level::register(sig, move || flag.store(sig, Ordering::SeqCst))?;
            }
        }
        let heard = it.clone();
        std::thread::Builder::new()
            .name("signal notice".into())
            .spawn(move || heard.notice(waiting))?;
        Ok(it)
    }

    /// Wait for a signal (the handler can only set a flag), then, if the program is still
    /// running [`NOTICE_AFTER`] later, say so once.
    fn notice(&self, waiting: &str) {
        let signal = loop {
            if let Some(s) = self.received() {
                break s;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        std::thread::sleep(NOTICE_AFTER);
        use std::io::{IsTerminal, Write};
        // On a terminal the line may follow a progress bar's, or the `^C` the terminal echoed.
        let start = if std::io::stderr().is_terminal() {
            "\n"
        } else {
            ""
        };
        let _ = writeln!(
            std::io::stderr(),
            "{start}{} received: {waiting}",
            signal_name(signal)
        );
    }

    /// The signal received, if any.
    pub fn received(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// Pretend a signal arrived (tests).
    pub fn raise(&self, signal: i32) {
        self.signal.store(signal, Ordering::SeqCst);
    }
}

/// What the C library does with a signal (the dispositions `signal(2)` takes).
#[cfg(unix)]
#[derive(Clone, Copy)]
#[repr(usize)]
enum Disposition {
    Default = 0,
    Ignore = 1,
}

/// Set what a signal does (on Unix; elsewhere there is nothing to set).
#[cfg(unix)]
fn set_disposition(signum: i32, disposition: Disposition) {
    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    // SAFETY: installing SIG_DFL or SIG_IGN for one signal has no preconditions.
    unsafe {
        signal(signum, disposition as usize);
    }
}

/// Ignore SIGXFSZ, which by default kills a process that writes past its file size limit
/// (`ulimit -f`): ignored, the write fails with EFBIG and the program says which file it
/// could not write, keeping the last complete checkpoint, as it does for a full disk.
pub fn ignore_file_size_signal() {
    #[cfg(unix)]
    set_disposition(signal_hook::consts::SIGXFSZ, Disposition::Ignore);
}

/// Let SIGPIPE end the process, as it ends `cat` or `grep`: a command whose reader stopped
/// early (`lstm-gpu predict ... | head`) then stops quietly instead of failing on its next
/// print. Not for `train` (a reader gone must not kill a run before its checkpoint) nor
/// `serve` (whose sockets report a closed peer as an error).
pub fn default_pipe_signal() {
    #[cfg(unix)]
    set_disposition(signal_hook::consts::SIGPIPE, Disposition::Default);
}

/// Training stopped on a signal after saving its checkpoint (or, in the test pass, with the
/// trained model already saved); exit code 128 + signal.
#[derive(Debug)]
pub struct Interrupted {
    pub signal: i32,
    /// What the signal stopped, where not a training step: "the validation pass (batch 12
    /// of 61)".
    pub during: Option<String>,
    /// The checkpoint that holds the run where it stopped.
    pub checkpoint: std::path::PathBuf,
    /// The command that goes on from there.
    pub resume_hint: String,
    /// Whether the signal stopped the test pass after the last epoch: the training is done,
    /// and `resume_hint` scores the trained model instead.
    pub in_test_pass: bool,
}

/// The name of a signal, as `kill -l` gives it.
fn signal_name(signal: i32) -> &'static str {
    match signal {
        2 => "SIGINT",
        15 => "SIGTERM",
        _ => "a signal",
    }
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interrupted by {}", signal_name(self.signal))?;
        if let Some(during) = &self.during {
            write!(f, " during {during}")?;
        }
        if self.in_test_pass {
            write!(
                f,
                "; training had finished and is saved in {}; score it with: {}",
                self.checkpoint.display(),
                self.resume_hint
            )
        } else {
            write!(
                f,
                "; checkpoint saved to {}; resume with: {}",
                self.checkpoint.display(),
                self.resume_hint
            )
        }
    }
}

impl std::error::Error for Interrupted {}
