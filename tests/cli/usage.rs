//! The command line itself and bad input: flags, completions, `data info`, `adapters`, corpora,
//! run folders and damaged checkpoints, each a one-line error and nothing written.

use super::*;

/// `lstm-gpu completions bash` completes commands and each command's flags in bash itself;
/// the other shells' scripts name the flags too.
#[test]
fn completions_complete_commands_and_their_flags() {
    let script = |shell: &str| {
        let o = run(bin().args(["completions", shell]));
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let dir = tempfile::tempdir().unwrap();
    let bash = dir.path().join("lstm-gpu.bash");
    std::fs::write(&bash, script("bash")).unwrap();
    // What bash offers after the words typed so far, as its completion function computes it.
    let offered = |words: &str| {
        let o = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); \
                 _lstm__gpu lstm-gpu \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; echo \"${{COMPREPLY[*]}}\"",
                bash.display()
            ))
            .output()
            .expect("bash");
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(offered("lstm-gpu tr"), "train");
    assert_eq!(offered("lstm-gpu in"), "info");
    let keep = offered("lstm-gpu train --keep");
    assert!(
        keep.contains("--keep-checkpoints") && keep.contains("--keep-prob"),
        "{keep}"
    );
    assert_eq!(offered("lstm-gpu generate --top"), "--top-k --top-p");
    assert!(offered("lstm-gpu predict --").contains("--score"));
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let s = script(shell);
        assert!(
            s.contains("keep-checkpoints") && s.contains("top-p"),
            "{shell}"
        );
    }
    let o = run(bin().args(["completions", "tcsh"]));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn bad_flags_are_one_line_usage_errors() {
    let data = tiny_data();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["train", "--keep-prob", "0"], "--keep-prob"),
        (vec!["train", "--keep-prob", "1.5"], "--keep-prob"),
        (vec!["train", "--hidden", "16,0"], "--hidden"),
        (vec!["train", "--learning-rate", "-1"], "--learning-rate"),
        (vec!["train", "--batch-size", "0"], "--batch-size"),
        (vec!["train", "--batch-size", "500"], "--batch-size"),
        (
            vec![
                "train",
                "--adapter",
                "discrete",
                "--batch-size",
                "2",
                "--num-steps",
                "5",
            ],
            "llvmpipe",
        ),
    ];
    for (args, needle) in cases {
        let o = run(bin().args(&args).arg("--data").arg(&data));
        assert_one_line_error(&o, 2, needle);
    }
}

#[test]
fn bad_checkpoints_and_outputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"this is not a checkpoint").unwrap();
    let missing = dir.path().join("missing.safetensors");
    let o = run(bin()
        .args(["eval", "--checkpoint"])
        .arg(&missing)
        .arg("--data")
        .arg(tiny_data()));
    // A path that is not there is a usage error, as a missing --data folder is.
    assert_one_line_error(&o, 2, "missing.safetensors does not exist");
    let o = run(bin()
        .args(["predict", "--checkpoint"])
        .arg(&junk)
        .arg("the"));
    assert_one_line_error(&o, 1, "safetensors");

    // A real checkpoint for the flag checks.
    let run_dir = dir.path().join("run");
    let o = run(tiny_train(&run_dir)
        .args(["--max-steps", "3", "--no-eval-at-stop"])
        .env("RUST_LOG", "info"));
    assert!(o.status.success(), "{}", stderr(&o));
    // The stop line says the validation perplexity was not measured (not "NaN").
    let err = stderr(&o);
    assert!(
        err.contains("valid perplexity not measured (--no-eval-at-stop)") && !err.contains("NaN"),
        "{err}"
    );
    let ck = run_dir.join("last.safetensors");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["predict".into(), "--top-k".into(), "0".into(), "the".into()],
            "--top-k",
        ),
        (vec!["predict".into(), "   ".into()], "empty"),
        (
            vec![
                "generate".into(),
                "--prompt".into(),
                "the".into(),
                "--temperature".into(),
                "0".into(),
            ],
            "--temperature",
        ),
        (
            vec!["generate".into(), "--prompt".into(), "".into()],
            "empty",
        ),
        (
            vec![
                "embeddings".into(),
                "neighbors".into(),
                "the".into(),
                "-k".into(),
                "0".into(),
            ],
            "at least 1",
        ),
    ];
    for (args, needle) in cases {
        let (cmd, rest) = args.split_first().unwrap();
        let mut c = bin();
        c.arg(cmd).arg("--checkpoint").arg(&ck).args(rest);
        assert_one_line_error(&run(&mut c), 2, needle);
    }
    let o = run(bin()
        .arg("plot")
        .arg(&run_dir)
        .arg("--out")
        .arg(dir.path().join("nowhere/plot.svg")));
    assert_one_line_error(&o, 2, "nowhere");
    // Flags that contradict the checkpoint.
    let o = run(tiny_train(&run_dir)
        .args(["--hidden", "8,8", "--resume"])
        .arg(&ck));
    assert_one_line_error(&o, 2, "--hidden");
}

