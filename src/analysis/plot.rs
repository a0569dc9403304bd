//! Learning curves of training runs, drawn from their `metrics.jsonl` (read by
//! [`super::metrics`]).
//!
//! One image, two panels: perplexity on a log axis (train and validation per epoch, the test
//! perplexity as a marker after the last epoch) above training speed in words per second;
//! where the runs logged gradient norms, a third below them: the global gradient norm
//! before clipping, the mean and the largest of each log point's steps, against the clip;
//! where a run's learning rate changed over its epochs (the tutorial's decay, a plateau's
//! steps), its rate per epoch at the bottom. Several runs share the axes, each in its own
//! colour and named by its run folder. A run without a finished epoch yet (a short run, or
//! one still in its first epoch) is drawn per log point against the global training step
//! instead, and so are all runs when any of them is such a run, so that they share one x
//! axis.

use anyhow::Result;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::metrics::{disambiguate_labels, EpochPoint, LogPoint, Run};
use super::{bounds, prepare_output, render, Figure};
use crate::error::usage;

/// Draw the learning curves of the runs whose `metrics.jsonl` files are given (a run folder
/// stands for the `metrics.jsonl` inside it) into `out`, an `.svg` or `.png` file.
///
/// Errors: no file, an output name without a `.svg`/`.png` extension, an output folder or
/// metrics file that does not exist (usage errors); an empty metrics file, a malformed line
/// (named by file and line number), a file with nothing to plot.
pub fn plot_metrics(files: &[PathBuf], out: &Path) -> Result<()> {
    if files.is_empty() {
        return Err(usage("no metrics file to plot: give at least one"));
    }
    let format = prepare_output(out)?;
    let mut runs = files
        .iter()
        .map(|file| {
            let run = Run::read(file)?;
            run.check_drawable()?;
            Ok(run)
        })
        .collect::<Result<Vec<_>>>()?;
    disambiguate_labels(&mut runs, files);
    render(out, format, &LearningCurves { runs })
}

/// How a series is drawn.
#[derive(Clone, Copy)]
enum Stroke {
    /// A line through dots.
    Solid,
    /// A dashed line through dots.
    Dashed,
    /// Crosses alone.
    Cross,
    /// Triangles alone.
    Triangle,
}

struct Series {
    label: String,
    color: RGBColor,
    stroke: Stroke,
    points: Vec<(f64, f64)>,
}

struct Panel {
    title: &'static str,
    x_desc: &'static str,
    y_desc: &'static str,
    /// Logarithmic y axis.
    log_y: bool,
    /// Where the legend goes: where the curves usually leave room.
    legend: SeriesLabelPosition,
    series: Vec<Series>,
}

/// Matplotlib's "tab10" colours: distinct, and readable on white.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

struct LearningCurves {
    runs: Vec<Run>,
}

impl LearningCurves {
    /// Whether every run has finished an epoch, so that epochs can be the x axis.
    fn by_epoch(&self) -> bool {
        self.runs.iter().all(|r| !r.epochs.is_empty())
    }

    /// Colour of a curve: with one run each curve has its own; with several, each run does.
    fn color(&self, run: usize, curve: usize) -> RGBColor {
        if self.runs.len() == 1 {
            PALETTE[curve % PALETTE.len()]
        } else {
            PALETTE[run % PALETTE.len()]
        }
    }

    /// A legend entry: the curve's name, after the run's name when there are several runs.
    fn label(&self, run: &Run, curve: &str) -> String {
        if self.runs.len() == 1 {
            curve.to_string()
        } else if curve.is_empty() {
            run.label.clone()
        } else {
            format!("{} {curve}", run.label)
        }
    }

