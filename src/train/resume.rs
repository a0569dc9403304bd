//! The command that continues a run: `lstm-gpu train --resume ...` with the run's own flags,
//! quoted for a POSIX shell, printed where a run stops or fails.

use std::path::Path;

/// The command that continues a run from `checkpoint`: `lstm-gpu train --resume CHECKPOINT
/// --run-dir RUN_DIR` and `flags` (the run's own, so that it reads the same corpus on the
/// same adapter), each quoted for a POSIX shell where it needs it.
pub fn resume_command(checkpoint: &Path, run_dir: &Path, flags: &[String]) -> String {
    let mut words = vec![
        "lstm-gpu".to_string(),
        "train".into(),
        "--resume".into(),
        shell_word(&checkpoint.to_string_lossy()),
        "--run-dir".into(),
        shell_word(&run_dir.to_string_lossy()),
    ];
    words.extend(flags.iter().map(|f| shell_word(f)));
    words.join(" ")
}

/// `word` as a POSIX shell reads it back: unchanged where every character is plain, else in
/// single quotes.
pub fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.,/:=+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The flags of a `train` command line (`args`: what follows `train`) that its resume
/// command repeats: all but `--resume`, `--init` and `--run-dir` (the resume command gives
/// its own), and `drop` (e.g. `--max-steps` once a run stopped there), in either the
/// `--flag value` or the `--flag=value` form.
pub fn flags_to_repeat(args: &[String], drop: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let dropped = ["--resume", "--init", "--run-dir"]
            .iter()
            .chain(drop)
            .find(|f| a == *f || a.starts_with(&format!("{f}=")));
        match dropped {
            Some(f) if a == *f => {
                it.next();
            }
            Some(_) => {}
            None => out.push(a.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_resume_command_repeats_the_runs_flags_quoted() {
        let args: Vec<String> = [
            "--data",
            "my corpus",
            "--run-dir",
            "old",
            "--resume=x.safetensors",
            "--init",
            "w.safetensors",
            "--max-steps=40",
            "--adapter",
            "it's",
            "--hidden",
            "8,6",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let kept = flags_to_repeat(&args, &[]);
        assert_eq!(
            kept,
            [
                "--data",
                "my corpus",
                "--max-steps=40",
                "--adapter",
                "it's",
                "--hidden",
                "8,6"
            ]
        );
        assert_eq!(
            flags_to_repeat(&args, &["--max-steps"]),
            [
                "--data",
                "my corpus",
                "--adapter",
                "it's",
                "--hidden",
                "8,6"
            ]
        );
        // A flag that only begins like a dropped one stays.
        let args = vec!["--run-dirs".to_string(), "--max-steps-x".to_string()];
        assert_eq!(flags_to_repeat(&args, &["--max-steps"]), args);
        assert_eq!(
            resume_command(Path::new("r 1/last.safetensors"), Path::new("r 1"), &kept),
            "lstm-gpu train --resume 'r 1/last.safetensors' --run-dir 'r 1' --data 'my corpus' \
             --max-steps=40 --adapter 'it'\\''s' --hidden 8,6"
        );
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("a$b"), "'a$b'");
    }
}