/// `--adapter auto` prefers GPUs, so a CPU adapter under it means that wgpu sees no GPU
/// (a newcomer's missing driver): the run says so at once, in one warning. Asked for by
/// name, or where a GPU is first, it says nothing of the kind.
#[test]
fn auto_on_a_cpu_adapter_says_at_once_that_no_gpu_was_found() {
    let o = run(bin().args(["adapters", "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let cpu_first = listed[0]["type"] == "Cpu";
    let dir = tempfile::tempdir().unwrap();
    for (adapter, warned) in [("auto", cpu_first), ("0", false)] {
        let run_dir = dir.path().join(adapter);
        let o = run(tiny_train(&run_dir).args(["--max-steps", "1", "--adapter", adapter]));
        let err = stderr(&o);
        assert!(o.status.success(), "{err}");
        assert_eq!(
            err.matches("no GPU adapter found").count(),
            usize::from(warned),
            "--adapter {adapter}, CPU adapter first: {cpu_first}: {err}"
        );
    }
}

#[test]
fn data_info_and_adapters_report_what_is_there() {
    let o = run(bin().args(["data", "info", "--data"]).arg(ptb_dir()));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    for figure in ["10000", "929589", "73760", "82430", "774"] {
        assert!(
            out.replace(',', "").contains(figure),
            "{figure} missing in:\n{out}"
        );
    }
    let o = run(bin().arg("adapters"));
    let out = String::from_utf8_lossy(&o.stdout);
    let listed = ["Vulkan", "Metal", "Dx12", "Gl"]
        .iter()
        .any(|b| out.contains(b));
    assert!(o.status.success() && listed, "{out}");
    // The features that decide what runs, in the table and in the JSON.
    let header = out.lines().next().unwrap();
    assert!(
        header.contains("features") && header.ends_with("driver"),
        "{out}"
    );
    let o = run(bin().args(["adapters", "--json"]));
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in ["subgroups", "f16", "cooperative_matrix", "timestamps"] {
        assert!(listed[0][key].is_boolean(), "{key}: {listed}");
    }
}

// ---- Corpus and output errors through the binary --------------------------------------------

#[test]
fn corpus_errors_are_one_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let train = tiny_file("ptb.train.txt");
    let valid = tiny_file("ptb.valid.txt");
    let test = tiny_file("ptb.test.txt");
    let no_unk = train_without_unk();
    // A valid split with a word the train split never has.
    let valid_oov = b" the market rose on zyzzyva day \n".to_vec();
    // (name, [train, valid, test] files, exit code, what the error line says)
    type Case<'a> = (&'a str, [Option<&'a [u8]>; 3], i32, &'a str);
    let cases: Vec<Case> = vec![
        (
            "missing",
            [Some(&train), Some(&valid), None],
            1,
            "ptb.test.txt",
        ),
        (
            "empty",
            [Some(&train), Some(b""), Some(&test)],
            1,
            "is empty",
        ),
        (
            "binary",
            [Some(b"the market\0 rose\n"), Some(&valid), Some(&test)],
            1,
            "binary",
        ),
        (
            "latin1",
            [Some(&train), Some(&valid), Some(b"the caf\xe9 rose\n")],
            1,
            "not UTF-8",
        ),
        (
            "gzip",
            [Some(b"\x1f\x8b\x08\x00rest"), Some(&valid), Some(&test)],
            1,
            "gzip",
        ),
        (
            "blank",
            [Some(&train), Some(b"  \t  "), Some(&test)],
            1,
            "only blanks",
        ),
        // 30 tokens of valid: 15 per row, a batch needs 21 at --num-steps 20.
        (
            "small",
            [Some(&train), Some(&valid), Some(&test)],
            2,
            "too few",
        ),
        (
            "oov",
            [Some(&no_unk), Some(&valid_oov), Some(&test)],
            1,
            "\"zyzzyva\" is not in the vocabulary",
        ),
    ];
    for (name, files, code, needle) in cases {
        let data = corpus(&dir.path().join(name), files);
        let run_dir = dir.path().join(format!("run-{name}"));
        let o = if name == "small" {
            run(bin()
                .arg("train")
                .arg("--data")
                .arg(&data)
                .arg("--run-dir")
                .arg(&run_dir)
                .args([
                    "--vocab-size",
                    "60",
                    "--batch-size",
                    "2",
                    "--num-steps",
                    "20",
                ]))
        } else {
            train_on(&data, &run_dir)
        };
        assert_one_line_error(&o, code, needle);
        assert!(!run_dir.exists(), "{name}: the run folder was created");
    }
    // `data info` reads the same files and says the same.
    let o = run(bin()
        .args(["data", "info", "--data"])
        .arg(dir.path().join("binary")));
    assert_one_line_error(&o, 1, "binary");
    // A corpus folder that is not there is a usage error.
    let o = train_on(&dir.path().join("nowhere"), &dir.path().join("run-nowhere"));
    assert_one_line_error(&o, 2, "nowhere");
    assert!(!dir.path().join("run-nowhere").exists());
}

#[test]
fn an_unwritable_run_folder_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    // A folder under a regular file cannot be made, even by root.
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a folder").unwrap();
    let o = run(tiny_train(&file.join("run")).args(["--max-steps", "2"]));
    assert_one_line_error(&o, 2, "--run-dir");
    assert_eq!(std::fs::read(&file).unwrap(), b"not a folder");
    // The run folder is a file itself.
    let o = run(tiny_train(&file).args(["--max-steps", "2"]));
    assert_one_line_error(&o, 2, "--run-dir");

    // A read-only folder stops only users other than root.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.path().join("read-only");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(ro.join("probe"), b"").is_ok() {
            eprintln!("skipping the read-only folder case: this user (root?) can write to a read-only folder");
        } else {
            let o = run(tiny_train(&ro).args(["--max-steps", "2"]));
            assert_one_line_error(&o, 2, "--run-dir");
            assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 0);
        }
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

