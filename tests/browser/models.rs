//! The page's models: its settings, the models it keeps across a reload (one per text, at
//! every epoch's end), and the server's models its address names.

use super::*;

/// The page's settings, a student's way to change the model before New model: they show the
/// chosen preset's configuration (what New model makes when none is changed); the changed ones
/// (and only those) are set over the preset, and stay when another preset is picked; "Back to
/// the preset's" undoes them; a value that is not a number, or one the library refuses, is one
/// line in the page's words (the setting's name, not the command line's flag) and leaves the
/// model as it was.
#[test]
fn the_pages_settings_make_the_model_they_show() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_ptb(dir.path(), 600, 80);
    let (_server, b) = open_page(&["--data", data.to_str().unwrap()]);
    let settings = |b: &Browser| {
        b.ok(
            "const o = {}; for (const i of document.querySelectorAll('#settings-fields input')) \
               o[i.id.slice(4)] = {value: i.value, edited: i.classList.contains('edited')}; return o;",
            json!(null),
        )
    };
    let pick = |b: &Browser, preset: &str| {
        b.ok(
            "const p = document.getElementById('preset'); p.value = args; \
             p.dispatchEvent(new Event('change')); return null;",
            json!(preset),
        );
    };
    let set = |b: &Browser, values: Value| {
        b.ok(
            "for (const [k, v] of Object.entries(args)) { const i = document.getElementById('set-' + k); \
               i.value = v; i.dispatchEvent(new Event('input')); } return null;",
            values,
        );
    };
    // New model, then the model made, or the error message shown.
    let create = |b: &Browser| -> Result<Value, String> {
        let r = b.ok(
            "const s = window.lstm; const before = s.info; const n = s.messages.length; \
             document.getElementById('create').click(); \
             for (let i = 0; i < 2400; i++) { \
               if (s.info !== before && !s.status) return {info: s.info, model: document.getElementById('model-info').textContent}; \
               const e = s.messages.slice(n).find(m => m.kind === 'error'); \
               if (e) return {error: e.text, message: document.getElementById('message').textContent}; \
               await new Promise(r => setTimeout(r, 50)); } throw new Error('neither a model nor an error');",
            json!(null),
        );
        match r["error"].as_str() {
            Some(e) => {
                assert_eq!(r["message"], r["error"], "the message shown: {r}");
                Err(e.to_string())
            }
            None => Ok(r),
        }
    };
    // What a setting shows of a configuration field.
    let shown = |field: &str, v: &Value| -> String {
        match (field, v) {
            ("hidden", Value::Array(a)) => a
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            ("max_epoch_decay_lr", v) => (v.as_u64().unwrap() + 1).to_string(),
            (_, v) => v.to_string(),
        }
    };

    // The tiny preset as it is: the settings show what New model makes.
    pick(&b, "tiny");
    let tiny = settings(&b);
    assert!(tiny.as_object().unwrap().len() >= 12, "{tiny}");
    let made = create(&b).unwrap();
    let config = &made["info"]["config"];
    for (field, s) in tiny.as_object().unwrap() {
        let want = if field == "vocab_size" {
            // The text has fewer distinct words than the preset's vocabulary allows.
            assert!(
                config[field].as_u64().unwrap() <= s["value"].as_str().unwrap().parse().unwrap()
            );
            continue;
        } else {
            shown(field, &config[field])
        };
        assert_eq!(
            s["value"].as_str().unwrap(),
            want,
            "{field}: {tiny} against {config}"
        );
        assert_eq!(s["edited"], json!(false), "{field}");
    }
    assert_eq!(config["hidden"], json!([32, 32]), "{config}");

    // Changed settings stay when another preset is picked; the others follow the preset.
    set(
        &b,
        json!({"hidden": "24,16", "max_epoch": "3", "keep_prob": "0.8", "learning_rate": "0.5",
               "max_epoch_decay_lr": "2"}),
    );
    pick(&b, "small");
    b.ok(
        "document.getElementById('settings').open = true; return null;",
        json!(null),
    );
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&out).unwrap();
    b.screenshot(&out.join("settings.png"));
    let small = settings(&b);
    assert_eq!(small["hidden"]["value"], "24,16", "{small}");
    assert_eq!(small["hidden"]["edited"], json!(true), "{small}");
    assert_ne!(
        small["embedding_size"]["value"], tiny["embedding_size"]["value"],
        "{small}"
    );
    pick(&b, "tiny");
    let made = create(&b).unwrap();
    let config = &made["info"]["config"];
    assert_eq!(config["hidden"], json!([24, 16]), "{config}");
    assert_eq!(
        (
            &config["max_epoch"],
            &config["keep_prob"],
            &config["learning_rate"],
            &config["max_epoch_decay_lr"]
        ),
        (&json!(3), &json!(0.8), &json!(0.5), &json!(1)),
        "{config}"
    );
    for field in [
        "embedding_size",
        "batch_size",
        "num_steps",
        "decay",
        "max_grad_norm",
        "init_scale",
    ] {
        assert_eq!(
            shown(field, &config[field]),
            tiny[field]["value"].as_str().unwrap(),
            "{field}: {config}"
        );
    }
    let model = made["model"].as_str().unwrap();
    let decay = &config["decay"];
    for part in [
        "LSTM 24+16".to_string(),
        "3 epochs".to_string(),
        "dropout keeping 0.8".to_string(),
        format!("learning rate 0.5 times {decay} an epoch after the first 2"),
    ] {
        assert!(model.contains(&part), "{part:?} in the model line: {model}");
    }

    // Refused: the message in the page's words, one line; the model stays.
    for (values, setting, flag) in [
        (json!({"keep_prob": "1.5"}), "keep prob", "--keep-prob"),
        (json!({"hidden": "24, many"}), "LSTM layers", "--hidden"),
        (
            json!({"hidden": "24,16", "keep_prob": "0.8", "max_epoch": "0"}),
            "epochs",
            "--max-epoch",
        ),
    ] {
        set(&b, values.clone());
        let e = create(&b).expect_err(&values.to_string());
        assert!(
            e.contains(&format!("\"{setting}\"")) || e.starts_with(&format!("{setting}:")),
            "{values}: the setting named: {e}"
        );
        assert!(!e.contains(flag) && !e.contains('\n'), "{values}: {e}");
        let still = b.ok("return window.lstm.info.config.hidden;", json!(null));
        assert_eq!(still, json!([24, 16]), "{values}: the model stays");
    }

    // Back to the preset's values: nothing changed by hand.
    b.ok(
        "document.getElementById('settings-reset').click(); return null;",
        json!(null),
    );
    let back = settings(&b);
    assert_eq!(back, tiny, "the preset's settings again");

    // Tokens "auto", the default: PTB's text read as words (above), a text whose line ends
    // touch words as words-eos, as the command line does without --tokens.
    assert_eq!(config["tokens"], json!("words"), "{config}");
    // (The PTB model kept, to load on that text below.)
    b.ok(
        "window.ptbModel = await window.lstm.api.save(false); return null;",
        json!(null),
    );
    let story = dir.path().join("story.txt");
    let mut text = String::new();
    for i in 0..300 {
        text.push_str(&format!(
            "the cat sat on mat {}\nand then it slept\n",
            i % 9
        ));
    }
    std::fs::write(&story, text).unwrap();
    b.pick_file("#file-train", &story);
    b.ok(
        "for (let i = 0; i < 200 && window.lstm.corpus.name !== 'story.txt'; i++) \
           await new Promise(r => setTimeout(r, 50)); return null;",
        json!(null),
    );
    let made = create(&b).unwrap();
    assert_eq!(
        made["info"]["config"]["tokens"],
        json!("words-eos"),
        "{made}"
    );
    let model = made["model"].as_str().unwrap();
    assert!(model.contains("words-eos"), "{model}");

    // The PTB model (words) loaded on that text reads its line ends as its own <eos>, as
    // `lstm-gpu eval` and `train --init` read another text, and says so where the page
    // shows how the model was built.
    let loaded = b.ok(
        "const info = await window.lstm.api.loadCheckpoint(window.ptbModel); \
         return {tokens: info.config.tokens, log: document.getElementById('kernel-list').textContent};",
        json!(null),
    );
    assert_eq!(loaded["tokens"], json!("words-eos"), "{loaded}");
    assert!(
        loaded["log"]
            .as_str()
            .unwrap()
            .contains("which the model's reading (tokens \"words\""),
        "{loaded}"
    );
}

