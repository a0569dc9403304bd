//! Shader modules and pipelines: compiled with or without wgpu's runtime checks, from the
//! built-in WGSL or the files of `--shaders DIR`, their errors as one line with the place;
//! optional kernels that an adapter may refuse; bind groups checked for aliasing.

use anyhow::{bail, Result};

use super::Gpu;

/// The test hook `LSTM_GPU_REFUSE` (comma-separated kernel names as `--matmul`,
/// `bench kernels` and `--recurrence` spell them: `block-128x128`, `panel`,
/// `strip-quad-split`, `f16-coop`, `fused`, ...): those optional kernels' pipelines are made with an override constant their shader
/// does not declare, so that wgpu refuses them as a driver refuses a kernel it cannot
/// build, and what the program does then runs on any machine.
pub const REFUSE_ENV: &str = "LSTM_GPU_REFUSE";

fn refused(what: &str) -> bool {
    std::env::var(REFUSE_ENV).is_ok_and(|v| v.split(',').any(|s| s.trim() == what))
}

impl Gpu {
    /// Compile a WGSL module; compile errors become errors of the program.
    pub fn shader(&self, label: &str, source: &str) -> Result<wgpu::ShaderModule> {
        let source = self.resolve(source);
        let source: &str = &source;
        let scope = ErrorScope::push(&self.device);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(label),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        };
        let module = if self.runtime_checks || cfg!(target_arch = "wasm32") {
            self.device.create_shader_module(desc)
        } else {
            // SAFETY: every kernel guards its own indices against the sizes in its uniforms,
            // the launchers check each view against its buffer before binding it
            // (`View::check`) and the fit check bounds every buffer; the parity suite runs
            // with the checks off too (LSTM_GPU_SHADER_CHECKS=off in CI).
            unsafe {
                self.device
                    .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        };
        if let Some(e) = scope.pop() {
            // A module holding files of `--shaders DIR`: where they are in it.
            let place = self
                .shader_dir
                .as_ref()
                .map(|d| d.place(source, shader_error_place(&e).map(|p| p.0)))
                .unwrap_or_default();
            bail!(
                "shader {label} does not compile on {}: {}{place}",
                self.info.name,
                one_line_chain(&e)
            );
        }
        self.bindings.add_module(&module, source);
        Ok(module)
    }

    /// `source` (whole files of `shaders/`, as built in) with the files of `--shaders DIR`
    /// in place of the built-in ones; `source` itself without that flag.
    pub fn resolve<'a>(&self, source: &'a str) -> std::borrow::Cow<'a, str> {
        match &self.shader_dir {
            Some(dir) => dir.apply(source),
            None => std::borrow::Cow::Borrowed(source),
        }
    }

    /// Compile every module that holds a file `--shaders` changes (those this adapter can
    /// build), awaiting each one's compilation messages: the first error, with its place in
    /// the user's file. Natively [`Gpu::shader`] reports a module's error at once; a browser
    /// reports it only at the next readback, without a place, so the page runs this before
    /// it builds anything from the user's files. The scratch modules' errors are caught
    /// here, never reaching the device's error handler.
    pub async fn check_changed_shaders(&self) -> Result<()> {
        let Some(dir) = &self.shader_dir else {
            return Ok(());
        };
        let mut seen = std::collections::HashSet::new();
        for m in crate::gpu::modules::all() {
            let can = (!m.f16 || self.features.contains(wgpu::Features::SHADER_F16))
                && (!m.subgroups || self.has_subgroups())
                && m.cooperative.is_none();
            let std::borrow::Cow::Owned(source) = dir.apply(&m.source) else {
                continue;
            };
            if !can || !seen.insert(source.clone()) {
                continue;
            }
            let guard = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
            let module = self
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(&m.label),
                    source: wgpu::ShaderSource::Wgsl(source.as_str().into()),
                });
            let info = module.get_compilation_info().await;
            let scope = guard.pop().await;
            let error = info
                .messages
                .iter()
                .find(|msg| msg.message_type == wgpu::CompilationMessageType::Error);
            let (message, line) = match (error, scope) {
                (Some(msg), _) => (
                    msg.message
                        .lines()
                        .map(str::trim)
                        .find(|l| !l.is_empty())
                        .unwrap_or("")
                        .to_string(),
                    msg.location.map(|l| l.line_number as usize),
                ),
                (None, Some(e)) => (one_line_chain(&e), shader_error_place(&e).map(|p| p.0)),
                (None, None) => continue,
            };
            let place = dir.place(&source, line);
            bail!(
                "shader {} does not compile on {}: {message}{place}",
                m.label,
                self.info.name
            );
        }
        Ok(())
    }

    /// A kernel the program can do without (an optional variant, named `what` as the
    /// flags name it): its pipeline, or `None` where the adapter refuses to build it (a
    /// driver's compiler that cannot take one kernel must not keep the others from
    /// running), with one warning that gives the reason. [`REFUSE_ENV`] refuses it on
    /// purpose, through wgpu's own error path.
    pub fn optional_pipeline(
        &self,
        what: &str,
        label: &str,
        module: &wgpu::ShaderModule,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Option<wgpu::ComputePipeline> {
        let mut constants = constants.to_vec();
        if refused(what) {
            // An override the shader does not declare: wgpu refuses the pipeline.
            constants.push(("lstm_gpu_refused", 0.0));
        }
        let built = self.pipeline_with_constants(label, module, entry, &constants);
        self.optional(what, built)
    }

    /// `built`, or `None` with a warning that kernel `what` is left out (see
    /// [`Gpu::optional_pipeline`]).
    pub fn optional<T>(&self, what: &str, built: Result<T>) -> Option<T> {
        match built {
            Ok(t) => Some(t),
            Err(e) => {
                // Once per kernel and adapter: a process builds its kernels more than once
                // (tuning builds every recurrence's).
                static WARNED: std::sync::Mutex<Vec<(String, String)>> =
                    std::sync::Mutex::new(Vec::new());
                let key = (self.info.name.clone(), what.to_string());
                let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
                if !warned.contains(&key) {
                    warned.push(key);
                    log::warn!("kernel {what} left out: {}", crate::error::one_line(&e));
                }
                None
            }
        }
    }

    /// A compute pipeline with a layout derived from the shader.
    pub fn pipeline(
        &self,
        label: &str,
        module: &wgpu::ShaderModule,
        entry: &str,
    ) -> Result<wgpu::ComputePipeline> {
        self.pipeline_with_constants(label, module, entry, &[])
    }

    /// A compute pipeline with the module's overridable constants set to `constants`.
    pub fn pipeline_with_constants(
        &self,
        label: &str,
        module: &wgpu::ShaderModule,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Result<wgpu::ComputePipeline> {
        let scope = ErrorScope::push(&self.device);
        let p = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: None,
                module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    ..Default::default()
                },
                cache: None,
            });
        if let Some(e) = scope.pop() {
            bail!(
                "pipeline {label} cannot be created on {}: {}",
                self.info.name,
                one_line_chain(&e)
            );
        }
        self.bindings.add_pipeline(&p, module, entry);
        Ok(p)
    }

    /// A bind group of whole buffers at bindings 0, 1, 2, ... of group 0.
    ///
    /// Fails where a browser's WebGPU would refuse it: one buffer at two bindings, one of
    /// them writable storage (see [`crate::gpu::aliasing`]). Native wgpu does not check that, so
    /// this is what lets native tests catch a kernel that would fail only in a tab; a kernel
    /// that reads and writes two windows of one buffer takes it through one binding and two
    /// offsets.
    pub fn bind(
        &self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
    ) -> Result<wgpu::BindGroup> {
        let entries: Vec<(u32, &wgpu::Buffer)> = (0u32..).zip(buffers.iter().copied()).collect();
        self.bind_at(label, pipeline, &entries)
    }

    /// A bind group of whole buffers at the given bindings of group 0, for a kernel whose
    /// bindings are not numbered 0, 1, 2, ..., checked as [`Gpu::bind`] checks.
    pub fn bind_at(
        &self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        entries: &[(u32, &wgpu::Buffer)],
    ) -> Result<wgpu::BindGroup> {
        self.bindings.check(label, pipeline, entries)?;
        let entries: Vec<wgpu::BindGroupEntry> = entries
            .iter()
            .map(|&(binding, b)| wgpu::BindGroupEntry {
                binding,
                resource: b.as_entire_binding(),
            })
            .collect();
        Ok(self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        }))
    }
}