// ---- Damaged checkpoints and models too large for the adapter -----------------------------

#[test]
fn damaged_checkpoints_and_impossible_models_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let o = run(tiny_train(&run_dir)
        .args(["--max-steps", "3", "--no-eval-at-stop"])
        .env("RUST_LOG", "info"));
    assert!(o.status.success(), "{}", stderr(&o));
    // The stop line says the validation perplexity was not measured (not "NaN").
    let err = stderr(&o);
    assert!(
        err.contains("valid perplexity not measured (--no-eval-at-stop)") && !err.contains("NaN"),
        "{err}"
    );
    let ck = run_dir.join("last.safetensors");
    let good = std::fs::read(&ck).unwrap();

    // Truncated, and one bit flipped in the last tensor's data: both found, the file named.
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let mut flipped_bytes = good.clone();
    let at = flipped_bytes.len() - 9;
    flipped_bytes[at] ^= 0x10;
    let flipped = dir.path().join("flipped.safetensors");
    std::fs::write(&flipped, &flipped_bytes).unwrap();
    for (path, needle) in [(&truncated, "truncated"), (&flipped, "checksum")] {
        for cmd in ["eval", "predict"] {
            let mut c = bin();
            c.arg(cmd).arg("--checkpoint").arg(path);
            if cmd == "eval" {
                c.arg("--data").arg(tiny_data());
            } else {
                c.arg("the");
            }
            let o = run(&mut c);
            assert_one_line_error(&o, 1, needle);
            assert!(stderr(&o).contains(path.file_name().unwrap().to_str().unwrap()));
        }
        // Resuming from it fails before anything is written over the run's checkpoint.
        let o = run(tiny_train(&run_dir)
            .args(["--max-steps", "6", "--resume"])
            .arg(path));
        assert_one_line_error(&o, 1, needle);
        assert_eq!(
            std::fs::read(&ck).unwrap(),
            good,
            "last.safetensors changed"
        );
    }

    // A vocabulary that contradicts the checkpoint.
    let o = run(tiny_train(&run_dir)
        .args(["--vocab-size", "50", "--max-steps", "6", "--resume"])
        .arg(&ck));
    assert_one_line_error(&o, 2, "--vocab-size");
    assert_eq!(
        std::fs::read(&ck).unwrap(),
        good,
        "last.safetensors changed"
    );

    // A model larger than the adapter's buffers: said before anything is allocated or
    // written, naming the tensor and the limit.
    let big = dir.path().join("big");
    let o = run(bin()
        .args(["train", "--data"])
        .arg(tiny_data())
        .args([
            "--hidden",
            "8192,8192",
            "--embedding-size",
            "8",
            "--batch-size",
            "2",
            "--num-steps",
            "5",
            "--max-steps",
            "1",
            "--run-dir",
        ])
        .arg(&big));
    assert_one_line_error(&o, 1, "lstm.0.weight");
    assert!(stderr(&o).contains("MiB"), "{}", stderr(&o));
    assert!(
        !big.exists(),
        "a run folder was made for a model that cannot run"
    );

    // No adapter at all on the requested API (DX12 does not exist on Linux).
    if cfg!(target_os = "linux") {
        let o = run(bin()
            .args([
                "train",
                "--backend",
                "dx12",
                "--batch-size",
                "2",
                "--num-steps",
                "5",
            ])
            .arg("--data")
            .arg(tiny_data())
            .arg("--run-dir")
            .arg(&big));
        assert_one_line_error(&o, 1, "no GPU adapter found on backend Dx12");
        assert!(!big.exists());
    }
}

