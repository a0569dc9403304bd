//! Analysis that needs no GPU: a run's `metrics.jsonl` read ([`metrics`]) and drawn as
//! learning curves ([`plot`]), what a checkpoint or a run folder holds ([`info`]), the same
//! scalars as TensorBoard event files while a run trains ([`tensorboard`]), and the learned
//! word embeddings of a checkpoint, as nearest neighbours and as a t-SNE map
//! ([`embeddings`]).
//!
//! Figures are SVG or PNG, chosen by the output file's extension. Their text is drawn with a
//! TrueType font read at run time, so nothing is linked against fontconfig or freetype: the
//! font named by the environment variable `LSTM_GPU_FONT`, else DejaVu Sans (Debian package
//! `fonts-dejavu-core`) or another common sans-serif font where the system keeps it.

pub mod embeddings;
pub mod info;
pub mod metrics;
pub mod plot;
pub mod tensorboard;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::usage;

/// The file formats a figure can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ImageFormat {
    Svg,
    Png,
}

/// Environment variable naming a TrueType font file to draw text with.
const FONT_ENV: &str = "LSTM_GPU_FONT";

/// Where systems keep a plain sans-serif TrueType font, most likely first.
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/local/share/fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Check an output path the user typed before any work is done: its extension picks the
/// format (`.svg` or `.png`), its folder must exist, and a font must be there to draw text.
fn prepare_output(out: &Path) -> Result<ImageFormat> {
    let extension = out
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let format = match extension.as_deref() {
        Some("svg") => ImageFormat::Svg,
        Some("png") => ImageFormat::Png,
        _ => {
            return Err(usage(format!(
                "output {}: the file name must end in .svg or .png",
                out.display()
            )))
        }
    };
    let folder = out.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(folder) = folder {
        if !folder.is_dir() {
            return Err(usage(format!(
                "output {}: folder {} does not exist",
                out.display(),
                folder.display()
            )));
        }
    }
    register_font()?;
    Ok(format)
}

/// Register the text font with plotters under the family name `sans-serif` (the one every
/// figure here uses), once per process.
fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let path = find_font()?;
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("could not read font {}: {e}", path.display()))?;
            // plotters keeps registered fonts for the life of the process and wants them
            // 'static: the one font is leaked on purpose.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{} is not a TrueType/OpenType font", path.display()))?;
            Ok(path)
        })
        .as_ref()
        .map(|_| ())
        .map_err(|e| anyhow!("{e}"))
}

fn find_font() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(FONT_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{FONT_ENV}={}: no such font file", path.display()))
        };
    }
    FONT_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "no font to draw the figure's text with: install DejaVu Sans (Debian/Ubuntu \
                 package fonts-dejavu-core) or set {FONT_ENV} to a .ttf file"
            )
        })
}

/// A picture that can be drawn on any plotters backend.
trait Figure {
    /// Width and height in pixels (SVG user units).
    fn size(&self) -> (u32, u32);

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>;
}

/// Draw `figure` into `out` in `format` (from [`prepare_output`]).
fn render(out: &Path, format: ImageFormat, figure: &impl Figure) -> Result<()> {
    let failed = |e: &dyn std::fmt::Display| anyhow!("could not draw {}: {e}", out.display());
    match format {
        ImageFormat::Svg => {
            let root = SVGBackend::new(out, figure.size()).into_drawing_area();
            figure.draw(&root).map_err(|e| failed(&e))?;
            root.present().map_err(|e| failed(&e))
        }
        ImageFormat::Png => {
            let root = BitMapBackend::new(out, figure.size()).into_drawing_area();
            figure.draw(&root).map_err(|e| failed(&e))?;
            root.present().map_err(|e| failed(&e))
        }
    }
}

/// The smallest and largest of `values`, or `None` when there are none.
fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |range, v| match range {
        None => Some((v, v)),
        Some((lo, hi)) => Some((f64::min(lo, v), f64::max(hi, v))),
    })
}

/// A readable span of seconds: "40 s", "12 min", "2.4 h".
pub fn span(secs: f64) -> String {
    if !secs.is_finite() {
        "?".to_string()
    } else if secs < 90.0 {
        format!("{secs:.0} s")
    } else if secs < 5400.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_checks() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            prepare_output(&dir.path().join("a.SVG")).unwrap(),
            ImageFormat::Svg
        );
        assert_eq!(
            prepare_output(&dir.path().join("a.png")).unwrap(),
            ImageFormat::Png
        );
        assert_eq!(
            prepare_output(Path::new("a.svg")).unwrap(),
            ImageFormat::Svg
        );
        for bad in ["a.jpg", "a", "missing/a.svg"] {
            let err = prepare_output(&dir.path().join(bad)).unwrap_err();
            assert_eq!(crate::error::exit_code(&err), 2, "{bad}: {err:#}");
        }
    }
}