/// A validation error scope around the creation of one shader module or pipeline, so that a
/// failure names it. Natively its result is waited for; a browser cannot wait, so there the
/// error reaches the device's uncaptured-error handler and the next [`Gpu::check`] (every
/// readback makes one) reports it.
struct ErrorScope {
    #[cfg(not(target_arch = "wasm32"))]
    guard: wgpu::ErrorScopeGuard,
}

impl ErrorScope {
    #[cfg(not(target_arch = "wasm32"))]
    fn push(device: &wgpu::Device) -> ErrorScope {
        ErrorScope {
            guard: device.push_error_scope(wgpu::ErrorFilter::Validation),
        }
    }

    #[cfg(target_arch = "wasm32")]
    fn push(_device: &wgpu::Device) -> ErrorScope {
        ErrorScope {}
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn pop(self) -> Option<wgpu::Error> {
        pollster::block_on(self.guard.pop())
    }

    #[cfg(target_arch = "wasm32")]
    fn pop(self) -> Option<wgpu::Error> {
        None
    }
}

/// A wgpu error on one line: the first line that says something of each error of its
/// source chain, joined with ": " ("Validation Error" alone names nothing), and where a
/// shader error points into its module, the place ("at line 20, column 3 of the module").
pub(super) fn one_line_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut at = Some(e);
    while let Some(err) = at {
        let text = err.to_string();
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
            .to_string();
        if !line.is_empty() && !parts.contains(&line) {
            parts.push(line);
        }
        at = err.source();
    }
    let mut out = parts.join(": ");
    if let Some((line, column)) = shader_error_place(e) {
        out.push_str(&format!(" (at line {line}, column {column} of the module)"));
    }
    out
}

/// Where a shader error of naga points in the module it was given: the line and column of
/// its first label (`┌─ wgsl:20:3`), from anywhere in the error's source chain.
fn shader_error_place(e: &(dyn std::error::Error + 'static)) -> Option<(usize, usize)> {
    let mut at = Some(e);
    while let Some(err) = at {
        let text = err.to_string();
        if let Some(i) = text.find("wgsl:") {
            let mut numbers = text[i + 5..]
                .split(|c: char| !c.is_ascii_digit())
                .map(|s| s.parse::<usize>());
            if let (Some(Ok(line)), Some(Ok(column))) = (numbers.next(), numbers.next()) {
                return Some((line, column));
            }
        }
        at = err.source();
    }
    None
}