    fn epoch_panels(&self) -> (Panel, Panel) {
        let mut perplexity = Vec::new();
        let mut speed = Vec::new();
        for (i, run) in self.runs.iter().enumerate() {
            let per_epoch = |value: fn(&EpochPoint) -> Option<f64>| -> Vec<(f64, f64)> {
                let points = run.epochs.iter().map(|e| (e.epoch, value(e)));
                points.filter_map(|(x, y)| Some((x, y?))).collect()
            };
            perplexity.push(Series {
                label: self.label(run, "train"),
                color: self.color(i, 0),
                stroke: Stroke::Solid,
                points: per_epoch(|e| e.train_perplexity),
            });
            perplexity.push(Series {
                label: self.label(run, "valid"),
                color: self.color(i, 1),
                stroke: Stroke::Dashed,
                points: per_epoch(|e| e.valid_perplexity),
            });
            if let (Some(test), Some(last)) = (run.test_perplexity, run.epochs.last()) {
                perplexity.push(Series {
                    label: self.label(run, &format!("test {test:.1}")),
                    color: self.color(i, 2),
                    stroke: Stroke::Triangle,
                    points: vec![(last.epoch, test)],
                });
            }
            speed.push(Series {
                label: self.label(run, ""),
                color: self.color(i, 0),
                stroke: Stroke::Solid,
                points: per_epoch(|e| e.words_per_second),
            });
        }
        (
            Panel {
                title: "Perplexity per epoch",
                x_desc: "epoch",
                y_desc: "perplexity (log scale)",
                log_y: true,
                legend: SeriesLabelPosition::UpperRight,
                series: perplexity,
            },
            Panel {
                title: "Training speed per epoch",
                x_desc: "epoch",
                y_desc: "words per second",
                log_y: false,
                legend: SeriesLabelPosition::LowerRight,
                series: speed,
            },
        )
    }

    fn step_panels(&self) -> (Panel, Panel) {
        let mut perplexity = Vec::new();
        let mut speed = Vec::new();
        for (i, run) in self.runs.iter().enumerate() {
            let per_log_point = |value: fn(&LogPoint) -> Option<f64>| -> Vec<(f64, f64)> {
                let points = run.log_points.iter().map(|p| (p.global_step, value(p)));
                points.filter_map(|(x, y)| Some((x, y?))).collect()
            };
            let log_steps = run.log_points.iter().map(|p| p.global_step);
            let epoch_steps = run.epochs.iter().map(|e| e.global_step);
            let last_step = log_steps.chain(epoch_steps).fold(0.0, f64::max);
            // Where a `--max-steps` run stopped between log points, its train perplexity so
            // far ends the curve (a run stopped before its first log point has only that).
            let mut train = per_log_point(|p| p.perplexity);
            let stop_train = run
                .stop
                .and_then(|s| Some((s.global_step?, s.train_perplexity?)));
            train.extend(stop_train.filter(|&(at, _)| at > last_step));
            perplexity.push(Series {
                label: self.label(run, "train"),
                color: self.color(i, 0),
                stroke: Stroke::Solid,
                points: train,
            });
            // Validation perplexities: at the end of each finished epoch, and where a
            // `--max-steps` run stopped.
            let epoch_valid = run
                .epochs
                .iter()
                .filter_map(|e| Some((e.global_step, e.valid_perplexity?)));
            let stop_valid = run.stop.and_then(|s| {
                let at = s.global_step.unwrap_or(last_step);
                Some((at, s.valid_perplexity?))
            });
            let valid: Vec<_> = epoch_valid.chain(stop_valid).collect();
            if !valid.is_empty() {
                perplexity.push(Series {
                    label: self.label(run, "valid"),
                    color: self.color(i, 1),
                    stroke: Stroke::Cross,
                    points: valid,
                });
            }
            if let Some(test) = run.test_perplexity {
                perplexity.push(Series {
                    label: self.label(run, &format!("test {test:.1}")),
                    color: self.color(i, 2),
                    stroke: Stroke::Triangle,
                    points: vec![(last_step, test)],
                });
            }
            speed.push(Series {
                label: self.label(run, ""),
                color: self.color(i, 0),
                stroke: Stroke::Solid,
                points: per_log_point(|p| p.words_per_second),
            });
        }
        (
            Panel {
                title: "Training perplexity so far in the epoch, per log point",
                x_desc: "training step",
                y_desc: "perplexity (log scale)",
                log_y: true,
                legend: SeriesLabelPosition::UpperRight,
                series: perplexity,
            },
            Panel {
                title: "Training speed per log point",
                x_desc: "training step",
                y_desc: "words per second",
                log_y: false,
                legend: SeriesLabelPosition::LowerRight,
                series: speed,
            },
        )
    }
}

