//! The test-only fault-injection hook: NaN in the carried state, a lost device, an
//! out-of-memory error, a step that takes seconds, at a chosen step, so that the tests see
//! what a user would.

use anyhow::Result;

use crate::error::usage;
use crate::gpu::Gpu;

/// The environment variable of the test-only fault-injection hook, read by [`train`](super::train) only:
/// comma-separated `KIND:STEP` with KIND `nan-state` (NaN in the carried state before step
/// STEP, so that its loss and gradient are NaN), `device-lost` (`wgpu::Device::destroy`
/// after step STEP: a real device loss) or `out-of-memory` (an out-of-memory error from the
/// driver after step STEP, see [`Gpu::inject_out_of_memory`]) or `slow-step` (step STEP
/// takes 5 s more, as a slow adapter's step or a cold shader cache's first does). Steps
/// count from 1, across resumes.
pub const FAULT_ENV: &str = "LSTM_GPU_INJECT_FAULT";

/// A fault injected through [`FAULT_ENV`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    NanState(u64),
    DeviceLost(u64),
    OutOfMemory(u64),
    SlowStep(u64),
}

/// What a `slow-step` fault adds to its step.
const SLOW_STEP: std::time::Duration = std::time::Duration::from_secs(5);

/// The faults asked for in [`FAULT_ENV`] (none when it is unset or empty).
pub fn faults_from_env() -> Result<Vec<Fault>> {
    let Some(value) = std::env::var_os(FAULT_ENV) else {
        return Ok(Vec::new());
    };
    let value = value.to_string_lossy().into_owned();
    parse_faults(&value)
}

/// Parse the value of [`FAULT_ENV`].
pub fn parse_faults(value: &str) -> Result<Vec<Fault>> {
    let mut faults = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || {
            usage(format!(
                "{FAULT_ENV}: `{item}` is not KIND:STEP with KIND nan-state, device-lost, out-of-memory or slow-step and STEP at least 1"
            ))
        };
        let (kind, step) = item.split_once(':').ok_or_else(bad)?;
        let step: u64 = step.trim().parse().map_err(|_| bad())?;
        if step == 0 {
            return Err(bad());
        }
        faults.push(match kind.trim() {
            "nan-state" => Fault::NanState(step),
            "device-lost" => Fault::DeviceLost(step),
            "out-of-memory" => Fault::OutOfMemory(step),
            "slow-step" => Fault::SlowStep(step),
            _ => return Err(bad()),
        });
    }
    Ok(faults)
}

/// The faults of [`FAULT_ENV`] due after step `step`.
pub(super) fn inject_after_step(gpu: &Gpu, faults: &[Fault], step: u64) {
    for f in faults {
        match *f {
            Fault::DeviceLost(s) if s == step => {
                log::warn!("{FAULT_ENV}: destroying the GPU device after step {step}");
                gpu.device.destroy();
            }
            Fault::OutOfMemory(s) if s == step => {
                log::warn!("{FAULT_ENV}: an out-of-memory error from wgpu after step {step}");
                gpu.inject_out_of_memory();
            }
            Fault::SlowStep(s) if s == step => {
                log::warn!("{FAULT_ENV}: step {step} takes {SLOW_STEP:?} more");
                std::thread::sleep(SLOW_STEP);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_hooks_parse_and_refuse_what_they_do_not_know() {
        assert_eq!(parse_faults("").unwrap(), vec![]);
        assert_eq!(
            parse_faults("nan-state:3, device-lost:5,out-of-memory:1,slow-step:2").unwrap(),
            vec![
                Fault::NanState(3),
                Fault::DeviceLost(5),
                Fault::OutOfMemory(1),
                Fault::SlowStep(2)
            ]
        );
        for bad in ["nan-state", "nan-state:0", "nan-state:x", "meltdown:2"] {
            let e = parse_faults(bad).unwrap_err();
            assert_eq!(crate::error::exit_code(&e), 2, "{bad}");
            assert!(e.to_string().contains(FAULT_ENV), "{bad}: {e}");
        }
    }
}
