//! `lstm-gpu serve`: the page's files with their types, the corpus's bytes, nothing outside
//! the web folder, and one clear line when the page is missing or the port is taken.
//! Needs the built page (`scripts/build-web.sh`).

mod common;

use common::serve;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lstm-gpu")
}

fn get(url: &str) -> (u16, String, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent.get(url).call().unwrap();
    let ty = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = r.body_mut().read_to_vec().unwrap();
    (r.status().as_u16(), ty, body)
}

/// `lstm-gpu ARGS --export DIR`.
fn export(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .arg("--export")
        .arg(dir)
        .output()
        .unwrap()
}

fn built() {
    let pkg = Path::new(env!("CARGO_MANIFEST_DIR")).join("web/pkg/lstm_gpu_web_bg.wasm");
    assert!(pkg.is_file(), "run scripts/build-web.sh first");
}

#[test]
fn serves_the_page_and_the_corpus_and_nothing_else() {
    built();
    let dir = tempfile::tempdir().unwrap();
    let train = "the cat sat on the mat\n".repeat(50);
    std::fs::write(dir.path().join("ptb.train.txt"), &train).unwrap();
    std::fs::write(dir.path().join("ptb.valid.txt"), "the cat\n").unwrap();
    std::fs::write(dir.path().join("ptb.test.txt"), "the mat\n").unwrap();
    let (_s, url) = serve(&["--data", dir.path().to_str().unwrap()]);

    let (status, ty, body) = get(&url);
    assert_eq!(status, 200);
    assert!(ty.starts_with("text/html"), "{ty}");
    assert!(String::from_utf8(body).unwrap().contains("app.js"));
    let (status, ty, body) = get(&format!("{url}pkg/lstm_gpu_web_bg.wasm"));
    assert_eq!((status, ty.as_str()), (200, "application/wasm"));
    assert_eq!(&body[..4], b"\0asm");
    let (status, ty, _) = get(&format!("{url}app.js"));
    assert_eq!(status, 200);
    assert!(ty.starts_with("text/javascript"));

    let (status, _, body) = get(&format!("{url}data/train"));
    assert_eq!(status, 200);
    assert_eq!(body, train.as_bytes(), "the training split, byte for byte");
    let (_, _, body) = get(&format!("{url}data/index.json"));
    let index: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(index["splits"]["valid"]["bytes"], 8);

    for bad in [
        "data/other",
        "../Cargo.toml",
        "pkg/../../Cargo.toml",
        "%2e%2e/Cargo.toml",
        "nothing.js",
    ] {
        let (status, _, body) = get(&format!("{url}{bad}"));
        assert_eq!(status, 404, "{bad}: {}", String::from_utf8_lossy(&body));
    }
}

#[test]
fn without_a_corpus_the_page_is_told_so() {
    built();
    let (_s, url) = serve(&["--no-data"]);
    assert_eq!(get(&format!("{url}data/index.json")).0, 404);
    assert_eq!(get(&url).0, 200);
}

