"""hotpatch.apply on VPTs with several inputs (tests/models/denoiser_vpts.py): a diffusion
denoiser ``forward(x_2d, y_noisy, t, camera=None)`` given a tuple, and a masked-sequence model
``forward(x, mask=None)`` given a dict of keyword inputs or one tensor."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch

import hotpatch
from checks import call_with as call
from checks import frames_per_block, onnx_missing
from denoiser_vpts import DiffusionDenoiser, MaskedSeqVPT, denoiser_inputs, masked_inputs
from hotpatch.errors import HotpatchError, InputShapeError

F, N, KEEP = 27, 1, 9
SOURCES = {
    "denoiser": {"class": "denoiser_vpts:DiffusionDenoiser", "kwargs": {}},
    "masked": {"class": "denoiser_vpts:MaskedSeqVPT", "kwargs": {}},
}


def build(name: str):
    """The model and its inputs (batch 2): a tuple for the denoiser, a dict for the masked model."""
    torch.manual_seed(0)
    if name == "denoiser":
        model, inputs = DiffusionDenoiser().eval(), denoiser_inputs()
    else:
        model, inputs = MaskedSeqVPT().eval(), masked_inputs()
    model.hotpatch_source = SOURCES[name]
    return model, inputs


def first(inputs):
    """The example: batch 1 of every input, in the same container."""
    if isinstance(inputs, dict):
        return {k: v[:1] for k, v in inputs.items()}
    return tuple(v[:1] for v in inputs)


def patch(name: str, **kw):
    model, inputs = build(name)
    kw.setdefault("n", N)
    kw.setdefault("f", KEEP)
    return model, inputs, hotpatch.apply(model, example_input=first(inputs), **kw)


MODELS = ["denoiser", "masked"]


@pytest.mark.parametrize("name", MODELS)
def test_shape_finite_and_original_untouched(name):
    model, inputs = build(name)
    with torch.no_grad():
        before = call(model, inputs)
    state = copy.deepcopy(model.state_dict())
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=first(inputs))
    with torch.no_grad():
        out = call(patched, inputs)
        after = call(model, inputs)
    assert out.shape == before.shape
    assert torch.isfinite(out).all()
    assert torch.equal(after, before)
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize("name", MODELS)
def test_blocks_after_the_cut_see_f_tokens(name):
    model, inputs, patched = patch(name)
    seen = frames_per_block(patched, inputs)
    names = [b.name for b in patched.hotpatch_plan.blocks]
    after = names[names.index(patched.hotpatch_sites.cut_block):]
    assert after and len(after) < len(names)
    assert {b: seen[b] for b in names} == {b: KEEP if b in after else F for b in names}


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_original_parameter(name):
    """Every parameter the original trains on these inputs (the camera's are unused without one)."""
    model, inputs, patched = patch(name)
    call(model.train(), inputs).square().mean().backward()
    used = {k for k, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert len(used) >= len(list(model.parameters())) - 2
    patched.train()
    call(patched, inputs).square().mean().backward()
    reached = {k for k, p in patched.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert used <= reached


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("recover", ["nearest", "linear"])
def test_all_frames_kept_reproduces_original(name, recover):
    model, inputs, patched = patch(name, f=F, recover=recover)
    with torch.no_grad():
        assert torch.equal(call(patched, inputs), call(model, inputs))


@pytest.mark.parametrize("name", MODELS)
def test_save_load_round_trip_is_exact(name, tmp_path):
    model, inputs, patched = patch(name, recover="tra")
    with torch.no_grad():  # a trained TRA: the round trip must carry its weights
        for p in patched.hotpatch_recover.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.1)
    hotpatch.save(patched, tmp_path / "hot.pt")
    loaded = hotpatch.load(tmp_path / "hot.pt")
    with torch.no_grad():
        assert torch.equal(call(loaded, inputs), call(patched.eval(), inputs))
    assert loaded.hotpatch_config["inputs"] == patched.hotpatch_config["inputs"]
    saved = hotpatch.saving.read(tmp_path / "hot.pt")
    # the integer timestep / bool mask are kept as given (random ones may be invalid); floats are drawn
    assert set(saved["example"]) == ({"t"} if name == "denoiser" else {"mask"})
    kept = first(inputs)["t" if name == "denoiser" else "mask"] if name == "masked" else first(inputs)[2]
    assert torch.equal(saved["example"]["t" if name == "denoiser" else "mask"], kept)


def test_each_inputs_frame_axis_is_found_and_the_timestep_passes_through():
    model, inputs, patched = patch("denoiser")
    plan = patched.hotpatch_plan
    assert [(i.name, i.frame_axis) for i in plan.inputs] == [("x_2d", 1), ("y_noisy", 1), ("t", None)]
    assert "input t (1,): no frame axis, passed through" in str(plan)
    assert patched.hotpatch_config["inputs"] == [
        {"name": "x_2d", "shape": [F, 17, 2], "dtype": "float32", "frame_axis": 1},
        {"name": "y_noisy", "shape": [F, 17, 3], "dtype": "float32", "frame_axis": 1},
        {"name": "t", "shape": [], "dtype": "int64", "frame_axis": None},
    ]
    conds = {}
    for b in plan.blocks:  # every block, before and after the cut, gets the (B, C) condition unpruned
        patched.get_submodule(b.name).register_forward_hook(lambda m, a, o, b=b.name: conds.__setitem__(b, tuple(a[1].shape)))
    with torch.no_grad():
        call(patched, inputs)
    assert set(conds.values()) == {(2, 32)} and len(conds) == len(plan.blocks)


def test_a_camera_without_frame_axis_passes_through():
    torch.manual_seed(0)
    model = DiffusionDenoiser().eval()
    inputs = denoiser_inputs(camera=True)
    patched = hotpatch.apply(model, n=N, f=F, recover="nearest", example_input=first(inputs))
    assert [i.frame_axis for i in patched.hotpatch_plan.inputs] == [1, 1, None, None]
    with torch.no_grad():
        assert torch.equal(patched(*inputs), model(*inputs))
        assert not torch.equal(patched(*inputs[:3], inputs[3] + 1), patched(*inputs))  # the camera is used


def test_patched_model_keeps_the_signature_positional_and_keyword():
    model, inputs, patched = patch("denoiser")
    names = list(inspect.signature(patched.forward).parameters)
    assert names[:3] == ["x_2d", "y_noisy", "t"]
    x, y, t = inputs
    with torch.no_grad():
        positional = patched(x, y, t)
        assert torch.equal(patched(x_2d=x, y_noisy=y, t=t), positional)
        assert torch.equal(patched(x, t=t, y_noisy=y), positional)


def test_keyword_example_in_any_order_and_mask_is_pruned_with_the_tokens():
    model, inputs = build("masked")
    example = {"mask": inputs["mask"][:1], "x": inputs["x"][:1]}
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=example)
    assert [i.name for i in patched.hotpatch_plan.inputs] == ["x", "mask"]
    masks = {}
    for b in patched.hotpatch_plan.blocks:
        patched.get_submodule(b.name).register_forward_hook(lambda m, a, o, b=b.name: masks.__setitem__(b, tuple(a[1].shape)))
    with torch.no_grad():
        out = patched(inputs["x"], inputs["mask"])
    assert masks == {"blocks.0": (2, F), "blocks.1": (2, KEEP), "blocks.2": (2, KEEP), "blocks.3": (2, KEEP)}
    assert torch.equal(out[0, F - 5:], torch.zeros_like(out[0, F - 5:]))  # the mask still zeroes padding


def test_optional_extra_inputs_keep_working_with_one_tensor():
    model, inputs = build("masked")
    x = inputs["x"]
    patched = hotpatch.apply(model, n=N, f=F, recover="nearest", example_input=x[:1])
    assert patched.hotpatch_plan.inputs[0].name == "x" and len(patched.hotpatch_plan.inputs) == 1
    assert "inputs" not in patched.hotpatch_config
    with torch.no_grad():
        assert torch.equal(patched(x), model(x))
        assert torch.equal(patched(x=x, mask=None), model(x))  # fx would have renamed the fixed `mask`
    assert list(inspect.signature(patched.forward).parameters) == ["x", "mask"]
    auto = hotpatch.apply(model, n=N, f=KEEP)  # no example: the shape is inferred as before
    assert auto.hotpatch_config["input_shape"] == [F, 17, 2]


def test_prepare_once_patch_many_with_several_inputs():
    model, inputs = build("denoiser")
    prepared = hotpatch.prepare(model, example_input=first(inputs))
    assert tuple(prepared.example.shape) == (1, F, 17, 2)
    outs = []
    for f in (KEEP, 13):
        patched = prepared.patch(N, f)
        with torch.no_grad():
            outs.append(call(patched, inputs))
        assert frames_per_block(patched, inputs)["temporal.1"] == f
    assert all(o.shape == (2, F, 17, 3) for o in outs)


@pytest.mark.parametrize("example, match", [
    ({"x_2d": torch.zeros(1, F, 17, 2), "y": torch.zeros(1, F, 17, 3), "t": torch.zeros(1)}, "no parameter 'y'"),
    ((torch.zeros(1, F, 17, 2), torch.zeros(1, F, 17, 3)), "missing 't'"),
    ((torch.zeros(1, F, 17, 2), torch.zeros(1, F, 17, 3), 5), "t is int"),
    ((torch.zeros(1, F, 17, 2),) * 5, "takes at most 4"),
])
def test_bad_example_inputs_are_named(example, match):
    model, _ = build("denoiser")
    with pytest.raises(InputShapeError, match=match):
        hotpatch.apply(model, n=N, f=KEEP, example_input=example)


def test_every_frame_input_is_guarded():
    model, inputs, patched = patch("denoiser")
    x, y, t = inputs
    with pytest.raises(HotpatchError, match="y_noisy"):
        patched(x, y[:, :-1], t)


@pytest.mark.parametrize("name", MODELS)
def test_torch_export_with_several_inputs_matches_the_patched_model(name, tmp_path):
    from hotpatch.export import export_program

    model, inputs, patched = patch(name, recover="linear")
    check = export_program(patched, tmp_path / "hot.pt2", batch=2)  # the inputs it was patched for
    assert check.input_shape == (2, F, 17, 2) and check.max_abs_diff <= 1e-5
    program = torch.export.load(str(tmp_path / "hot.pt2")).module()
    positional = tuple(inputs.values()) if isinstance(inputs, dict) else inputs  # a program takes them as exported
    with torch.no_grad():
        assert torch.allclose(program(*positional), call(patched.eval(), inputs), atol=1e-5)


@onnx_missing
def test_onnx_export_with_several_inputs_runs_in_onnxruntime(tmp_path):
    from hotpatch.export import export_onnx

    model, inputs, patched = patch("denoiser", recover="linear")
    check = export_onnx(patched, tmp_path / "hot.onnx", example=inputs)
    assert check.input_shape == (2, F, 17, 2) and check.max_abs_diff <= 1e-4


def test_compare_and_sweep_measure_a_model_with_several_inputs():
    from hotpatch.sweep import sweep

    model, inputs, patched = patch("denoiser")
    example = first(inputs)
    cmp = hotpatch.compare(model, patched, example, counters=("paper",), fps=False, memory=False)
    assert 0 < cmp.after.flops["paper"].value < cmp.before.flops["paper"].value
    result = sweep(model, n=[1], f=[9, 13], example_input=example, latency=False)
    flops = {r.label: r.flops for r in result.rows}
    assert flops["n=1 f=9 tpc+linear"] < flops["n=1 f=13 tpc+linear"] < result.original.flops


def test_positional_and_repeat_batch_follow_forward_order():
    from hotpatch.engine.inputs import positional, repeat_batch

    model = DiffusionDenoiser()
    x, y, t = (v[:1] for v in denoiser_inputs())
    cam = torch.zeros(1, 9)
    args, kwargs = positional(model, {"t": t, "x_2d": x, "y_noisy": y})
    assert args == (x, y, t) and kwargs == {}
    args, kwargs = positional(model, {"x_2d": x, "t": t, "camera": cam})  # y_noisy not given: the rest by name
    assert args == (x,) and list(kwargs) == ["t", "camera"]
    wide = repeat_batch({"x_2d": x, "t": t}, 3)
    assert wide["x_2d"].shape == (3, F, 17, 2) and torch.equal(wide["t"], t.expand(3))


def test_profile_takes_keyword_inputs_and_defaults_to_the_patched_inputs():
    model, inputs, patched = patch("masked")
    example = first(inputs)  # a dict {"x", "mask"}
    by_name = hotpatch.profile(patched, example, counters=("paper",), fps=False, memory=False)
    default = hotpatch.profile(patched, counters=("paper",), fps=False, memory=False)  # the inputs it was patched for
    assert by_name.flops["paper"].value == default.flops["paper"].value > 0
    assert "Numbers are per call" in str(by_name)