/// What the page offers of the models it keeps: the "Resume ..." button (its text names the
/// model offered and where it stood, its tooltip every model kept) and "Forget it".
const KEPT_OFFER: &str = "const r = document.getElementById('resume-kept'); \
    return {hidden: r.hidden, disabled: r.disabled, text: r.textContent, title: r.title, \
            forget: document.getElementById('forget-kept').hidden, kept: window.lstm.keptAll.length};";

/// The offer once the page has read a picked file named `name`.
fn kept_offer_after_pick(name: &str) -> String {
    format!(
        "for (let i = 0; i < 200 && window.lstm.corpus.name !== '{name}'; i++) \
           await new Promise(r => setTimeout(r, 50)); \
         await new Promise(r => setTimeout(r, 200)); {KEPT_OFFER}"
    )
}

/// The page keeps the model it trains in the browser's storage (at every epoch's end and
/// whenever training stops): after a reload, with the same text loaded, "Resume ..." brings
/// it back where it stood, weights bit for bit, its chart as it was; "Forget it" removes it
/// for good. (Other texts: the next test.)
#[test]
fn the_page_keeps_its_model_across_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_ptb(dir.path(), 600, 80);
    let (_server, url) = serve(&["--data", data.to_str().unwrap()]);
    let b = Browser::start(true);
    b.open(&url);
    b.wait_started();
    let offer = KEPT_OFFER;
    assert_eq!(
        b.ok(offer, json!(null))["hidden"],
        json!(true),
        "nothing kept yet"
    );
    let (options, _) = tiny();
    b.ok("return await window.lstm.api.create(args);", options);
    b.ok("return await window.lstm.api.train(3);", json!(null));
    // Offered at once, not only on the next visit.
    let offered = b.ok(offer, json!(null));
    assert_eq!(offered["hidden"], json!(false), "{offered}");
    assert!(
        offered["text"]
            .as_str()
            .unwrap()
            .contains("epoch 1, step 3"),
        "{offered}"
    );
    let trained = page_checkpoint(&b);
    let history =
        "const s = window.lstm; return {train: s.trainEvents, points: s.points, epochs: s.epochs};";
    let shown = b.ok(history, json!(null));
    assert_eq!(shown["train"].as_array().unwrap().len(), 3, "{shown}");

    b.open(&url);
    b.wait_started();
    assert_eq!(state(&b)["trainer"], json!(false), "a fresh page");
    let offered = b.ok(offer, json!(null));
    assert_eq!(
        (&offered["hidden"], &offered["disabled"], &offered["forget"]),
        (&json!(false), &json!(false), &json!(false)),
        "{offered}"
    );
    let text = offered["text"].as_str().unwrap();
    assert!(
        text.contains("epoch 1, step 3") && text.contains("LSTM 16+16"),
        "{offered}"
    );
    b.ok(
        "document.getElementById('resume-kept').click(); \
         for (let i = 0; i < 1200 && !window.lstm.trainer; i++) await new Promise(r => setTimeout(r, 50)); \
         return null;",
        json!(null),
    );
    assert_eq!(state(&b)["step"], json!(3), "{}", state(&b));
    let resumed = page_checkpoint(&b);
    let [trained, resumed] = [&trained, &resumed]
        .map(|bytes| lstm_gpu::model::checkpoint::Checkpoint::from_bytes(bytes).unwrap());
    assert_eq!(resumed.params, trained.params, "the weights bit for bit");
    assert_eq!(resumed.position, trained.position);
    assert_eq!(resumed.state, trained.state, "the carried state too");
    assert_eq!(
        b.ok(history, json!(null)),
        shown,
        "the chart's points as they were"
    );

    b.ok(
        "await window.lstm.api.forgetKept(); return null;",
        json!(null),
    );
    assert_eq!(b.ok(offer, json!(null))["hidden"], json!(true));
    b.open(&url);
    b.wait_started();
    assert_eq!(
        b.ok(offer, json!(null))["hidden"],
        json!(true),
        "forgotten for good"
    );
}

