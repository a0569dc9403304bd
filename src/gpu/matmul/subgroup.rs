//! The subgroup-broadcast kernel's modules: one generated entry point per transpose form.

use super::*;

/// The subgroup-broadcast matmul module for one transpose form, as [`Matmul`] compiles it:
/// the uniform block, `shaders/matmul_subgroup.wgsl` and the form's generated entry point.
pub fn subgroup_source(trans_a: bool, trans_b: bool) -> String {
    use crate::gpu::shaders::{subgroup_module, MATMUL_LAUNCH, MATMUL_PARAMS, MATMUL_SUBGROUP};
    let source = format!(
        "{MATMUL_PARAMS}\n{MATMUL_LAUNCH}\n{MATMUL_SUBGROUP}\n{}",
        subgroup_entry_point(trans_a, trans_b)
    );
    subgroup_module(std::borrow::Cow::Owned(source)).into_owned()
}

/// The WGSL entry point of SubgroupBroadcast for one transpose form, appended to
/// `shaders/matmul_subgroup.wgsl` (see its header for the scheme). Lane `l` owns columns
/// `c0 + 4l + 32h + e` (h < 2, e < 4) of a 64x64 block and all its 64 rows; its
/// accumulators are `acc{r}_{h}`, vec4s over e.
pub(crate) fn subgroup_entry_point(trans_a: bool, trans_b: bool) -> String {
    let form = match (trans_a, trans_b) {
        (false, false) => "nn",
        (false, true) => "nt",
        (true, false) => "tn",
        (true, true) => "tt",
    };
    let mut s = String::new();
    let mut line = |text: String| {
        s.push_str(&text);
        s.push('\n');
    };
    line("@compute @workgroup_size(8)".into());
    line(format!("fn matmul_subgroup_{form}("));
    line("    @builtin(workgroup_id) wg: vec3<u32>,".into());
    line("    @builtin(subgroup_invocation_id) lane: u32,".into());
    line(") {".into());
    line("    let block = block_index(wg);".into());
    line("    if block >= params.blocks {".into());
    line("        return;".into());
    line("    }".into());
    line(format!(
        "    let r0 = (block / params.col_blocks) * {SUBGROUP_ROWS}u;"
    ));
    line(format!(
        "    let c0 = (block % params.col_blocks) * {SUBGROUP_COLS}u;"
    ));
    // Where this lane's loads start, in vec4s. Rows and columns past the edge are clamped
    // to the last whole vec4 inside it: what they load is never stored.
    if trans_a {
        line(
            "    // op(A)[i, p] = a[p * m + i]: lane l loads rows r0 + 32h + 4l .. + 4 of one p."
                .into(),
        );
        for h in 0..SUBGROUP_ROWS / 32 {
            line(format!(
                "    let a_at{h} = (params.a_off + min(r0 + {}u + 4u * lane, params.m - 4u)) / 4u;",
                32 * h
            ));
        }
    } else {
        line(
            "    // op(A)[i, p] = a[i * k + p]: lane l loads p .. p + 4 of rows r0 + 8g + l."
                .into(),
        );
        for g in 0..SUBGROUP_ROWS / 8 {
            line(format!(
                "    let a_at{g} = (params.a_off + min(r0 + {}u + lane, params.m - 1u) * params.k) / 4u;",
                8 * g
            ));
        }
    }
    if trans_b {
        line(
            "    // op(B)[p, j] = b[j * k + p]: lane l loads p .. p + 4 of each of its columns."
                .into(),
        );
        for h in 0..2 {
            for e in 0..4 {
                line(format!(
                    "    let b_at{h}_{e} = (params.b_off + min(c0 + 4u * lane + {}u, params.n - 1u) * params.k) / 4u;",
                    32 * h + e
                ));
            }
        }
    } else {
        line(
            "    // op(B)[p, j] = b[p * n + j]: lane l loads its columns c0 + 4l + 32h .. + 4."
                .into(),
        );
        for h in 0..2 {
            line(format!(
                "    let b_at{h} = (params.b_off + min(c0 + 4u * lane + {}u, params.n - 4u)) / 4u;",
                32 * h
            ));
        }
    }
    for r in 0..SUBGROUP_ROWS {
        line(format!("    var acc{r}_0 = vec4<f32>();"));
        line(format!("    var acc{r}_1 = vec4<f32>();"));
    }
    line("    for (var p = 0u; p < params.k; p += 4u) {".into());
    if trans_a {
        for q in 0..4 {
            for h in 0..SUBGROUP_ROWS / 32 {
                line(format!(
                    "        let al{q}_{h} = a4[a_at{h} + (p + {q}u) * (params.m / 4u)];"
                ));
            }
        }
    } else {
        for g in 0..SUBGROUP_ROWS / 8 {
            line(format!("        let al{g} = a4[a_at{g} + p / 4u];"));
        }
    }
    // b{q}_{h}: op(B)[p + q, this lane's columns 32h + 0..4].
    if trans_b {
        for h in 0..2 {
            for e in 0..4 {
                line(format!("        let bt{h}_{e} = b4[b_at{h}_{e} + p / 4u];"));
            }
        }
        for q in 0..4 {
            for h in 0..2 {
                line(format!(
                    "        let b{q}_{h} = vec4<f32>(bt{h}_0[{q}], bt{h}_1[{q}], bt{h}_2[{q}], bt{h}_3[{q}]);"
                ));
            }
        }
    } else {
        for q in 0..4 {
            for h in 0..2 {
                line(format!(
                    "        let b{q}_{h} = b4[b_at{h} + (p + {q}u) * (params.n / 4u)];"
                ));
            }
        }
    }
    for r in 0..SUBGROUP_ROWS {
        for q in 0..4 {
            // op(A)[r0 + r, p + q], the same on every lane.
            let a = if trans_a {
                format!(
                    "subgroupBroadcast(al{q}_{}[{}], {}u)",
                    r / 32,
                    r % 4,
                    (r % 32) / 4
                )
            } else {
                format!("subgroupBroadcast(al{}[{q}], {}u)", r / 8, r % 8)
            };
            line(format!("        let s{r}_{q} = vec4<f32>({a});"));
            for h in 0..2 {
                line(format!(
                    "        acc{r}_{h} = fma(s{r}_{q}, b{q}_{h}, acc{r}_{h});"
                ));
            }
        }
    }
    line("    }".into());
    for h in 0..2 {
        line(format!(
            "    let bias{h} = bias4(min(c0 + 4u * lane + {}u, params.n - 4u));",
            32 * h
        ));
    }
    for r in 0..SUBGROUP_ROWS {
        line(format!("    if r0 + {r}u < params.m {{"));
        for h in 0..2 {
            line(format!(
                "        if c0 + 4u * lane + {}u < params.n {{ store4(r0 + {r}u, c0 + 4u * lane + {}u, acc{r}_{h}, bias{h}); }}",
                32 * h,
                32 * h
            ));
        }
        line("    }".into());
    }
    line("}".into());
    s
}
