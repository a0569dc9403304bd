//! WebGPU's rule on aliased bindings, checked natively.
//!
//! A browser (Dawn, and the WebGPU specification) refuses a dispatch in which one buffer is
//! bound twice with overlapping ranges and one of the two bindings is writable storage
//! (`var<storage, read_write>`); two read-only bindings of one buffer are fine. Native wgpu
//! does not check this, so a kernel that breaks the rule passes every native test and
//! fails only in a tab. [`Bindings`] reads which bindings each entry point writes from its
//! WGSL (with naga, the compiler wgpu itself uses) and [`crate::gpu::Gpu::bind`] applies the
//! rule to every bind group it makes. The kernels bind whole buffers, so any two bindings of
//! one buffer overlap. In a browser the check is the browser's own.

use anyhow::Result;

#[cfg(not(target_arch = "wasm32"))]
use std::collections::HashMap;
#[cfg(not(target_arch = "wasm32"))]
use std::sync::Mutex;

/// The writable storage bindings (group 0) of each compute pipeline made through
/// [`crate::gpu::Gpu::pipeline`].
#[derive(Default)]
pub struct Bindings {
    #[cfg(not(target_arch = "wasm32"))]
    modules: Mutex<HashMap<wgpu::ShaderModule, HashMap<String, Vec<u32>>>>,
    #[cfg(not(target_arch = "wasm32"))]
    pipelines: Mutex<HashMap<wgpu::ComputePipeline, Vec<u32>>>,
}

/// Per entry point of `source`, the group-0 bindings it uses that are writable storage;
/// `None` when naga does not read the source (wgpu then refuses it too).
#[cfg(not(target_arch = "wasm32"))]
pub fn writable_bindings(source: &str) -> Option<HashMap<String, Vec<u32>>> {
    let module = naga::front::wgsl::parse_str(source).ok()?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .ok()?;
    let mut out = HashMap::new();
    for (i, ep) in module.entry_points.iter().enumerate() {
        let uses = info.get_entry_point(i);
        let mut writable: Vec<u32> = module
            .global_variables
            .iter()
            .filter(|&(h, _)| !uses[h].is_empty())
            .filter_map(|(_, var)| match (&var.binding, var.space) {
                (Some(b), naga::AddressSpace::Storage { access })
                    if b.group == 0 && access.contains(naga::StorageAccess::STORE) =>
                {
                    Some(b.binding)
                }
                _ => None,
            })
            .collect();
        writable.sort_unstable();
        out.insert(ep.name.clone(), writable);
    }
    Some(out)
}

impl Bindings {
    /// Remember what the entry points of `module` (compiled from `source`) write.
    pub fn add_module(&self, module: &wgpu::ShaderModule, source: &str) {
        #[cfg(not(target_arch = "wasm32"))]
        if let (Some(w), Ok(mut m)) = (writable_bindings(source), self.modules.lock()) {
            m.insert(module.clone(), w);
        }
        #[cfg(target_arch = "wasm32")]
        let _ = (module, source);
    }

    /// Remember what `pipeline` (entry point `entry` of `module`) writes.
    pub fn add_pipeline(
        &self,
        pipeline: &wgpu::ComputePipeline,
        module: &wgpu::ShaderModule,
        entry: &str,
    ) {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let writable = self
                .modules
                .lock()
                .ok()
                .and_then(|m| m.get(module).and_then(|e| e.get(entry)).cloned());
            if let (Some(w), Ok(mut p)) = (writable, self.pipelines.lock()) {
                p.insert(pipeline.clone(), w);
            }
        }
        #[cfg(target_arch = "wasm32")]
        let _ = (pipeline, module, entry);
    }

    /// Fail where a browser would refuse `entries` for `pipeline`: one buffer at two
    /// bindings, one of them writable. A pipeline this does not know counts as writing
    /// every binding.
    pub fn check(
        &self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        entries: &[(u32, &wgpu::Buffer)],
    ) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let writable = self
                .pipelines
                .lock()
                .ok()
                .and_then(|p| p.get(pipeline).cloned());
            let writes = |b: u32| writable.as_ref().is_none_or(|w| w.contains(&b));
            for (i, &(at, buffer)) in entries.iter().enumerate() {
                for &(first, other) in &entries[..i] {
                    if other == buffer && (writes(first) || writes(at)) {
                        anyhow::bail!(
                            "{label}: one buffer at bindings {first} and {at}, one of them \
                             writable: WebGPU refuses such aliasing (bind it once and read \
                             both windows through one binding)"
                        );
                    }
                }
            }
        }
        #[cfg(target_arch = "wasm32")]
        let _ = (label, pipeline, entries);
        Ok(())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::writable_bindings;

    #[test]
    fn reads_what_each_entry_point_writes() {
        let src = "
            @group(0) @binding(0) var<storage, read> a: array<f32>;
            @group(0) @binding(1) var<storage, read_write> b: array<f32>;
            @group(0) @binding(1) var<storage, read> b_read: array<f32>;
            @group(0) @binding(2) var<storage, read_write> unused_here: array<f32>;
            @compute @workgroup_size(1) fn writes_b() { b[0] = a[0]; }
            @compute @workgroup_size(1) fn reads_only() { unused_here[0] = a[0] + b_read[0]; }
            @compute @workgroup_size(1) fn declared_rw_only_read() { let x = b[0] + a[1]; }
        ";
        let w = writable_bindings(src).unwrap();
        assert_eq!(w["writes_b"], [1]);
        assert_eq!(w["reads_only"], [2]);
        assert_eq!(
            w["declared_rw_only_read"],
            [1],
            "read_write counts as writable, as in WebGPU"
        );
        assert!(writable_bindings("fn broken(").is_none());
    }
}
