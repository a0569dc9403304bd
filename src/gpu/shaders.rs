//! The WGSL sources of the program: the files of `shaders/` and the shared parts they are
//! concatenated with. The launchers add the entry points they generate (per transpose form,
//! per direction); [`super::modules::all`] lists every module exactly as compiled, for the
//! translation test, which builds each one for SPIR-V, MSL, HLSL and GLSL.
//!
//! They are `static`s, not `const`s: a `const` is copied into every codegen unit that uses
//! it, and the composed modules repeat the shared files, so as `const`s the page's wasm held
//! up to seven copies of some (2.7 MB; 1.9 MB as `static`s, measured).

use std::borrow::Cow;

/// `shaders/dropout.wgsl`: the dropout mask, forward and backward.
pub static DROPOUT: &str = include_str!("../../shaders/dropout.wgsl");
/// `shaders/embedding.wgsl`: the gather and the gradient rows of a batch's ids.
pub static EMBEDDING: &str = include_str!("../../shaders/embedding.wgsl");
/// `shaders/lstm_cell.wgsl` after the gate functions: the fused cell forward and backward.
pub static LSTM_CELL: &str = concat!(
    include_str!("../../shaders/lstm_gates.wgsl"),
    include_str!("../../shaders/lstm_cell.wgsl")
);
/// `shaders/lstm_step.wgsl` after the gate functions: a layer's time step (the recurrent
/// product and the cell) in one dispatch, forward and backward.
pub static LSTM_STEP: &str = concat!(
    include_str!("../../shaders/lstm_gates.wgsl"),
    include_str!("../../shaders/lstm_step.wgsl")
);
/// `shaders/matmul_params.wgsl`: the uniform block every matmul kernel shares.
pub static MATMUL_PARAMS: &str = include_str!("../../shaders/matmul_params.wgsl");
/// `shaders/matmul_launch.wgsl`: a launch of one product (its `params` binding); every
/// matmul module but the grouped ones has it after [`MATMUL_PARAMS`].
pub static MATMUL_LAUNCH: &str = include_str!("../../shaders/matmul_launch.wgsl");

/// The f32 matmul's uniform block, one-product launch and shared bindings, in front of
/// each kernel family.
macro_rules! matmul_module {
    ($($file:literal),*) => {
        concat!(
            include_str!("../../shaders/matmul_params.wgsl"),
            include_str!("../../shaders/matmul_launch.wgsl"),
            include_str!("../../shaders/matmul_operands.wgsl"),
            include_str!("../../shaders/matmul_store.wgsl"),
            $(include_str!(concat!("../../shaders/", $file))),*
        )
    };
}

/// [`matmul_module`] with the launch prelude of several products
/// (`shaders/matmul_launch_group.wgsl`): the kernels without barriers, for
/// [`crate::gpu::matmul::Matmul::prepare_group_deferring_sum`].
macro_rules! matmul_group_module {
    ($($file:literal),*) => {
        concat!(
            include_str!("../../shaders/matmul_params.wgsl"),
            include_str!("../../shaders/matmul_launch_group.wgsl"),
            include_str!("../../shaders/matmul_operands.wgsl"),
            include_str!("../../shaders/matmul_store.wgsl"),
            $(include_str!(concat!("../../shaders/", $file))),*
        )
    };
}

/// The portable matmul kernels (tiled, register-blocked, skinny, strip, the split-K sum).
pub static MATMUL: &str = matmul_module!("matmul.wgsl", "matmul_strip.wgsl");
/// The strip-quad matmul (`shaders/matmul_quad.wgsl`) in one module with the portable
/// kernels, whose strip helpers it shares; [`matmul_quad`] is what the launcher compiles.
pub static MATMUL_QUAD: &str =
    matmul_module!("matmul.wgsl", "matmul_strip.wgsl", "matmul_quad.wgsl");

/// The block matmul (`shaders/matmul_block.wgsl`, the GPU-class kernel) in one module with
/// the portable kernels.
pub static MATMUL_BLOCK: &str = matmul_module!(
    "matmul.wgsl",
    "matmul_strip.wgsl",
    "matmul_vec4.wgsl",
    "matmul_block.wgsl"
);

/// The panel matmul (`shaders/matmul_panel.wgsl`, for products of few rows and a wide C)
/// in one module with the portable kernels, as [`MATMUL_BLOCK`].
pub static MATMUL_PANEL: &str = matmul_module!(
    "matmul.wgsl",
    "matmul_strip.wgsl",
    "matmul_vec4.wgsl",
    "matmul_panel_load.wgsl",
    "matmul_panel.wgsl"
);

/// Strip (and strip-split) serving several products in one launch.
pub static MATMUL_STRIP_GROUP: &str = matmul_group_module!("matmul_strip.wgsl");
/// Strip-quad serving several products in one launch; [`matmul_quad_group`] is what the
/// launcher compiles.
pub static MATMUL_QUAD_GROUP: &str = matmul_group_module!("matmul_strip.wgsl", "matmul_quad.wgsl");
/// Panel serving several products in one launch.
pub static MATMUL_PANEL_GROUP: &str = matmul_group_module!(
    "matmul_vec4.wgsl",
    "matmul_panel_load.wgsl",
    "matmul_panel.wgsl"
);

