//! An evaluation pass on a terminal: cut into slices of about a quarter of a second, so that
//! a long pass (the test pass at batch 1 is 82,000 batches: minutes on a slow adapter) shows
//! its batches in a progress bar and stops between two slices when Ctrl-C or SIGTERM
//! arrives. The perplexity is [`evaluate`](crate::session::evaluate)'s to the bit: the pass
//! takes its loss sums at the same batches however it is cut ([`EvalPass::run`]).

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::data::Batches;
use crate::gpu::Gpu;
use crate::model::schedule::Workspace;
use crate::session::{EvalPass, Stream};
use crate::signals::Interrupt;

/// How an evaluation pass ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PassEnd {
    /// Every batch ran: the split's perplexity.
    Perplexity(f64),
    /// A signal (the number) stopped it after this many of its batches.
    Interrupted {
        signal: i32,
        done: usize,
        total: usize,
    },
}

/// What a pass shows and listens to.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassView<'a> {
    /// The bar's label (`validation`, `test`); no bar without one, nor where standard error
    /// is not a terminal.
    pub label: Option<&'a str>,
    /// Stop between slices once this has received a signal.
    pub interrupt: Option<&'a Interrupt>,
}

/// The time a slice aims at: short enough for Ctrl-C to answer at once, long enough that
/// the wait after each slice costs nothing measurable.
const SLICE: Duration = Duration::from_millis(250);

/// A pass shorter than this shows no bar.
const BAR_AFTER: Duration = Duration::from_secs(1);

/// What a pass scores.
pub enum Scored<'p, 'a> {
    /// Batches on one workspace; the pass counts them.
    Batches(&'p mut Workspace, &'p Batches<'a>),
    /// A [`Stream`] on its two workspaces ([`Stream::shapes`]: 1 x steps, then 1 x 1); the
    /// pass counts words, the 1x1 pass's batches.
    Stream(&'p mut Workspace, &'p mut Workspace, &'p Stream<'a>),
}

/// A part of a pass: batches on a workspace, each counting `weight` of the pass's units.
struct Leg<'p, 'a> {
    ws: &'p mut Workspace,
    batches: Batches<'a>,
    weight: usize,
}

impl<'p, 'a> Scored<'p, 'a> {
    /// The parts, run in order, each from the state the one before left.
    fn legs(self) -> Vec<Leg<'p, 'a>> {
        match self {
            Scored::Batches(ws, batches) => vec![Leg {
                ws,
                batches: *batches,
                weight: 1,
            }],
            Scored::Stream(head_ws, tail_ws, stream) => {
                let head = stream.head.map(|batches| Leg {
                    weight: batches.num_steps(),
                    ws: head_ws,
                    batches,
                });
                let tail = stream.tail.map(|batches| Leg {
                    ws: tail_ws,
                    batches,
                    weight: 1,
                });
                head.into_iter().chain(tail).collect()
            }
        }
    }
}

/// The perplexity of what `scored` names (see [`evaluate`](crate::session::evaluate)),
/// run in slices as the module says.
pub fn evaluate_sliced(
    gpu: &Gpu,
    scored: Scored<'_, '_>,
    seed: u32,
    view: PassView<'_>,
) -> Result<PassEnd> {
    let mut legs = scored.legs();
    let total: usize = legs.iter().map(|l| l.batches.len() * l.weight).sum();
    crate::gpu::block_on(async {
        let t0 = Instant::now();
        let mut bar: Option<indicatif::ProgressBar> = None;
        let mut slice = 1usize;
        // Units of the legs before this one, and their loss sums and time steps.
        let (mut before, mut sum, mut positions) = (0usize, 0f64, 0usize);
        let mut carried = None;
        let last = legs.len().saturating_sub(1);
        for (i, leg) in legs.iter_mut().enumerate() {
            let mut pass = EvalPass::start(gpu, leg.ws, &leg.batches).await?;
            if let Some(state) = carried.take() {
                leg.ws.write_state(gpu, &state)?;
            }
            while !pass.finished() {
                if let Some(signal) = view.interrupt.and_then(Interrupt::received) {
                    if let Some(b) = &bar {
                        b.finish_and_clear();
                    }
                    return Ok(PassEnd::Interrupted {
                        signal,
                        done: before + pass.done() * leg.weight,
                        total,
                    });
                }
                let t = Instant::now();
                pass.run(gpu, leg.ws, &leg.batches, seed, slice).await?;
                // Grow the slice while it ends well inside its time, shrink it when it
                // overran.
                let took = t.elapsed();
                if took < SLICE / 2 {
                    slice = (slice * 2).min(EvalPass::CHUNK);
                } else if took > SLICE * 2 && slice > 1 {
                    slice /= 2;
                }
                // The time left at the pace of the whole pass so far (indicatif's own
                // estimate follows the last updates, which arrive in bursts here).
                let done = before + pass.done() * leg.weight;
                let left = crate::analysis::span(
                    t0.elapsed().as_secs_f64() / done as f64 * (total - done) as f64,
                );
                match &bar {
                    Some(b) => {
                        b.set_message(left);
                        b.set_position(done as u64);
                    }
                    None if t0.elapsed() >= BAR_AFTER && done < total => {
                        bar = view
                            .label
                            .and_then(|label| pass_bar(label, total, done, left));
                    }
                    None => {}
                }
            }
            let (s, p) = pass.loss(leg.ws.steps)?;
            sum += s;
            positions += p;
            before += leg.batches.len() * leg.weight;
            if i < last {
                carried = Some(leg.ws.read_state_async(gpu).await?);
            }
        }
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        if positions == 0 {
            anyhow::bail!("an evaluation pass over nothing");
        }
        Ok(PassEnd::Perplexity((sum / positions as f64).exp()))
    })
}

/// A bar for a pass of `total` batches, `done` run and `left` to go, on a terminal only.
fn pass_bar(
    label: &str,
    total: usize,
    done: usize,
    left: String,
) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    // Set up hidden, then shown: its first frame is already right.
    let bar = indicatif::ProgressBar::hidden();
    bar.set_length(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} batches ({msg} left)",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar.set_position(done as u64);
    bar.set_message(left);
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    Some(bar)
}
