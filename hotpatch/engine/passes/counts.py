"""Pass "sizes and literals": every use of the frame count after a cut is remapped.

An int node that holds the frame count (F or B·F, from ``b, f, n, c = x.shape`` or
``x.size(1)``) used after a cut is rescaled to the stage's f at run time (``rescale_count``);
a count made in an earlier stage is rescaled to the later stage's f. Int literals equal to F
in the size arguments of shape ops that make a frame axis (``x.view(b, 243, c)``, einops
keyword sizes) become f. After the recovery, counts and literals go back to F (or to
``recover_frames`` when it differs).
"""

from __future__ import annotations

import torch.fx as fx

from hotpatch.engine.edit import EINOPS, Edit, RewritePass, edit_sizes, is_sizing


class FrameCounts(RewritePass):
    name = "sizes and literals"

    def run(self, edit: Edit) -> None:
        for u in edit.pruned_nodes():
            stage = edit.stage(u)
            f = edit.frames_at(stage)
            for a in list(u.all_input_nodes):
                fa = edit.fact(a)
                if a in edit.indices or fa is None or fa.kind != "int" or not fa.count:
                    continue
                if a not in edit.pruned:
                    edit.replace_count(u, a, edit.cfg.frames, f)
                elif edit.stage(a) < stage:  # a count made in an earlier stage: rescale to this one's
                    edit.replace_count(u, a, edit.frames_at(edit.stage(a)), f)
            replace_literals(edit, u, f)
        if edit.post_frames != edit.cfg.frames:
            for u in [n for n in edit.nodes if edit.is_post(n)]:
                for a in list(u.all_input_nodes):
                    fa = edit.fact(a)
                    if fa is not None and fa.kind == "int" and fa.count and not edit.is_post(a) and a not in edit.pruned:
                        edit.replace_count(u, a, edit.cfg.frames, edit.post_frames)
                replace_literals(edit, u, edit.post_frames)

    def check(self, edit: Edit) -> None:
        for u in edit.pruned_nodes():
            if edit.frames_at(edit.stage(u)) == edit.cfg.frames:
                continue
            for a in u.all_input_nodes:
                fa = edit.fact(a)
                if a not in edit.pruned and a not in edit.indices and fa is not None and fa.kind == "int" and fa.count:
                    raise self.fail(f"`{u.name}` still reads the frame count `{a.name}` of the unpruned clip")


def replace_literals(edit: Edit, u: fx.Node, new: int) -> None:
    """Int literals equal to F in the size arguments of shape ops that make a frame axis."""
    old = edit.cfg.frames
    if new == old:
        return
    f = edit.fact(u)
    out_axes = f.axes if f is not None and f.kind == "tensor" else None
    if not out_axes:
        return
    if is_sizing(u):
        edit_sizes(u, lambda i, s: new if type(s) is int and s == old and i < len(out_axes) and out_axes[i] == ("F",) else s)
    elif u.op == "call_function" and u.target in EINOPS and any(a is not None and "F" in a for a in out_axes):
        u.kwargs = {k: new if type(v) is int and v == old else v for k, v in u.kwargs.items()}
