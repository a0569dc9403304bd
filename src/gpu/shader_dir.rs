//! `--shaders DIR`: the kernels built from WGSL files in a folder instead of the copies
//! compiled into the program, so that a kernel can be changed and then checked against its
//! CPU twin (`lstm-gpu check --shaders DIR`), timed (`profile`, `bench kernels`) and trained
//! with, from the release binary, without a Rust toolchain or a rebuild. `lstm-gpu shaders
//! export DIR` writes the built-in files to start from.
//!
//! Every module is a concatenation of whole files of `shaders/` (and generated entry points,
//! and a few lines of directives): a file of the folder that differs from the built-in one
//! replaces that file's text wherever a module holds it ([`ShaderDir::apply`], at
//! [`super::Gpu::shader`], the one place modules are made). No built-in file is a part of
//! another (a test checks), so the replacement is exact. A file the folder lacks stays
//! built in; a `.wgsl` file that is none of the program's is named in a warning.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::shaders::FILES;

/// The files of a `--shaders` folder that differ from the built-in ones.
#[derive(Clone, Debug)]
pub struct ShaderDir(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// The folder; empty for files given as texts (the page's), named "your NAME".
    dir: PathBuf,
    /// (file name, built-in text, the folder's text), in [`FILES`] order.
    changed: Vec<(&'static str, &'static str, String)>,
    /// `.wgsl` files of the folder that are none of the program's.
    unknown: Vec<String>,
    said: AtomicBool,
}

impl ShaderDir {
    /// Read `dir`: every file of [`FILES`] it holds (one that is not UTF-8 or cannot be read
    /// is an error, as is a folder that is not there).
    pub fn read(dir: &Path) -> Result<ShaderDir> {
        if !dir.is_dir() {
            bail!(
                "{} is not a folder (`lstm-gpu shaders export {}` writes the kernels' WGSL files there to start from)",
                dir.display(),
                dir.display()
            );
        }
        let mut changed = Vec::new();
        for &(name, built_in) in FILES {
            let path = dir.join(name);
            if !path.exists() {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("could not read {} as UTF-8 text", path.display()))?;
            if text != built_in {
                changed.push((name, built_in, text));
            }
        }
        let mut unknown: Vec<String> = std::fs::read_dir(dir)
            .with_context(|| format!("could not list {}", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".wgsl") && !FILES.iter().any(|f| f.0 == n))
            .collect();
        unknown.sort();
        Ok(ShaderDir(Arc::new(Inner {
            dir: dir.to_path_buf(),
            changed,
            unknown,
            said: AtomicBool::new(false),
        })))
    }

    /// Files given as (name, text) pairs (the page's edited kernels): each must be one of
    /// [`FILES`]; those equal to the built-in ones change nothing.
    pub fn from_texts(files: Vec<(String, String)>) -> Result<ShaderDir> {
        let mut changed = Vec::new();
        for (name, text) in files {
            let Some(&(name, built_in)) = FILES.iter().find(|f| f.0 == name) else {
                bail!("{name} is not one of the kernels' WGSL files");
            };
            if text != built_in && !changed.iter().any(|c: &(&str, &str, String)| c.0 == name) {
                changed.push((name, built_in, text));
            }
        }
        changed.sort_by_key(|c| FILES.iter().position(|f| f.0 == c.0));
        Ok(ShaderDir(Arc::new(Inner {
            dir: PathBuf::new(),
            changed,
            unknown: Vec::new(),
            said: AtomicBool::new(false),
        })))
    }

    /// How messages name a changed file: its path, or "your NAME".
    fn file_label(&self, name: &str) -> String {
        if self.0.dir.as_os_str().is_empty() {
            format!("your {name}")
        } else {
            self.0.dir.join(name).display().to_string()
        }
    }

    /// The clap parser of `--shaders DIR`.
    pub fn parse(arg: &str) -> std::result::Result<ShaderDir, String> {
        ShaderDir::read(Path::new(arg)).map_err(|e| format!("{e:#}"))
    }

    pub fn dir(&self) -> &Path {
        &self.0.dir
    }

