//! Every WGSL module, exactly as the program composes it (`lstm_gpu::gpu::modules::all`),
//! validated by naga and translated to every backend's language: SPIR-V (Vulkan), MSL
//! (Metal), HLSL (DX12) and GLSL (GL), each entry point on its own where the backend writes
//! one at a time. This needs no adapter: it is the check for backends CI has no GPU for.
//!
//! naga is the version wgpu 30 itself uses (a dev-dependency at 30.0.2), so what passes
//! here is what wgpu would hand to each driver.

use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{
    Capabilities, ModuleInfo, ShaderStages, SubgroupOperationSet, ValidationFlags, Validator,
};

fn validate(
    label: &str,
    module: &naga::Module,
    subgroups: bool,
    f16: bool,
    cooperative: bool,
) -> ModuleInfo {
    let mut caps = Capabilities::empty();
    if cooperative {
        caps |= Capabilities::COOPERATIVE_MATRIX;
    }
    if subgroups {
        caps |= Capabilities::SUBGROUP;
    }
    if f16 {
        caps |= Capabilities::SHADER_FLOAT16 | Capabilities::SHADER_FLOAT16_IN_FLOAT32;
    }
    let mut v = Validator::new(ValidationFlags::all(), caps);
    if subgroups {
        v.subgroup_stages(ShaderStages::COMPUTE)
            .subgroup_operations(SubgroupOperationSet::all());
    }
    v.validate(module)
        .unwrap_or_else(|e| panic!("module {label} does not validate: {e:?}"))
}

fn entry_points(module: &naga::Module) -> Vec<String> {
    module
        .entry_points
        .iter()
        .map(|ep| {
            assert_eq!(ep.stage, naga::ShaderStage::Compute);
            ep.name.clone()
        })
        .collect()
}