/// Usage errors of the corpus flags, each one line with exit code 2: two layouts in one
/// folder, --data with --train, an impossible --valid-fraction, --tie-weights on a model
/// whose embedding is not as wide as its top layer. `data info` describes a split cut from
/// the training text, in characters.
#[test]
fn corpus_flags_and_layouts_are_checked_as_usage() {
    let dir = tempfile::tempdir().unwrap();
    let both = corpus(
        &dir.path().join("both"),
        [
            Some(&tiny_file("ptb.train.txt")),
            Some(&tiny_file("ptb.valid.txt")),
            Some(&tiny_file("ptb.test.txt")),
        ],
    );
    std::fs::write(both.join("train.txt"), tiny_file("ptb.train.txt")).unwrap();
    let o = run(bin().args(["data", "info", "--data"]).arg(&both));
    assert_one_line_error(&o, 2, "ptb.train.txt");
    assert!(stderr(&o).contains("plain (train.txt)"), "{}", stderr(&o));
    let o = train_on(&both, &dir.path().join("run-both"));
    assert_one_line_error(&o, 2, "corpus layouts");

    let train = tiny_data().join("ptb.train.txt");
    let o = run(bin()
        .args(["data", "info", "--data"])
        .arg(tiny_data())
        .arg("--train")
        .arg(&train));
    assert_one_line_error(&o, 2, "cannot be used with");
    let o = run(bin()
        .args(["data", "info", "--valid-fraction", "0.7", "--train"])
        .arg(&train));
    assert_one_line_error(&o, 2, "--valid-fraction");
    let o = run(bin().args(["data", "info", "--train"]).arg(&train));
    assert_one_line_error(&o, 2, "--valid-fraction");
    let o = run(bin()
        .args(["train", "--tie-weights", "--data"])
        .arg(tiny_data())
        .args(["--embedding-size", "8", "--hidden", "8,6"]));
    assert_one_line_error(&o, 2, "--tie-weights");

    let o = run(bin()
        .args([
            "data",
            "info",
            "--tokens",
            "chars",
            // The cut splits hold characters the rest lacks: <unk> stands for them.
            "--vocab-size",
            "30",
            "--valid-fraction",
            "0.2",
            "--batch-size",
            "2",
            "--num-steps",
            "5",
            "--train",
        ])
        .arg(&train));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        out.contains("30 characters (<unk> id 29")
            && out.contains("valid split: the last")
            && out.contains("bytes"),
        "{out}"
    );
}

