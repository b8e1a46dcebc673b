"""Pattern 7 of issue 27: token mixing without attention, a state-space scan written as a
``torch.autograd.Function`` over the flattened frames x joints grid (tests/models/scan_vpts.py).

Decision: such a block is temporal for HoT when changing one frame of its input changes its
output at other frames (the perturbation test; the axis tracker cannot follow a loop over
positions, hotpatch/engine/mixing.py ``takes_positions``) and it runs on fewer frames
(hotpatch/engine/opaque.py): a scan mixes whatever frames it is given, so HoT prunes its tokens
as it prunes an attention's, and the plan says how the block was judged. A scan that runs on F
frames only is no temporal block: the model is refused."""

from __future__ import annotations

import pytest

import hotpatch
import scan_vpts as vpts
import vpt_properties as props

F, N, KEEP = 27, 1, 9
SOURCES = {name: f"scan_vpts:{cls.__name__}" for name, (cls, _) in vpts.ALL.items()}


def test_the_plan_says_how_each_scan_block_was_judged():
    model, x = vpts.build("hybrid_scan")
    plan = props.apply_or_refusal(model, n=N, f=KEEP, example_input=x[:1]).hotpatch_plan
    kinds = {b.name: b.kind for b in plan.blocks}
    assert kinds == {**{f"spatial.{i}": "spatial" for i in range(3)}, **{f"temporal.{i}": "temporal" for i in range(3)}}
    for b in plan.blocks[1::2]:
        assert b.why.startswith("no attention followed (select of single frames in scan could not be followed); "
                                "changing one frame changes the others")
        assert f"{b.name}: temporal by perturbation: no attention followed" in "\n".join(plan.notes)
    assert ("blocks temporal.0–2 mix frames without an attention hotpatch can follow (judged by the perturbation test) and "
            "run on fewer than F=27 frames: HoT prunes their frame tokens") in plan.notes


def test_a_loop_over_positions_is_not_mistaken_for_no_mixing():
    """Without the perturbation fallback the tracker saw no op mix frames: the scan blocks were spatial."""
    model, x = vpts.build("scan")
    plan = hotpatch.prepare(model, example_input=x[:1]).plan
    assert [b.kind for b in plan.blocks] == ["temporal"] * 3


def test_a_scan_over_F_frames_only_is_refused():
    model, x = vpts.build("fixed_scan")
    with pytest.raises(hotpatch.NoTemporalBlocksError, match=r"blocks temporal.0–2 mix frames but accept only F=27 tokens"):
        hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])


globals().update(props.property_tests(vpts.build, SOURCES, N, KEEP, F))
