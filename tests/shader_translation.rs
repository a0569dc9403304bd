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

/// One module as one pipeline sees it: parsed, validated, its override constants replaced.
struct Pipeline {
    /// The module's label and constant set.
    label: String,
    module: naga::Module,
    info: ModuleInfo,
    entries: Vec<String>,
    subgroups: bool,
    f16: bool,
    cooperative: Option<u32>,
}

/// Every module of the registry with every constant set its launcher builds it with.
fn pipelines() -> Vec<Pipeline> {
    let modules = lstm_gpu::gpu::modules::all();
    assert!(
        modules.len() >= 11,
        "the registry lists {} modules",
        modules.len()
    );
    let mut out = Vec::new();
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
            let label = format!("{label} {set:?}");
            let entries = entry_points(&module);
            assert!(!entries.is_empty(), "module {label} has no entry point");
            out.push(Pipeline {
                label,
                module,
                info,
                entries,
                subgroups: m.subgroups,
                f16: m.f16,
                cooperative: m.cooperative,
            });
        }
    }
    out
}

#[test]
fn every_module_translates_for_every_backend() {
    let mut translated = 0;
    for p in pipelines() {
        let (label, module, info, entries) = (&p.label, &p.module, &p.info, &p.entries);
        // SPIR-V: subgroup operations need SPIR-V 1.3; cooperative matrices (with the
        // Vulkan memory model) 1.6, as wgpu's Vulkan backend writes them.
        let spv_options = spv::Options {
            lang_version: match (p.cooperative, p.subgroups) {
                (Some(_), _) => (1, 6),
                (None, true) => (1, 3),
                (None, false) => (1, 0),
            },
            ..Default::default()
        };
        for ep in entries {
            let pipeline = spv::PipelineOptions {
                shader_stage: naga::ShaderStage::Compute,
                entry_point: ep.clone(),
            };
            let words = spv::write_vec(module, info, &spv_options, Some(&pipeline))
                .unwrap_or_else(|e| panic!("{label}::{ep}: SPIR-V: {e}"));
            assert!(
                words.len() > 5 && words[0] == 0x0723_0203,
                "{label}::{ep}: not SPIR-V"
            );
        }

        // Cooperative matrices: Vulkan (SPIR-V, above) at every tile; Metal's simdgroup
        // matrices are 8x8 only (MSL 2.3); DX12 and GL have none through wgpu.
        if let Some(tile) = p.cooperative {
            if tile == 8 {
                let msl_options = msl::Options {
                    lang_version: (2, 3),
                    ..Default::default()
                };
                let (text, _) =
                    msl::write_string(module, info, &msl_options, &msl::PipelineOptions::default())
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
        let (text, _) =
            msl::write_string(module, info, &msl_options, &msl::PipelineOptions::default())
                .unwrap_or_else(|e| panic!("{label}: MSL: {e}"));
        for ep in entries {
            assert!(
                text.contains(&format!("kernel void {ep}")),
                "{label}::{ep}: missing from MSL"
            );
        }

        // HLSL: wave intrinsics need shader model 6.0, which DX12 through wgpu uses;
        // native 16-bit types 6.2.
        let hlsl_options = hlsl::Options {
            shader_model: if p.f16 {
                hlsl::ShaderModel::V6_2
            } else {
                hlsl::ShaderModel::V6_0
            },
            ..Default::default()
        };
        for ep in entries {
            let mut text = String::new();
            let pipeline = hlsl::PipelineOptions {
                entry_point: Some((naga::ShaderStage::Compute, ep.clone())),
            };
            hlsl::Writer::new(&mut text, &hlsl_options, &pipeline)
                .write(module, info, None)
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
        if p.f16 {
            translated += entries.len();
            continue;
        }
        for ep in entries {
            let mut text = String::new();
            let pipeline = glsl::PipelineOptions {
                shader_stage: naga::ShaderStage::Compute,
                entry_point: ep.clone(),
                multiview: None,
            };
            glsl::Writer::new(
                &mut text,
                module,
                info,
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
            if !p.subgroups {
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
                    module,
                    info,
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

/// The Khronos validator: `LSTM_GPU_SPIRV_VAL`, else the one `scripts/spirv-val.sh` builds
/// (`target/spirv-tools/spirv-val`), else `spirv-val` on the path.
fn spirv_val() -> std::path::PathBuf {
    let built =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/spirv-tools/spirv-val");
    let path = match std::env::var_os("LSTM_GPU_SPIRV_VAL") {
        Some(p) => p.into(),
        None if built.exists() => built,
        None => "spirv-val".into(),
    };
    match std::process::Command::new(&path).arg("--version").output() {
        Ok(out) if out.status.success() => path,
        _ => panic!(
            "{} does not run: scripts/spirv-val.sh builds one (or install SPIRV-Tools 2023.4 \
             or later, or name a spirv-val in LSTM_GPU_SPIRV_VAL)",
            path.display()
        ),
    }
}

/// SPIR-V as wgpu's Vulkan backend writes it on a Vulkan 1.3 device (lavapipe's, the H200's:
/// SPIR-V 1.6), with wgpu's runtime checks (`checked`) or without them, as
/// `--unchecked-shaders` builds the modules (`create_shader_module_trusted`).
fn spirv_as_wgpu_writes_it(p: &Pipeline, ep: &str, checked: bool) -> Vec<u32> {
    use naga::proc::{BoundsCheckPolicies, BoundsCheckPolicy};
    let policy = if checked {
        BoundsCheckPolicy::Restrict
    } else {
        BoundsCheckPolicy::Unchecked
    };
    let options = spv::Options {
        lang_version: (1, 6),
        flags: spv::WriterFlags::LABEL_VARYINGS | spv::WriterFlags::FORCE_POINT_SIZE,
        bounds_check_policies: BoundsCheckPolicies {
            index: policy,
            buffer: policy,
            image_load: policy,
            binding_array: BoundsCheckPolicy::Unchecked,
        },
        zero_initialize_workgroup_memory: spv::ZeroInitializeWorkgroupMemoryMode::Native,
        force_loop_bounding: checked,
        ..Default::default()
    };
    let pipeline = spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: ep.to_string(),
    };
    spv::write_vec(&p.module, &p.info, &options, Some(&pipeline))
        .unwrap_or_else(|e| panic!("{}::{ep}: SPIR-V: {e}", p.label))
}

/// naga validates the WGSL it reads, not the SPIR-V it writes: the Khronos validator checks
/// what would reach a Vulkan driver, entry point by entry point, with and without wgpu's
/// bounds checks, under Vulkan 1.3's rules. The f32 cooperative-matrix kernel (Metal's) is one no
/// adapter here can run (Mesa 26's lavapipe lists f16 tiles only; Debian 12's, none): this is
/// its only check before a GPU runs it.
#[test]
fn every_module_is_valid_spirv_for_vulkan() {
    let val = spirv_val();
    let dir = std::env::temp_dir().join(format!("lstm-gpu-spirv-val-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for p in pipelines() {
        for ep in &p.entries {
            for bounds in [true, false] {
                let words = spirv_as_wgpu_writes_it(&p, ep, bounds);
                let file = dir.join(format!("{checked}.spv"));
                let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                std::fs::write(&file, bytes).unwrap();
                let out = std::process::Command::new(&val)
                    .args(["--target-env", "vulkan1.3"])
                    .arg(&file)
                    .output()
                    .unwrap();
                if !out.status.success() {
                    failures.push(format!(
                        "{}::{ep} ({}): {}{}",
                        p.label,
                        if bounds { "checked" } else { "unchecked" },
                        String::from_utf8_lossy(&out.stdout).trim(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
                checked += 1;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    // SPIRV-Tools before 2023.4 (Debian 12's is 2023.1) do not know SPV_KHR_cooperative_matrix.
    assert!(
        !failures
            .iter()
            .any(|f| f.contains("Invalid capability operand: 6022")),
        "{} is too old for cooperative matrices: scripts/spirv-val.sh builds a newer one\n{}",
        val.display(),
        failures.join("\n")
    );
    assert!(
        failures.is_empty(),
        "{} of {checked} SPIR-V modules are invalid:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 50, "only {checked} modules validated");
}

#[test]
fn the_validator_refuses_what_a_driver_would() {
    // The harness must be able to fail on SPIR-V that naga would never flag: an f16 module
    // without its `Float16` capability (a driver would refuse it) is refused.
    let val = spirv_val();
    let p = pipelines()
        .into_iter()
        .find(|p| p.label.starts_with("cast_f16"))
        .expect("the registry has cast_f16");
    let words = spirv_as_wgpu_writes_it(&p, &p.entries[0], true);
    // Instructions start after the 5-word header; each one's first word is
    // (word count << 16) | opcode. OpCapability is opcode 17, Float16 capability 9.
    let mut kept = words[..5].to_vec();
    let mut i = 5;
    let mut removed = 0;
    while i < words.len() {
        let count = (words[i] >> 16) as usize;
        assert!(count > 0, "malformed SPIR-V at word {i}");
        if words[i] & 0xffff == 17 && words[i + 1] == 9 {
            removed += 1;
        } else {
            kept.extend_from_slice(&words[i..i + count]);
        }
        i += count;
    }
    assert_eq!(removed, 1, "cast_f16 declares Float16 once");
    let file = std::env::temp_dir().join(format!("lstm-gpu-no-f16-{}.spv", std::process::id()));
    let bytes: Vec<u8> = kept.iter().flat_map(|w| w.to_le_bytes()).collect();
    std::fs::write(&file, bytes).unwrap();
    let out = std::process::Command::new(&val)
        .args(["--target-env", "vulkan1.3"])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(
        !out.status.success(),
        "spirv-val accepted an f16 module without the Float16 capability"
    );
}
