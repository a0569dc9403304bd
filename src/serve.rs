//! `lstm-gpu serve`: the browser page (`web/www`, with the wasm module `scripts/build-web.sh`
//! writes to `web/pkg`) and a corpus over HTTP, on one thread of a small tokio runtime.
//!
//! Routes: `/` and the page's files; `/pkg/...`, the wasm module and its glue;
//! `/data/index.json`, what the corpus is; `/data/train`, `/data/valid`, `/data/test`, the
//! bytes of each split (a split cut from the training text is only its own bytes).
//!
//! With checkpoints (`--checkpoint PATH...`), `/data/model.safetensors` is the first one's
//! bytes (`/data/model-2.safetensors` the second's, and so on) and the index lists them with
//! what each is; the page loads one when its address says `?checkpoint=data/model.safetensors`
//! and offers them all.
//!
//! [`export`] writes the same routes as files (`serve --export DIR`), for any static web
//! host: the page uses relative addresses only, so it runs from any folder of a site.

use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::data::{CorpusSource, Split};
use crate::usage;

/// What `serve` serves.
pub struct ServeOptions {
    pub listen: IpAddr,
    /// 0: any free port (the line printed says which).
    pub port: u16,
    /// The folder with `www/` and `pkg/`.
    pub web: PathBuf,
    /// The corpus, if any: without one the page asks for files.
    pub corpus: Option<CorpusSource>,
    /// Checkpoints to offer the page ([`model_route`]).
    pub checkpoints: Vec<PathBuf>,
}

/// Where the first served or exported checkpoint is, relative to the page; the page loads
/// it when its address has `?checkpoint=` this.
pub const MODEL_ROUTE: &str = "data/model.safetensors";

/// Where the `i`-th (from 0) served or exported checkpoint is, relative to the page:
/// [`MODEL_ROUTE`] for the first, `data/model-2.safetensors` for the second, ...
pub fn model_route(i: usize) -> String {
    match i {
        0 => MODEL_ROUTE.to_string(),
        _ => format!("data/model-{}.safetensors", i + 1),
    }
}

/// Which checkpoint a file name under `data/` is, from 0 ([`model_route`]'s inverse).
fn model_number(name: &str) -> Option<usize> {
    let i = match name.strip_suffix(".safetensors")? {
        "model" => 0,
        other => other
            .strip_prefix("model-")?
            .parse::<usize>()
            .ok()?
            .checked_sub(1)?,
    };
    // One spelling per checkpoint: not `model-1`, `model-02`.
    (model_route(i).strip_prefix("data/") == Some(name)).then_some(i)
}

/// Which of `n` checkpoints a file name under `data/` is.
fn model_of(name: &str, n: usize) -> Option<usize> {
    model_number(name).filter(|&i| i < n)
}

/// The bytes of the `i`-th checkpoint to offer, checked to be one (its header, as `eval`
/// checks it first: a wrong file is one line before anything is served or written), and its
/// index entry: its route, a name (the file and its run folder's: two runs' `best` differ),
/// its size, and what it is in a few words.
fn read_checkpoint(i: usize, path: &Path) -> Result<ModelBytes> {
    let header = crate::model::checkpoint::Checkpoint::read_header(path)
        .map_err(|e| usage(format!("--checkpoint: {e:#}")))?;
    let bytes =
        std::fs::read(path).with_context(|| format!("could not read {}", path.display()))?;
    let file = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let name = match (path.parent().and_then(file), file(path)) {
        (Some(folder), Some(name)) => format!("{folder}/{name}"),
        (None, Some(name)) => name,
        _ => path.display().to_string(),
    };
    Ok((
        serde_json::json!({
            "route": model_route(i),
            "file": name,
            "bytes": bytes.len(),
            "about": crate::analysis::info::summary_line(&header.config, &header.position),
        }),
        bytes,
    ))
}

/// A corpus's index and its three splits' bytes.
type CorpusBytes = (serde_json::Value, [Vec<u8>; 3]);
/// A checkpoint's index entry and its bytes.
type ModelBytes = (serde_json::Value, Vec<u8>);

