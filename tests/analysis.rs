//! The analysis commands that need no GPU: learning-curve plots from `metrics.jsonl`, and
//! nearest neighbours and t-SNE maps of a checkpoint's word embeddings.

use lstm_gpu::analysis::{embeddings, metrics, plot};
use lstm_gpu::config::Config;
use lstm_gpu::error::exit_code;
use lstm_gpu::model::checkpoint::Checkpoint;
use lstm_gpu::model::Params;
use lstm_gpu::rng::SplitMix64;
use std::path::{Path, PathBuf};

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The metrics of a run with `epochs` finished epochs, log points every 10 steps, and a test
/// record when it finished, in the folder `dir/name`.
fn write_run(dir: &Path, name: &str, epochs: u64, seed: u64) -> PathBuf {
    let mut rng = SplitMix64::new(seed);
    let mut lines = Vec::new();
    let steps_per_epoch = 40;
    for epoch in 1..=epochs {
        let base = 900.0 / epoch as f64;
        for step in (10..=steps_per_epoch).step_by(10) {
            let perplexity = base * (1.3 - step as f64 / 200.0) + rng.uniform(0.0, 20.0);
            let global_step = (epoch - 1) * steps_per_epoch + step;
            let speed = 11_000.0 + rng.uniform(0.0, 2000.0);
            lines.push(format!(
                r#"{{"kind":"train","epoch":{epoch},"step":{step},"global_step":{global_step},"learning_rate":1.0,"perplexity":{perplexity},"words_per_second":{speed}}}"#
            ));
        }
        let train = base + rng.uniform(0.0, 10.0);
        let valid = base * 0.8 + 60.0 + rng.uniform(0.0, 10.0);
        let speed = 12_000.0 + rng.uniform(0.0, 1000.0);
        lines.push(format!(
            r#"{{"kind":"epoch","epoch":{epoch},"global_step":{},"learning_rate":1.0,"train_perplexity":{train},"valid_perplexity":{valid},"words_per_second":{speed},"seconds":12.5}}"#,
            epoch * steps_per_epoch
        ));
    }
    if epochs > 0 {
        lines.push(r#"{"kind":"test","test_perplexity":131.4}"#.to_string());
    }
    write_metrics(dir, name, &lines.join("\n"))
}

fn write_metrics(dir: &Path, name: &str, text: &str) -> PathBuf {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    let path = folder.join(metrics::METRICS_FILE);
    std::fs::write(&path, text).unwrap();
    path
}

/// The one-line message of an error, and whether it is a usage error.
fn describe(err: anyhow::Error) -> (String, bool) {
    (format!("{err:#}"), exit_code(&err) == 2)
}

#[test]
fn plots_two_runs_to_svg_and_png() {
    let dir = tempfile::tempdir().unwrap();
    let runs = [
        write_run(dir.path(), "run-alpha", 5, 1),
        write_run(dir.path(), "run-beta", 3, 2),
    ];

    let svg = dir.path().join("curves.svg");
    plot::plot_metrics(&runs, &svg).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.len() > 10_000, "{} bytes", text.len());
    for label in [
        "run-alpha train",
        "run-alpha valid",
        "run-beta valid",
        "run-alpha test 131.4",
        "Perplexity per epoch",
        "words per second",
        "epoch",
    ] {
        assert!(text.contains(label), "the SVG has no `{label}`");
    }

    let png = dir.path().join("curves.png");
    plot::plot_metrics(&runs, &png).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(PNG_SIGNATURE));
    // Width and height from the IHDR chunk; a blank 1200x1000 picture compresses to a few
    // kilobytes, curves and text take far more.
    assert_eq!(&bytes[16..24], &[0, 0, 4, 176, 0, 0, 3, 232]);
    assert!(bytes.len() > 40_000, "{} bytes", bytes.len());
}

