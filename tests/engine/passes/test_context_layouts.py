"""Per-frame contexts without a batch axis that a block uses in a layout of its own (issue 27):
a (1, F, C) table passed to blocks that take (B, F, J, C) tokens and add it to a (B·J, F, C)
view (or to (B·H, F, d) heads) inside. Gathered per sample, the table must come in the rows of
that view; before the fix it came as (B, f, C) and broke at batch 2 (pass "per-frame contexts",
models in tests/models/context_layout_vpts.py)."""

from __future__ import annotations

import pytest
import torch

import context_layout_vpts as vpts
import hotpatch
import vpt_properties as props
from hotpatch.engine.passes import contexts
from hotpatch.engine.wrappers import GatherOwnShape
from hotpatch.errors import PatchCheckError, RewriteError

F, N, KEEP = 27, 1, 3
SOURCES = {"table_inside": "context_layout_vpts:TableInsideVPT",
           "table_inside_heads": "context_layout_vpts:TableInsideHeadsVPT"}
ROWS = {"table_inside": (-1, 17), "table_inside_heads": (-1, 4)}


@pytest.mark.parametrize("name", list(SOURCES))
@pytest.mark.parametrize("batch", [1, 2, 3])
def test_each_sample_is_patched_as_if_alone(name, batch):
    model, x = vpts.build(name, batch=3)
    x = x[:batch]
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    with torch.no_grad():
        out = patched(x)
        alone = torch.cat([patched(x[i:i + 1]) for i in range(batch)])
    assert out.shape == (batch, F, 17, 3) and torch.isfinite(out).all()
    torch.testing.assert_close(out, alone, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", list(SOURCES))
def test_the_table_is_gathered_in_the_rows_the_block_adds_it_to(name):
    model, x = vpts.build(name)
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    gathers = [m for m in patched.modules() if isinstance(m, GatherOwnShape)]
    assert [g.rows for g in gathers] == [ROWS[name]]  # one gather, shared by both later blocks
    got = props.capture(patched, x, inputs={"table": ("blocks.1", 1)})
    index, table = got["index"], model.time_pos.detach()[0]
    assert not torch.equal(index[0], index[1])
    rows = ROWS[name][1]
    expected = table[index].repeat_interleave(rows, dim=0)  # (B·rows, f, C), each sample's frames
    assert torch.equal(got["table"], expected)
    text = "·".join("B" if r == -1 else str(r) for r in ROWS[name])
    assert any(f"in the rows ({text}) that the block combines it with" in n for n in patched.hotpatch_plan.notes)


def test_a_use_no_gather_can_serve_is_refused_before_the_rewrite():
    model, x = vpts.build("table_row")
    refusal = props.apply_or_refusal(model, n=N, f=KEEP, example_input=x[:1])
    props.assert_refused(refusal, RewriteError, "`time_pos`", "`blocks.1`", "(1, 27, 32)", "B·17")


def test_the_check_at_batch_two_catches_a_gather_that_only_broadcasts_at_batch_one(monkeypatch):
    """With the rows of the use not read (the table gathered as (B, f, C), as before the fix),
    the patched model runs at batch 1 and fails at batch 2: the check after the rewrite runs
    batch 2 too, so apply raises PatchCheckError instead of the user's call crashing."""
    monkeypatch.setattr(contexts, "context_rows", lambda *a, **k: {})
    model, x = vpts.build("table_inside")
    with pytest.raises(PatchCheckError, match="at batch size 2 at `blocks_1`"):
        hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])


globals().update(props.property_tests(vpts.build, SOURCES, N, KEEP, F))
