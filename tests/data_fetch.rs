//! The corpus download without internet: a `.tgz` built here, or a folder of the three files
//! as the mirror has them, served by a one-thread HTTP server on 127.0.0.1 or read through a
//! `file://` URL. Every failure must be one clear line and leave the target folder without
//! partial or temporary files, so that the next source starts clean.

mod common;

use flate2::write::GzEncoder;
use lstm_gpu::data::fetch::{
    corpus_present, ensure_corpus_from, fetch_ptb_from_with_sums, fetch_ptb_with_sums,
};
use lstm_gpu::data::{Corpus, Split};
use lstm_gpu::error::one_line;
use md5::{Digest, Md5};
use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const SPLITS: [&str; 3] = ["ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"];

/// PTB-like text: `lines` lines of words drawn from a small vocabulary by an LCG.
fn fake_text(seed: u64, lines: usize) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "the", "<unk>", "N", "market", "rose", "fell", "shares", "of", "a", "company", "said",
        "bank",
    ];
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut text = String::new();
    for _ in 0..lines {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let words = 3 + (state >> 60) as usize;
        for _ in 0..words {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text.push(' ');
            text.push_str(WORDS[(state >> 33) as usize % WORDS.len()]);
        }
        text.push_str(" \n");
    }
    text.into_bytes()
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The three fake splits and their sums.
struct Splits {
    contents: [Vec<u8>; 3],
    sums: Vec<(&'static str, String)>,
}

impl Splits {
    fn new() -> Splits {
        let contents = [fake_text(1, 6000), fake_text(2, 800), fake_text(3, 3000)];
        let sums = SPLITS
            .iter()
            .zip(&contents)
            .map(|(name, c)| (*name, md5_hex(c)))
            .collect();
        Splits { contents, sums }
    }

    fn sums(&self) -> Vec<(&str, &str)> {
        self.sums.iter().map(|(n, s)| (*n, s.as_str())).collect()
    }
}

/// A gzip tar shaped like `simple-examples.tgz`: other members before, between and after
/// the splits; `dot` prefixes every name with `./` as the canonical archive does; `skip`
/// leaves a split out.
fn archive(splits: &Splits, dot: bool, skip: Option<&str>) -> Vec<u8> {
    let prefix = if dot { "./" } else { "" };
    let mut members: Vec<(String, Vec<u8>)> = vec![(
        "simple-examples/rnnlm-0.2b/README".into(),
        b"not the corpus\n".to_vec(),
    )];
    for (name, contents) in SPLITS.iter().zip(&splits.contents) {
        if Some(*name) != skip {
            members.push((format!("simple-examples/data/{name}"), contents.clone()));
        }
        if *name == "ptb.train.txt" {
            members.push((
                "simple-examples/data/ptb.char.train.txt".into(),
                fake_text(9, 500),
            ));
        }
    }
    members.push(("simple-examples/models/model.bin".into(), vec![7u8; 5000]));

    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (path, contents) in members {
        let mut header = tar::Header::new_old();
        // Set the name bytes directly: `set_path` would drop the leading "./".
        let name = format!("{prefix}{path}");
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        tar.append(&header, contents.as_slice()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// Serve `body` over HTTP/1.1 on 127.0.0.1 with `status`; the response announces
/// `announced` bytes (normally `body.len()`) and the connection closes after `body`.
fn serve(status: &str, body: Vec<u8>, announced: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/simple-examples.tgz",
        listener.local_addr().unwrap()
    );
    let status = status.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                request.push(byte[0]);
            }
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/x-gzip\r\n\
                 Content-Length: {announced}\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    url
}

/// Serve each `(path, status, body)` over HTTP/1.1 on 127.0.0.1 (404 for any other path);
/// returns the server's base URL, `http://127.0.0.1:PORT/`, and the count of requests.
fn serve_paths(files: Vec<(String, &'static str, Vec<u8>)>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                request.push(byte[0]);
            }
            let request = String::from_utf8_lossy(&request);
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = files
                .iter()
                .find(|(p, _, _)| p == path)
                .map_or(("404 Not Found", &b"gone"[..]), |(_, s, b)| {
                    (*s, b.as_slice())
                });
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    (base, requests)
}

/// The mirror's layout: `data/ptb.{train,valid,test}.txt`, `skip` left out (a 404).
fn mirror(splits: &Splits, skip: Option<&str>) -> String {
    mirror_counted(splits, skip).0
}

/// [`mirror`], and the count of requests it has answered.
fn mirror_counted(splits: &Splits, skip: Option<&str>) -> (String, Arc<AtomicUsize>) {
    let files = SPLITS
        .iter()
        .zip(&splits.contents)
        .filter(|(name, _)| Some(**name) != skip)
        .map(|(name, c)| (format!("/data/{name}"), "200 OK", c.clone()))
        .collect();
    let (base, requests) = serve_paths(files);
    (format!("{base}data/"), requests)
}

/// A refused connection: a port that was just free.
fn refused_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}/simple-examples.tgz")
}

