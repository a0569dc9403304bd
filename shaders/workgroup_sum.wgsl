// The two-stage workgroup sum shared by reduce.wgsl and softmax_xent.wgsl (prepended to
// each by its launcher: WGSL has no includes).
//
// A workgroup of WORKGROUP invocations sums one value each in a fixed order, so results are
// bit-identical from run to run. Two barriers rather than a log2(256)-level tree: on CPU
// adapters such as lavapipe a barrier switches between the workgroup's invocations, and a
// tree of them costs far more. Every invocation gets the result; the stage arrays may be
// reused right after (the next writes to stage1 come after every read of it, and the next
// writes to stage2 come after the next first barrier).

const WORKGROUP: u32 = 256u;
// Partial results per invocation of the second stage, and invocations in that stage.
const FAN: u32 = 16u;

var<workgroup> stage1: array<f32, WORKGROUP>;
var<workgroup> stage2: array<f32, FAN>;

fn workgroup_sum(lid: u32, value: f32) -> f32 {
    stage1[lid] = value;
    workgroupBarrier();
    if lid < FAN {
        var s = stage1[lid];
        for (var j = 1u; j < WORKGROUP / FAN; j++) {
            s += stage1[lid + j * FAN];
        }
        stage2[lid] = s;
    }
    workgroupBarrier();
    var s = stage2[0];
    for (var j = 1u; j < FAN; j++) {
        s += stage2[j];
    }
    return s;
}
