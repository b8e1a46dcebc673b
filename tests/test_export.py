"""ONNX and torch.export of patched models, checked against the eager model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import hotpatch
import author_vpts
from checks import onnx_missing
from hotpatch.errors import ExportError
from hotpatch.export import export_onnx, export_program


@onnx_missing
@pytest.mark.parametrize("name, settings", [
    ("mixste", dict(recover="tra")),                                # TPC + TRA
    ("motionbert", dict(recover="linear", prune_pos_embed=True)),  # interpolation
    ("poseformer", dict(pipeline="seq2frame")),                     # centre frame
    ("mixste", dict(n=[1, 2], f=[12, 6], pipeline="seq2frame")),     # two stages, centre kept
    ("mixste", dict(prune="merge", recover="unmerge")),              # token merging + unmerging
    ("motionbert", dict(n=[1, 2], f=[12, 6], prune="merge", recover="unmerge")),  # composed clusters
    ("poseformer", dict(prune="merge", pipeline="seq2frame")),      # merged, centre alone
])
def test_onnx_export_matches_the_patched_model_in_onnxruntime(tmp_path, name, settings):
    import onnxruntime as ort

    model, x = author_vpts.build(name)
    settings = {"n": 1, "f": 9, **settings}
    patched = hotpatch.apply(model, **settings).eval()
    with torch.no_grad():  # a non-zero TRA so that recovery is exercised
        for p in patched.parameters():
            if not p.any():
                p.normal_(0, 0.1)
    check = export_onnx(patched, tmp_path / "m.onnx", example=x)
    assert check.max_abs_diff <= 1e-4 and check.input_shape == tuple(x.shape)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    other = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    got = session.run(None, {session.get_inputs()[0].name: other.numpy()})[0]
    with torch.no_grad():
        want = patched(other)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)


def test_torch_export_round_trip_is_exact(tmp_path):
    model, x = author_vpts.build("mixste")
    patched = hotpatch.apply(model, n=1, f=9, recover="linear")
    check = export_program(patched, tmp_path / "m.pt2", example=x)
    program = torch.export.load(str(tmp_path / "m.pt2"))
    with torch.no_grad():
        assert torch.equal(program.module()(x), patched(x))
    assert check.max_abs_diff == 0.0


class _Bucketize(nn.Module):
    """Uses torch.searchsorted, which the ONNX exporter cannot convert."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("edges", torch.linspace(-1, 1, 5))

    def forward(self, x):
        return torch.searchsorted(self.edges, x.contiguous()).float()


@onnx_missing
def test_unexportable_op_is_named(tmp_path):
    with pytest.raises(ExportError, match=r"aten\.searchsorted"):
        export_onnx(_Bucketize(), tmp_path / "b.onnx", example=torch.randn(1, 9, 17, 2))


def test_export_needs_an_input_shape(tmp_path):
    with pytest.raises(ExportError, match="example="):
        export_program(_Bucketize(), tmp_path / "b.pt2")


@onnx_missing
def test_onnx_library_info_logging_is_hidden_unless_verbose(tmp_path, caplog):
    import logging

    model, _ = author_vpts.build("mixste")
    x = torch.randn(1, 27, 17, 2)

    def onnx_records():
        return [r for r in caplog.records if r.name.split(".")[0] in ("onnx", "onnxscript", "onnx_ir")]

    with caplog.at_level(logging.INFO):
        export_onnx(model, tmp_path / "quiet.onnx", example=x)
    assert onnx_records() == []
    assert logging.getLogger("onnx_ir").level == logging.NOTSET  # restored
    with caplog.at_level(logging.INFO):
        export_onnx(model, tmp_path / "loud.onnx", example=x, verbose=True)
    assert len(onnx_records()) > 5 and {r.levelno for r in onnx_records()} == {logging.INFO}


def _ops(path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(path)).graph.node}


def _weight_matmuls(path) -> dict[str, int]:
    """How many MatMul / MatMulInteger nodes take a constant (initializer) operand."""
    import collections

    import onnx

    graph = onnx.load(str(path)).graph
    consts = {i.name for i in graph.initializer}
    return dict(collections.Counter(n.op_type for n in graph.node if n.op_type in ("MatMul", "MatMulInteger")
                                    and any(i in consts for i in n.input)))