/// [`MATMUL_QUAD_GROUP`] as the launcher compiles it on this target. Its quad operations sit
/// in control flow that depends on the product's parameters, which the launch copies into
/// a private variable (shaders/matmul_launch_group.wgsl): the same for every invocation of a
/// workgroup (they come from its `workgroup_id.z`), so uniform, but not to WGSL's
/// uniformity analysis, which sees a private variable as varying. Browsers (Tint) enforce
/// that analysis for subgroup operations and refuse the module without
/// `diagnostic(off, subgroup_uniformity)`; naga neither enforces it nor knows the rule (it
/// would warn of an unknown one), so the directive is added on wasm32 only.
pub fn matmul_quad_group() -> Cow<'static, str> {
    let source = subgroup_module(Cow::Borrowed(MATMUL_QUAD_GROUP));
    if cfg!(target_arch = "wasm32") {
        Cow::Owned(source.replacen(
            "enable subgroups;\n",
            "enable subgroups;\ndiagnostic(off, subgroup_uniformity);\n",
            1,
        ))
    } else {
        source
    }
}

/// [`MATMUL_QUAD`] as the launcher compiles it on this target.
pub fn matmul_quad() -> Cow<'static, str> {
    subgroup_module(Cow::Borrowed(MATMUL_QUAD))
}