/// Where a run logged its gradient norms, a third panel draws them, the mean and the
/// largest of each log point, on the epoch axis; older files without them keep two panels.
#[test]
fn gradient_norms_get_a_panel_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for epoch in 1..=3u64 {
        for step in [10u64, 20] {
            let global_step = (epoch - 1) * 20 + step;
            lines.push(format!(
                r#"{{"kind":"train","epoch":{epoch},"step":{step},"global_step":{global_step},"perplexity":{},"words_per_second":9000,"grad_norm":{},"grad_norm_max":{},"clipped_fraction":0.1}}"#,
                500 / epoch,
                2.0 + global_step as f64 / 10.0,
                6.0 + global_step as f64 / 10.0
            ));
        }
        lines.push(format!(
            r#"{{"kind":"epoch","epoch":{epoch},"global_step":{},"train_perplexity":{},"valid_perplexity":{},"words_per_second":9000}}"#,
            epoch * 20,
            400 / epoch,
            450 / epoch
        ));
    }
    let with = write_metrics(dir.path(), "norms", &lines.join("\n"));
    let svg = dir.path().join("norms.svg");
    plot::plot_metrics(std::slice::from_ref(&with), &svg).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    for label in [
        "Gradient norm before clipping",
        "global L2 norm",
        "mean",
        "largest",
        "Perplexity per epoch",
    ] {
        assert!(text.contains(label), "the SVG has no `{label}`");
    }
    let png = dir.path().join("norms.png");
    plot::plot_metrics(&[with], &png).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    // 1200x1300: taller for the third panel.
    assert_eq!(&bytes[16..24], &[0, 0, 4, 176, 0, 0, 5, 20]);

    let without = write_run(dir.path(), "old", 3, 1);
    plot::plot_metrics(&[without], &svg).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(!text.contains("Gradient norm"));
}

/// A run whose learning rate changed over its epochs (a plateau's steps here) gets a panel
/// of its rate per epoch at the bottom; one that kept a single rate does not.
#[test]
fn a_changing_learning_rate_gets_a_panel_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let epochs = |norms: bool| -> String {
        let mut lines = Vec::new();
        for (epoch, rate) in [(1u64, 1.0), (2, 1.0), (3, 0.25), (4, 0.0625)] {
            if norms {
                lines.push(format!(
                    r#"{{"kind":"train","epoch":{epoch},"step":10,"global_step":{},"perplexity":300,"words_per_second":9000,"grad_norm":2.5,"grad_norm_max":4.0}}"#,
                    epoch * 20 - 10
                ));
            }
            lines.push(format!(
                r#"{{"kind":"epoch","epoch":{epoch},"global_step":{},"learning_rate":{rate},"train_perplexity":{},"valid_perplexity":{},"words_per_second":9000}}"#,
                epoch * 20,
                400 / epoch,
                450 / epoch
            ));
        }
        lines.join("\n")
    };
    let plateau = write_metrics(dir.path(), "plateau", &epochs(false));
    let svg = dir.path().join("rate.svg");
    plot::plot_metrics(std::slice::from_ref(&plateau), &svg).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    for label in ["Learning rate per epoch", "learning rate (log scale)"] {
        assert!(text.contains(label), "the SVG has no `{label}`");
    }
    assert!(!text.contains("Gradient norm"));
    let png = dir.path().join("rate.png");
    let height = |metrics: &Path| {
        plot::plot_metrics(&[metrics.to_path_buf()], &png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[16..20], &[0, 0, 4, 176], "1200 wide");
        u32::from_be_bytes(bytes[20..24].try_into().unwrap())
    };
    // 1000 for two panels, 250 more for the rate's; with the norms' too, 1600.
    assert_eq!(height(&plateau), 1250);
    let both = write_metrics(dir.path(), "both", &epochs(true));
    assert_eq!(height(&both), 1600);
    // One rate all along (write_run's): no such panel.
    let constant = write_run(dir.path(), "constant", 3, 1);
    plot::plot_metrics(std::slice::from_ref(&constant), &svg).unwrap();
    assert!(!std::fs::read_to_string(&svg)
        .unwrap()
        .contains("Learning rate"));
    assert_eq!(height(&constant), 1000);
}

