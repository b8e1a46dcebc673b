"""Every refusal of the engine, on generated unpatchable models: the whole message is at most
``refusals.LIMIT`` (600) characters, and however long the model's names and lists, it keeps
what was found (its start), the reason and the fix.

Each path builds models from drawn names (identifiers up to 60 characters), block counts and
list counts; long lists are shortened ("and 3 more"), never the reason or the fix. The longest
message seen is printed at the end of the module (``pytest -s``)."""

from __future__ import annotations

import keyword
import os

import pytest
import torch
import torch.nn as nn
from einops import rearrange
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import hotpatch
import wild_dct
from author_vpts import Block
from hotpatch.engine.refusals import LIMIT
from wild_vpts import MixerBlock

F, J, DIM, HEADS = 9, 17, 8, 2
EXAMPLES = {"ci": 6, "dev": 60}.get(os.environ.get("HYPOTHESIS_PROFILE", "ci"), 6)
LONGEST: dict[str, tuple[int, str]] = {}
NOT_TRANSFORMER = "Convolution, graph-convolution, MLP and U-shaped lifters"
LEAF_FIX = "pass leaf_modules=[YourBlockClass]."

_TAKEN = set(dir(nn.Module())) | {"embed", "head", "order", "kinds", "body", "norm"}
names = st.from_regex(r"[a-z][a-z0-9_]{0,59}", fullmatch=True).filter(
    lambda s: not keyword.iskeyword(s) and s not in _TAKEN)
class_names = st.from_regex(r"[A-Z][A-Za-z0-9]{0,59}", fullmatch=True)
lists = st.lists(st.tuples(names, st.integers(1, 5)), min_size=1, max_size=5, unique_by=lambda t: t[0])
#: The longest lists the strategies draw: five lists of five blocks, 60-character names.
LONGEST_LISTS = [(f"{'token_mixing_stage_' * 3}{i}"[:58] + f"_{i}", 5) for i in range(5)]
LONG_NAMES = [name for name, _ in LONGEST_LISTS]
LONG_CLASS = "A" + "VeryLongVideoPoseTransformerClassName" * 2


def _named(cls: type, name: str) -> type:
    """``cls`` under another class name (the name messages quote)."""
    return type(name, (cls,), {})


def check(path: str, run, error: type, start: str, *, contains: tuple[str, ...] = (), fix: str) -> str:
    """Run ``run``; its refusal must be an ``error``, fit the limit, start with ``start``, hold
    ``contains`` and the ``fix`` (at its end when ``fix`` ends a sentence)."""
    with pytest.raises(error) as err:
        run()
    msg = str(err.value)
    if len(msg) > LONGEST.get(path, (0, ""))[0]:
        LONGEST[path] = (len(msg), msg)
    assert len(msg) <= LIMIT, f"{len(msg)} characters: {msg}"
    assert msg.startswith(start), msg
    for part in contains:
        assert part in msg, (part, msg)
    assert fix in msg, (fix, msg)
    if fix.endswith("."):
        assert msg.endswith(fix), msg
    return msg


