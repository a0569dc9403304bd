//! Launches serving several products at once (`shaders/matmul_launch_group.wgsl`): the
//! recurrent products of a wavefront step's layers.

use super::*;

impl Matmul {
    /// Up to [`GROUPS`] products `c += op(a) @ op(b)` in one launch, each computed exactly
    /// as [`Matmul::prepare_deferring_sum_in`] computes it alone (the variant chosen for its
    /// shape, the same slices of k, the same order of sums): the recurrent products of a
    /// wavefront step's layers, which may differ in width. Their operands lie at their own
    /// offsets in the same three buffers (A, B and C each one buffer for all). Where the
    /// products split k, the partial sums are left for the cells, all products' in scratch
    /// buffer `slot` one after the other, one [`SplitPartials`] each. `Ok(None)` where the
    /// products cannot share a launch, and the caller launches them one by one: where a
    /// chosen variant has no grouped form (only the kernels without barriers have one:
    /// strip, strip-quad, panel and their split twins), where the products' variants
    /// differ, or where some split k and others do not (their cells could not share a
    /// launch).
    #[allow(clippy::type_complexity)]
    pub fn prepare_group_deferring_sum(
        &self,
        gpu: &Gpu,
        members: &[(MatmulShape, View, View, View)],
        slot: usize,
    ) -> Result<Option<(Dispatch, Option<Vec<SplitPartials>>)>> {
        if !(1..=GROUPS).contains(&members.len()) {
            bail!(
                "a grouped matmul serves 1 to {GROUPS} products, not {}",
                members.len()
            );
        }
        let mut plans = Vec::new();
        for &(shape, a, b, c) in members {
            let (variant, _) = self.choice(shape);
            let operands = Operands {
                a,
                b,
                bias: None,
                c,
                accumulate: true,
            };
            plans.push(self.plan(variant, gpu, shape, operands)?);
        }
        let (variant, first) = (plans[0].0, &plans[0].1);
        let split = first.params.k_slices > 1;
        let alike = plans
            .iter()
            .all(|(v, launch)| *v == variant && (launch.params.k_slices > 1) == split);
        if !alike {
            return Ok(None);
        }
        let Some(pipeline) = self.group_pipeline(gpu, variant)? else {
            return Ok(None);
        };
        if let Ok(mut seen) = self.seen.lock() {
            for &(shape, ..) in members {
                if !seen.contains(&shape) {
                    seen.push(shape);
                }
            }
        }
        let launches: Vec<ProductLaunch> = plans.into_iter().map(|(_, l)| l).collect();
        let outputs: Vec<(MatmulShape, View)> = members.iter().map(|&(s, .., c)| (s, c)).collect();
        self.group_dispatch(gpu, pipeline, &launches, &outputs, slot)
            .map(Some)
    }

