"""The paper vs this reproduction: results rows from the runs, joined with the paper.

Results-row format
------------------
Every notebook records what it measured with ``record(run_dir, ...)``, which
keeps one CSV per run folder, ``<run_dir>/results.csv``, with the columns::

    id           an id of SPEC §2 ("T-acc", "F-removal", ...; see coded_lib.companion.paper.IDS)
    quantity     what was measured; reuse the paper's string (coded_lib.companion.paper.quantities(id))
                 to sit beside the paper's number. A quantity that *starts with* a paper
                 quantity of the same id joins it too ("... (residual paths only)").
    ours         our value, as text ("91.3 vs 90.8", "0.38", "holds for 9 of 10 classes")
    data         the data it came from ("Fashion-MNIST, 6000 train / 2000 test images")
    scale        model and training scale ("resnext_mini, 3 epochs, CPU")
    verdict      optional free text; when empty the page derives it from claim_holds
    claim_holds  "True" / "False" / "" : does the paper's qualitative claim for this
                 (id, quantity) hold on this run? (empty: not judged)

One row per (id, quantity) in a run folder: recording the same pair again
replaces it, so rerunning a notebook updates its rows instead of piling them up.

``write_comparison()`` gathers ``runs/**/results.csv`` (``$CODED_RUNS`` if set) and writes the book's page
``book/comparison.md``: every id of SPEC §2 (unmeasured ones say "not run"), the
paper's number with the paper's data and scale, ours with ours, and a second
table with the paper's qualitative claims and whether they hold on our runs.
``python -m coded_lib.companion.report`` does the same from the command line.
"""
import argparse
import csv
import datetime
import os
import re
import tempfile
import warnings
from pathlib import Path

from . import paper

REPO = Path(__file__).resolve().parents[2]
BOOK = REPO / "book"
RESULTS_CSV = "results.csv"
COLUMNS = ["id", "quantity", "ours", "data", "scale", "verdict", "claim_holds"]
NOT_RUN = "not run"

# Which notebook (book chapter) produces each id.
NOTEBOOK_OF = {
    "T-acc": "accuracy", "T-arch": "architecture", "T-codes": "codes", "T-cost": "cost",
    "F-removal": "removal", "F-binary": "binary", "F-bindist": "binary", "F-act": "activations",
    "F-early": "early", "T-agree": "early", "T-calib": "calibration", "F-mu": "ablations",
    "F-pdrop": "ablations", "T-exp": "ablations", "T-concat": "ablations", "T-ratios": "ablations",
    "T-detach": "ablations",
}


def runs_root():
    """``$CODED_RUNS``, else ``runs/`` at the repository root (as coded_lib.train)."""
    return Path(os.environ.get("CODED_RUNS") or REPO / "runs")


def format_value(x):
    """Text for a measured value: numbers to 4 significant digits, lists joined."""
    if isinstance(x, str):
        return x
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, dict):
        return "; ".join(f"{k}: {format_value(v)}" for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return ", ".join(format_value(v) for v in x)
    if hasattr(x, "item"):  # numpy / torch scalars
        x = x.item()
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:,.0f}" if abs(x) >= 10_000 else f"{x:.4g}"
    raise ValueError(f"cannot format {x!r} of type {type(x).__name__}; "
                     "allowed: str, int, float, bool, list, tuple, dict")