#[test]
fn a_missing_page_or_a_taken_port_is_one_line() {
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args([
            "serve",
            "--no-data",
            "--web",
            empty.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("holds no page"), "{err}");

    std::fs::create_dir_all(empty.path().join("www")).unwrap();
    std::fs::write(empty.path().join("www/index.html"), "<html>").unwrap();
    let out = Command::new(bin())
        .args([
            "serve",
            "--no-data",
            "--web",
            empty.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("scripts/build-web.sh"), "{err}");

    built();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = Command::new(bin())
        .args(["serve", "--no-data", "--port", &port])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--port"), "{err}");
}

/// `serve --export DIR` writes what `serve` serves, route for route, as files a static web
/// host serves; the corpus's index names no folder of this machine.
#[test]
fn the_exported_site_is_what_serve_serves() {
    built();
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(corpus.join("ptb.train.txt"), "a b c d\n".repeat(40)).unwrap();
    std::fs::write(corpus.join("ptb.valid.txt"), "a b\n").unwrap();
    std::fs::write(corpus.join("ptb.test.txt"), "c d\n").unwrap();
    let site = dir.path().join("site");
    let out = export(&["serve", "--data", corpus.to_str().unwrap()], &site);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The page's files (index.html and its script modules), the wasm module and its glue,
    // and the corpus's three splits with their index.
    let page: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("web/www"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
    assert!(
        page.len() > 2 && page.iter().any(|f| f == "app.js"),
        "{page:?}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let files = page.len() + 2 + 4;
    assert!(stdout.contains(&format!("{files} files")), "{stdout}");

    let (_s, url) = serve(&["--data", corpus.to_str().unwrap()]);
    let routes = page
        .iter()
        .map(|f| (f.as_str(), f.as_str()))
        .map(|(r, f)| (if f == "index.html" { "" } else { r }, f))
        .chain([
            ("pkg/lstm_gpu_web.js", "pkg/lstm_gpu_web.js"),
            ("pkg/lstm_gpu_web_bg.wasm", "pkg/lstm_gpu_web_bg.wasm"),
            ("data/train", "data/train"),
            ("data/valid", "data/valid"),
            ("data/test", "data/test"),
        ]);
    for (route, file) in routes {
        let (status, _, served) = get(&format!("{url}{route}"));
        assert_eq!(status, 200, "{route}");
        assert_eq!(std::fs::read(site.join(file)).unwrap(), served, "{file}");
    }
    let (_, _, served) = get(&format!("{url}data/index.json"));
    let served: serde_json::Value = serde_json::from_slice(&served).unwrap();
    let text = std::fs::read_to_string(site.join("data/index.json")).unwrap();
    let exported: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(exported["name"], served["name"]);
    for split in ["train", "valid", "test"] {
        assert_eq!(
            exported["splits"][split]["bytes"],
            served["splits"][split]["bytes"]
        );
    }
    assert_eq!(exported["splits"]["valid"]["file"], "ptb.valid.txt");
    assert!(!text.contains(dir.path().to_str().unwrap()), "{text}");

    // Without a corpus: the page alone, which then asks for files.
    let bare = dir.path().join("bare");
    let out = export(&["serve", "--no-data"], &bare);
    assert!(out.status.success());
    assert!(bare.join("index.html").is_file() && !bare.join("data").exists());

    // A file where the folder should be: one usage line.
    let out = export(&["serve", "--no-data"], &site.join("index.html"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is a file; give a folder"), "{err}");
}

/// `--checkpoint PATH...`: the first served as `data/model.safetensors`, the second as
/// `data/model-2.safetensors`, each listed in the index with its name and what it is, the
/// printed address loading the first (`?checkpoint=...`); exported likewise, a later export
/// removing the models it no longer offers; a file that is not a checkpoint is one usage
/// line before anything is served or written.
#[test]
fn checkpoints_are_offered_to_the_page_served_and_exported() {
    use lstm_gpu::config::Config;
    use lstm_gpu::model::checkpoint::{BestEpoch, Checkpoint, Position};
    built();
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        vocab_size: 5,
        embedding_size: 4,
        hidden: vec![3],
        ..Config::default()
    };
    let checkpoint = |folder: &str, name: &str, position: Position| {
        let ck = Checkpoint {
            init: None,
            corpus: None,
            params: lstm_gpu::model::Params::<f32>::init(&cfg, 1),
            vocab: ["<unk>", "<eos>", "a", "b", "c"].map(String::from).to_vec(),
            state: None,
            position,
            config: cfg.clone(),
        };
        let path = dir.path().join(folder).join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        ck.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        (path.to_str().unwrap().to_string(), bytes)
    };
    let (first, first_bytes) = checkpoint("course", "best.safetensors", Position::default());
    let trained = Position {
        epoch: 2,
        global_step: 40,
        best: Some(BestEpoch {
            epoch: 2,
            valid_perplexity: 123.456,
        }),
        ..Default::default()
    };
    let (second, second_bytes) = checkpoint("run", "epoch-2.safetensors", trained);

    let (_s, url) = serve(&["--no-data", "--checkpoint", &first, "--checkpoint", &second]);
    let (base, query) = url
        .split_once('?')
        .expect("the address loads the first model");
    assert_eq!(query, "checkpoint=data/model.safetensors");
    for (route, bytes) in [
        ("model.safetensors", &first_bytes),
        ("model-2.safetensors", &second_bytes),
    ] {
        let (status, _, served) = get(&format!("{base}data/{route}"));
        assert_eq!((status, &served == bytes), (200, true), "{route}");
    }
    for absent in [
        "model-3.safetensors",
        "model-1.safetensors",
        "model-02.safetensors",
    ] {
        assert_eq!(get(&format!("{base}data/{absent}")).0, 404, "{absent}");
    }
    let (_, _, index) = get(&format!("{base}data/index.json"));
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    let models = index["checkpoints"].as_array().unwrap();
    assert_eq!(models.len(), 2, "{index}");
    assert_eq!(models[0]["route"], "data/model.safetensors");
    assert_eq!(models[0]["file"], "course/best.safetensors");
    assert_eq!(models[0]["bytes"], first_bytes.len());
    assert_eq!(models[0]["about"], "embedding 4, LSTM 3, 5 words, initial");
    assert_eq!(models[1]["route"], "data/model-2.safetensors");
    assert_eq!(models[1]["file"], "run/epoch-2.safetensors");
    assert_eq!(
        models[1]["about"],
        "embedding 4, LSTM 3, 5 words, end of epoch 2, step 40; best valid perplexity 123.46 (epoch 2)"
    );

    let site = dir.path().join("site");
    let out = export(
        &["serve", "--no-data", "--checkpoint", &first, &second],
        &site,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("2 models") && said.contains("?checkpoint=data/model.safetensors"),
        "{said}"
    );
    assert_eq!(
        std::fs::read(site.join("data/model.safetensors")).unwrap(),
        first_bytes
    );
    assert_eq!(
        std::fs::read(site.join("data/model-2.safetensors")).unwrap(),
        second_bytes
    );
    let read_index = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(site.join("data/index.json")).unwrap()).unwrap()
    };
    assert_eq!(read_index()["checkpoints"], index["checkpoints"]);
    // Exported again into the same folder with the first only, then with none: the page
    // finds exactly what each offers.
    let out = export(&["serve", "--no-data", "--checkpoint", &first], &site);
    assert!(out.status.success());
    assert!(site.join("data/model.safetensors").is_file());
    assert!(!site.join("data/model-2.safetensors").exists());
    assert_eq!(read_index()["checkpoints"].as_array().unwrap().len(), 1);
    let out = export(&["serve", "--no-data"], &site);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!site.join("data/model.safetensors").exists());
    assert!(!site.join("data/index.json").exists());
    assert!(site.join("index.html").is_file());

    // Not a checkpoint: one line, nothing written.
    let other = dir.path().join("notes.txt");
    std::fs::write(&other, "not a checkpoint at all").unwrap();
    let out = export(
        &[
            "serve",
            "--no-data",
            "--checkpoint",
            &first,
            other.to_str().unwrap(),
        ],
        &dir.path().join("none"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("--checkpoint")
            && err.contains("notes.txt")
            && err.contains("not a safetensors file"),
        "{err}"
    );
    assert!(!dir.path().join("none").exists());
}

/// Listening beyond the loopback address, `serve` says at once that other machines get no
/// WebGPU over plain http, and how a class gets the page instead.
#[test]
fn serving_other_machines_says_that_webgpu_needs_https() {
    use std::io::BufRead;
    built();
    let mut child = Command::new(bin())
        .args(["serve", "--no-data", "--port", "0", "--listen", "0.0.0.0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let (mut first, mut second) = (String::new(), String::new());
    out.read_line(&mut first).unwrap();
    out.read_line(&mut second).unwrap();
    child.kill().ok();
    child.wait().ok();
    assert!(first.contains("serving the training page"), "{first}");
    assert!(
        second.contains("WebGPU only to https:// pages and to localhost")
            && second.contains("--export"),
        "{second}"
    );
}

/// Without corpus flags, a model's page gets the text the model was trained on, which its
/// checkpoint records (`--data` here).
#[test]
fn a_models_page_gets_the_text_it_was_trained_on() {
    use lstm_gpu::config::Config;
    use lstm_gpu::data::CorpusOrigin;
    use lstm_gpu::model::checkpoint::Checkpoint;
    built();
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    for (split, text) in [
        ("train", "a b c\n"),
        ("valid", "b c a\n"),
        ("test", "c a b\n"),
    ] {
        std::fs::write(corpus.join(format!("ptb.{split}.txt")), text.repeat(30)).unwrap();
    }
    let cfg = Config {
        vocab_size: 4,
        embedding_size: 4,
        hidden: vec![3],
        ..Config::default()
    };
    let ck = Checkpoint {
        init: None,
        corpus: CorpusOrigin::of_flags(Some(&corpus), None, None, None, None),
        params: lstm_gpu::model::Params::<f32>::init(&cfg, 1),
        vocab: ["a", "b", "c", "<eos>"].map(String::from).to_vec(),
        state: None,
        position: Default::default(),
        config: cfg,
    };
    let path = dir.path().join("model.safetensors");
    ck.save(&path).unwrap();
    let site = dir.path().join("site");
    let out = export(&["serve", "--checkpoint", path.to_str().unwrap()], &site);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for split in ["train", "valid", "test"] {
        assert_eq!(
            std::fs::read(site.join("data").join(split)).unwrap(),
            std::fs::read(corpus.join(format!("ptb.{split}.txt"))).unwrap(),
            "{split}"
        );
    }
}