impl LearningCurves {
    /// The gradient norms of every log point, against the epoch axis (`epochs_x`) or the
    /// training step; none where no run logged them (files older than the norms).
    fn gradient_panel(&self, epochs_x: bool) -> Option<Panel> {
        let mut series = Vec::new();
        for (i, run) in self.runs.iter().enumerate() {
            let x = |p: &LogPoint| {
                if epochs_x {
                    run.epoch_of(p.global_step)
                } else {
                    p.global_step
                }
            };
            let per_log_point = |value: fn(&LogPoint) -> Option<f64>| -> Vec<(f64, f64)> {
                let points = run.log_points.iter().map(|p| (x(p), value(p)));
                points.filter_map(|(x, y)| Some((x, y?))).collect()
            };
            let mean = per_log_point(|p| p.grad_norm);
            if mean.is_empty() {
                continue;
            }
            series.push(Series {
                label: self.label(run, "mean"),
                color: self.color(i, 0),
                stroke: Stroke::Solid,
                points: mean,
            });
            series.push(Series {
                label: self.label(run, "largest"),
                color: self.color(i, 1),
                stroke: Stroke::Dashed,
                points: per_log_point(|p| p.grad_norm_max),
            });
        }
        (!series.is_empty()).then_some(Panel {
            title: "Gradient norm before clipping, per log point",
            x_desc: if epochs_x { "epoch" } else { "training step" },
            y_desc: "global L2 norm (log scale)",
            log_y: true,
            legend: SeriesLabelPosition::UpperRight,
            series,
        })
    }

    /// Each epoch's learning rate, on the epoch axis, where some run's rate changed over its
    /// epochs (the tutorial's decay, or `--lr-schedule plateau`'s steps, which explain the
    /// curves' bends); none where every run kept one rate, or in step mode.
    fn rate_panel(&self, epochs_x: bool) -> Option<Panel> {
        let changes = |run: &Run| {
            let mut rates = run.epochs.iter().filter_map(|e| e.learning_rate);
            rates
                .next()
                .is_some_and(|first| rates.any(|rate| rate != first))
        };
        if !epochs_x || !self.runs.iter().any(changes) {
            return None;
        }
        let series = self.runs.iter().enumerate().map(|(i, run)| Series {
            label: self.label(run, ""),
            color: self.color(i, 0),
            stroke: Stroke::Solid,
            points: run
                .epochs
                .iter()
                .filter_map(|e| Some((e.epoch, e.learning_rate?)))
                .collect(),
        });
        Some(Panel {
            title: "Learning rate per epoch",
            x_desc: "epoch",
            y_desc: "learning rate (log scale)",
            log_y: true,
            legend: SeriesLabelPosition::UpperRight,
            series: series.collect(),
        })
    }

    /// The figure's panels from the top, each with its share of the height (in hundreds of
    /// pixels): perplexity, speed, and where there is something to show, the gradient norms
    /// and the learning rate.
    fn panels(&self) -> (bool, Vec<(Panel, u32)>) {
        let epochs_x = self.by_epoch();
        let (perplexity, speed) = if epochs_x {
            self.epoch_panels()
        } else {
            self.step_panels()
        };
        let gradient = self.gradient_panel(epochs_x);
        let rate = self.rate_panel(epochs_x);
        // Two panels: 600 and 400 pixels; the speed gives 50 to a panel below it.
        let speed_height = if gradient.is_some() || rate.is_some() {
            35
        } else {
            40
        };
        let mut panels = vec![(perplexity, 60), (speed, speed_height)];
        panels.extend(gradient.map(|p| (p, 35)));
        panels.extend(rate.map(|p| (p, 30)));
        (epochs_x, panels)
    }
}