def clip(joints: int = J, channels: int = 2) -> torch.Tensor:
    return torch.randn(1, F, joints, channels, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module", autouse=True)
def _report_longest():
    yield
    if LONGEST:
        for path, (n, msg) in sorted(LONGEST.items(), key=lambda kv: kv[1][0]):
            print(f"\n{n:4d} {path}: {msg}")
        path, (n, _) = max(LONGEST.items(), key=lambda kv: kv[1][0])
        print(f"\nlongest refusal over the generated models: {n} characters ({path})")


# ------------------------------------------------------------------ generated unpatchable models


class ListsOfBlocks(nn.Module):
    """Blocks in several separately named lists, run one list after the other on (B, F, C) tokens
    (``spatial``: on (B·F, J, C), attention within each frame)."""

    def __init__(self, lists: list[tuple[str, int]], make, spatial: bool = False, embed: int = J * 2):
        super().__init__()
        self.order, self.spatial = [n for n, _ in lists], spatial
        self.embed = nn.Linear(2 if spatial else embed, DIM)
        for name, count in lists:
            setattr(self, name, nn.ModuleList([make() for _ in range(count)]))
        self.head = nn.Linear(DIM, 3 if spatial else J * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(rearrange(x, "b f j c -> (b f) j c") if self.spatial else x.reshape(b, f, j * c))
        for name in self.order:
            for blk in getattr(self, name):
                x = blk(x)
        x = self.head(x)
        return rearrange(x, "(b f) j c -> b f j c", b=b) if self.spatial else x.view(b, f, j, 3)


class Coefficients(ListsOfBlocks):
    """Every block works on DCT coefficients of the clip (an opaque function mixes all frames)."""

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(wild_dct.dct(x.reshape(b, f, j * c), dim=1))
        for name in self.order:
            for blk in getattr(self, name):
                x = blk(x)
        return wild_dct.idct(self.head(x), dim=1).view(b, f, j, 3)


class Layers(nn.Module):
    """No transformer block: named layers of drawn types one after the other on (B, F·?, C)."""

    def __init__(self, layers: list[tuple[str, int]]):
        super().__init__()
        self.embed = nn.Linear(J * 2, DIM)
        kinds = [lambda: nn.Linear(DIM, DIM), lambda: nn.LayerNorm(DIM), lambda: nn.Conv1d(DIM, DIM, 3, padding=1),
                 lambda: nn.BatchNorm1d(DIM), lambda: nn.GroupNorm(2, DIM), lambda: nn.PReLU(DIM)]
        self.order, self.kinds = [], []
        for name, kind in layers:
            setattr(self, name, kinds[kind % len(kinds)]())
            self.order.append(name)
            self.kinds.append(kind % len(kinds))
        self.head = nn.Linear(DIM, J * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, j * c))
        for name, kind in zip(self.order, self.kinds):
            layer = getattr(self, name)
            x = layer(x) if kind in (0, 1) else layer(x.transpose(1, 2)).transpose(1, 2)
        return self.head(x).view(b, f, j, 3)


class Resampled(nn.Module):
    """Attention within each frame; frames mixed only by named stride-3 convolutions down and up."""

    def __init__(self, blocks: list[tuple[str, int]], convs: list[str]):
        super().__init__()
        self.embed = nn.Linear(2, DIM)
        self.order = [n for n, _ in blocks]
        for name, count in blocks:
            setattr(self, name, nn.ModuleList([Block(DIM, HEADS) for _ in range(count)]))
        self.convs = list(convs)
        for i, name in enumerate(convs):
            cls = nn.Conv2d if i % 2 == 0 else nn.ConvTranspose2d
            setattr(self, name, cls(DIM, DIM, kernel_size=(3, 1), stride=(3, 1)))
        self.head = nn.Linear(DIM, 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = rearrange(self.embed(x), "b f j c -> b c f j")
        for i, name in enumerate(self.convs):
            x = getattr(self, name)(x)
            t = x.shape[2]
            x = rearrange(x, "b c t j -> (b t) j c")
            for blk in getattr(self, self.order[i % len(self.order)]):
                x = blk(x)
            x = rearrange(x, "(b t) j c -> b c t j", t=t)
        if len(self.convs) % 2:  # back to F frames
            x = torch.nn.functional.interpolate(x, size=(f, j))
        return self.head(rearrange(x, "b c f j -> b f j c"))


class Temporal(ListsOfBlocks):
    """A patchable VPT (attention over frames) with its blocks in drawn lists."""

    def __init__(self, lists, embed: int = J * 2):
        super().__init__(lists, lambda: Block(DIM, HEADS), embed=embed)
        self.pos = nn.Parameter(torch.randn(1, F, DIM) * 0.1)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, j * c)) + self.pos
        for name in self.order:
            for blk in getattr(self, name):
                x = blk(x)
        return self.head(x).view(b, f, j, 3)


class ValueBranch(Temporal):
    """A branch on a tensor's value in the module that holds the blocks: fx cannot trace it."""

    def forward(self, x):
        if x.mean() > 100.0:
            x = x * 0.5
        return super().forward(x)


class BatchBranch(Temporal):
    def forward(self, x):
        if x.shape[0] > 1:
            x = x * 1.0
        return super().forward(x)


# ------------------------------------------------------------------ one property per refusal path

SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(lists=lists)
@example(lists=LONGEST_LISTS)
def test_frame_sized_mixers(lists):
    model = ListsOfBlocks(lists, lambda: MixerBlock(F, DIM)).eval()
    check("frame-sized mixers", lambda: hotpatch.apply(model, n=1, f=3, example_input=clip()),
          hotpatch.NoTemporalBlocksError, "found no transformer block that attends across frames (blocks ",
          contains=(f"mix frames but accept only F={F} tokens", NOT_TRANSFORMER), fix=LEAF_FIX)