def _check_row(id, quantity, ours, data, scale, claim_holds):
    if id not in paper.TITLES:
        raise ValueError(f"unknown id {id!r}; allowed: {', '.join(paper.IDS)}")
    for name, value in (("quantity", quantity), ("data", data), ("scale", scale)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if ours is None or ours == "":
        raise ValueError(f"ours must be a value, got {ours!r}")
    if isinstance(claim_holds, str):
        raise ValueError(f"claim_holds must be True, False or None, got the string {claim_holds!r}")


def record(run_dir, id, quantity, ours, data, scale, verdict=None, claim_holds=None):
    """Add or replace the results row (id, quantity) in ``<run_dir>/results.csv``.

    ``ours`` may be text or a number / list / dict (formatted by ``format_value``);
    ``claim_holds`` says whether the paper's qualitative claim holds on this run
    (True / False / None = not judged). Returns the CSV's path.
    """
    _check_row(id, quantity, ours, data, scale, claim_holds)
    row = {"id": id, "quantity": quantity.strip(), "ours": format_value(ours),
           "data": data.strip(), "scale": scale.strip(), "verdict": verdict or "",
           "claim_holds": "" if claim_holds is None else str(bool(claim_holds))}
    path = Path(run_dir) / RESULTS_CSV
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = read_results(path) if path.exists() else []
    key = (row["id"], row["quantity"])
    for i, old in enumerate(rows):
        if (old["id"], old["quantity"]) == key:
            rows[i] = row
            break
    else:
        rows.append(row)
    _write_csv(path, rows)
    return path


def _write_csv(path, rows):
    # Write then rename, so a reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({c: _csv_cell(r.get(c)) for c in COLUMNS})
    os.replace(tmp, path)


def _csv_cell(v):
    if v is None:
        return ""
    return str(v)


def read_results(path):
    """The rows of one results.csv as dicts; claim_holds back to True / False / None."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = set(COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}; expected {COLUMNS}")
        rows = []
        for r in reader:
            row = {c: (r[c] or "").strip() for c in COLUMNS}
            holds = row["claim_holds"].lower()
            if holds not in ("", "true", "false"):
                raise ValueError(f"{path}: claim_holds must be True, False or empty, got {r['claim_holds']!r}")
            row["claim_holds"] = None if holds == "" else holds == "true"
            rows.append(row)
    return rows


def gather(root=None):
    """All rows of every ``results.csv`` under root (default runs_root()), each with its ``source`` path."""
    root = Path(root) if root is not None else runs_root()
    results = []
    for path in sorted(root.rglob(RESULTS_CSV)):
        for row in read_results(path):
            if row["id"] not in paper.TITLES:
                warnings.warn(f"{path}: unknown id {row['id']!r} skipped")
                continue
            row["source"] = path.relative_to(root).as_posix()
            results.append(row)
    return results


def _norm(s):
    return re.sub(r"\s+", " ", s).strip().lower()


def _match(row, quantities):
    """The paper quantity a result row belongs to: equal, else the longest prefix."""
    q = _norm(row["quantity"])
    hits = [p for p in quantities if q == _norm(p) or q.startswith(_norm(p))]
    return max(hits, key=len) if hits else None


def _verdict(row):
    if row["verdict"]:
        return row["verdict"]
    if row["claim_holds"] is None:
        return "—"
    return "claim holds" if row["claim_holds"] else "claim does not hold"


def groups(results):
    """Join results with the paper: a list of groups, in SPEC §2 order.

    Each group is a dict: id, quantity, paper (paper rows), ours (result rows),
    claim (the paper's claim for it, "" if none). Result rows whose quantity
    matches no paper quantity of their id form groups of their own.
    """
    out = []
    for id in paper.IDS:
        quantities = paper.quantities(id)
        mine = [r for r in results if r["id"] == id]
        matched = {q: [] for q in quantities}
        extra = {}
        for r in mine:
            q = _match(r, quantities)
            if q is None:
                extra.setdefault(r["quantity"], []).append(r)
            else:
                matched[q].append(r)
        for q in quantities:
            rows = paper.rows(id)
            prows = [p for p in rows if p["quantity"] == q]
            claim = next((p["claim"] for p in prows if p["claim"]), "")
            out.append({"id": id, "quantity": q, "paper": prows, "ours": matched[q], "claim": claim})
        for q, rs in extra.items():
            out.append({"id": id, "quantity": q, "paper": [], "ours": rs, "claim": ""})
    return out


def _paper_text(p):
    return f"{p['paper']} ({p['data']}; {p['scale']})"


def comparison_lines(results):
    """Lines of the main table: id, quantity, paper, ours, ours_where, verdict, first."""
    lines = []
    for g in groups(results):
        n = max(len(g["paper"]), len(g["ours"]), 1)
        for i in range(n):
            p = g["paper"][i] if i < len(g["paper"]) else None
            o = g["ours"][i] if i < len(g["ours"]) else None
            if o is not None:
                ours, where, verdict = o["ours"], f"{o['data']}; {o['scale']}", _verdict(o)
            elif i == 0:
                ours, where, verdict = NOT_RUN, "", NOT_RUN
            else:
                ours, where, verdict = "", "", ""
            lines.append({"id": g["id"], "quantity": g["quantity"],
                          "paper": _paper_text(p) if p else ("—" if i == 0 else ""),
                          "ours": ours, "ours_where": where, "verdict": verdict, "first": i == 0})
    return lines


def claim_lines(results):
    """Lines of the claims table: id, claim, holds (text), status, ours_where.

    status is one of "yes", "no", "partly" (some runs), "not judged" (a result
    without claim_holds), "not run" (no result).
    """
    lines = []
    for g in groups(results):
        judged = [r for r in g["ours"] if r["claim_holds"] is not None]
        claim = g["claim"] or (f"(our check) {g['quantity']}" if judged else "")
        if not claim:
            continue
        n_true = sum(r["claim_holds"] for r in judged)
        runs = "" if len(judged) == 1 else f" ({n_true} of {len(judged)} runs)"
        if not g["ours"]:
            status, holds = NOT_RUN, NOT_RUN
        elif not judged:
            status, holds = "not judged", "not judged"
        elif n_true == len(judged):
            status, holds = "yes", "yes" + runs
        elif n_true == 0:
            status, holds = "no", "no" + runs
        else:
            status, holds = "partly", "partly" + runs
        where = "; ".join(dict.fromkeys(f"{r['data']}, {r['scale']}" for r in judged))
        lines.append({"id": g["id"], "claim": claim, "holds": holds, "status": status, "ours_where": where})
    return lines


def side_by_side(run_dir=None, ids=None, results=None):
    """The comparison lines as a pandas DataFrame, for a notebook to display.

    Reads ``<run_dir>/results.csv`` (or takes ``results`` rows) and keeps the
    lines of ``ids`` (all ids when None).
    """
    import pandas as pd

    if results is None:
        path = Path(run_dir) / RESULTS_CSV
        results = read_results(path) if path.exists() else []
    ids = [ids] if isinstance(ids, str) else ids
    lines = [l for l in comparison_lines(results) if ids is None or l["id"] in ids]
    df = pd.DataFrame(lines, columns=["id", "quantity", "paper", "ours", "ours_where", "verdict"])
    return df.rename(columns={"paper": "paper (data; scale)", "ours_where": "our data & scale"})


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>$|#])")


def _md(text):
    """Text safe to put in a markdown table cell."""
    return _MD_SPECIAL.sub(r"\\\1", str(text).replace("\n", " "))


def _list_table(header, rows, widths=None):
    out = ["```{list-table}", ":header-rows: 1"]
    if widths:
        out.append(":widths: " + " ".join(str(w) for w in widths))
    out.append(":class: comparison-table")
    out.append("")
    for row in [header] + rows:
        out.append(f"* - {row[0]}")
        out.extend(f"  - {cell}" for cell in row[1:])
    out.append("```")
    return "\n".join(out)


def comparison_markdown(results, chapters=(), generated=None):
    """The whole comparison page as MyST markdown.

    ``chapters``: notebook stems that exist in the book, so an id links to its chapter.
    """
    chapters = set(chapters)
    lines = comparison_lines(results)
    done = {l["id"] for l in lines if l["ours"] not in (NOT_RUN, "")}
    claims = claim_lines(results)
    counts = {k: sum(c["status"] == k for c in claims) for k in ("yes", "no", "partly", "not judged", NOT_RUN)}
    generated = generated or datetime.datetime.now().strftime("%Y-%m-%d %H:%M")

    def id_cell(id):
        stem = NOTEBOOK_OF.get(id)
        return f"[{id}](notebooks/{stem}.ipynb)" if stem in chapters else id

    # The page-wide metadata drops the right-hand "contents" column to leave room for the table.
    md = ["---", "html_theme.sidebar_secondary.remove: true", "---", "",
          "(comparison)=", "# The paper vs this reproduction", "",
          "Each line puts a number of the paper next to ours. The paper's numbers come from "
          "CIFAR-10, CIFAR-100 and ImageNet with networks of millions of parameters trained for "
          "hundreds of epochs; ours come from whatever the notebooks were run with, by default a "
          "few epochs of a small network on a Fashion-MNIST subset on a CPU. Each of our numbers "
          "names its data and scale, so compare trends and claims, not digits.", "",
          f"*{len(done)} of {len(paper.IDS)} experiments have results. Of "
          f"{len(claims)} qualitative claims: {counts['yes']} hold, {counts['no']} do not, "
          f"{counts['partly']} hold partly, {counts['not judged']} measured but not judged, "
          f"{counts[NOT_RUN]} not run.*", "",
          "## Numbers", ""]
    rows = []
    for l in lines:
        first = l["first"]
        rows.append([id_cell(l["id"]) if first else "", _md(l["quantity"]) if first else "",
                     _md(l["paper"]), _md(l["ours"]), _md(l["ours_where"]), _md(l["verdict"])])
    md.append(_list_table(["id", "quantity", "paper (data; scale)", "ours",
                           "our data & scale", "verdict"], rows, widths=[8, 20, 26, 16, 20, 10]))
    md += ["", "## Claims", "",
           "The paper's qualitative statements, and whether our runs agree. \"not judged\" means "
           "the number is there but the notebook did not decide; \"not run\" means no notebook "
           "has recorded it yet.", ""]
    rows = [[id_cell(c["id"]), _md(c["claim"]), _md(c["holds"]), _md(c["ours_where"])] for c in claims]
    md.append(_list_table(["id", "claim", "holds on our runs?", "our data & scale"], rows,
                          widths=[8, 50, 14, 28]))
    sources = sorted({r["source"] for r in results if "source" in r})
    md += ["", "## Where the numbers come from", "",
           f"Generated by `python -m coded_lib.companion.report` on {generated} from "
           f"{len(sources)} results file(s) under `runs/`"
           + (":" if sources else " (none yet: run `make reproduce`)."), ""]
    md += [f"- `runs/{s}`" for s in sources]
    md += ["", "The paper's numbers are in `coded_lib/companion/paper.py`; the results-row format is "
           "documented in `coded_lib/companion/report.py`.", ""]
    return "\n".join(md)


def write_comparison(root=None, out=BOOK / "comparison.md", generated=None):
    """Gather the results under root (default runs_root()) and write the book's comparison page."""
    out = Path(out)
    root = Path(root) if root is not None else runs_root()
    results = gather(root) if root.exists() else []
    chapters = [p.stem for p in (out.parent / "notebooks").glob("*.ipynb")]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(comparison_markdown(results, chapters, generated), encoding="utf-8")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m coded_lib.companion.report",
                                 description="Write the book's 'paper vs this reproduction' page.")
    ap.add_argument("--runs", default=None,
                    help="folder searched for results.csv files (default: $CODED_RUNS, else runs/)")
    ap.add_argument("--out", default=str(BOOK / "comparison.md"), help="markdown page to write")
    args = ap.parse_args(argv)
    path = write_comparison(args.runs, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
