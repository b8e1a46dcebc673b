"""``hotpatch.atomic``: every write goes to a temp file, is flushed (fsync), renamed, and its folder
flushed; and no module of the package or of ``benchmarks/`` writes a file any other way."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import numpy as np
import pytest

import hotpatch.atomic as atomic

ROOT = Path(__file__).resolve().parents[1]

#: Calls that write a file: the function name (last part of a dotted name).
WRITERS = {"save", "savez", "savez_compressed", "savefig", "write_text", "write_bytes", "to_csv", "touch", "dump",
           "imwrite", "mimwrite", "mimsave", "copy", "copyfile", "copy2", "copytree", "move", "rename", "replace",
           "symlink_to", "hardlink_to", "link"}
#: Receivers of a writer-named call that write nothing (``str.replace``, ``hotpatch.save`` itself goes
#: through this module, ``dataclasses.replace``).
NOT_FILES = {"dataclasses", "hotpatch", "saving", "copy"}
#: Calls that return a temp path of hotpatch.atomic (``temp_path(p)``, ``Staged().path(p)``).
_TEMP_MAKERS = re.compile(r"^(?:.*\.)?temp_path$|^(?:staged|stage|outputs?)\.path$|^(?:tempfile\.)?mkdtemp$")
#: Modules whose own job is writing (the one place that may write directly).
EXEMPT = {"hotpatch/atomic.py"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return _dotted(node.func) + "()"
    return "?"


class _Writes(ast.NodeVisitor):
    """Calls that write a file to a place other than the temp name of an enclosing
    ``with atomic_write(...) as tmp`` (or a handle opened on it)."""

    def __init__(self) -> None:
        self.safe: list[set[str]] = [set()]
        self.found: list[tuple[int, str]] = []

    def _is_safe(self, node: ast.AST) -> bool:
        """A temp name of hotpatch.atomic: bound by ``with atomic_write(..) as tmp`` (or
        ``atomic_directory``), by ``tmp = temp_path(..)`` / ``tmp = staged.path(..)``, a handle
        opened on one, or a path inside a temp folder (``tmp / "config.json"``)."""
        names = set().union(*self.safe)
        if isinstance(node, ast.Name):
            return node.id in names
        if isinstance(node, ast.Call) and _dotted(node.func) in ("str", "os.fspath", "Path") and node.args:
            return self._is_safe(node.args[0])
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            return self._is_safe(node.left)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                "joinpath", "with_suffix", "with_name"):
            return self._is_safe(node.func.value)
        return False

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        call = node.value
        if isinstance(call, ast.Call) and _TEMP_MAKERS.match(_dotted(call.func)):
            self.safe[-1].update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif self._is_safe(call):  # a path derived from a temp name
            self.safe[-1].update(t.id for t in node.targets if isinstance(t, ast.Name))

    def visit_With(self, node: ast.With) -> None:
        self.safe.append(set())
        for item in node.items:
            self.visit(item.context_expr)
            call = item.context_expr
            name = item.optional_vars.id if isinstance(item.optional_vars, ast.Name) else None
            if name and isinstance(call, ast.Call):
                func = _dotted(call.func)
                opened_safe = func.split(".")[-1] == "open" and call.args and self._is_safe(call.args[0])
                scratch = func.split(".")[-1] in ("TemporaryDirectory", "NamedTemporaryFile")  # not an output
                if func.split(".")[-1] in ("atomic_write", "atomic_directory") or opened_safe or scratch:
                    self.safe[-1].add(name)
        for stmt in node.body:
            self.visit(stmt)
        self.safe.pop()

    def visit_Call(self, node: ast.Call) -> None:
        func = _dotted(node.func)
        last = func.split(".")[-1]
        receiver = node.func.value if isinstance(node.func, ast.Attribute) else None
        if last == "open" and _writing_mode(node) and not (node.args and self._is_safe(node.args[0])) \
                and not (receiver is not None and self._is_safe(receiver)):
            self.found.append((node.lineno, f"{func}(..., writing)"))
        elif last in WRITERS and isinstance(node.func, ast.Attribute) and _dotted(receiver).split(".")[0] not in NOT_FILES:
            if last == "replace" and not func.startswith(("os.", "shutil.")) and not _looks_like_path(receiver):
                pass  # str.replace
            elif last == "copy" and not func.startswith("shutil."):
                pass  # tensor / dict copy
            elif last == "dump" and not func.startswith(("json.", "pickle.", "yaml.")):
                pass
            elif not (self._is_safe(receiver) or any(self._is_safe(a) for a in node.args)
                      or any(self._is_safe(k.value) for k in node.keywords)):
                self.found.append((node.lineno, func))
        self.generic_visit(node)


def _writing_mode(call: ast.Call) -> bool:
    mode = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "mode"), None)
    return isinstance(mode, ast.Constant) and isinstance(mode.value, str) and any(c in mode.value for c in "wax+")


def _looks_like_path(node: ast.AST | None) -> bool:
    text = _dotted(node) if node is not None else ""
    return any(w in text.lower() for w in ("path", "tmp", "file", "out")) or text.startswith("Path(")


def direct_writes(source: str) -> list[tuple[int, str]]:
    visitor = _Writes()
    visitor.visit(ast.parse(source))
    return visitor.found


def _modules() -> list[Path]:
    files = sorted((ROOT / "hotpatch").rglob("*.py")) + sorted((ROOT / "benchmarks").rglob("*.py"))
    return [f for f in files if f.relative_to(ROOT).as_posix() not in EXEMPT]


def test_no_module_writes_a_file_except_through_hotpatch_atomic():
    found = [f"{path.relative_to(ROOT)}:{line}: {what}" for path in _modules()
             for line, what in direct_writes(path.read_text(encoding="utf-8"))]
    assert not found, "write these through hotpatch.atomic (atomic_write / write_text / write_npz):\n" + "\n".join(found)


@pytest.mark.parametrize("source, bad", [
    ("from pathlib import Path\nPath(p).write_text(t)", True),
    ("import torch\ntorch.save(m.state_dict(), path)", True),
    ("import numpy as np\nnp.savez(out, **arrays)", True),
    ("with open(p, 'w') as fh:\n    fh.write(t)", True),
    ("with open(p, mode='ab') as fh:\n    pass", True),
    ("import os\nos.replace(a, b)", True),
    ("fig.savefig(path)", True),
    ("with atomic_write(p) as tmp:\n    torch.save(m, tmp)", False),
    ("with atomic_write(p) as tmp, open(tmp, 'w') as fh:\n    json.dump(x, fh)", False),
    ("with atomic_write(p) as tmp:\n    anim.save(str(tmp), writer=w)", False),
    ("with atomic_write(p) as tmp:\n    tmp.write_text(t)", False),
    ("with open(p) as fh:\n    fh.read()", False),
    ("name = text.replace('a', 'b')", False),
    ("import hotpatch\nhotpatch.save(patched, path)", False),
    ("with atomic_write(p) as tmp:\n    pass\nPath(p).write_bytes(b)", True),  # after the block: direct
    ("with atomic_directory(d) as tmp:\n    (tmp / 'config.json').write_text(t)", False),
    ("with atomic_directory(d) as tmp:\n    torch.save(w, tmp / 'model.pt')", False),
    ("tmp = staged.path(out)\nnp.savez(tmp, **a)", False),
    ("tmp = temp_path(out)\nnp.savez(tmp, **a)\nnp.savez(out, **a)", True),
    ("with tempfile.TemporaryDirectory() as work:\n    program.save(str(Path(work) / 'a.onnx'))", False),
])
def test_the_write_check_tells_direct_writes_from_atomic_ones(source, bad):
    assert bool(direct_writes(source)) == bad


# ------------------------------------------------------------------ what atomic_write does


@pytest.fixture
def spy(monkeypatch):
    """Record each rename (what the target held at that moment) and each fsync (the path of its fd)."""
    events: list[tuple] = []
    real_replace, real_fsync = os.replace, os.fsync

    def replace(src, dst):
        dst = Path(dst)
        events.append(("replace", Path(src), dst, dst.read_bytes() if dst.exists() else None))
        return real_replace(src, dst)

    def fsync(fd):
        events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}")) if os.path.exists("/proc/self/fd") else fd))
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "replace", replace)
    monkeypatch.setattr(atomic.os, "fsync", fsync)
    return events


@pytest.mark.parametrize("write, check", [
    (lambda p: atomic.write_text(p, "new"), lambda p: p.read_text() == "new"),
    (lambda p: atomic.write_bytes(p, b"new"), lambda p: p.read_bytes() == b"new"),
    (lambda p: atomic.write_npz(p, x=np.arange(3)), lambda p: np.load(p)["x"].tolist() == [0, 1, 2]),
], ids=["write_text", "write_bytes", "write_npz"])
def test_every_writer_renames_a_flushed_temp_file_over_an_untouched_target(spy, tmp_path, write, check):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    write(path)
    assert check(path)
    renames = [e for e in spy if e[0] == "replace"]
    assert len(renames) == 1
    _, src, dst, before = renames[0]
    assert dst == path and src.parent == path.parent and src != path
    assert before == b"old"  # the target was not written in place before the rename
    assert not src.exists()
    order = [e[0] for e in spy]
    assert order.index("fsync") < order.index("replace")  # the file's bytes reach the disk first
    if os.name == "posix":
        assert order[-1] == "fsync"  # then the folder, so that the new name survives a crash
    if os.path.exists("/proc/self/fd"):
        synced = [e[1] for e in spy if e[0] == "fsync"]
        assert synced[0].name == src.name
        if os.name == "posix":
            assert synced[-1] == path.parent.resolve()


def test_a_directory_is_flushed_file_by_file_before_it_replaces_the_old_one(spy, tmp_path):
    path = tmp_path / "saved"
    path.mkdir()
    (path / "config.json").write_text("old")
    with atomic.atomic_directory(path, replaceable=lambda p: True) as tmp:
        (tmp / "config.json").write_text("new")
        (tmp / "model.safetensors").write_bytes(b"weights")
    assert (path / "config.json").read_text() == "new" and (path / "model.safetensors").read_bytes() == b"weights"
    order = [e[0] for e in spy]
    last_rename = len(order) - 1 - order[::-1].index("replace")
    assert order[:order.index("replace")].count("fsync") >= 3  # both files and the temp folder, before any rename
    if os.name == "posix":
        assert order[last_rename + 1:] == ["fsync"]  # then the parent, so the new name survives a crash
    if os.path.exists("/proc/self/fd"):
        synced = {e[1].name for e in spy if e[0] == "fsync"}
        assert {"config.json", "model.safetensors"} <= synced


def test_a_write_that_fails_half_way_leaves_the_older_file_as_it_was(tmp_path):
    path = tmp_path / "report.md"
    atomic.write_text(path, "old report")
    with pytest.raises(UnicodeEncodeError):
        atomic.write_text(path, "new report " + "\udcff")  # fails after the file was opened and truncated
    assert path.read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]  # no temp file left