impl Figure for LearningCurves {
    fn size(&self) -> (u32, u32) {
        (1200, self.panels().1.iter().map(|(_, h)| h * 10).sum())
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let title = match self.runs.as_slice() {
            [run] => format!("Learning curves: {}", run.label),
            _ => "Learning curves".to_string(),
        };
        let body = root.titled(&title, ("sans-serif", 30))?;
        let (epochs_x, panels) = self.panels();
        // One x axis for the panels, one above the other, each its share of the height.
        let xs = panels
            .iter()
            .flat_map(|(p, _)| p.finite_points())
            .map(|p| p.0);
        let x_span = bounds(xs);
        let total: u32 = panels.iter().map(|(_, h)| h).sum();
        let height = body.dim_in_pixel().1 as f64;
        let mut rest = body;
        for (i, (panel, share)) in panels.iter().enumerate() {
            if i + 1 == panels.len() {
                return draw_panel(&rest, panel, epochs_x, x_span);
            }
            let (area, below) =
                rest.split_vertically((height * *share as f64 / total as f64) as i32);
            draw_panel(&area, panel, epochs_x, x_span)?;
            rest = below;
        }
        Ok(())
    }
}

impl Panel {
    /// The points that can be drawn: finite, and positive on a log axis.
    fn finite_points(&self) -> Vec<(f64, f64)> {
        let points = self.series.iter().flat_map(|s| &s.points);
        points
            .copied()
            .filter(|&(x, y)| x.is_finite() && y.is_finite() && (!self.log_y || y > 0.0))
            .collect()
    }
}

/// Draw one panel; with `epochs_x` the x axis is epochs, else training steps; `x_span` the
/// x values of every panel of the figure, so that they share their x axis.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    epochs_x: bool,
    x_span: Option<(f64, f64)>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let finite = panel.finite_points();
    let (Some((x_lo, x_hi)), Some((y_lo, y_hi))) = (
        x_span.or_else(|| bounds(finite.iter().map(|p| p.0))),
        bounds(finite.iter().map(|p| p.1)),
    ) else {
        let style = ("sans-serif", 20).into_font().color(&BLACK.mix(0.6));
        let (w, h) = area.dim_in_pixel();
        let message = format!("{}: nothing to draw yet", panel.title);
        return area.draw_text(&message, &style, (w as i32 / 10, h as i32 / 2));
    };
    let x_range = if epochs_x {
        // Half an epoch of room either side of the first and last epoch.
        (x_lo - 0.5)..(x_hi + 0.5)
    } else {
        padded(x_lo, x_hi)
    };
    // Epochs and steps are whole numbers: no more ticks than whole numbers in the range, so
    // that plotters picks whole-number steps (1, 2, 5, 10...), at most 15 for epochs.
    let most_ticks = if epochs_x { 16 } else { 10 };
    let x_ticks = ((x_range.end - x_range.start).floor() as usize + 1).clamp(2, most_ticks);
    if panel.log_y {
        // Ten percent of head room either side, on the log scale.
        let (lo, hi) = (y_lo / 1.1, y_hi * 1.1);
        let y = (lo..hi).log_scale().with_key_points(log_ticks(lo, hi));
        draw_chart(area, panel, x_range, x_ticks, y)
    } else {
        // Speeds start the axis at zero so that a change reads at its true size.
        let y = 0.0..if y_hi > 0.0 { y_hi * 1.15 } else { 1.0 };
        draw_chart(area, panel, x_range, x_ticks, y)
    }
}