#[test]
fn run_without_epochs_is_drawn_per_step() {
    let dir = tempfile::tempdir().unwrap();
    let short = write_metrics(
        dir.path(),
        "short",
        concat!(
            r#"{"kind":"train","epoch":1,"step":5,"global_step":5,"learning_rate":1.0,"perplexity":4200.0,"words_per_second":9000.0}"#,
            "\n",
            r#"{"kind":"train","epoch":1,"step":10,"global_step":10,"learning_rate":1.0,"perplexity":2100.0,"words_per_second":9500.0}"#,
            "\n",
            r#"{"kind":"stop","train_perplexity":2000.0,"valid_perplexity":1500.0}"#,
            "\n",
        ),
    );
    let svg = dir.path().join("short.svg");
    plot::plot_metrics(std::slice::from_ref(&short), &svg).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    for label in [
        "Learning curves: short",
        "training step",
        "per log point",
        "valid",
    ] {
        assert!(text.contains(label), "the SVG has no `{label}`");
    }
    assert!(!text.contains("Perplexity per epoch"));

    // A run stopped before its first log point: its two perplexities where it stopped.
    let stopped = write_metrics(
        dir.path(),
        "stopped",
        r#"{"kind":"stop","global_step":3,"train_perplexity":5000.0,"valid_perplexity":3000.0}"#,
    );
    plot::plot_metrics(std::slice::from_ref(&stopped), &svg).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    for label in [
        "Learning curves: stopped",
        "train",
        "valid",
        "training step",
    ] {
        assert!(text.contains(label), "the SVG has no `{label}`");
    }
    // The train curve's dot, besides its legend's.
    assert_eq!(text.matches("<circle").count(), 2, "{text}");

    // With a finished run beside it, both share the step axis.
    let long = write_run(dir.path(), "long", 2, 3);
    plot::plot_metrics(&[short, long], &svg).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    for label in ["short train", "long train", "long valid", "training step"] {
        assert!(text.contains(label), "the SVG has no `{label}`");
    }
}

#[test]
fn plot_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_run(dir.path(), "good", 2, 4);
    let out = dir.path().join("out.svg");

    let (msg, is_usage) = describe(
        plot::plot_metrics(std::slice::from_ref(&good), &dir.path().join("out.jpg")).unwrap_err(),
    );
    assert!(is_usage && msg.contains(".svg or .png"), "{msg}");
    let (msg, is_usage) = describe(
        plot::plot_metrics(
            std::slice::from_ref(&good),
            &dir.path().join("nope/out.png"),
        )
        .unwrap_err(),
    );
    assert!(is_usage && msg.contains("does not exist"), "{msg}");
    let (msg, is_usage) = describe(plot::plot_metrics(&[], &out).unwrap_err());
    assert!(is_usage, "{msg}");
    let missing = dir.path().join("missing/metrics.jsonl");
    let (msg, is_usage) = describe(plot::plot_metrics(&[good.clone(), missing], &out).unwrap_err());
    assert!(is_usage && msg.contains("does not exist"), "{msg}");

    let empty = write_metrics(dir.path(), "empty", "\n");
    let (msg, is_usage) =
        describe(plot::plot_metrics(std::slice::from_ref(&empty), &out).unwrap_err());
    assert!(
        !is_usage && msg.contains("empty") && msg.contains(&empty.display().to_string()),
        "{msg}"
    );

    // Records, but none to draw: one line that says so.
    let nothing = write_metrics(
        dir.path(),
        "nothing",
        "{\"kind\":\"test\",\"test_perplexity\":null}\n",
    );
    let (msg, is_usage) =
        describe(plot::plot_metrics(std::slice::from_ref(&nothing), &out).unwrap_err());
    assert!(
        !is_usage && msg.contains("no `train`, `epoch` or `stop` records"),
        "{msg}"
    );

    let good_line = std::fs::read_to_string(&good).unwrap();
    let good_line = good_line.lines().next().unwrap();
    let broken = write_metrics(
        dir.path(),
        "broken",
        &format!("{good_line}\n{good_line}\n{{\"kind\": \"train\", \"global_st"),
    );
    let (msg, is_usage) = describe(plot::plot_metrics(&[good, broken.clone()], &out).unwrap_err());
    assert!(
        !is_usage && msg.contains(&format!("{} line 3", broken.display())),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
    assert!(!out.exists(), "no picture is written when an input is bad");
}

/// A checkpoint with `words` as its vocabulary and random embeddings of width `dim`.
fn checkpoint(words: &[String], dim: usize) -> Checkpoint {
    let config = Config {
        vocab_size: words.len(),
        embedding_size: dim,
        hidden: vec![6, 5],
        batch_size: 3,
        ..Config::default()
    };
    Checkpoint {
        init: None,
        corpus: None,
        params: Params::<f32>::init(&config, 17),
        config,
        vocab: words.to_vec(),
        state: None,
        position: Default::default(),
    }
}

fn set_row(ck: &mut Checkpoint, word: &str, row: &[f32]) {
    let id = ck.vocab.iter().position(|w| w == word).unwrap();
    let dim = ck.config.embedding_size;
    ck.params.embedding[id * dim..(id + 1) * dim].copy_from_slice(row);
}

