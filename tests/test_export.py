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