/// The corpus's index and splits, and each checkpoint's index entry and bytes, of what is
/// offered: read (and every checkpoint checked) before anything is served or written.
fn read_offered(
    corpus: Option<&CorpusSource>,
    checkpoints: &[PathBuf],
) -> Result<(Option<CorpusBytes>, Vec<ModelBytes>)> {
    let models = checkpoints
        .iter()
        .enumerate()
        .map(|(i, p)| read_checkpoint(i, p))
        .collect::<Result<_>>()?;
    Ok((corpus.map(read_corpus).transpose()?, models))
}

/// The web folder: `--web`, else the source tree's `web/` (a program run from its checkout),
/// else `web/` beside the executable (a copied release). It must hold the built page.
pub fn web_dir(flag: Option<&Path>) -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = match flag {
        Some(dir) => vec![dir.to_path_buf()],
        None => {
            let mut v = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("web")];
            if let Some(dir) = std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(Path::to_path_buf))
            {
                v.push(dir.join("web"));
            }
            v
        }
    };
    for dir in &candidates {
        if dir.join("www/index.html").is_file() && dir.join("pkg/lstm_gpu_web_bg.wasm").is_file() {
            return Ok(dir.clone());
        }
    }
    let first = &candidates[0];
    if !first.join("www/index.html").is_file() {
        return Err(usage(format!(
            "{} holds no page (www/index.html): give the checkout's web folder with --web DIR",
            first.display()
        )));
    }
    Err(usage(format!(
        "the page's wasm module is not built ({} is missing): run scripts/build-web.sh",
        first.join("pkg/lstm_gpu_web_bg.wasm").display()
    )))
}

struct Served {
    web: PathBuf,
    /// The index (of the corpus and the checkpoints), where there is either.
    index: Option<serde_json::Value>,
    /// The three splits' bytes.
    corpus: Option<[Vec<u8>; 3]>,
    /// Each checkpoint's bytes, in [`model_route`]'s order.
    checkpoints: Vec<Vec<u8>>,
}

/// The index the page reads: the corpus's name and splits where there is a corpus, the
/// checkpoints (`"checkpoints"`: each one's route, name, size and what it is) where there
/// are any.
fn index_of(
    corpus: Option<&serde_json::Value>,
    checkpoints: &[serde_json::Value],
) -> Option<serde_json::Value> {
    let mut index = match corpus {
        Some(c) => c.clone(),
        None if !checkpoints.is_empty() => serde_json::json!({}),
        None => return None,
    };
    if !checkpoints.is_empty() {
        index["checkpoints"] = serde_json::json!(checkpoints);
    }
    Some(index)
}

/// Read each split's bytes (only its range, for a split cut from the training text).
fn read_corpus(source: &CorpusSource) -> Result<CorpusBytes> {
    let mut files = serde_json::Map::new();
    let mut out: [Vec<u8>; 3] = Default::default();
    for (split, (src, bytes)) in Split::ALL
        .iter()
        .zip(source.splits.iter().zip(out.iter_mut()))
    {
        let all = std::fs::read(&src.path)
            .with_context(|| format!("could not read {}", src.path.display()))?;
        *bytes = match &src.bytes {
            Some(r) => {
                let end = (r.end.min(all.len() as u64)) as usize;
                all[(r.start as usize).min(end)..end].to_vec()
            }
            None => all,
        };
        files.insert(
            split.name().to_string(),
            serde_json::json!({"file": src.path.display().to_string(), "bytes": bytes.len()}),
        );
    }
    let name = source
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| source.dir.display().to_string());
    Ok((
        serde_json::json!({"name": name, "dir": source.dir.display().to_string(), "splits": files}),
        out,
    ))
}

/// What `serve --export` writes.
pub struct ExportOptions {
    /// The folder with `www/` and `pkg/`.
    pub web: PathBuf,
    /// The corpus, if any: without one the page asks for files.
    pub corpus: Option<CorpusSource>,
    /// Checkpoints to offer the page ([`model_route`]).
    pub checkpoints: Vec<PathBuf>,
    /// Where the site goes (created where missing; files of the same names replaced).
    pub dir: PathBuf,
}