/// A module that uses subgroup or quad operations, as this target compiles it. Browsers
/// (Tint) want the directive `enable subgroups;` in front of such a module; naga, which
/// wgpu runs natively, refuses it in wgpu 30 (and needs none), so it is added on wasm32.
pub(crate) fn subgroup_module(source: Cow<'static, str>) -> Cow<'static, str> {
    if cfg!(target_arch = "wasm32") {
        Cow::Owned(format!("enable subgroups;\n{source}"))
    } else {
        source
    }
}

/// The shared part of the subgroup-broadcast matmul; the launcher appends one generated
/// entry point per transpose form (`matmul::subgroup_source`).
pub static MATMUL_SUBGROUP: &str = include_str!("../../shaders/matmul_subgroup.wgsl");
/// `shaders/reduce.wgsl` after the shared workgroup sum: norms, clip, column sums, guards.
pub static REDUCE: &str = concat!(
    include_str!("../../shaders/workgroup_sum.wgsl"),
    include_str!("../../shaders/reduce.wgsl")
);
/// `shaders/sgd.wgsl`: the dense and sparse-row updates.
pub static SGD: &str = include_str!("../../shaders/sgd.wgsl");
/// `shaders/softmax_xent.wgsl` after the shared workgroup sum.
pub static SOFTMAX_XENT: &str = concat!(
    include_str!("../../shaders/workgroup_sum.wgsl"),
    include_str!("../../shaders/softmax_xent.wgsl")
);

/// The shared part of the fused time step's subgroup kernels; the launcher appends one
/// generated entry point (`lstm_step::subgroup_source`).
pub static LSTM_STEP_SUBGROUP: &str = concat!(
    include_str!("../../shaders/lstm_gates.wgsl"),
    include_str!("../../shaders/lstm_step_subgroup.wgsl")
);

/// An f16-operand matmul module (needs `Features::SHADER_F16`): `enable f16;`, the matmul
/// uniform block, the launch prelude `$launch` (one product, or several), the f16 operand
/// bindings and the shared output bindings, then the kernel's files.
macro_rules! matmul_f16_module {
    ($launch:literal, $($file:literal),*) => {
        concat!(
            "enable f16;\n",
            include_str!("../../shaders/matmul_params.wgsl"),
            include_str!(concat!("../../shaders/", $launch)),
            include_str!("../../shaders/matmul_operands_f16.wgsl"),
            include_str!("../../shaders/matmul_store.wgsl"),
            $(include_str!(concat!("../../shaders/", $file))),*
        )
    };
}

/// `shaders/matmul_f16.wgsl`: the scalar f16-operand matmul.
pub static MATMUL_F16: &str = matmul_f16_module!("matmul_launch.wgsl", "matmul_f16.wgsl");
/// The panel kernel on f16 operands (`shaders/matmul_panel.wgsl` with
/// `shaders/matmul_panel_load_f16.wgsl`), for the mixed step's products of few rows.
pub static MATMUL_PANEL_F16: &str = matmul_f16_module!(
    "matmul_launch.wgsl",
    "matmul_panel_load_f16.wgsl",
    "matmul_panel.wgsl"
);
/// [`MATMUL_F16`] serving several products in one launch.
pub static MATMUL_F16_GROUP: &str =
    matmul_f16_module!("matmul_launch_group.wgsl", "matmul_f16.wgsl");
/// [`MATMUL_PANEL_F16`] serving several products in one launch.
pub static MATMUL_PANEL_F16_GROUP: &str = matmul_f16_module!(
    "matmul_launch_group.wgsl",
    "matmul_panel_load_f16.wgsl",
    "matmul_panel.wgsl"
);
/// `shaders/cast_f16.wgsl` after the f16 rounding: f32 -> f16 copies (needs
/// `Features::SHADER_F16`).
pub static CAST_F16: &str = concat!(
    "enable f16;\n",
    include_str!("../../shaders/f16_round.wgsl"),
    include_str!("../../shaders/cast_f16.wgsl")
);
/// [`LSTM_CELL`] with the f16 rounding and `shaders/lstm_cell_f16.wgsl`: the cell of
/// `--precision mixed`, writing the f16 copies its products read (needs
/// `Features::SHADER_F16`).
pub static LSTM_CELL_F16: &str = concat!(
    "enable f16;\n",
    include_str!("../../shaders/f16_round.wgsl"),
    include_str!("../../shaders/lstm_gates.wgsl"),
    include_str!("../../shaders/lstm_cell.wgsl"),
    include_str!("../../shaders/lstm_cell_f16.wgsl")
);
/// `shaders/loss_scale.wgsl`: the dynamic loss scaling of `--precision mixed`.
pub static LOSS_SCALE: &str = include_str!("../../shaders/loss_scale.wgsl");
/// `shaders/matmul_coop.wgsl`, before `coop::coop_source` completes it.
pub static MATMUL_COOP: &str = include_str!("../../shaders/matmul_coop.wgsl");

/// Every file of `shaders/`, by name, as compiled into the program: what `--shaders DIR`
/// replaces ([`super::shader_dir`]) and `lstm-gpu shaders export` writes.
pub static FILES: &[(&str, &str)] = &[
    ("cast_f16.wgsl", include_str!("../../shaders/cast_f16.wgsl")),
    ("dropout.wgsl", include_str!("../../shaders/dropout.wgsl")),
    (
        "embedding.wgsl",
        include_str!("../../shaders/embedding.wgsl"),
    ),
    (
        "f16_round.wgsl",
        include_str!("../../shaders/f16_round.wgsl"),
    ),
    (
        "loss_scale.wgsl",
        include_str!("../../shaders/loss_scale.wgsl"),
    ),
    (
        "lstm_cell.wgsl",
        include_str!("../../shaders/lstm_cell.wgsl"),
    ),
    (
        "lstm_cell_f16.wgsl",
        include_str!("../../shaders/lstm_cell_f16.wgsl"),
    ),
    (
        "lstm_gates.wgsl",
        include_str!("../../shaders/lstm_gates.wgsl"),
    ),
    (
        "lstm_step.wgsl",
        include_str!("../../shaders/lstm_step.wgsl"),
    ),
    (
        "lstm_step_subgroup.wgsl",
        include_str!("../../shaders/lstm_step_subgroup.wgsl"),
    ),
    ("matmul.wgsl", include_str!("../../shaders/matmul.wgsl")),
    (
        "matmul_block.wgsl",
        include_str!("../../shaders/matmul_block.wgsl"),
    ),
    (
        "matmul_coop.wgsl",
        include_str!("../../shaders/matmul_coop.wgsl"),
    ),
    (
        "matmul_f16.wgsl",
        include_str!("../../shaders/matmul_f16.wgsl"),
    ),
    (
        "matmul_launch.wgsl",
        include_str!("../../shaders/matmul_launch.wgsl"),
    ),
    (
        "matmul_launch_group.wgsl",
        include_str!("../../shaders/matmul_launch_group.wgsl"),
    ),
    (
        "matmul_operands.wgsl",
        include_str!("../../shaders/matmul_operands.wgsl"),
    ),
    (
        "matmul_operands_f16.wgsl",
        include_str!("../../shaders/matmul_operands_f16.wgsl"),
    ),
    (
        "matmul_panel.wgsl",
        include_str!("../../shaders/matmul_panel.wgsl"),
    ),
    (
        "matmul_panel_load.wgsl",
        include_str!("../../shaders/matmul_panel_load.wgsl"),
    ),
    (
        "matmul_panel_load_f16.wgsl",
        include_str!("../../shaders/matmul_panel_load_f16.wgsl"),
    ),
    (
        "matmul_params.wgsl",
        include_str!("../../shaders/matmul_params.wgsl"),
    ),
    (
        "matmul_quad.wgsl",
        include_str!("../../shaders/matmul_quad.wgsl"),
    ),
    (
        "matmul_store.wgsl",
        include_str!("../../shaders/matmul_store.wgsl"),
    ),
    (
        "matmul_strip.wgsl",
        include_str!("../../shaders/matmul_strip.wgsl"),
    ),
    (
        "matmul_subgroup.wgsl",
        include_str!("../../shaders/matmul_subgroup.wgsl"),
    ),
    (
        "matmul_vec4.wgsl",
        include_str!("../../shaders/matmul_vec4.wgsl"),
    ),
    ("reduce.wgsl", include_str!("../../shaders/reduce.wgsl")),
    ("sgd.wgsl", include_str!("../../shaders/sgd.wgsl")),
    (
        "softmax_xent.wgsl",
        include_str!("../../shaders/softmax_xent.wgsl"),
    ),
    (
        "workgroup_sum.wgsl",
        include_str!("../../shaders/workgroup_sum.wgsl"),
    ),
];