@SETTINGS
@given(lists=lists)
@example(lists=LONGEST_LISTS)
def test_attention_within_frames_only(lists):
    model = ListsOfBlocks(lists, lambda: Block(DIM, HEADS), spatial=True).eval()
    check("spatial blocks only", lambda: hotpatch.apply(model, n=1, f=3, example_input=clip()),
          hotpatch.NoTemporalBlocksError, "found no transformer block that attends across frames",
          contains=("(spatial)", NOT_TRANSFORMER), fix=LEAF_FIX)


@SETTINGS
@given(layers=st.lists(st.tuples(names, st.integers(0, 5)), min_size=1, max_size=12, unique_by=lambda t: t[0]))
@example(layers=[(f"{name}_{k}"[-60:], k) for name in LONG_NAMES for k in range(2)])
def test_lifters_without_blocks(layers):
    model = Layers(layers).eval()
    check("no blocks", lambda: hotpatch.apply(model, n=1, f=3, example_input=clip()),
          hotpatch.NoTemporalBlocksError, "found no transformer block that attends across frames",
          contains=("Found no transformer blocks; its layers: ",), fix=LEAF_FIX)


@SETTINGS
@given(blocks=lists, convs=st.lists(names, min_size=1, max_size=4, unique=True))
@example(blocks=LONGEST_LISTS, convs=[f"conv_{name}"[:60] for name in LONG_NAMES[:4]])
def test_frames_mixed_only_by_resampling_layers(blocks, convs):
    convs = [c for c in convs if c not in {n for n, _ in blocks}] or ["down"]
    model = Resampled(blocks, convs).eval()
    check("resampling layers", lambda: hotpatch.apply(model, n=1, f=3, example_input=clip()),
          hotpatch.NoTemporalBlocksError, "found no transformer block that attends across frames",
          contains=("frames are mixed by layers that resample them: ",), fix=LEAF_FIX)


@SETTINGS
@given(lists=lists)
@example(lists=LONGEST_LISTS)
def test_blocks_on_coefficients(lists):
    model = Coefficients(lists, lambda: Block(DIM, HEADS)).eval()
    check("coefficients", lambda: hotpatch.apply(model, n=1, f=3, example_input=clip()),
          hotpatch.NoTemporalBlocksError, "found no transformer block that attends across frames (",
          contains=("mixes all frames: its output holds coefficients",), fix=LEAF_FIX)


@SETTINGS
@given(lists=lists, name=class_names)
@example(lists=LONGEST_LISTS, name=LONG_CLASS)
def test_a_cut_with_no_level_after_it(lists, name):
    model = _named(Temporal, name)(lists).eval()
    levels = sum(c for _, c in lists)
    check("n too large", lambda: hotpatch.apply(model, n=levels, f=3, example_input=clip()),
          hotpatch.ConfigError, f"n={levels}, but the model has {levels} levels of temporal blocks",
          fix="pass 1 <= n <=")


@SETTINGS
@given(lists=lists, name=class_names)
@example(lists=LONGEST_LISTS, name=LONG_CLASS)
def test_a_value_branch_that_fx_cannot_trace(lists, name):
    model = _named(ValueBranch, name)(lists).eval()
    check("untraceable branch", lambda: hotpatch.apply(model, n=1, f=3, example_input=clip()),
          hotpatch.TraceFailure, f"could not trace {name} with torch.fx", fix="Fix: make that line independent")


@SETTINGS
@given(lists=lists, name=class_names)
@example(lists=LONGEST_LISTS, name=LONG_CLASS)
def test_a_branch_on_the_batch_size(lists, name):
    model = _named(BatchBranch, name)(lists).eval()
    check("batch branch", lambda: hotpatch.apply(model, n=1, f=3, example_input=clip()),
          hotpatch.TraceFailure, "the branch at ", contains=("depends on the batch size",),
          fix="Fix: make the branch independent of the batch size")


@SETTINGS
@given(lists=lists, name=class_names, width=st.integers(4, 40).filter(lambda w: w not in (17 * 2, 17 * 3)))
@example(lists=LONGEST_LISTS, name=LONG_CLASS, width=7)
def test_an_input_shape_that_cannot_be_inferred(lists, name, width):
    model = _named(Temporal, name)(lists, embed=width).eval()
    model.pos = None  # no (1, F, C) embedding to read F from either
    check("input shape", lambda: hotpatch.apply(model, n=1, f=3), hotpatch.InputShapeError,
          f"could not infer the input shape of {name}", fix="pass example_input=torch.randn(1, F, J, C)")