/// Write the page, its wasm module and the corpus as the files a static web host serves at
/// `serve`'s routes: `index.html` and the page's other files, `pkg/...`, `data/index.json`
/// and `data/train`, `data/valid`, `data/test`. The index names the corpus but no folder
/// of this machine. Returns the number of files and their bytes.
pub fn export(opts: &ExportOptions) -> Result<(usize, u64)> {
    let dir = &opts.dir;
    if dir.exists() && !dir.is_dir() {
        return Err(usage(format!(
            "--export {}: is a file; give a folder for the site",
            dir.display()
        )));
    }
    let (corpus, models) = read_offered(opts.corpus.as_ref(), &opts.checkpoints)?;
    let mut written = (0usize, 0u64);
    let mut write = |path: &Path, bytes: &[u8]| -> Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("could not create {}", parent.display()))?;
        }
        crate::model::checkpoint::write_atomic(path, bytes)
            .with_context(|| format!("could not write {}", path.display()))?;
        written = (written.0 + 1, written.1 + bytes.len() as u64);
        Ok(())
    };
    for (from, to) in [
        (opts.web.join("www"), dir.clone()),
        (opts.web.join("pkg"), dir.join("pkg")),
    ] {
        for file in files_under(&from)? {
            let rel = file.strip_prefix(&from).expect("listed under it");
            let bytes = std::fs::read(&file)
                .with_context(|| format!("could not read {}", file.display()))?;
            write(&to.join(rel), &bytes)?;
        }
    }
    let (mut corpus_index, splits) = corpus.unzip();
    if let Some(index) = &mut corpus_index {
        // A public site need not say where the corpus was on this machine.
        if let Some(fields) = index.as_object_mut() {
            fields.remove("dir");
        }
        for split in index["splits"]
            .as_object_mut()
            .into_iter()
            .flat_map(|m| m.values_mut())
        {
            if let Some(file) = split.get("file").and_then(|f| f.as_str()).map(Path::new) {
                let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
                split["file"] = serde_json::json!(name);
            }
        }
    }
    let (model_index, model_bytes): (Vec<_>, Vec<_>) = models.into_iter().unzip();
    // What an earlier export into this folder offered and this one does not (a corpus,
    // models) goes, so that the page finds exactly what this export offers.
    let index_path = dir.join("data/index.json");
    let mut stale: Vec<PathBuf> = Vec::new();
    match index_of(corpus_index.as_ref(), &model_index) {
        Some(index) => write(&index_path, index.to_string().as_bytes())?,
        None => stale.push(index_path),
    }
    let split_paths = Split::ALL.iter().map(|sp| dir.join("data").join(sp.name()));
    match &splits {
        Some(splits) => {
            for (path, bytes) in split_paths.zip(splits) {
                write(&path, bytes)?;
            }
        }
        None => stale.extend(split_paths),
    }
    for (i, bytes) in model_bytes.iter().enumerate() {
        write(&dir.join(model_route(i)), bytes)?;
    }
    // Models of an earlier export beyond this one's: `model.safetensors`, `model-K...`.
    if let Ok(entries) = std::fs::read_dir(dir.join("data")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if model_number(&name).is_some() && model_of(&name, model_bytes.len()).is_none() {
                stale.push(entry.path());
            }
        }
    }
    for path in stale.iter().filter(|p| p.is_file()) {
        std::fs::remove_file(path)
            .with_context(|| format!("could not remove {} of an earlier export", path.display()))?;
    }
    Ok(written)
}

/// Every file under `dir`, in a stable order.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder)
            .with_context(|| format!("could not read {}", folder.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("not found: {what}\n")).into_response()
}

/// A file of the page: `/pkg/...` from `pkg/`, the rest from `www/`; nothing outside them.
async fn static_file(State(s): State<Arc<Served>>, uri: axum::http::Uri) -> Response {
    let rel = uri.path().trim_start_matches('/');
    let rel = if rel.is_empty() { "index.html" } else { rel };
    let rel_path = Path::new(rel);
    if rel_path
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return not_found(rel);
    }
    let path = match rel.strip_prefix("pkg/") {
        Some(rest) => s.web.join("pkg").join(rest),
        None => s.web.join("www").join(rel_path),
    };
    match std::fs::read(&path) {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, content_type(&path)),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => not_found(rel),
    }
}

async fn data_index(State(s): State<Arc<Served>>) -> Response {
    match &s.index {
        Some(index) => (
            [(header::CONTENT_TYPE, "application/json")],
            index.to_string(),
        )
            .into_response(),
        None => not_found("the server was started without a corpus"),
    }
}

