"""The torch.fx engine: trace, analyse, rewrite. Knows no data set, no CLI, no training.

Pipeline: :func:`trace` (``trace.py``, with ``specialise.py`` for branches on the input's
sizes and ``opaque.py`` for code fx cannot trace) -> :func:`analyse` (``analyse.py``, with
``mixing.py`` for which ops mix frames and ``reductions.py`` for strided stages) ->
:func:`rewrite` (``rewrite.py``: the ordered list of passes in ``passes/``, sharing the graph
under edit of ``edit.py`` and inserting the modules of ``wrappers.py``).

The stage functions stay in their modules (``hotpatch.engine.trace.trace``,
``hotpatch.engine.analyse.analyse``, ``hotpatch.engine.rewrite.rewrite``): re-exporting them here
would hide the submodules of the same names.
"""

from hotpatch.engine.analyse import Plan
from hotpatch.engine.config import PatchConfig
from hotpatch.engine.rewrite import PASSES, stage_pruners

__all__ = ["PASSES", "PatchConfig", "Plan", "stage_pruners"]
