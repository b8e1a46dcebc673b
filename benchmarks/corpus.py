"""Where hotpatch stands on the corpus of other people's models (tests/corpus, issue 27 item 7).

For each entry of ``tests/corpus/corpus_table.py``: the package and its installed version, the
model, what ``hotpatch.apply(model, n=1, f=9)`` did (patched; refused as the corpus accepts;
failing, with main's error), how long it took, and whether the entry's recorded state still
holds: ``flip`` where an entry marked as failing today now passes (remove its ``today``, the
strict xfail), ``changed`` where it fails with another error than the one recorded.

    python benchmarks/corpus.py [--only NAME ...] [--markdown benchmarks/results/corpus.md]

Needs the corpus packages (``tests/corpus/README.md`` says how to install them). Apply times on a
shared machine are noisy; they are here to spot a model that takes far longer than the others.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "corpus"), str(ROOT / "tests")]

import torch  # noqa: E402

import hotpatch  # noqa: E402
from corpus_table import ENTRIES, KEEP, N  # noqa: E402
from hotpatch.atomic import write_text  # noqa: E402
from hotpatch.errors import HotpatchError  # noqa: E402
from thirdparty import version  # noqa: E402

COLUMNS = ("model", "package", "version", "class", "result", "apply s", "record", "error")


def run(entry) -> dict[str, str]:
    """One row: apply the entry's model and compare what happened with the corpus' record."""
    row = {"model": entry.name, "package": entry.package, "version": version(entry.package), "class": entry.model}
    if row["version"] == "missing":
        return {**row, "result": "not installed", "apply s": "", "record": "", "error": ""}
    model, x = entry.build()
    start, error = time.perf_counter(), None
    try:
        hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    except HotpatchError as exc:
        error = exc
    seconds = f"{time.perf_counter() - start:.1f}"
    accepted = error is None and entry.patches or (error is not None and entry.refuses_cleanly(error))
    result = "patched" if error is None else "refused" if accepted else "fails"
    if entry.today is None:
        record = "ok" if accepted else "NEW FAILURE"
    else:
        record = "flip" if accepted else "as recorded" if entry.today.holds(error) else "changed"
    text = "" if error is None else f"{type(error).__name__}: {' '.join(str(error).split())}"
    text = re.sub(r"\S*/site-packages/", "site-packages/", text.replace(f"{ROOT}/", ""))  # no machine paths
    return {**row, "result": result, "apply s": seconds, "record": record, "error": text}


def table(rows: list[dict[str, str]], width: int) -> str:
    """A Markdown table; errors cut to ``width`` characters (0: whole)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        error = row["error"] if not width or len(row["error"]) <= width else row["error"][:width - 3] + "..."
        lines.append("| " + " | ".join(error.replace("|", "\\|") if c == "error" else row[c] for c in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", metavar="NAME", help="entries to run (default: all)")
    p.add_argument("--markdown", type=Path, help="also write the table, errors whole, to this file")
    p.add_argument("--width", type=int, default=100, help="cut errors to this many characters on screen (0: whole)")
    args = p.parse_args(argv)
    entries = [e for e in ENTRIES if not args.only or e.name in args.only]
    unknown = set(args.only or ()) - {e.name for e in ENTRIES}
    if unknown:
        p.error(f"unknown entries {sorted(unknown)}; known: {', '.join(e.name for e in ENTRIES)}")
    torch.set_num_threads(1)
    rows = []
    for entry in entries:
        rows.append(run(entry))
        print(f"{entry.name}: {rows[-1]['result']}", file=sys.stderr, flush=True)
    print(table(rows, args.width))
    counts = {r: sum(row["result"] == r for row in rows) for r in ("patched", "refused", "fails")}
    print(f"\n{len(rows)} models: " + ", ".join(f"{n} {r}" for r, n in counts.items()))
    if args.markdown:
        write_text(args.markdown, f"# hotpatch on the corpus (tests/corpus)\n\n{table(rows, 0)}\n")
    return 1 if any(row["record"] in ("NEW FAILURE", "changed") for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