/// `data info` on a plain text `train` (its last 20% as valid and test) read as `tokens`.
fn data_info_as(train: &Path, tokens: &str) -> Output {
    run(bin()
        .args([
            "data",
            "info",
            "--valid-fraction",
            "0.2",
            "--tokens",
            tokens,
            "--train",
        ])
        .arg(train))
}

/// Plain text whose line ends touch words: `words` (TensorFlow's reader) glues them on and
/// says so once, naming the mode that does not; `words-eos` makes each line end an `<eos>`.
#[test]
fn glued_line_ends_are_reported_and_words_eos_keeps_them_apart() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("story.txt");
    let mut text = String::new();
    for i in 0..200 {
        text.push_str(&format!(
            "the cat sat on mat {}\nand then it slept\n",
            i % 9
        ));
    }
    std::fs::write(&train, &text).unwrap();
    let info = |tokens: &str| data_info_as(&train, tokens);
    let glued = info("words");
    assert!(glued.status.success(), "{}", stderr(&glued));
    let err = stderr(&glued);
    assert!(
        err.contains("line end glued on") && err.contains("--tokens words-eos"),
        "{err}"
    );
    let apart = info("words-eos");
    assert!(apart.status.success(), "{}", stderr(&apart));
    assert!(!stderr(&apart).contains("glued"), "{}", stderr(&apart));
    let out = String::from_utf8_lossy(&apart.stdout);
    assert!(out.contains("words-eos"), "{out}");
    // The 9 words, the 9 digits and <eos>: "3<eos>and" and "slept<eos>the" are gone.
    assert!(out.contains("vocabulary  19 words"), "{out}");
    let glued_out = String::from_utf8_lossy(&glued.stdout);
    assert!(!glued_out.contains("vocabulary  19 words"), "{glued_out}");

    // Without --tokens such text is read as words-eos, and the log says why; training
    // records it in the checkpoint. PTB-like text (a space around every line end) stays
    // `words`, TensorFlow's reader.
    let chosen = run(bin()
        .args(["data", "info", "--valid-fraction", "0.2", "--train"])
        .arg(&train)
        .env("RUST_LOG", "info"));
    assert!(chosen.status.success(), "{}", stderr(&chosen));
    assert_eq!(chosen.stdout, apart.stdout);
    let note = format!("line ends of {} touch words", train.display());
    assert!(stderr(&chosen).contains(&note), "{}", stderr(&chosen));
    let run_dir = dir.path().join("run");
    let o = run(bin()
        .args([
            "train",
            "--valid-fraction",
            "0.2",
            "--max-steps",
            "1",
            "--no-progress",
        ])
        .args(TINY_MODEL)
        .arg("--run-dir")
        .arg(&run_dir)
        .arg("--train")
        .arg(&train));
    assert!(o.status.success(), "{}", stderr(&o));
    let trained = params_of(&run_dir.join("last.safetensors"));
    assert_eq!(trained.config.tokens, lstm_gpu::data::Tokens::WordsEos);
    let o = run(bin().args(["data", "info", "--data"]).arg(tiny_data()));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("tokens      words\n"),
        "{out}"
    );
    assert!(!stderr(&o).contains("touch words"), "{}", stderr(&o));
}

/// A valid split whose glued pairs (`b<eos>a`) the training text never has: in `words`
/// mode an unknown token, and the error says which mode keeps line ends apart; in
/// `words-eos` every token is known.
#[test]
fn an_unknown_glued_token_names_words_eos() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("pairs.txt");
    let mut text = String::new();
    for i in 0..400 {
        text.push_str(if i % 2 == 0 { "a b\n" } else { "c d\n" });
    }
    for _ in 0..100 {
        text.push_str("a b\n");
    }
    std::fs::write(&train, &text).unwrap();
    let info = |tokens: &str| data_info_as(&train, tokens);
    let o = info("words");
    assert_one_line_error(&o, 1, "b<eos>a");
    assert!(
        stderr(&o).contains("--tokens words-eos keeps line ends apart"),
        "{}",
        stderr(&o)
    );
    let o = info("words-eos");
    assert!(o.status.success(), "{}", stderr(&o));
    // Without --tokens, words-eos is chosen for it.
    let o = run(bin()
        .args(["data", "info", "--valid-fraction", "0.2", "--train"])
        .arg(&train));
    assert!(o.status.success(), "{}", stderr(&o));
}
