//! The page's kernels: checked against their CPU twins, changed in the page, tuned on the
//! browser's adapter.

use super::*;

/// The page's "Check the kernels": `lstm_gpu::check` on the browser's WebGPU (its own
/// device), every row shown as it finishes, every check passing on the browser's adapter
/// (Tint and SwiftShader here, not naga and lavapipe).
#[test]
fn the_page_checks_every_kernel_of_its_adapter() {
    let (_server, b) = open_page(&["--no-data"]);
    let t0 = Instant::now();
    let summary = b.ok("return await window.lstm.api.checkKernels();", json!(null));
    eprintln!(
        "page check on {}: {:.0} s",
        summary["adapter"]["name"],
        t0.elapsed().as_secs_f64()
    );
    let checks = summary["checks"].as_array().expect("the checks");
    let names: Vec<&str> = checks
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for c in checks {
        assert_eq!(c["passed"], json!(true), "{c}");
        assert!(c["cases"].as_u64().unwrap() >= 32, "{c}");
    }
    assert_eq!(summary["passed"], json!(true), "{summary}");
    for name in [
        "matmul tiled",
        "matmul strip",
        "matmul skinny",
        "training step f32 unfused",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    // The table has a row per check, and the status says they passed.
    let page = b.ok(
        "return {rows: document.querySelectorAll('#check-table tbody tr').length, \
                 streamed: window.lstm.checks.length, \
                 status: document.getElementById('check-status').textContent};",
        json!(null),
    );
    assert_eq!(page["rows"], json!(checks.len()), "{page}");
    assert_eq!(page["streamed"], json!(checks.len()), "{page}");
    assert!(
        page["status"]
            .as_str()
            .unwrap()
            .starts_with(&format!("all {} checks passed", checks.len())),
        "{page}"
    );
}

/// The page's kernel editor, the browser's `--shaders DIR`: it lists every WGSL file the
/// kernels are built from; a changed file is what "Check the kernels" and "New model" build
/// (a strip kernel with one output row negated fails its checks, and only the strip
/// kernels' do); a file that does not compile is one line naming its line in the user's
/// file; back to the built-in file, nothing is changed.
#[test]
fn a_kernel_changed_in_the_page_is_what_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_ptb(dir.path(), 300, 40);
    let (_server, b) = open_page(&["--data", data.to_str().unwrap()]);
    let built_in = common::built_in_shader;
    let page = b.ok(
        "return {files: document.querySelectorAll('#kernel-file option').length, \
                 shown: document.getElementById('kernel-source').value};",
        json!(null),
    );
    assert_eq!(page["files"], json!(lstm_gpu::gpu::shaders::FILES.len()));
    assert_eq!(page["shown"], json!(built_in("lstm_cell.wgsl")));

    // A file that does not compile.
    let (broken, line) = common::shader_with_a_syntax_error("sgd.wgsl");
    let changed = b.ok(
        "return await window.lstm.api.useKernel('sgd.wgsl', args);",
        json!(broken),
    );
    assert_eq!(changed, json!(["sgd.wgsl"]));
    let (options, _) = tiny();
    let refused = b
        .run(
            "return await window.lstm.api.create(args);",
            options.clone(),
        )
        .expect_err("a model on a kernel that does not compile");
    let place = format!("line {line} of your sgd.wgsl");
    assert!(refused.contains(&place), "{place} not in: {refused}");
    assert!(!refused.contains('\n'), "one line: {refused}");
    let changed = b.ok(
        "return await window.lstm.api.resetKernel('sgd.wgsl');",
        json!(null),
    );
    assert_eq!(changed, json!([]));

    // One output row of the strip kernels negated: their checks fail, no other matmul's
    // (the training steps fail too where they run on strip kernels, as here by default).
    let negated = common::strip_with_a_negated_row();
    b.ok(
        "return await window.lstm.api.useKernel('matmul_strip.wgsl', args);",
        json!(negated),
    );
    let summary = b.ok("return await window.lstm.api.checkKernels();", json!(null));
    assert_eq!(
        summary["changed"],
        json!(["matmul_strip.wgsl"]),
        "{summary}"
    );
    for c in summary["checks"].as_array().unwrap() {
        let (check, passed) = (c["check"].as_str().unwrap(), c["passed"] == json!(true));
        if check.starts_with("matmul strip") {
            assert!(!passed, "{c}");
        } else if check.starts_with("matmul ") || check.starts_with("f16 matmul ") {
            assert!(passed, "{c}");
        }
    }
    assert!(
        summary["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["check"] == json!("matmul strip")),
        "{summary}"
    );
    let status = b.ok(
        "return document.getElementById('check-status').textContent;",
        json!(null),
    );
    assert!(
        status
            .as_str()
            .unwrap()
            .contains("with your matmul_strip.wgsl"),
        "{status}"
    );
    // A model builds on it (the kernels compile), and back to the built-in file, nothing
    // is changed.
    b.ok("return await window.lstm.api.create(args);", options);
    let changed = b.ok(
        "return await window.lstm.api.resetKernel('matmul_strip.wgsl');",
        json!(null),
    );
    assert_eq!(changed, json!([]));
}

/// The page tunes its kernels on its adapter as a native run does (every candidate held to
/// its CPU twin first, a wrong one left out with a warning in the tuning log: here a strip
/// kernel changed to negate a row), keeps the choices in the browser's storage under the
/// kernels' key, and reads them back for the next model on those kernels instead of
/// measuring again; "Forget the tuned choices" clears them. On a CPU adapter (SwiftShader
/// here) it tunes only when asked. One tuning: it is most of the test's time.
#[test]
fn the_page_tunes_its_kernels_and_keeps_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_ptb(dir.path(), 300, 40);
    let (_server, b) = open_page(&["--data", data.to_str().unwrap()]);
    let page = |b: &Browser| {
        b.ok(
            "let stored = null; try { stored = JSON.parse(localStorage.getItem('lstm-gpu tuning')); } catch (e) {} \
             return {tune: document.getElementById('tune').checked, \
                     log: document.getElementById('kernel-list').textContent, \
                     info: document.getElementById('model-info').textContent, \
                     note: document.getElementById('tune-note').textContent, \
                     stored};",
            json!(null),
        )
    };
    let sources = |info: &Value| -> Vec<String> {
        info["kernels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                let k = k.as_str().unwrap();
                k[k.rfind('(').unwrap() + 1..k.len() - 1].to_string()
            })
            .collect()
    };
    assert_eq!(
        page(&b)["tune"],
        json!(false),
        "SwiftShader is a CPU adapter"
    );

    // Not asked: the adapter's defaults, nothing stored.
    let (options, _) = tiny();
    let info = b.ok(
        "return await window.lstm.api.create(args);",
        options.clone(),
    );
    assert!(sources(&info).iter().all(|s| s == "default"), "{info}");
    assert_eq!(page(&b)["stored"], Value::Null);

    // Asked, with a strip kernel changed to compute wrong results (one output row negated):
    // every product and the recurrence measured, each kernel held to its twin first, the
    // wrong ones left out with a warning; the choices kept under the changed kernels' key.
    b.ok(
        "return await window.lstm.api.useKernel('matmul_strip.wgsl', args);",
        json!(common::strip_with_a_negated_row()),
    );
    let mut tuned = options.clone();
    tuned["tune"] = json!(true);
    let t0 = Instant::now();
    let info = b.ok("return await window.lstm.api.create(args);", tuned);
    eprintln!("tuning the tiny model in the page: {:.1?}", t0.elapsed());
    assert!(sources(&info).iter().all(|s| s == "tuned"), "{info}");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&out).unwrap();
    b.ok(
        "document.getElementById('kernel-choices').open = true; return null;",
        json!(null),
    );
    b.screenshot(&out.join("tuned.png"));
    let p = page(&b);
    let log = p["log"].as_str().unwrap();
    for want in [
        "kernels: tuning on the browser's WebGPU adapter",
        "against their CPU twins first",
        "warning: kernel strip left out: it computes wrong results",
        "recurrence ",
        "kernels: tuned in",
    ] {
        assert!(log.contains(want), "{want} not in the tuning log: {log}");
    }
    assert!(
        p["info"]
            .as_str()
            .unwrap()
            .contains("kernels tuned on this GPU now"),
        "{p}"
    );
    for k in info["kernels"].as_array().unwrap().iter().skip(1) {
        assert!(!k.as_str().unwrap().contains(" strip"), "{info}");
    }
    let stored = &p["stored"];
    assert_eq!(stored["format"], json!("lstm-gpu-tuning/1"), "{p}");
    let adapters = stored["adapters"].as_object().unwrap();
    assert_eq!(adapters.len(), 1, "{p}");
    let (key, entry) = adapters.iter().next().unwrap();
    assert!(
        key.contains("| shaders "),
        "the changed kernels' key: {key}"
    );
    assert_eq!(entry["models"].as_object().unwrap().len(), 1, "{p}");
    // What the model runs is what was stored.
    for k in info["kernels"].as_array().unwrap().iter().skip(1) {
        let k = k.as_str().unwrap();
        let mut words = k.split_whitespace();
        let (product, variant) = (words.next().unwrap(), words.next().unwrap());
        assert_eq!(entry["matmul"][product], json!(variant), "{k}: {entry}");
    }
    let recurrence = entry["models"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()["recurrence"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        info["kernels"][0],
        json!(format!("recurrence {recurrence} (tuned)"))
    );

    // The next model of that shape on those kernels reads them back (the box, checked, asks
    // for a tuning that is not needed).
    b.ok(
        "document.getElementById('tune').checked = true; return null;",
        json!(null),
    );
    let t0 = Instant::now();
    let info = b.ok(
        "return await window.lstm.api.create(args);",
        options.clone(),
    );
    eprintln!("the same model with the kept choices: {:.1?}", t0.elapsed());
    assert!(sources(&info).iter().all(|s| s == "cached"), "{info}");
    let p = page(&b);
    assert!(!p["log"].as_str().unwrap().contains("tuning on"), "{p}");
    assert!(p["note"].as_str().unwrap().contains("1 model"), "{p}");

    // The built-in kernels are not the changed ones: their choices are not those.
    b.ok(
        "return await window.lstm.api.resetKernel('matmul_strip.wgsl');",
        json!(null),
    );
    b.ok(
        "document.getElementById('tune').checked = false; return null;",
        json!(null),
    );
    let info = b.ok("return await window.lstm.api.create(args);", options);
    assert!(sources(&info).iter().all(|s| s == "default"), "{info}");

    // Forgotten: nothing stored.
    b.ok("window.lstm.api.forgetTuning(); return null;", json!(null));
    assert_eq!(page(&b)["stored"], Value::Null);
    assert_eq!(page(&b)["note"], json!(""));
}