async fn data_split(State(s): State<Arc<Served>>, UrlPath(split): UrlPath<String>) -> Response {
    if let Some(bytes) = model_of(&split, s.checkpoints.len()).map(|i| &s.checkpoints[i]) {
        return (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            bytes.clone(),
        )
            .into_response();
    }
    let Some(bytes) = &s.corpus else {
        return not_found("the server was started without a corpus");
    };
    let Some(i) = Split::ALL.iter().position(|sp| sp.name() == split) else {
        return not_found(&split);
    };
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        bytes[i].clone(),
    )
        .into_response()
}

/// Serve until the process is stopped. Prints one line with the address once listening.
pub fn serve(opts: ServeOptions) -> Result<()> {
    let (corpus, models) = read_offered(opts.corpus.as_ref(), &opts.checkpoints)?;
    let described = match &corpus {
        Some((index, _)) => format!("the corpus {}", index["dir"].as_str().unwrap_or("?")),
        None => "no corpus (the page asks for files)".to_string(),
    };
    let (corpus_index, splits) = corpus.unzip();
    let (model_index, model_bytes): (Vec<_>, Vec<_>) = models.into_iter().unzip();
    let state = Arc::new(Served {
        web: opts.web.clone(),
        index: index_of(corpus_index.as_ref(), &model_index),
        corpus: splits,
        checkpoints: model_bytes,
    });
    // The address that loads the (first) checkpoint, where there is one.
    let query = match opts.checkpoints.len() {
        0 => String::new(),
        _ => format!("?checkpoint={MODEL_ROUTE}"),
    };
    let model = match &opts.checkpoints[..] {
        [] => String::new(),
        [p] => format!(" and the model {} (that address loads it)", p.display()),
        [first, ..] => format!(
            " and {} models (that address loads the first, {}; the page offers the others)",
            opts.checkpoints.len(),
            first.display()
        ),
    };
    let app = Router::new()
        .route("/data/index.json", get(data_index))
        .route("/data/{split}", get(data_split))
        .fallback(get(static_file))
        .with_state(state);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("could not start the HTTP server's runtime")?;
    rt.block_on(async move {
        let addr = SocketAddr::new(opts.listen, opts.port);
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            usage(format!(
                "could not listen on {addr}: {e}{}",
                if e.kind() == std::io::ErrorKind::AddrInUse {
                    " (pick another port with --port)"
                } else {
                    ""
                }
            ))
        })?;
        let local = listener.local_addr()?;
        let host = if local.ip().is_unspecified() {
            "localhost".to_string()
        } else {
            match local.ip() {
                IpAddr::V6(ip) => format!("[{ip}]"),
                IpAddr::V4(ip) => ip.to_string(),
            }
        };
        println!(
            "serving the training page at http://{host}:{}/{query} with {described}{model}; open it in a browser with WebGPU (Ctrl-C stops)",
            local.port()
        );
        if !local.ip().is_loopback() {
            // Other machines reach it over plain http, where browsers give no WebGPU.
            println!(
                "other machines reach it at http://<this machine's address>:{}/, but browsers give WebGPU only to https:// pages and to localhost: for a class, put the page on an https:// host (lstm-gpu serve --export DIR) or serve it behind an https proxy",
                local.port()
            );
        }
        use std::io::Write;
        std::io::stdout().flush().ok();
        axum::serve(listener, app)
            .await
            .context("the HTTP server stopped")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_model_has_one_route_and_one_file_name() {
        for i in 0..12 {
            let route = model_route(i);
            let name = route.strip_prefix("data/").unwrap();
            assert_eq!(model_number(name), Some(i), "{route}");
            assert_eq!(model_of(name, i + 1), Some(i));
            assert_eq!(model_of(name, i), None, "only {i} models offered");
        }
        assert_eq!(model_route(0), MODEL_ROUTE);
        for other in [
            "model-1.safetensors",
            "model-02.safetensors",
            "model-x.safetensors",
            "model-0.safetensors",
            "model",
            "train",
            "index.json",
        ] {
            assert_eq!(model_number(other), None, "{other}");
        }
    }
}