@SETTINGS
@given(lists=lists, joints=st.integers(1, 40).filter(lambda j: j != J))
@example(lists=LONGEST_LISTS, joints=40)
def test_an_example_the_model_rejects(lists, joints):
    model = Temporal(lists).eval()
    check("rejected example", lambda: hotpatch.apply(model, n=1, f=3, example_input=clip(joints)),
          hotpatch.InputShapeError, "the model rejects example_input",
          fix="Pass example_input= with one clip the model accepts.")


@SETTINGS
@given(lists=lists, path=st.lists(names, min_size=1, max_size=4))
@example(lists=LONGEST_LISTS, path=LONG_NAMES[:4])
def test_a_model_that_holds_a_patched_one(lists, path):
    patched = hotpatch.apply(Temporal([("blocks", 2)]).eval(), n=1, f=3, example_input=clip())
    outer = inner = nn.Module()
    for part in path[:-1]:
        setattr(inner, part, nn.Module())
        inner = getattr(inner, part)
    setattr(inner, path[-1], patched)
    outer.extra = Temporal(lists)
    check("already patched", lambda: hotpatch.apply(outer, n=1, f=3, example_input=clip()),
          hotpatch.AlreadyPatchedError, "its submodule ", contains=("is already patched by hotpatch",),
          fix="p.patch(n, f) for each setting you want to try.")


@pytest.mark.parametrize("f", [1, 2, 4, 5, 7, 8, 10])
def test_an_f_that_a_strided_stage_cannot_take(f):
    import frame_use_vpts

    model, x = frame_use_vpts.build("stridedformer")
    check("f of a strided stage", lambda: hotpatch.apply(model, n=1, f=f, example_input=x[:1]),
          hotpatch.ConfigError, f"f={f} does not fit the strided stage", fix="; pass one of them.")


def _mixste(frames: int):
    import author_vpts

    return author_vpts.MixSTELike(num_frame=frames).eval(), torch.randn(1, frames, 17, 2)


def _strided():
    import frame_use_vpts

    model, x = frame_use_vpts.build("stridedformer")
    return model, x[:1]


def _zero_tokens():
    import layerscale_vpt

    torch.manual_seed(0)
    return layerscale_vpt.TrajectoryVPT(zero_embed=True, joint_major=True), None



def _folded(name: str):
    import folded_vpts

    model, x = folded_vpts.build(name)
    return model, x[:1]

def _table_row():
    import context_layout_vpts

    model, x = context_layout_vpts.build("table_row")
    return model, x[:1]


@pytest.mark.parametrize("build, n, error, start, fix", [
    (lambda: _mixste(17), 1, hotpatch.AmbiguousFrameAxisError, "tensor alive at the cut",
     "otherwise build it with a different F."),
    (lambda: _mixste(32), 1, hotpatch.AmbiguousFrameAxisError, "tensor alive at the cut",
     "otherwise build it with a different F."),
    (_strided, 2, hotpatch.RewriteError, "the cut before `stages.1.0` falls after the strided stage",
     "choose n <= 1 so that the cut comes before it."),
    (_zero_tokens, 1, hotpatch.RewriteError, "tensor alive at the cut",
     "patch the trained model, or pass a non-constant example_input."),
    (lambda: _folded("class_token"), 1, hotpatch.RewriteError, "no tensor alive before `blocks.1` (the cut)",
     "patch a model whose blocks pass the frames on an axis of their own."),
    (lambda: _folded("streams"), 1, hotpatch.RewriteError, "tensor alive at the cut `blocks_0` of shape (4, 27, 32)",
     "or patch the model built with one stream per sample."),
    (_table_row, 1, hotpatch.RewriteError, "`time_pos` (a per-frame context of shape (1, 27, 32), no batch axis)",
     "or choose n so that the cut comes after this block."),
], ids=["frames_equal_joints", "frames_equal_channels", "cut_after_strided_stage", "all_tokens_equal",
        "frames_folded_with_other_tokens", "batch_folded_with_copies", "context_in_a_layout_of_the_block"])
def test_refusals_of_the_rewrite(build, n, error, start, fix):
    model, x = build()
    check("rewrite", lambda: hotpatch.apply(model, n=n, f=5, example_input=x), error, start, fix=fix)


def test_every_refusal_in_this_module_stays_within_the_limit():
    """Runs last in this module (pytest keeps file order): the longest message over every path."""
    assert LONGEST and max(n for n, _ in LONGEST.values()) <= LIMIT