/// The page keeps one model per text (the last trained on it) and keeps it at every epoch's
/// end: a tab closed mid-run loses at most the epoch that ran. Each text's model is offered
/// where that text is loaded, the others named; the oldest beyond `keepAtMost` are forgotten;
/// a model kept by the page's first version (one, under "last") is found again.
#[test]
fn the_page_keeps_a_model_per_text_and_at_each_epochs_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tiny");
    let (_server, url) = serve(&["--data", data.to_str().unwrap()]);
    let b = Browser::start(true);
    b.open(&url);
    b.wait_started();
    let options = |seed: u32| {
        json!({"preset": "seed", "seed": seed, "config": {
            "vocab_size": 60, "embedding_size": 8, "hidden": [8, 6], "batch_size": 2,
            "num_steps": 5, "max_epoch": 50, "max_epoch_decay_lr": 50}})
    };
    let offer = KEPT_OFFER;
    let resume = "document.getElementById('resume-kept').click(); \
                  for (let i = 0; i < 1200 && !window.lstm.trainer; i++) await new Promise(r => setTimeout(r, 50)); \
                  return {step: window.lstm.info.position.global_step, epochs: window.lstm.epochs.length};";
    let reload = || {
        b.open(&url);
        b.wait_started();
    };

    // Training on, the tab closed (the page opened again) once a model is kept.
    let made = b.ok("return await window.lstm.api.create(args);", options(5));
    let epoch_size = made["epoch_size"].as_u64().unwrap();
    let during = b.ok(
        "window.lstm.api.train(); \
         for (let i = 0; i < 2400 && window.lstm.keptStep === null; i++) await new Promise(r => setTimeout(r, 25)); \
         return {kept: window.lstm.keptStep, running: window.lstm.running};",
        json!(null),
    );
    assert_eq!(during["running"], json!(true), "still training: {during}");
    reload();
    let offered = b.ok(offer, json!(null));
    assert_eq!(
        (&offered["hidden"], &offered["disabled"], &offered["kept"]),
        (&json!(false), &json!(false), &json!(1)),
        "{offered}"
    );
    let text = offered["text"].as_str().unwrap();
    let epoch: u64 = text
        .split("epoch ")
        .nth(1)
        .and_then(|t| t.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{offered}"));
    assert!(
        epoch >= 2
            && text.contains(&format!("epoch {epoch}, step 0,"))
            && text.contains("for this text"),
        "kept at an epoch's end: {offered}"
    );
    let resumed = b.ok(resume, json!(null));
    assert_eq!(
        resumed,
        json!({"step": (epoch - 1) * epoch_size, "epochs": epoch - 1}),
        "the kept model where its epoch ended, with its epochs"
    );

    // Another text: the first model offered, not to resume there; a model trained on it.
    let other = dir.path().join("other.txt");
    std::fs::write(&other, head("valid", 300)).unwrap();
    b.pick_file("#file-train", &other);
    let offered = b.ok(&kept_offer_after_pick("other.txt"), json!(null));
    assert_eq!(
        (&offered["hidden"], &offered["disabled"]),
        (&json!(false), &json!(false)),
        "resumable with its text: {offered}"
    );
    assert!(
        offered["title"]
            .as_str()
            .unwrap()
            .contains("another text (tiny), which the browser keeps with it")
            && offered["text"]
                .as_str()
                .unwrap()
                .contains(", with its text"),
        "{offered}"
    );
    b.ok("return await window.lstm.api.create(args);", options(6));
    b.ok("return await window.lstm.api.train(3);", json!(null));

    // Both kept: each offered where its text is loaded, the other named.
    reload();
    let offered = b.ok(offer, json!(null));
    let text = offered["text"].as_str().unwrap();
    assert_eq!(
        (&offered["disabled"], &offered["kept"]),
        (&json!(false), &json!(2)),
        "{offered}"
    );
    assert!(
        text.contains(&format!("epoch {epoch}, step 0,"))
            && text.contains("1 more kept for other text")
            && offered["title"]
                .as_str()
                .unwrap()
                .contains("other.txt: LSTM 8+6"),
        "{offered}"
    );
    b.pick_file("#file-train", &other);
    let offered = b.ok(&kept_offer_after_pick("other.txt"), json!(null));
    assert_eq!(offered["disabled"], json!(false), "{offered}");
    assert!(
        offered["text"]
            .as_str()
            .unwrap()
            .contains("epoch 1, step 3,"),
        "{offered}"
    );
    assert_eq!(b.ok(resume, json!(null)), json!({"step": 3, "epochs": 0}));

    // Forgetting the one offered leaves the other.
    b.ok(
        "await window.lstm.api.forgetKept(); return null;",
        json!(null),
    );
    let offered = b.ok(offer, json!(null));
    assert_eq!(
        (&offered["hidden"], &offered["disabled"], &offered["kept"]),
        (&json!(false), &json!(false), &json!(1)),
        "the first text's, with its text: {offered}"
    );
    assert!(
        state(&b)["message"]
            .as_str()
            .unwrap()
            .contains("for this text is forgotten"),
        "{}",
        state(&b)
    );

    // At most `keepAtMost`: keeping a second text's model forgets the oldest.
    b.ok(
        "window.lstm.keepAtMost = 1; return await window.lstm.api.create(args);",
        options(7),
    );
    // (as many steps as the model resumed before it had: a new model is kept all the same)
    b.ok("return await window.lstm.api.train(3);", json!(null));
    reload();
    let offered = b.ok(offer, json!(null));
    assert_eq!(
        (&offered["disabled"], &offered["kept"]),
        (&json!(false), &json!(1)),
        "only the other text's: {offered}"
    );
    assert!(
        offered["text"]
            .as_str()
            .unwrap()
            .contains("for other.txt (")
            && offered["text"]
                .as_str()
                .unwrap()
                .contains("epoch 1, step 3,"),
        "{offered}"
    );
    // Resumed with the server's text loaded: the kept text takes its place, then the model.
    assert_eq!(
        b.ok("return window.lstm.corpus.name;", json!(null)),
        json!("tiny")
    );
    assert_eq!(b.ok(resume, json!(null)), json!({"step": 3, "epochs": 0}));
    let now = b.ok(
        "const c = window.lstm.corpus; \
         return {name: c.name, sizes: [c.train.length, c.valid.length, c.test.length], \
                 status: document.getElementById('corpus-status').textContent};",
        json!(null),
    );
    let other_len = std::fs::metadata(&other).unwrap().len() as usize;
    let sizes: Vec<usize> = now["sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap() as usize)
        .collect();
    assert!(
        now["name"] == json!("other.txt")
            && sizes.iter().sum::<usize>() == other_len
            && now["status"].as_str().unwrap().starts_with("other.txt:"),
        "{now}"
    );
    let messages = b.ok("return window.lstm.messages.map(m => m.text);", json!(null));
    assert!(
        messages.as_array().unwrap().iter().any(|m| m
            .as_str()
            .unwrap()
            .starts_with("loaded other.txt:")
            && m.as_str().unwrap().ends_with("(kept with the model)")),
        "{messages}"
    );
    b.ok("return await window.lstm.api.loadServer();", json!(null));

    // The first version's store: one model under "last", moved to its text's key.
    b.ok("return await window.lstm.api.create(args);", options(8));
    b.ok("return await window.lstm.api.train(4);", json!(null));
    b.ok(
        "const s = window.lstm; \
         const bytes = await s.api.save(false); \
         const c = s.corpus; \
         const record = {bytes, saved: Date.now(), position: s.info.position, model: 'LSTM 8+6, old', \
           corpus: `${c.name}:${c.train.length}:${c.valid.length}:${c.test.length}`}; \
         await new Promise((ok, no) => { const d = indexedDB.deleteDatabase('lstm-gpu'); d.onsuccess = ok; d.onerror = no; }); \
         await new Promise((ok, no) => { \
           const open = indexedDB.open('lstm-gpu', 1); \
           open.onupgradeneeded = () => open.result.createObjectStore('models'); \
           open.onerror = no; \
           open.onsuccess = () => { const db = open.result; const tx = db.transaction('models', 'readwrite'); \
             tx.objectStore('models').put(record, 'last'); tx.oncomplete = () => { db.close(); ok(); }; tx.onerror = no; }; }); \
         return null;",
        json!(null),
    );
    reload();
    let offered = b.ok(offer, json!(null));
    assert_eq!(
        (&offered["hidden"], &offered["disabled"], &offered["kept"]),
        (&json!(false), &json!(false), &json!(1)),
        "{offered}"
    );
    assert!(
        offered["text"]
            .as_str()
            .unwrap()
            .contains("LSTM 8+6, old; epoch 1, step 4,"),
        "{offered}"
    );
    assert_eq!(b.ok(resume, json!(null)), json!({"step": 4, "epochs": 0}));
}

/// `serve --checkpoint PATH`: the address it prints loads the model into the page once the
/// corpus is in; the page then holds its weights and validates as the program does.
#[test]
fn the_page_loads_the_model_its_address_names() {
    let dir = tempfile::tempdir().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tiny");
    let run = dir.path().join("run");
    native(
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
            "--max-steps",
            "10",
            "--checkpoint-every",
            "4",
            "--no-progress",
        ]
        .into_iter()
        .chain(common::TINY_MODEL)
        .collect::<Vec<_>>(),
    );
    let last = run.join("last.safetensors");
    let earlier = run.join("step-4.safetensors");
    let (_server, b) = open_page(&[
        "--data",
        data.to_str().unwrap(),
        "--checkpoint",
        last.to_str().unwrap(),
    ]);
    let s = state(&b);
    assert_eq!(
        (s["trainer"].as_bool(), s["step"].as_u64()),
        (Some(true), Some(10)),
        "{s}"
    );
    let original = lstm_gpu::model::checkpoint::Checkpoint::load(&last).unwrap();
    let in_page =
        lstm_gpu::model::checkpoint::Checkpoint::from_bytes(&page_checkpoint(&b)).unwrap();
    assert_eq!(in_page.params, original.params);
    let (page, program) = (page_validate(&b), native_eval(&last, &data));
    assert!(rel(page, program) < 2e-4, "page {page}, program {program}");

    // "Similar words" lists what `lstm-gpu embeddings neighbors` lists of the same weights.
    let word = original
        .vocab
        .iter()
        .find(|w| !w.starts_with('<'))
        .unwrap()
        .clone();
    let listed = native(&[
        "embeddings",
        "--checkpoint",
        last.to_str().unwrap(),
        "neighbors",
        &word,
        "-k",
        "5",
    ]);
    let listed: Vec<(String, f64)> = listed
        .lines()
        .map(|l| {
            let mut parts = l.split_whitespace();
            let w = parts.next().unwrap().to_string();
            (w, parts.next().unwrap().parse().unwrap())
        })
        .collect();
    let similar = b.ok(
        "document.getElementById('similar-word').value = ' ' + args + ' ';          document.getElementById('similar').click();          for (let i = 0; i < 600 && !window.lstm.similar; i++) await new Promise(r => setTimeout(r, 50));          return {r: window.lstm.similar, rows: document.querySelectorAll('#similar-out div').length};",
        json!(word),
    );
    assert_eq!(similar["r"]["word"], json!(word), "{similar}");
    assert_eq!(similar["rows"], json!(10), "ten rows drawn: {similar}");
    let shown: Vec<(String, f64)> = similar["r"]["neighbors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["word"].as_str().unwrap().to_string(),
                n["cosine"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed.len(), 5, "{listed:?}");
    for ((a, x), (b, y)) in listed.iter().zip(&shown) {
        assert_eq!(a, b, "the page's {shown:?} against {listed:?}");
        assert!((x - y).abs() < 1e-4, "{a}: {x} against {y}");
    }
    let refused = b
        .run(
            "return await window.lstm.api.similar('zzzqx', 5);",
            json!(null),
        )
        .expect_err("a word outside the vocabulary");
    assert!(
        refused.contains("`zzzqx` is not in the model's vocabulary"),
        "{refused}"
    );
    let refused = b
        .run(
            "return await window.lstm.api.similar('  ', 5);",
            json!(null),
        )
        .expect_err("no word");
    assert!(refused.contains("type a word"), "{refused}");

    // The plain address: the page offers the server's model with a button, loaded on click.
    let offer = "const e = document.getElementById('load-served'); \
                 const l = document.getElementById('served-model'); \
                 return [e.hidden, e.textContent, l.hidden, [...l.options].map(o => o.textContent)];";
    let (_server, url) = serve(&[
        "--data",
        data.to_str().unwrap(),
        "--checkpoint",
        last.to_str().unwrap(),
    ]);
    let plain = url.split('?').next().unwrap();
    b.open(plain);
    b.wait_started();
    let offered = b.ok(offer, json!(null));
    assert_eq!(
        (&offered[0], &offered[2]),
        (&json!(false), &json!(true)),
        "{offered}"
    );
    assert!(
        offered[1]
            .as_str()
            .unwrap()
            .contains("run/last.safetensors"),
        "{offered}"
    );
    assert_eq!(state(&b)["trainer"], false);
    b.ok(
        "await window.lstm.api.loadServed(); return null;",
        json!(null),
    );
    assert_eq!(state(&b)["step"].as_u64(), Some(10));

    // Several models (a course's): listed with where each stood, the one chosen loaded.
    let (_server, url) = serve(&[
        "--data",
        data.to_str().unwrap(),
        "--checkpoint",
        last.to_str().unwrap(),
        earlier.to_str().unwrap(),
    ]);
    b.open(url.split('?').next().unwrap());
    b.wait_started();
    let offered = b.ok(offer, json!(null));
    assert_eq!(
        (&offered[0], &offered[2]),
        (&json!(false), &json!(false)),
        "{offered}"
    );
    let listed = offered[3].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{offered}");
    assert!(
        listed[0]
            .as_str()
            .unwrap()
            .starts_with("run/last.safetensors: ")
            && listed[0].as_str().unwrap().contains("step 10"),
        "{offered}"
    );
    assert!(
        listed[1]
            .as_str()
            .unwrap()
            .starts_with("run/step-4.safetensors: ")
            && listed[1].as_str().unwrap().contains("step 4"),
        "{offered}"
    );
    // Chosen in the list, then the button: the second model.
    b.ok(
        "const l = document.getElementById('served-model'); l.selectedIndex = 1; \
         document.getElementById('load-served').click(); \
         for (let i = 0; i < 600 && !(window.lstm.info && window.lstm.info.position.global_step === 4); i++) \
           await new Promise(r => setTimeout(r, 50)); return null;",
        json!(null),
    );
    assert_eq!(state(&b)["step"].as_u64(), Some(4));
    let in_page =
        lstm_gpu::model::checkpoint::Checkpoint::from_bytes(&page_checkpoint(&b)).unwrap();
    let original = lstm_gpu::model::checkpoint::Checkpoint::load(&earlier).unwrap();
    assert_eq!(in_page.params, original.params);
    // And by number, from the page's api.
    b.ok(
        "await window.lstm.api.loadServed(0); return null;",
        json!(null),
    );
    assert_eq!(state(&b)["step"].as_u64(), Some(10));

    // Trained on to the end of its epoch (20 steps): the epoch's row, its rate and its
    // validation perplexity starred as the run's best (its first).
    let rows = b.ok(
        "await window.lstm.api.train(10); \
         return [...document.querySelectorAll('#epochs tbody tr')] \
           .map(r => [...r.cells].map(c => c.textContent));",
        json!(null),
    );
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let cells: Vec<&str> = rows[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        (cells.len(), cells[0], cells[1]),
        (5, "1", "1"),
        "{cells:?}"
    );
    assert!(cells[3].ends_with(" *"), "{cells:?}");
}
