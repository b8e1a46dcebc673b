"""``hotpatch.Stream``: frame-by-frame lifting equals the offline lift where their windows agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hotpatch
from checks import onnx_missing
from hotpatch.errors import ConfigError, DataError
from hotpatch.lift import lift, normalize
from hotpatch.models import mhformer, mixste, motionbert

#: Tiny builds of every recipe: (module, build kwargs, channels, HoT settings).
RECIPES = {
    "mixste": (mixste, dict(frames=9, dim=16, depth=2, num_heads=2), 2, dict(n=1, f=3, recover="linear")),
    "motionbert": (motionbert, dict(frames=9, dim=16, depth=2, dim_rep=16, num_heads=2), 3,
                   dict(n=1, f=3, recover="linear")),
    "mhformer": (mhformer, dict(frames=27, dim=16, d_hid=32, depth=3), 2, dict(n=1, f=9, pipeline="seq2frame")),
}


def _model(name: str, patched: bool) -> tuple[torch.nn.Module, int, int]:
    module, kwargs, channels, hot = RECIPES[name]
    torch.manual_seed(0)
    model = module.build(**kwargs).eval()
    with torch.no_grad():  # non-trivial weights: zero-initialised embeddings would hide frame mix-ups
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    frames = kwargs["frames"]
    if patched:
        model = hotpatch.apply(model, **hot).eval()
    return model, frames, channels


def _clip(length: int, channels: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 0.05, size=(length, 17, channels)), axis=0)
    return (walk + rng.normal(0, 0.2, size=(1, 17, channels))).astype(np.float32)


def _streamed(stream: hotpatch.Stream, clip: np.ndarray) -> np.ndarray:
    out = list(stream.run(clip))
    assert [i for i, _ in out] == list(range(len(clip)))  # one pose per frame, in order
    return np.stack([p for _, p in out])


@pytest.mark.parametrize("patched", [False, True])
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_stream_equals_the_offline_lift(name, patched):
    model, frames, channels = _model(name, patched)
    seq2frame = name == "mhformer"
    clip = _clip(2 * frames + 5, channels)  # padded at both ends, and several windows
    # seq2frame: every frame's own centred window; seq2seq with delay F-1: non-overlapping windows (stride F)
    offline = lift(model, clip, frames=frames, pipeline="seq2frame" if seq2frame else "seq2seq",
                   stride=None if seq2frame else frames)
    stream = hotpatch.Stream(model, frames=frames, pipeline="seq2frame" if seq2frame else None)
    assert stream.delay == (frames - 1 - frames // 2 if seq2frame else frames - 1)
    np.testing.assert_allclose(_streamed(stream, clip), offline.poses, atol=1e-5)
    assert stream.forwards == (len(clip) if seq2frame else -(-len(clip) // frames))


@pytest.mark.parametrize("delay, hop", [(0, 1), (2, 1), (4, 3), (8, 9)])
def test_seq2seq_frame_comes_from_the_newest_window_the_delay_allows(delay, hop):
    model, frames, channels = _model("mixste", patched=True)
    clip = _clip(23, channels)
    stream = hotpatch.Stream(model, delay=delay, hop=hop)
    got = _streamed(stream, clip)
    ends = list(range(delay, len(clip) - 1 + delay + 1, hop))  # a forward every hop frames, from frame `delay`
    assert stream.forwards == len(ends)
    for t in range(len(clip)):
        end = max(e for e in ends if e <= t + delay)  # the newest window when frame t + delay arrives
        idx = np.clip(np.arange(end - frames + 1, end + 1), 0, len(clip) - 1)  # edge padding at both ends
        with torch.no_grad():
            want = model(torch.from_numpy(clip[idx])[None])[0, frames - 1 - (end - t)].double().numpy()
        np.testing.assert_allclose(got[t], want - want[:1], atol=1e-5)
        assert end - t <= delay  # never more than `delay` frames late


def test_poses_appear_once_delay_frames_followed():
    model, frames, channels = _model("mixste", patched=True)
    stream = hotpatch.Stream(model, delay=3, hop=2)
    clip = _clip(10, channels)
    counts = [len(stream.push(frame)) for frame in clip]
    assert counts == [0, 0, 0] + [1] * 7
    assert [i for i, _ in stream.flush()] == [7, 8, 9]


def test_an_untrained_tra_is_said(caplog):
    module, kwargs, _, _ = RECIPES["mixste"]
    model = module.build(**kwargs).eval()
    hotpatch.Stream(hotpatch.apply(model, n=1, f=3, recover="linear"))
    assert "TRA has no trained weights" not in caplog.text
    hotpatch.Stream(hotpatch.apply(model, n=1, f=3, recover="tra"))  # zero-initialised queries
    assert "the streamed model: the TRA has no trained weights" in caplog.text and "zero_retraining" in caplog.text


def test_seq2frame_with_a_short_delay_pads_the_future_with_the_newest_frame():
    model, frames, channels = _model("mhformer", patched=True)
    clip = _clip(40, channels)
    stream = hotpatch.Stream(model, delay=4)
    got = _streamed(stream, clip)
    c = frames // 2
    for t in (0, 17, 39):
        idx = np.clip(np.arange(t - c, t - c + frames), 0, min(t + 4, len(clip) - 1))
        with torch.no_grad():
            out = model(torch.from_numpy(clip[idx])[None])[0]
        want = (out[c] if len(out) == frames else out[0]).double().numpy()
        np.testing.assert_allclose(got[t], want - want[:1], atol=1e-5)


def test_screen_normalisation_of_pixels_equals_lifting_the_normalised_clip():
    model, frames, _ = _model("mixste", patched=True)
    pixels = 500 + 100 * _clip(30, 2)
    stream = hotpatch.Stream(model, normalize="screen", size=(1000, 800))
    offline = lift(model, normalize(pixels, "screen", width=1000, height=800), frames=frames, stride=frames)
    np.testing.assert_allclose(_streamed(stream, pixels), offline.poses, atol=1e-5)


def test_box_normalisation_uses_each_windows_box():
    model, frames, _ = _model("mixste", patched=True)
    pixels = 500 + 100 * _clip(9, 2)  # one window: its box is the clip's
    got = _streamed(hotpatch.Stream(model, normalize="box"), pixels)
    offline = lift(model, normalize(pixels, "box"), frames=frames)
    np.testing.assert_allclose(got, offline.poses, atol=1e-5)


@onnx_missing
@pytest.mark.parametrize("patched", [False, True])
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_stream_through_an_exported_onnx_model(tmp_path, name, patched):
    from hotpatch.export import export_onnx

    model, frames, channels = _model(name, patched)
    export_onnx(model, tmp_path / "m.onnx", example=torch.from_numpy(_clip(frames, channels))[None])
    clip = _clip(frames + 4, channels)
    pipeline = "seq2frame" if name == "mhformer" and not patched else None  # a patched file records its own
    stream = hotpatch.Stream(str(tmp_path / "m.onnx"), delay=2, pipeline=pipeline)  # F from the file
    assert (stream.frames, stream.pipeline) == (frames, "seq2frame" if name == "mhformer" else "seq2seq")
    eager = hotpatch.Stream(model, delay=2, frames=frames, pipeline=pipeline)
    np.testing.assert_allclose(_streamed(stream, clip), _streamed(eager, clip), atol=1e-4)


def test_bad_settings_and_frames_are_refused():
    model, frames, channels = _model("mixste", patched=True)
    with pytest.raises(ConfigError, match="delay"):
        hotpatch.Stream(model, delay=frames)
    with pytest.raises(ConfigError, match="hop"):
        hotpatch.Stream(model, delay=2, hop=4)
    with pytest.raises(ConfigError, match="size"):
        hotpatch.Stream(model, normalize="screen")
    with pytest.raises(ConfigError, match="frames=F"):
        hotpatch.Stream(_model("mixste", patched=False)[0])
    stream = hotpatch.Stream(model)
    with pytest.raises(DataError, match=r"\(17, 2\)"):
        stream.push(np.zeros((16, 2)))
    with pytest.raises(DataError, match="NaN"):
        stream.push(np.full((17, 2), np.nan))
