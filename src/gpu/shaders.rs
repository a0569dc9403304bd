//! Every WGSL module of the program, in one place, exactly as the launchers compile them:
//! the files of `shaders/`, the shared parts they are concatenated with, and the modules
//! generated per transpose form. [`all`] lists them for the translation test, which
//! builds each one for SPIR-V, MSL, HLSL and GLSL.

use std::borrow::Cow;

/// `shaders/dropout.wgsl`: the dropout mask, forward and backward.
pub const DROPOUT: &str = include_str!("../../shaders/dropout.wgsl");
/// `shaders/embedding.wgsl`: the gather and the gradient rows of a batch's ids.
pub const EMBEDDING: &str = include_str!("../../shaders/embedding.wgsl");
/// `shaders/lstm_cell.wgsl` after the gate functions: the fused cell forward and backward.
pub const LSTM_CELL: &str = concat!(
    include_str!("../../shaders/lstm_gates.wgsl"),
    include_str!("../../shaders/lstm_cell.wgsl")
);
/// `shaders/lstm_step.wgsl` after the gate functions: a layer's time step (the recurrent
/// product and the cell) in one dispatch, forward and backward.
pub const LSTM_STEP: &str = concat!(
    include_str!("../../shaders/lstm_gates.wgsl"),
    include_str!("../../shaders/lstm_step.wgsl")
);
/// `shaders/matmul_params.wgsl`: the uniform block every matmul kernel shares.
pub const MATMUL_PARAMS: &str = include_str!("../../shaders/matmul_params.wgsl");
/// The portable matmul kernels (tiled, register-blocked, skinny) with their uniform block.
pub const MATMUL: &str = concat!(
    include_str!("../../shaders/matmul_params.wgsl"),
    include_str!("../../shaders/matmul.wgsl")
);
/// The strip-quad matmul (`shaders/matmul_quad.wgsl`) in one module with the portable
/// kernels, whose bindings and `store` it shares; [`matmul_quad`] is what the launcher
/// compiles.
pub const MATMUL_QUAD: &str = concat!(
    include_str!("../../shaders/matmul_params.wgsl"),
    include_str!("../../shaders/matmul.wgsl"),
    include_str!("../../shaders/matmul_quad.wgsl")
);

/// [`MATMUL_QUAD`] as the launcher compiles it on this target.
pub fn matmul_quad() -> Cow<'static, str> {
    subgroup_module(Cow::Borrowed(MATMUL_QUAD))
}

/// A module that uses subgroup or quad operations, as this target compiles it. Browsers
/// (Tint) want the directive `enable subgroups;` in front of such a module; naga, which
/// wgpu runs natively, refuses it in wgpu 30 (and needs none), so it is added on wasm32.
fn subgroup_module(source: Cow<'static, str>) -> Cow<'static, str> {
    if cfg!(target_arch = "wasm32") {
        Cow::Owned(format!("enable subgroups;\n{source}"))
    } else {
        source
    }
}

/// The shared part of the subgroup-broadcast matmul; the launcher appends one generated
/// entry point per transpose form ([`matmul_subgroup`]).
pub const MATMUL_SUBGROUP: &str = include_str!("../../shaders/matmul_subgroup.wgsl");
/// `shaders/reduce.wgsl` after the shared workgroup sum: norms, clip, column sums, guards.
pub const REDUCE: &str = concat!(
    include_str!("../../shaders/workgroup_sum.wgsl"),
    include_str!("../../shaders/reduce.wgsl")
);
/// `shaders/sgd.wgsl`: the dense and sparse-row updates.
pub const SGD: &str = include_str!("../../shaders/sgd.wgsl");
/// `shaders/softmax_xent.wgsl` after the shared workgroup sum.
pub const SOFTMAX_XENT: &str = concat!(
    include_str!("../../shaders/workgroup_sum.wgsl"),
    include_str!("../../shaders/softmax_xent.wgsl")
);

/// The shared part of the fused time step's subgroup kernels; the launcher appends one
/// generated entry point ([`lstm_step_subgroup`]).
pub const LSTM_STEP_SUBGROUP: &str = concat!(
    include_str!("../../shaders/lstm_gates.wgsl"),
    include_str!("../../shaders/lstm_step_subgroup.wgsl")
);

/// The fused time step's subgroup module, forward or backward, as the launcher builds it.
pub fn lstm_step_subgroup(backward: bool) -> String {
    let entry = if backward {
        super::lstm_step::subgroup_backward_entry_point()
    } else {
        super::lstm_step::subgroup_forward_entry_point()
    };
    subgroup_module(Cow::Owned(format!("{LSTM_STEP_SUBGROUP}\n{entry}"))).into_owned()
}

/// The subgroup-broadcast matmul module for one transpose form, as the launcher builds it.
pub fn matmul_subgroup(trans_a: bool, trans_b: bool) -> String {
    let source = format!(
        "{MATMUL_PARAMS}\n{MATMUL_SUBGROUP}\n{}",
        super::matmul::subgroup_entry_point(trans_a, trans_b)
    );
    subgroup_module(Cow::Owned(source)).into_owned()
}

/// One module as a launcher compiles it.
pub struct ModuleSource {
    /// The label the launcher gives it.
    pub label: String,
    pub source: Cow<'static, str>,
    /// Whether it uses subgroup operations (compiled only where the adapter has them).
    pub subgroups: bool,
    /// The sets of pipeline-overridable constants the launcher builds it with (one empty
    /// set: the defaults).
    pub constants: Vec<&'static [(&'static str, f64)]>,
}

/// Every module the program can compile, with every generated variant.
pub fn all() -> Vec<ModuleSource> {
    let fixed = |label: &str, source: &'static str| ModuleSource {
        label: label.to_string(),
        source: Cow::Borrowed(source),
        subgroups: false,
        constants: vec![&[]],
    };
    let mut v = vec![
        fixed("dropout", DROPOUT),
        fixed("embedding", EMBEDDING),
        fixed("lstm_cell", LSTM_CELL),
        fixed("lstm_step", LSTM_STEP),
        ModuleSource {
            constants: super::matmul::MatmulVariant::ALL
                .iter()
                .filter_map(|&v| super::matmul::tile_constants(v))
                .collect(),
            ..fixed("matmul", MATMUL)
        },
        fixed("reduce", REDUCE),
        fixed("sgd", SGD),
        fixed("softmax_xent", SOFTMAX_XENT),
    ];
    v.push(ModuleSource {
        subgroups: true,
        ..fixed("matmul_quad", MATMUL_QUAD)
    });
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
            source: Cow::Owned(matmul_subgroup(ta, tb)),
            subgroups: true,
            constants: vec![&[]],
        });
    }
    for (backward, label) in [
        (false, "lstm_step_forward_subgroup"),
        (true, "lstm_step_backward_subgroup"),
    ] {
        v.push(ModuleSource {
            label: label.to_string(),
            source: Cow::Owned(lstm_step_subgroup(backward)),
            subgroups: true,
            constants: vec![&[]],
        });
    }
    v
}