    /// The names of the files that differ from the built-in ones.
    pub fn changed(&self) -> Vec<&'static str> {
        self.0.changed.iter().map(|c| c.0).collect()
    }

    /// `source` (built-in files' text, whole) with every changed file's text in place of the
    /// built-in one.
    pub fn apply<'a>(&self, source: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(source);
        for (_, built_in, text) in &self.0.changed {
            if out.contains(built_in) {
                out = Cow::Owned(out.replace(built_in, text));
            }
        }
        out
    }

    /// The lines (from 1, first and last) of each changed file in a module made by
    /// [`ShaderDir::apply`], with its name as messages give it.
    fn spans<'a>(&'a self, module: &'a str) -> impl Iterator<Item = (String, usize, usize)> + 'a {
        self.0.changed.iter().filter_map(move |(name, _, text)| {
            let at = module.find(text.as_str())?;
            let first = module[..at].lines().count() + 1;
            let last = first + text.lines().count().max(1) - 1;
            Some((self.file_label(name), first, last))
        })
    }

    /// Where a module made by [`ShaderDir::apply`] holds the folder's files: "lines A-B are
    /// DIR/name", for an error of that module (naga counts lines in the module).
    pub fn whereabouts(&self, module: &str) -> Option<String> {
        let parts: Vec<String> = self
            .spans(module)
            .map(|(file, first, last)| format!("lines {first}-{last} are {file}"))
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// Which changed file line `line` (from 1) of a module made by [`ShaderDir::apply`]
    /// lies in: "line N of DIR/name"; `None` where it lies in a built-in part.
    pub fn locate(&self, module: &str, line: usize) -> Option<String> {
        self.spans(module)
            .find(|&(_, first, last)| (first..=last).contains(&line))
            .map(|(file, first, _)| format!("line {} of {file}", line - first + 1))
    }

    /// What an error of `module` at `line` (where the compiler says) adds: " (line N of
    /// DIR/name)", else " (of that module, lines A-B are DIR/name)", else nothing.
    pub fn place(&self, module: &str, line: Option<usize>) -> String {
        line.and_then(|l| self.locate(module, l))
            .or_else(|| {
                self.whereabouts(module)
                    .map(|w| format!("of that module, {w}"))
            })
            .map(|w| format!(" ({w})"))
            .unwrap_or_default()
    }

    /// Copy the changed files into folder `to` (created if missing): a run folder keeps the
    /// kernels it was trained with. Returns the files written.
    pub fn keep_in(&self, to: &Path) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        if self.0.changed.is_empty() {
            return Ok(written);
        }
        std::fs::create_dir_all(to)
            .with_context(|| format!("could not create {}", to.display()))?;
        for (name, _, text) in &self.0.changed {
            let path = to.join(name);
            std::fs::write(&path, text)
                .with_context(|| format!("could not write {}", path.display()))?;
            written.push(path);
        }
        Ok(written)
    }

    /// A short fingerprint of the changed files (names and text), for the tuning cache's key:
    /// choices measured on other kernels must not be read as these ones'.
    pub fn fingerprint(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (name, _, text) in &self.0.changed {
            for b in name.bytes().chain([0]).chain(text.bytes()).chain([0]) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{h:016x}")
    }

    /// Say once (a process may open several devices) which files come from the folder.
    pub fn announce(&self) {
        if self.0.said.swap(true, Ordering::Relaxed) {
            return;
        }
        let dir = if self.0.dir.as_os_str().is_empty() {
            "your files".to_string()
        } else {
            self.0.dir.display().to_string()
        };
        if self.0.changed.is_empty() {
            log::info!("--shaders {dir}: every file there is the built-in one");
        } else {
            log::info!(
                "kernels built from {dir}: {} (the other {} files built in)",
                self.changed().join(", "),
                FILES.len() - self.0.changed.len()
            );
        }
        if !self.0.unknown.is_empty() {
            log::warn!(
                "--shaders {dir}: {} not among the program's shaders (ignored; `lstm-gpu shaders export` lists them)",
                self.0.unknown.join(", ")
            );
        }
    }
}