#[test]
fn every_module_translates_for_every_backend() {
    let modules = lstm_gpu::gpu::modules::all();
    assert!(
        modules.len() >= 11,
        "the registry lists {} modules",
        modules.len()
    );
    let mut translated = 0;
    for m in &modules {
        let label = &m.label;
        let parsed = naga::front::wgsl::parse_str(&m.source).unwrap_or_else(|e| {
            panic!(
                "module {label} does not parse: {}",
                e.emit_to_string(&m.source)
            )
        });
        let parsed_info = validate(label, &parsed, m.subgroups, m.f16, m.cooperative.is_some());
        for set in &m.constants {
            // The module as a pipeline with these constants sees it: overrides replaced.
            let mut constants = naga::back::PipelineConstants::default();
            for &(name, value) in set.iter() {
                constants.insert(name.to_string(), value);
            }
            let (module, info) = naga::back::pipeline_constants::process_overrides(
                &parsed,
                &parsed_info,
                None,
                &constants,
            )
            .unwrap_or_else(|e| panic!("module {label} with {set:?}: {e}"));
            let (module, info) = (module.into_owned(), info.into_owned());
            let label = &format!("{label} {set:?}");
            let entries = entry_points(&module);
            assert!(!entries.is_empty(), "module {label} has no entry point");

            // SPIR-V: subgroup operations need SPIR-V 1.3; cooperative matrices (with the
            // Vulkan memory model) 1.6, as wgpu's Vulkan backend writes them.
            let spv_options = spv::Options {
                lang_version: match (m.cooperative, m.subgroups) {
                    (Some(_), _) => (1, 6),
                    (None, true) => (1, 3),
                    (None, false) => (1, 0),
                },
                ..Default::default()
            };
            for ep in &entries {
                let pipeline = spv::PipelineOptions {
                    shader_stage: naga::ShaderStage::Compute,
                    entry_point: ep.clone(),
                };
                let words = spv::write_vec(&module, &info, &spv_options, Some(&pipeline))
                    .unwrap_or_else(|e| panic!("{label}::{ep}: SPIR-V: {e}"));
                assert!(
                    words.len() > 5 && words[0] == 0x0723_0203,
                    "{label}::{ep}: not SPIR-V"
                );
            }

            // Cooperative matrices: Vulkan (SPIR-V, above) at every tile; Metal's simdgroup
            // matrices are 8x8 only (MSL 2.3); DX12 and GL have none through wgpu.
            if let Some(tile) = m.cooperative {
                if tile == 8 {
                    let msl_options = msl::Options {
                        lang_version: (2, 3),
                        ..Default::default()
                    };
                    let (text, _) = msl::write_string(
                        &module,
                        &info,
                        &msl_options,
                        &msl::PipelineOptions::default(),
                    )
                    .unwrap_or_else(|e| panic!("{label}: MSL: {e}"));
                    assert!(
                        text.contains("simdgroup_multiply_accumulate"),
                        "{label}: no simdgroup matrices in the MSL"
                    );
                }
                translated += entries.len();
                continue;
            }

            // MSL: subgroup (SIMD-group) functions need MSL 2.1.
            let msl_options = msl::Options {
                lang_version: (2, 1),
                ..Default::default()
            };
            let (text, _) = msl::write_string(
                &module,
                &info,
                &msl_options,
                &msl::PipelineOptions::default(),
            )
            .unwrap_or_else(|e| panic!("{label}: MSL: {e}"));
            for ep in &entries {
                assert!(
                    text.contains(&format!("kernel void {ep}")),
                    "{label}::{ep}: missing from MSL"
                );
            }

            // HLSL: wave intrinsics need shader model 6.0, which DX12 through wgpu uses;
            // native 16-bit types 6.2.
            let hlsl_options = hlsl::Options {
                shader_model: if m.f16 {
                    hlsl::ShaderModel::V6_2
                } else {
                    hlsl::ShaderModel::V6_0
                },
                ..Default::default()
            };
            for ep in &entries {
                let mut text = String::new();
                let pipeline = hlsl::PipelineOptions {
                    entry_point: Some((naga::ShaderStage::Compute, ep.clone())),
                };
                hlsl::Writer::new(&mut text, &hlsl_options, &pipeline)
                    .write(&module, &info, None)
                    .unwrap_or_else(|e| panic!("{label}::{ep}: HLSL: {e}"));
                assert!(
                    text.contains("[numthreads("),
                    "{label}::{ep}: no HLSL kernel"
                );
            }

            // GLSL: one entry point per shader. wgpu's GL backend offers no subgroups, so the
            // program never builds the subgroup modules there; they are still written at GLSL
            // 4.30 (with the KHR subgroup extension), so that a GL backend that gains them works.
            let glsl_options = glsl::Options {
                version: glsl::Version::Desktop(430),
                ..Default::default()
            };
            // wgpu's GL backend never offers SHADER_F16: the f16 modules are not built there.
            if m.f16 {
                translated += entries.len();
                continue;
            }
            for ep in &entries {
                let mut text = String::new();
                let pipeline = glsl::PipelineOptions {
                    shader_stage: naga::ShaderStage::Compute,
                    entry_point: ep.clone(),
                    multiview: None,
                };
                glsl::Writer::new(
                    &mut text,
                    &module,
                    &info,
                    &glsl_options,
                    &pipeline,
                    naga::proc::BoundsCheckPolicies::default(),
                )
                .and_then(|mut w| w.write())
                .unwrap_or_else(|e| panic!("{label}::{ep}: GLSL: {e}"));
                assert!(
                    text.contains("layout(local_size_x"),
                    "{label}::{ep}: no GLSL compute shader"
                );
                // GLES 3.1, what WebGL-less GL and many Linux drivers offer, for the portable ones.
                if !m.subgroups {
                    let es = glsl::Options {
                        version: glsl::Version::Embedded {
                            version: 310,
                            is_webgl: false,
                        },
                        ..Default::default()
                    };
                    let mut text = String::new();
                    glsl::Writer::new(
                        &mut text,
                        &module,
                        &info,
                        &es,
                        &pipeline,
                        naga::proc::BoundsCheckPolicies::default(),
                    )
                    .and_then(|mut w| w.write())
                    .unwrap_or_else(|e| panic!("{label}::{ep}: GLSL ES 3.10: {e}"));
                }
                translated += 1;
            }
        }
    }
    // Every module of the registry was translated entry point by entry point.
    assert!(
        translated >= 25,
        "only {translated} entry points translated"
    );
}

#[test]
fn a_broken_module_is_named() {
    // The harness itself must be able to fail: a module with a type error is refused.
    let src = "@compute @workgroup_size(1) fn bad() { let x: u32 = 1.5; }";
    let r = naga::front::wgsl::parse_str(src);
    assert!(r.is_err(), "a type error parsed");
}
