"""Capture by running (issue 27, item 1): Python in ``forward`` whose values depend only on sizes
traces (NumPy on sizes, factory calls in every form, Python dtypes, lists and loops over sizes,
``.cuda()`` on a CPU machine), on the VPTs of tests/models/capture_vpts.py; what cannot be fixed
once (the batch size or tensor values as Python numbers, a block's token count) is refused in one
line that names the line and the fix."""

from __future__ import annotations

import copy

import pytest
import torch

import capture_vpts as vpts
import hotpatch
import vpt_properties as props
from hotpatch.engine.trace import trace

F, N, KEEP = 27, 2, 9
PATCHED = ["numpy_mask", "sine_table", "factory", "list", "band_mask", "causal_mask", "late_table", "rotary"]
SOURCES = {name: f"capture_vpts:{vpts.MODELS[name].__name__}" for name in PATCHED}


def test_numpy_on_the_clip_length_is_run_and_noted():
    model, x = vpts.build("numpy_mask")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    notes = patched.hotpatch_plan.notes
    assert any("`m = np.ones(seq_len, dtype=np.int32)` uses the clip's 27 frames as a Python number" in n for n in notes)
    assert "inputs are checked to be (B, 27, 17, 2): Python numbers were decided for them" in notes
    with pytest.raises(hotpatch.HotpatchError, match="patched for clips of F=27"):
        patched(torch.randn(1, 30, 17, 2))


def test_python_dtypes_become_torch_dtypes():
    model, x = vpts.build("sine_table")
    gm, _ = trace(copy.deepcopy(model), example_shape=tuple(x[:1].shape))
    aranges = [n for n in gm.graph.nodes if n.op == "call_function" and n.target is torch.arange]
    assert [n.kwargs.get("dtype") for n in aranges] == [torch.int64]  # dtype=int (arange(0, C, 2) is a constant)


def test_factory_calls_in_every_form_stay_calls_of_the_batch_size():
    model, x = vpts.build("factory")
    gm, _ = trace(copy.deepcopy(model), example_shape=tuple(x[:1].shape))
    made = {n.target.__name__ for n in gm.graph.nodes if n.op == "call_function" and n.target in
            (torch.ones, torch.full, torch.empty, torch.zeros_like)}
    assert made == {"ones", "full", "empty", "zeros_like"}
    assert not [n for n in gm.graph.nodes if n.op == "get_attr" and n.target.startswith("_tensor_constant")]
    patched = hotpatch.apply(model, n=N, f=F, recover="nearest", example_input=x[:1])
    big = torch.randn(5, F, 17, 2)
    with torch.no_grad():  # the batch stays free: no factory call was made for the example's batch
        assert torch.equal(patched(big), model(big))


def test_lists_and_loops_over_sizes():
    model, x = vpts.build("list")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    notes = patched.hotpatch_plan.notes
    assert sum("uses the clip's 27 frames as a Python number" in n for n in notes) == 1  # range(f); not range(j)
    with torch.no_grad():
        assert patched(torch.randn(4, F, 17, 2)).shape == (4, F, 17, 3)


def test_cuda_in_forward_traces_on_a_cpu_machine(monkeypatch):
    model, x = vpts.build("cuda")
    with pytest.raises((AssertionError, RuntimeError)):  # the original needs a GPU
        model(x)
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    full = hotpatch.apply(model, n=N, f=F, recover="linear", example_input=x[:1])
    moves = [n for n in patched.graph.nodes if n.op == "call_method" and n.target in ("cuda", "to")]
    assert [n.target for n in moves] == ["to", "to"]  # both .cuda() calls: to the input's device
    with torch.no_grad():
        out, same = patched(x), full(x)
        monkeypatch.setattr(torch.Tensor, "cuda", lambda t, *a, **k: t)
        model.device = "cpu"
        reference = model(x)
    assert out.shape == reference.shape and torch.isfinite(out).all()
    assert torch.equal(same, reference)


@pytest.mark.parametrize("name, construct", [
    ("batch_numpy", "`m = np.zeros((b, f), dtype=bool)` uses the batch size as a Python value"),
    ("value_numpy", "needs the value of `numpy`, which depends on the input's values"),
    ("inner_range", "uses a size of tokens that a transformer block computed (27, a multiple of the clip's 27 frames)"),
])
def test_values_that_cannot_be_fixed_once_are_refused_in_one_line(name, construct):
    model, x = vpts.build(name)
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(hotpatch.TraceFailure) as err:
        hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    msg = str(err.value)
    assert construct in msg and "capture_vpts.py:" in msg and "Fix:" in msg
    assert "\n" not in msg and len(msg) <= 600
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


globals().update(props.property_tests(vpts.build, SOURCES, N, KEEP, F))