    /// One launch of `pipeline` (a kernel built with `shaders/matmul_launch_group.wgsl`)
    /// serving `launches`, each planned as its own launch (this family's kernels, or the
    /// f16 ones of `--precision mixed`, which split k as this family does), writing C
    /// windows `outputs` (shape and view of each). All must read the same A and B buffers
    /// and write one C buffer, in windows that do not overlap, and either all split k or
    /// none; split, product g's slices are left in scratch buffer `slot` after those of
    /// the products before it, one [`SplitPartials`] each.
    #[allow(clippy::type_complexity)]
    pub(crate) fn group_dispatch(
        &self,
        gpu: &Gpu,
        pipeline: &wgpu::ComputePipeline,
        launches: &[ProductLaunch],
        outputs: &[(MatmulShape, View)],
        slot: usize,
    ) -> Result<(Dispatch, Option<Vec<SplitPartials>>)> {
        let Some(first) = launches.first() else {
            bail!("a grouped matmul of no products");
        };
        if launches.len() > GROUPS || launches.len() != outputs.len() {
            bail!(
                "{}: a grouped matmul serves 1 to {GROUPS} products, not {}",
                first.label,
                launches.len()
            );
        }
        let split = first.params.k_slices > 1;
        if launches.iter().any(|l| (l.params.k_slices > 1) != split) {
            bail!(
                "{}: the products of one launch must all split k or none",
                first.label
            );
        }
        let c_buffer = outputs[0].1.buffer;
        for (launch, &(_, c)) in launches.iter().zip(outputs) {
            if launch.operands != first.operands || c.buffer != c_buffer {
                bail!(
                    "{}: the products of one launch must lie in the same buffers",
                    first.label
                );
            }
        }
        // The products' windows of C must not overlap (written here unsplit, by their
        // cells split).
        let windows: Vec<(usize, usize)> = outputs
            .iter()
            .map(|&(s, c)| (c.offset, c.offset + s.m * s.n))
            .collect();
        for (i, a) in windows.iter().enumerate() {
            if windows[..i].iter().any(|b| a.0 < b.1 && b.0 < a.1) {
                bail!(
                    "{}: the products of one launch write overlapping windows of C",
                    first.label
                );
            }
        }
        // The grid of the largest product, in x and y and in slices.
        let blocks = launches.iter().map(|l| l.params.blocks).max().unwrap_or(0);
        let (gx, gy) = groups_1d(blocks as usize, 1);
        let member_slices = launches
            .iter()
            .map(|l| l.params.k_slices)
            .max()
            .unwrap_or(1);
        // Split: product g's slices after those of the products before it, without the
        // bias or the accumulation (the cells add them to C).
        let words: Vec<usize> = launches
            .iter()
            .map(|l| (l.params.k_slices * l.params.m * l.params.n) as usize)
            .collect();
        let scratch = split.then(|| self.scratch_for(gpu, words.iter().sum(), slot));
        let mut blocks = [Params::zeroed(); GROUPS];
        let mut at = 0;
        for (block, (launch, words)) in blocks.iter_mut().zip(launches.iter().zip(&words)) {
            *block = Params {
                groups_x: gx,
                member_slices,
                ..launch.params
            };
            if split {
                block.flags &= A_VEC4 | B_VEC4;
                block.c_off = u32::try_from(at)?;
                at += words;
            }
        }
        let label = format!("{}_group", first.label);
        let uniforms = gpu.uniform_from(&label, &blocks);
        let c_bound = scratch.as_ref().unwrap_or(c_buffer);
        let buffers = operand_bindings(first.operands, None, c_bound, &uniforms, first.quads);
        let bind_group = gpu.bind(&label, pipeline, &buffers)?;
        let partial_bytes = if split { 8.0 * at as f64 } else { 0.0 };
        let dispatch = Dispatch {
            label,
            pipeline: pipeline.clone(),
            bind_group,
            groups: (gx, gy, member_slices * launches.len() as u32),
            flops: launches
                .iter()
                .map(|l| 2.0 * (l.params.m * l.params.n) as f64 * l.params.k as f64)
                .sum(),
            bytes: launches.iter().map(|l| l.bytes).sum::<f64>() + partial_bytes,
            uniforms: Some(uniforms),
            then: None,
        };
        let partials = scratch.map(|buffer| {
            let mut at = 0;
            launches
                .iter()
                .zip(&words)
                .map(|(l, &words)| {
                    let p = SplitPartials {
                        buffer: buffer.clone(),
                        slices: l.params.k_slices as usize,
                        words: (l.params.m * l.params.n) as usize,
                        offset: at,
                    };
                    at += words;
                    p
                })
                .collect()
        });
        Ok((dispatch, partials))
    }

    /// The grouped form of `variant` (compiled on first use); `None` where it has none or
    /// the driver refused it ([`Gpu::optional_pipeline`]: `{variant}-grouped`).
    fn group_pipeline(
        &self,
        gpu: &Gpu,
        variant: MatmulVariant,
    ) -> Result<Option<&wgpu::ComputePipeline>> {
        let (at, label, entry) = match variant.unsplit() {
            MatmulVariant::Strip => (0, "matmul_strip_group", "matmul_strip"),
            MatmulVariant::StripQuad => (1, "matmul_quad_group", "matmul_strip_quad"),
            MatmulVariant::Panel => (2, "matmul_panel_group", "matmul_panel"),
            v => {
                debug_assert!(!v.has_group_form());
                return Ok(None);
            }
        };
        // Two threads may race to compile it; either result serves.
        let built = self.grouped[at].get_or_init(|| {
            let source = match at {
                0 => std::borrow::Cow::Borrowed(crate::gpu::shaders::MATMUL_STRIP_GROUP),
                1 => crate::gpu::shaders::matmul_quad_group(),
                _ => std::borrow::Cow::Borrowed(crate::gpu::shaders::MATMUL_PANEL_GROUP),
            };
            let what = format!("{}-grouped", variant.unsplit().name());
            let module = gpu.optional(&what, gpu.shader(label, &source))?;
            gpu.optional_pipeline(&what, label, &module, entry, &[])
        });
        Ok(built.as_ref())
    }
}
