//! Every WGSL module the program can compile, exactly as the launchers compose it: the
//! fixed sources of [`super::shaders`], the tile constants of the tiled matmul, and the
//! modules the launchers generate per transpose form and direction. The translation test
//! (tests/shader_translation.rs) builds each one for SPIR-V, MSL, HLSL and GLSL.

use std::borrow::Cow;

use super::shaders::*;

/// One module as a launcher compiles it.
pub struct ModuleSource {
    /// The label the launcher gives it.
    pub label: String,
    pub source: Cow<'static, str>,
    /// Whether it uses subgroup operations (compiled only where the adapter has them).
    pub subgroups: bool,
    /// Whether it uses f16 (`enable f16;`, compiled only where the adapter has
    /// `SHADER_F16`, which wgpu's GL backend never offers).
    pub f16: bool,
    /// The sets of pipeline-overridable constants the launcher builds it with (one empty
    /// set: the defaults).
    pub constants: Vec<&'static [(&'static str, f64)]>,
    /// The tile size of a module using cooperative matrices (built only where the adapter
    /// lists that tile for f16 x f16 -> f32: Vulkan GPUs 16, Metal 8; never on DX12, GL or
    /// in a browser).
    pub cooperative: Option<u32>,
}

/// Every module the program can compile, with every generated variant.
pub fn all() -> Vec<ModuleSource> {
    let fixed = |label: &str, source: &'static str| ModuleSource {
        label: label.to_string(),
        source: Cow::Borrowed(source),
        subgroups: false,
        f16: false,
        constants: vec![&[]],
        cooperative: None,
    };
    let mut v = vec![
        fixed("dropout", DROPOUT),
        fixed("embedding", EMBEDDING),
        fixed("lstm_cell", LSTM_CELL),
        fixed("lstm_step", LSTM_STEP),
        fixed("loss_scale", LOSS_SCALE),
        ModuleSource {
            constants: super::matmul::MatmulVariant::ALL
                .iter()
                .filter_map(|&v| super::matmul::tile_constants(v))
                .collect(),
            ..fixed("matmul", MATMUL)
        },
        ModuleSource {
            constants: super::matmul::MatmulVariant::ALL
                .iter()
                .filter_map(|&v| super::matmul::block_constants(v))
                .collect(),
            ..fixed("matmul_block", MATMUL_BLOCK)
        },
        fixed("matmul_panel", MATMUL_PANEL),
        fixed("matmul_strip_group", MATMUL_STRIP_GROUP),
        fixed("matmul_panel_group", MATMUL_PANEL_GROUP),
        fixed("reduce", REDUCE),
        fixed("sgd", SGD),
        fixed("softmax_xent", SOFTMAX_XENT),
    ];
    // As this target compiles them (a browser's with its directives).
    v.push(ModuleSource {
        subgroups: true,
        source: matmul_quad(),
        ..fixed("matmul_quad", "")
    });
    v.push(ModuleSource {
        subgroups: true,
        source: matmul_quad_group(),
        ..fixed("matmul_quad_group", "")
    });
    for (label, source) in [
        ("matmul_f16", MATMUL_F16),
        ("matmul_panel_f16", MATMUL_PANEL_F16),
        ("matmul_f16_group", MATMUL_F16_GROUP),
        ("matmul_panel_f16_group", MATMUL_PANEL_F16_GROUP),
        ("cast_f16", CAST_F16),
        ("lstm_cell_f16", LSTM_CELL_F16),
    ] {
        v.push(ModuleSource {
            f16: true,
            ..fixed(label, source)
        });
    }
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        v.push(ModuleSource {
            label: super::matmul::MatmulVariant::SubgroupBroadcast
                .entry_point(crate::reference::MatmulShape {
                    m: 1,
                    k: 1,
                    n: 1,
                    trans_a: ta,
                    trans_b: tb,
                })
                .to_string(),
            source: Cow::Owned(super::matmul::subgroup_source(ta, tb)),
            subgroups: true,
            f16: false,
            constants: vec![&[]],
            cooperative: None,
        });
    }
    for (backward, label) in [
        (false, "lstm_step_forward_subgroup"),
        (true, "lstm_step_backward_subgroup"),
    ] {
        v.push(ModuleSource {
            label: label.to_string(),
            source: Cow::Owned(super::lstm_step::subgroup_source(backward)),
            subgroups: true,
            f16: false,
            constants: vec![&[]],
            cooperative: None,
        });
    }
    // The cooperative-matrix matmul at the tiles wgpu can name, for 32-invocation
    // subgroups (NVIDIA, Apple; the launcher makes one per adapter subgroup size).
    for tile in super::coop::TILES {
        v.push(ModuleSource {
            label: format!("matmul_coop_{tile}x{tile}"),
            source: Cow::Owned(super::coop::coop_source(
                super::shaders::MATMUL_COOP,
                tile,
                32,
                wgpu::CooperativeScalarType::F16,
            )),
            subgroups: true,
            f16: true,
            constants: vec![&[]],
            cooperative: Some(tile),
        });
    }
    // Its f32-operand form, the f32 matmul variant `coop-f32-8x8` (Metal).
    let tile = super::coop::F32_TILE;
    v.push(ModuleSource {
        label: format!("matmul_coop_f32_{tile}x{tile}"),
        source: Cow::Owned(super::coop::coop_source(
            super::shaders::MATMUL_COOP,
            tile,
            32,
            wgpu::CooperativeScalarType::F32,
        )),
        subgroups: true,
        f16: false,
        constants: vec![&[]],
        cooperative: Some(tile),
    });
    v
}