@onnx_missing
@pytest.mark.parametrize("per_channel", [False, True])
def test_int8_export_is_quantized_and_checked_against_the_eager_fp32_model(tmp_path, per_channel):
    from hotpatch.export import INT8_CHECK_CLIPS, INT8_TOLERANCE, OnnxModel, moving_clip

    model, x = author_vpts.build("mixste")
    patched = hotpatch.apply(model, n=1, f=9, recover="linear").eval()
    check = export_onnx(patched, tmp_path / "m8.onnx", example=x, quantize="int8", per_channel=per_channel)
    fp32 = export_onnx(patched, tmp_path / "m.onnx", example=x)
    linears = _weight_matmuls(fp32.path)["MatMul"]
    assert _weight_matmuls(check.path) == {"MatMulInteger": linears}  # every linear layer in int8
    assert 0 < check.relative_error <= INT8_TOLERANCE and check.quantize == "int8"
    onnx_model = OnnxModel(check.path)  # the file records the patch and the input shape
    assert onnx_model.hotpatch_config["f"] == 9 and onnx_model.input_shape == tuple(x.shape[1:])
    rels = []
    for seed in range(INT8_CHECK_CLIPS):  # the reported error is the median over the check's clips
        clip = moving_clip(tuple(x.shape), seed)
        with torch.no_grad():
            want = patched(clip)
        rels.append(float((onnx_model(clip) - want).pow(2).mean().sqrt() / want.pow(2).mean().sqrt()))
    assert sorted(rels)[(len(rels) - 1) // 2] == pytest.approx(check.relative_error, rel=1e-3)


@onnx_missing
def test_int8_export_that_fails_its_check_leaves_no_file(tmp_path):
    model, x = author_vpts.build("mixste")
    with pytest.raises(ExportError, match=r"RMS, median of 4 clips; > 1e-06%"):
        export_onnx(model, tmp_path / "m8.onnx", example=x, quantize="int8", rtol=1e-8)
    assert not (tmp_path / "m8.onnx").exists()
    with pytest.raises(ExportError):
        export_onnx(model, tmp_path / "m8.onnx", example=x, quantize="int8", rtol=1e-8, keep_failed=True)
    assert not (tmp_path / "m8.onnx").exists() and (tmp_path / "m8.failed.onnx").stat().st_size > 0


@onnx_missing
def test_static_int8_quantization_needs_calibration_clips(tmp_path):
    from hotpatch.export import quantize_onnx

    model, x = author_vpts.build("mixste")
    export_onnx(model, tmp_path / "m.onnx", example=x)
    with pytest.raises(ExportError, match="calibration"):
        quantize_onnx(tmp_path / "m.onnx", tmp_path / "s.onnx", method="static")
    clips = [torch.randn(x.shape, generator=torch.Generator().manual_seed(i)).numpy() for i in range(3)]
    quantize_onnx(tmp_path / "m.onnx", tmp_path / "s.onnx", method="static", calibration=clips)
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(tmp_path / "s.onnx")


@onnx_missing
def test_onnx_model_runs_any_batch_through_a_fixed_batch_file(tmp_path):
    from hotpatch.export import OnnxModel

    model, x = author_vpts.build("mixste")
    patched = hotpatch.apply(model, n=1, f=9, recover="linear").eval()
    x = torch.cat([x[:1], x[:1]])  # a file for batch 2
    export_onnx(patched, tmp_path / "b2.onnx", example=x)
    runner = OnnxModel(tmp_path / "b2.onnx")
    assert runner.batch == 2 and runner.input_shape == tuple(x.shape[1:]) and runner.output_frames == x.shape[1]
    clips = torch.randn((5, *x.shape[1:]), generator=torch.Generator().manual_seed(3))  # two full chunks and a half
    with torch.no_grad():
        want = patched(clips)
    np.testing.assert_allclose(runner(clips).numpy(), want.numpy(), atol=1e-4)
    with pytest.raises(ExportError, match="one \\(B, F, J, C\\) clip"):
        OnnxModel(_two_input_file(tmp_path))


def _two_input_file(tmp_path):
    class Two(nn.Module):
        def forward(self, a, b):
            return a + b

    path = tmp_path / "two.onnx"
    export_onnx(Two(), path, example=(torch.randn(1, 3, 17, 2), torch.randn(1, 3, 17, 2)))
    return path