#[test]
fn neighbours_by_cosine_similarity() {
    let words: Vec<String> = [
        "<eos>", "the", "king", "queen", "prince", "apple", "anti", "<unk>",
    ]
    .iter()
    .map(|w| w.to_string())
    .chain((0..20).map(|i| format!("filler{i}")))
    .collect();
    let mut ck = checkpoint(&words, 4);
    // Every other row points away from `king` ([1, 0, 0, 0]): first component below -0.1.
    let mut rng = SplitMix64::new(9);
    for word in &words {
        let row: Vec<f32> = (0..4)
            .map(|d| if d == 0 { rng.uniform(-1.0, -0.1) } else { rng.uniform(-1.0, 1.0) } as f32)
            .collect();
        set_row(&mut ck, word, &row);
    }
    set_row(&mut ck, "king", &[2.0, 0.0, 0.0, 0.0]);
    // Length does not matter, direction does: queen is 5x longer than prince.
    set_row(&mut ck, "queen", &[4.5, 0.5, 0.0, 0.0]);
    set_row(&mut ck, "prince", &[0.7, 0.7, 0.0, 0.0]);
    set_row(&mut ck, "apple", &[0.0, 0.0, 0.3, 0.0]);
    set_row(&mut ck, "anti", &[-1.0, 0.0, 0.0, 0.0]);
    // Through a file, as the command line reads it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    ck.save(&path).unwrap();
    let ck = Checkpoint::load(&path).unwrap();

    let found = embeddings::neighbors(&ck, "king", 3).unwrap();
    let names: Vec<&str> = found.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(names, ["queen", "prince", "apple"]);
    let expected = [0.9 / 0.82f64.sqrt(), 0.5f64.sqrt(), 0.0];
    for ((word, got), want) in found.iter().zip(expected) {
        assert!((*got as f64 - want).abs() < 1e-6, "{word}: {got} vs {want}");
    }

    // Asking for more than there are gives every other word, most similar first, `anti`
    // (exactly opposite) last.
    let all = embeddings::neighbors(&ck, "king", 1000).unwrap();
    assert_eq!(all.len(), words.len() - 1);
    assert!(all.iter().all(|(w, _)| w != "king"));
    assert!(all.windows(2).all(|p| p[0].1 >= p[1].1));
    assert_eq!(all.last().unwrap().0, "anti");
    assert!((all.last().unwrap().1 + 1.0).abs() < 1e-6);

    let (msg, is_usage) = describe(embeddings::neighbors(&ck, "king", 0).unwrap_err());
    assert!(is_usage, "{msg}");
    let (msg, is_usage) = describe(embeddings::neighbors(&ck, "emperor", 5).unwrap_err());
    assert!(
        is_usage && msg.contains("`emperor` is not in") && msg.contains("vocabulary"),
        "{msg}"
    );
}

#[test]
fn map_labels_every_word() {
    let words: Vec<String> = ["<eos>", "the", "<unk>"]
        .iter()
        .map(|w| w.to_string())
        .chain((0..57).map(|i| format!("word{i:02}")))
        .collect();
    let ck = checkpoint(&words, 12);
    let dir = tempfile::tempdir().unwrap();

    let svg = dir.path().join("map.svg");
    embeddings::map(&ck, &svg, 58, false).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    // Every word but the two special tokens, once each, as the whole content of a text element.
    for word in words.iter().filter(|w| !w.starts_with('<')) {
        assert_eq!(
            text.matches(&format!("\n{word}\n</text>")).count(),
            1,
            "`{word}`"
        );
    }
    assert!(!text.contains("unk") && !text.contains("eos"));
    assert!(text.contains("t-SNE map of the 58 most frequent words"));

    let png = dir.path().join("map.png");
    embeddings::map(&ck, &png, 20, false).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(PNG_SIGNATURE));
    assert!(bytes.len() > 10_000, "{} bytes", bytes.len());
}

#[test]
fn map_errors() {
    let words: Vec<String> = ["<eos>", "<unk>", "a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|w| w.to_string())
        .collect();
    let ck = checkpoint(&words, 3);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("map.svg");
    for (words, what) in [(0, "at least"), (7, "has 6 besides")] {
        let (msg, is_usage) = describe(embeddings::map(&ck, &out, words, false).unwrap_err());
        assert!(is_usage && msg.contains(what), "{words}: {msg}");
    }
    for bad in ["map.txt", "missing/map.png"] {
        let (msg, is_usage) =
            describe(embeddings::map(&ck, &dir.path().join(bad), 6, false).unwrap_err());
        assert!(is_usage, "{bad}: {msg}");
    }
    assert!(!out.exists());
    embeddings::map(&ck, &out, 6, false).unwrap();
    assert!(out.exists());
}