fn draw_chart<DB: DrawingBackend, Y>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    x_range: Range<f64>,
    x_ticks: usize,
    y_range: Y,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(x_range, y_range)?;
    chart
        .configure_mesh()
        .x_desc(panel.x_desc)
        .y_desc(panel.y_desc)
        .x_labels(x_ticks)
        .y_labels(10)
        .x_label_formatter(&|v| compact(*v))
        .y_label_formatter(&|v| compact(*v))
        .axis_desc_style(("sans-serif", 18))
        .label_style(("sans-serif", 15))
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(BLACK.mix(0.04))
        .draw()?;

    for series in &panel.series {
        let color = series.color;
        let line = color.stroke_width(2);
        let dots = series
            .points
            .iter()
            .map(move |&p| Circle::new(p, 3, color.filled()));
        let annotation = match series.stroke {
            Stroke::Solid => {
                chart.draw_series(dots)?;
                chart.draw_series(LineSeries::new(series.points.clone(), line))?
            }
            Stroke::Dashed => {
                chart.draw_series(dots)?;
                chart.draw_series(DashedLineSeries::new(series.points.clone(), 9, 6, line))?
            }
            Stroke::Cross => {
                chart.draw_series(series.points.iter().map(|&p| Cross::new(p, 6, line)))?
            }
            Stroke::Triangle => chart.draw_series(
                series
                    .points
                    .iter()
                    .map(|&p| TriangleMarker::new(p, 7, color.filled())),
            )?,
        };
        if series.label.is_empty() {
            continue;
        }
        annotation.label(series.label.as_str());
        // The legend's sample of the series, 24 pixels wide. Each arm builds its own
        // element type: plotters' boxed elements only serve 'static backends.
        let dot = move |x| Circle::new((x, 0), 3, color.filled());
        let segment = move |from, to| PathElement::new(vec![(from, 0), (to, 0)], line);
        match series.stroke {
            Stroke::Solid => {
                annotation.legend(move |at| EmptyElement::at(at) + segment(0, 24) + dot(12))
            }
            Stroke::Dashed => annotation
                .legend(move |at| EmptyElement::at(at) + segment(0, 8) + segment(16, 24) + dot(12)),
            Stroke::Cross => {
                annotation.legend(move |at| EmptyElement::at(at) + Cross::new((12, 0), 6, line))
            }
            Stroke::Triangle => annotation.legend(move |at| {
                EmptyElement::at(at) + TriangleMarker::new((12, 0), 7, color.filled())
            }),
        };
    }
    if panel.series.iter().all(|s| s.label.is_empty()) {
        return Ok(());
    }
    chart
        .configure_series_labels()
        .position(panel.legend.clone())
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
}

/// `[lo, hi]` with 3% of room either side (a unit either side of a single value).
fn padded(lo: f64, hi: f64) -> Range<f64> {
    if hi - lo < 1e-9 * hi.abs().max(1.0) {
        lo - 1.0..hi + 1.0
    } else {
        let pad = 0.03 * (hi - lo);
        lo - pad..hi + pad
    }
}

/// Ticks for a log axis over `[lo, hi]`: 1, 2 and 5 times the powers of ten, or more of each
/// decade when the range spans less than one (plotters only ticks powers of ten there).
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let within = |mantissas: &[f64]| -> Vec<f64> {
        let first = lo.log10().floor() as i32;
        let last = hi.log10().ceil() as i32;
        let decades = (first..=last).map(|e| 10f64.powi(e));
        let ticks = decades.flat_map(|d| mantissas.iter().map(move |m| m * d));
        ticks.filter(|t| (lo..=hi).contains(t)).collect()
    };
    let coarse = within(&[1.0, 2.0, 5.0]);
    if coarse.len() >= 4 {
        coarse
    } else {
        within(&[1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    }
}

/// A tick label: thousands as `k`, millions as `M`, at most three significant decimals.
fn compact(v: f64) -> String {
    let (scaled, suffix) = match v.abs() {
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    let digits = format!("{scaled:.2}");
    let digits = digits.trim_end_matches('0').trim_end_matches('.');
    let digits = if digits == "-0" { "0" } else { digits };
    format!("{digits}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_labels() {
        assert_eq!(
            log_ticks(45.0, 1100.0),
            vec![50.0, 100.0, 200.0, 500.0, 1000.0]
        );
        assert_eq!(log_ticks(55.0, 130.0), vec![60.0, 70.0, 80.0, 90.0, 100.0]);
        assert_eq!(compact(12500.0), "12.5k");
        assert_eq!(compact(45000.0), "45k");
        assert_eq!(compact(2_000_000.0), "2M");
        assert_eq!(compact(116.0), "116");
        assert_eq!(compact(0.25), "0.25");
        assert_eq!(compact(0.0), "0");
        assert_eq!(padded(3.0, 3.0), 2.0..4.0);
        assert_eq!(padded(0.0, 100.0), -3.0..103.0);
    }
}