/// Write every built-in WGSL file into `dir` (created if missing). A file there that differs
/// from the built-in one is someone's change: kept, and an error, unless `force`. Returns
/// the files written.
pub fn export(dir: &Path, force: bool) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    if !force {
        let edited: Vec<&str> = FILES
            .iter()
            .filter(|(name, built_in)| {
                std::fs::read(dir.join(name)).is_ok_and(|b| b != built_in.as_bytes())
            })
            .map(|f| f.0)
            .collect();
        if !edited.is_empty() {
            bail!(
                "{} in {} {} from the built-in {}: not overwritten (--force overwrites {})",
                edited.join(", "),
                dir.display(),
                if edited.len() == 1 {
                    "differs"
                } else {
                    "differ"
                },
                if edited.len() == 1 { "one" } else { "ones" },
                if edited.len() == 1 { "it" } else { "them" },
            );
        }
    }
    let mut written = Vec::new();
    for &(name, text) in FILES {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .with_context(|| format!("could not write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_built_in_file_is_part_of_another() {
        for (a, ta) in FILES {
            assert!(ta.ends_with('\n'), "{a}");
            for (b, tb) in FILES {
                assert!(a == b || !tb.contains(ta), "{a} is part of {b}");
            }
        }
    }

    #[test]
    fn a_changed_file_replaces_its_text_and_says_where() {
        let dir = tempfile::tempdir().unwrap();
        export(dir.path(), false).unwrap();
        // Unchanged: nothing to replace, and the same fingerprint as no folder.
        let same = ShaderDir::read(dir.path()).unwrap();
        assert!(same.changed().is_empty());
        let module = super::super::shaders::SGD;
        assert!(matches!(same.apply(module), Cow::Borrowed(_)));

        let (name, built_in) = FILES.iter().find(|f| f.0 == "sgd.wgsl").unwrap();
        let edited = built_in.replace("fn ", "fn /* edited */ ");
        std::fs::write(dir.path().join(name), &edited).unwrap();
        std::fs::write(dir.path().join("mine.wgsl"), "// not the program's").unwrap();
        let changed = ShaderDir::read(dir.path()).unwrap();
        assert_eq!(changed.changed(), vec!["sgd.wgsl"]);
        assert_eq!(changed.0.unknown, vec!["mine.wgsl".to_string()]);
        assert_eq!(changed.apply(module), edited);
        assert_ne!(changed.fingerprint(), same.fingerprint());
        // Inside a longer module: the lines it spans.
        let longer = format!("a\nb\n{edited}");
        let said = changed.whereabouts(&longer).unwrap();
        let last = 2 + edited.lines().count();
        assert!(said.starts_with(&format!("lines 3-{last} are ")), "{said}");
        assert!(said.ends_with("sgd.wgsl"), "{said}");
        let at = changed.locate(&longer, 7).unwrap();
        assert!(
            at.starts_with("line 5 of ") && at.ends_with("sgd.wgsl"),
            "{at}"
        );
        assert_eq!(changed.locate(&longer, 2), None);
        assert_eq!(changed.locate(&longer, last + 1), None);

        // An edited file is not overwritten without --force.
        let err = export(dir.path(), false).unwrap_err().to_string();
        assert!(err.contains("sgd.wgsl"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(name)).unwrap(),
            edited
        );
        export(dir.path(), true).unwrap();
        assert!(ShaderDir::read(dir.path()).unwrap().changed().is_empty());

        // The page's files: named as the user's.
        let gates = FILES.iter().find(|f| f.0 == "lstm_gates.wgsl").unwrap().1;
        let texts = ShaderDir::from_texts(vec![
            ("sgd.wgsl".into(), edited.clone()),
            ("lstm_gates.wgsl".into(), gates.into()),
        ])
        .unwrap();
        assert_eq!(texts.changed(), vec!["sgd.wgsl"]);
        assert_eq!(texts.locate(&longer, 3).unwrap(), "line 1 of your sgd.wgsl");
        let err = ShaderDir::from_texts(vec![("mine.wgsl".into(), String::new())]).unwrap_err();
        assert!(err.to_string().contains("mine.wgsl is not one"), "{err}");

        let missing = dir.path().join("nowhere");
        let err = ShaderDir::read(&missing).unwrap_err().to_string();
        assert!(err.contains("is not a folder"), "{err}");
    }
}