/// `dir` holds exactly the three splits as `splits` has them, beside `notes.md`.
fn assert_fetched(dir: &Path, splits: &Splits) {
    let mut expected: BTreeSet<String> = SPLITS.iter().map(|s| s.to_string()).collect();
    expected.insert("notes.md".into());
    assert_eq!(listing(dir), expected);
    for (name, contents) in SPLITS.iter().zip(&splits.contents) {
        assert_eq!(&fs::read(dir.join(name)).unwrap(), contents, "{name}");
    }
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// The names in `dir`.
fn listing(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// A target folder holding one unrelated file and an old train split that must survive.
fn target() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.md"), "mine").unwrap();
    fs::write(dir.path().join("ptb.train.txt"), " old \n").unwrap();
    dir
}

/// `result` failed with one line holding `expected`, and `dir` is as [`target`] made it.
fn assert_clean_failure(result: anyhow::Result<()>, expected: &str, dir: &Path) {
    let err = result.expect_err("the fetch should fail");
    let line = one_line(&err);
    assert!(!format!("{err:#}").contains('\n'), "{line}");
    assert!(line.contains(expected), "expected {expected:?} in: {line}");
    assert!(line.contains("Penn Treebank"), "{line}");
    assert_eq!(
        listing(dir),
        BTreeSet::from(["notes.md".to_string(), "ptb.train.txt".to_string()]),
        "{line}"
    );
    assert_eq!(fs::read(dir.join("ptb.train.txt")).unwrap(), b" old \n");
}

#[test]
fn http_download_writes_the_verified_splits() {
    let splits = Splits::new();
    let body = archive(&splits, true, None);
    let url = serve("200 OK", body.clone(), body.len());
    let dir = target();
    fetch_ptb_with_sums(&url, dir.path(), &splits.sums()).unwrap();

    let mut expected: BTreeSet<String> = SPLITS.iter().map(|s| s.to_string()).collect();
    expected.insert("notes.md".into());
    assert_eq!(listing(dir.path()), expected);
    for (name, contents) in SPLITS.iter().zip(&splits.contents) {
        assert_eq!(
            &fs::read(dir.path().join(name)).unwrap(),
            contents,
            "{name}"
        );
    }
    assert!(corpus_present(dir.path()));
    let corpus = Corpus::load(dir.path(), 100).unwrap();
    assert_eq!(corpus.vocab.len(), 13);
    assert!(corpus.batches(Split::Valid, 4, 10).unwrap().len() > 10);
}

#[test]
fn file_url_without_dot_into_a_new_folder() {
    let splits = Splits::new();
    let work = tempfile::tempdir().unwrap();
    let tgz = work.path().join("simple examples.tgz");
    fs::write(&tgz, archive(&splits, false, None)).unwrap();
    let dir = work.path().join("new/ptb");
    let url = file_url(&tgz).replace(' ', "%20");
    fetch_ptb_with_sums(&url, &dir, &splits.sums()).unwrap();
    assert_eq!(
        listing(&dir),
        SPLITS
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
    );
    assert_eq!(
        fs::read(dir.join("ptb.test.txt")).unwrap(),
        splits.contents[2]
    );
    // Already there: nothing to do, not even a download.
    ensure_corpus_from(&["http://127.0.0.1:9/unused.tgz".into()], &dir, true).unwrap();
}

#[test]
fn checksum_mismatch_keeps_nothing() {
    let splits = Splits::new();
    let body = archive(&splits, true, None);
    // The last split is wrong: the first two were verified before it, yet must not land.
    let mut sums = splits.sums();
    sums[2].1 = "00000000000000000000000000000000";
    let url = serve("200 OK", body.clone(), body.len());
    let dir = target();
    let result = fetch_ptb_with_sums(&url, dir.path(), &sums);
    assert_clean_failure(result, "checksum mismatch for ptb.test.txt", dir.path());
}

#[test]
fn truncated_archive_keeps_nothing() {
    let splits = Splits::new();
    let body = archive(&splits, true, None);
    let cut = body[..body.len() * 3 / 4].to_vec();

    // A short archive served completely.
    let url = serve("200 OK", cut.clone(), cut.len());
    let dir = target();
    let result = fetch_ptb_with_sums(&url, dir.path(), &splits.sums());
    assert_clean_failure(result, "truncated", dir.path());

    // A connection that closes before the announced length.
    let url = serve("200 OK", cut.clone(), body.len());
    let dir = target();
    let result = fetch_ptb_with_sums(&url, dir.path(), &splits.sums());
    assert_clean_failure(result, "truncated", dir.path());

    // The same short file through a file:// URL.
    let work = tempfile::tempdir().unwrap();
    fs::write(work.path().join("cut.tgz"), &cut).unwrap();
    let dir = target();
    let result = fetch_ptb_with_sums(
        &file_url(&work.path().join("cut.tgz")),
        dir.path(),
        &splits.sums(),
    );
    assert_clean_failure(result, "truncated", dir.path());
}

#[test]
fn missing_member_keeps_nothing() {
    let splits = Splits::new();
    let body = archive(&splits, true, Some("ptb.valid.txt"));
    let url = serve("200 OK", body.clone(), body.len());
    let dir = target();
    let result = fetch_ptb_with_sums(&url, dir.path(), &splits.sums());
    assert_clean_failure(
        result,
        "no member simple-examples/data/ptb.valid.txt",
        dir.path(),
    );
}

#[test]
fn network_failures_are_one_line() {
    let splits = Splits::new();

    // Connection refused.
    let refused = refused_url();
    let dir = target();
    let result = fetch_ptb_with_sums(&refused, dir.path(), &splits.sums());
    assert_clean_failure(result, "download failed", dir.path());

    // Not found.
    let url = serve("404 Not Found", b"gone".to_vec(), 4);
    let dir = target();
    let result = fetch_ptb_with_sums(&url, dir.path(), &splits.sums());
    assert_clean_failure(result, "404", dir.path());

    // A missing file:// archive and an unsupported scheme.
    let dir = target();
    let result = fetch_ptb_with_sums("file:///no/such/archive.tgz", dir.path(), &splits.sums());
    assert_clean_failure(result, "/no/such/archive.tgz", dir.path());
    let dir = target();
    let result = fetch_ptb_with_sums("ftp://example.org/a.tgz", dir.path(), &splits.sums());
    assert_clean_failure(result, "unsupported URL", dir.path());

    // The trainer's entry point: offline, the default folder fails with the two ways out.
    let dir = tempfile::tempdir().unwrap();
    let err = ensure_corpus_from(std::slice::from_ref(&refused), dir.path(), true).unwrap_err();
    let line = one_line(&err);
    assert!(
        line.contains("--data DIR") && line.contains("lstm-gpu data fetch"),
        "{line}"
    );
    assert!(!format!("{err:#}").contains('\n'), "{line}");
    assert!(listing(dir.path()).is_empty(), "{line}");
    // A folder the user named is never downloaded into.
    let err = ensure_corpus_from(&[refused], dir.path(), false).unwrap_err();
    let line = one_line(&err);
    assert!(
        line.contains("--data DIR") && line.contains("lstm-gpu data fetch"),
        "{line}"
    );
    assert!(listing(dir.path()).is_empty(), "{line}");
}

#[test]
fn a_folder_of_the_three_files_is_a_source_too() {
    let splits = Splits::new();
    // Over HTTP, as the mirror serves them.
    let dir = target();
    fetch_ptb_with_sums(&mirror(&splits, None), dir.path(), &splits.sums()).unwrap();
    assert_fetched(dir.path(), &splits);

    // Through file://, a local copy of the folder.
    let work = tempfile::tempdir().unwrap();
    for (name, contents) in SPLITS.iter().zip(&splits.contents) {
        fs::write(work.path().join(name), contents).unwrap();
    }
    let dir = target();
    let url = format!("{}/", file_url(work.path()));
    fetch_ptb_with_sums(&url, dir.path(), &splits.sums()).unwrap();
    assert_fetched(dir.path(), &splits);

    // A file missing from the folder, or one that is not the canonical one: nothing lands,
    // not even the files verified before it.
    let dir = target();
    let result = fetch_ptb_with_sums(
        &mirror(&splits, Some("ptb.test.txt")),
        dir.path(),
        &splits.sums(),
    );
    assert_clean_failure(result, "ptb.test.txt: download failed", dir.path());
    let mut sums = splits.sums();
    sums[2].1 = "00000000000000000000000000000000";
    let dir = target();
    let result = fetch_ptb_with_sums(&mirror(&splits, None), dir.path(), &sums);
    assert_clean_failure(result, "checksum mismatch for ptb.test.txt", dir.path());
}

#[cfg(unix)]
#[test]
fn a_killed_downloads_temporary_files_go_with_the_next_download() {
    let splits = Splits::new();
    let dir = target();
    // A process that has ended (a download killed by Ctrl-C or `kill -9` leaves files named
    // after its process id), one still running (another download into the same folder),
    // and hidden files the download does not name.
    let mut ended = Command::new("true").spawn().unwrap();
    ended.wait().unwrap();
    let mut running = Command::new("sleep").arg("30").spawn().unwrap();
    let left = [
        format!(".ptb.train.txt.{}.download", ended.id()),
        format!(".ptb.test.txt.{}.download", ended.id()),
    ];
    let kept = [
        format!(".ptb.valid.txt.{}.download", running.id()),
        format!(".ptb.train.txt.{}.bak", ended.id()),
        ".other.txt.1.download".to_string(),
    ];
    for name in left.iter().chain(&kept) {
        fs::write(dir.path().join(name), "partial").unwrap();
    }
    let result = fetch_ptb_with_sums(&mirror(&splits, None), dir.path(), &splits.sums());
    let _ = running.kill();
    let _ = running.wait();
    result.unwrap();
    for name in &kept {
        fs::remove_file(dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert_fetched(dir.path(), &splits);
}

#[test]
fn the_mirror_is_tried_when_the_archive_cannot_be_read() {
    let splits = Splits::new();
    // The archive's host refuses, or serves a damaged archive: the folder's files land.
    let dir = target();
    let sources = [refused_url(), mirror(&splits, None)];
    fetch_ptb_from_with_sums(&sources, dir.path(), &splits.sums()).unwrap();
    assert_fetched(dir.path(), &splits);
    let body = archive(&splits, true, None);
    let cut = body[..body.len() / 2].to_vec();
    let dir = target();
    let sources = [
        serve("200 OK", cut.clone(), cut.len()),
        mirror(&splits, None),
    ];
    fetch_ptb_from_with_sums(&sources, dir.path(), &splits.sums()).unwrap();
    assert_fetched(dir.path(), &splits);

    // The first source that works is the one used: the archive, the mirror never asked.
    let dir = target();
    let (unasked, requests) = mirror_counted(&splits, None);
    let sources = [serve("200 OK", body.clone(), body.len()), unasked];
    fetch_ptb_from_with_sums(&sources, dir.path(), &splits.sums()).unwrap();
    assert_fetched(dir.path(), &splits);
    assert_eq!(requests.load(Ordering::SeqCst), 0);

    // Both fail: one line naming each source with its reason, and the folder as it was.
    let dir = target();
    let refused = refused_url();
    let broken_mirror = mirror(&splits, Some("ptb.valid.txt"));
    let sources = [refused.clone(), broken_mirror.clone()];
    let result = fetch_ptb_from_with_sums(&sources, dir.path(), &splits.sums());
    let line = one_line(result.as_ref().unwrap_err());
    assert!(
        line.contains(&format!("from {refused}: download failed"))
            && line.contains(&format!(
                "from {broken_mirror}: ptb.valid.txt: download failed"
            )),
        "{line}"
    );
    assert_clean_failure(result, "404", dir.path());

    // The trainer's entry point downloads through the same list; a folder made for it goes
    // again when nothing arrives.
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("lstm-gpu/ptb");
    let sources = [refused_url(), mirror(&splits, None)];
    let fetched = ensure_corpus_from(&sources, &dir, true);
    // The real sums are the canonical corpus's, which the fake files are not.
    let line = one_line(&fetched.unwrap_err());
    assert!(
        line.contains("checksum mismatch for ptb.train.txt"),
        "{line}"
    );
    assert!(line.contains("--data DIR"), "{line}");
    assert!(!dir.exists(), "{line}");
}

/// Run `openssl` with `args` in `dir`; panics with its stderr when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (the Debian package of that name) is needed by this test");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An HTTPS server on 127.0.0.1 serving the files of `www` (`openssl s_server -WWW`), its
/// certificate for `localhost` issued by a certificate authority of its own, whose
/// certificate is `ca.pem` in `pki`. Returns the server (killed on drop) and its port.
struct HttpsServer(Child);

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn https_server(pki: &Path, www: &Path) -> (HttpsServer, u16) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = [
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=lstm-gpu test proxy CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    ]
    .concat();
    openssl(pki, &ca);
    let csr = [
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ],
    ]
    .concat();
    openssl(pki, &csr);
    fs::write(
        pki.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        pki,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-WWW", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(pki.join("leaf.pem"))
        .arg("-key")
        .arg(pki.join("leaf.key"))
        .current_dir(www)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let server = HttpsServer(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "openssl s_server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (server, port)
}

/// Behind a proxy that inspects TLS (its own certificate authority, which the system's
/// trust store holds and Mozilla's roots do not), the HTTPS mirror still delivers: the
/// download tries the system's certificates after Mozilla's. Without that authority in the
/// system's store, one line saying the certificate was refused, and nothing written.
#[test]
fn https_through_a_tls_inspecting_proxy_trusts_the_systems_certificates() {
    let work = tempfile::tempdir().unwrap();
    let (pki, www) = (work.path().join("pki"), work.path().join("www/data"));
    fs::create_dir_all(&pki).unwrap();
    fs::create_dir_all(&www).unwrap();
    let ptb = common::ptb_dir();
    for name in SPLITS {
        fs::copy(ptb.join(name), www.join(name)).unwrap();
    }
    let (_server, port) = https_server(&pki, &work.path().join("www"));
    let url = format!("https://localhost:{port}/data/");
    let empty = work.path().join("no-certificates");
    fs::create_dir_all(&empty).unwrap();
    let fetch = |dir: &Path, ca: &Path| {
        Command::new(env!("CARGO_BIN_EXE_lstm-gpu"))
            .args(["data", "fetch", "--url", &url, "--dir"])
            .arg(dir)
            .env("SSL_CERT_FILE", ca)
            .env("SSL_CERT_DIR", &empty)
            .env("RUST_LOG", "info")
            .output()
            .unwrap()
    };

    let dir = work.path().join("ptb");
    let out = fetch(&dir, &pki.join("ca.pem"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("trying this system's certificates"),
        "{stderr}"
    );
    for name in SPLITS {
        assert_eq!(
            fs::read(dir.join(name)).unwrap(),
            fs::read(ptb.join(name)).unwrap(),
            "{name}"
        );
    }

    // A system that does not trust the proxy either: refused, one line, no folder left.
    fs::write(work.path().join("other.pem"), "").unwrap();
    let dir = work.path().join("ptb-refused");
    let out = fetch(&dir, &work.path().join("other.pem"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error.len(), 1, "{stderr}");
    assert!(error[0].contains("certificate"), "{stderr}");
    assert!(!dir.exists(), "{stderr}");
}
