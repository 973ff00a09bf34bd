"""The claims dashboard: results rows from the runs, joined with the paper.

Results-row format
------------------
Every notebook records what it measured with ``record(run_dir, ...)``, which
keeps one CSV per run folder, ``<run_dir>/results.csv``, with the columns::

    id        an id of SPEC §2 ("T-acc", "F-removal", ...; see coded_lib.companion.paper.IDS)
    quantity  what was measured; reuse the paper's string (coded_lib.companion.paper.quantities(id))
              to sit beside the paper's number. A quantity that *starts with* a paper
              quantity of the same id joins it too ("... (residual paths only)").
    ours      our value with its uncertainty, as text ("+0.4 ± 0.3 (SE, 3 seeds)", "0.38")
    data      the data it came from ("Fashion-MNIST: 8000 training images, ...")
    scale     model and training scale ("coded_resnext_mini (0.09 M parameters), 4 epochs, ...")
    verdict   "" for a bare number, else one of coded_lib.companion.paper.VERDICTS: "holds",
              "does not hold", "inconclusive", "not run here", judged by the claim's rule
              (paper.rule(id, quantity); paper.judge computes it from an effect and its SE)
    note      free text: why, in numbers ("h_aug changes MCE by -1.2 ± 0.3 points")
    seeds     how many seeds (trainings per setting) the number rests on; "" when none were trained

One row per (id, quantity) in a run folder: recording the same pair again
replaces it, so rerunning a notebook updates its rows instead of piling them up.

``write_comparison()`` gathers ``runs/**/results.csv`` (``$CODED_RUNS`` if set) into
``book/results.csv`` (committed with the executed notebooks, see coded_lib.companion.edition)
and writes from it the book's page ``book/comparison.md``: the runs behind the numbers (data and
scale said once, with device, commit and time from each chapter's provenance), one row per claim
of the paper with the paper's value, ours, a coloured verdict and its rule, then every number.
``python -m coded_lib.companion.report`` does the same from the command line;
``--from-book`` rewrites the page from the committed ``book/results.csv`` alone.
"""
import argparse
import csv
import os
import re
import tempfile
import warnings
from pathlib import Path

from . import paper

REPO = Path(__file__).resolve().parents[2]
BOOK = REPO / "book"
RESULTS_CSV = "results.csv"
COLUMNS = ["id", "quantity", "ours", "data", "scale", "verdict", "note", "seeds"]
NOT_RUN = "not run"
BOOK_RESULTS = BOOK / "results.csv"  # every run's rows, gathered: what the committed dashboard is written from

# Which notebook (book chapter) produces each id.
NOTEBOOK_OF = {
    "T-acc": "accuracy", "T-arch": "architecture", "T-codes": "codes", "T-cost": "cost",
    "F-removal": "removal", "F-binary": "binary", "F-bindist": "binary", "F-act": "activations",
    "F-early": "early", "T-agree": "early", "T-calib": "calibration", "F-mu": "ablations",
    "F-pdrop": "ablations", "T-exp": "ablations", "T-concat": "ablations", "T-ratios": "ablations",
    "T-detach": "ablations",
    "B-semantic": "semantic_codes", "B-anytime": "anytime", "B-conditional": "conditional",
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


def _check_row(id, quantity, ours, data, scale, verdict, seeds):
    if id not in paper.TITLES and id not in paper.BEYOND:
        raise ValueError(f"unknown id {id!r}; allowed: {', '.join(paper.IDS + list(paper.BEYOND))}")
    for name, value in (("quantity", quantity), ("data", data), ("scale", scale)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if ours is None or ours == "":
        raise ValueError(f"ours must be a value, got {ours!r}")
    if verdict not in (None, "") + paper.VERDICTS:
        raise ValueError(f"verdict must be one of {paper.VERDICTS} or None, got {verdict!r}")
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise ValueError(f"seeds must be a positive integer or None, got {seeds!r}")


def record(run_dir, id, quantity, ours, data, scale, verdict=None, note=None, seeds=None):
    """Add or replace the results row (id, quantity) in ``<run_dir>/results.csv``.

    ``ours`` may be text or a number / list / dict (formatted by ``format_value``); ``verdict``
    is None for a bare number, else one of ``paper.VERDICTS``; ``note`` says why; ``seeds``: the
    number of trainings per setting behind the number (None when nothing was trained).
    Returns the CSV's path.
    """
    _check_row(id, quantity, ours, data, scale, verdict, seeds)
    row = {"id": id, "quantity": quantity.strip(), "ours": format_value(ours),
           "data": data.strip(), "scale": scale.strip(), "verdict": verdict or "",
           "note": (note or "").strip(), "seeds": "" if seeds is None else str(seeds)}
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


def _write_csv(path, rows, columns=COLUMNS):
    # Write then rename, so a reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for r in rows:
            writer.writerow({c: _csv_cell(r.get(c)) for c in columns})
    os.replace(tmp, path)


def _csv_cell(v):
    if v is None:
        return ""
    return str(v)


def read_results(path):
    """The rows of one results.csv as dicts of text (a ``source`` column is kept when present)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = set(COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}; expected {COLUMNS}")
        rows = []
        for r in reader:
            row = {c: (r[c] or "").strip() for c in COLUMNS + (["source"] if "source" in r else [])}
            if row["verdict"] not in ("",) + paper.VERDICTS:
                raise ValueError(f"{path}: verdict must be one of {paper.VERDICTS} or empty, got {r['verdict']!r}")
            rows.append(row)
    return rows


def gather(root=None):
    """All rows of every ``results.csv`` under root (default runs_root()), each with its ``source`` path; the
    runs folders of other editions under root (those holding an edition's state file) are left out."""
    from .edition import STATE

    root = Path(root) if root is not None else runs_root()
    # another edition's runs folder (runs/full, runs/at_scale) under root is not this edition's
    editions = [p.parent for p in root.glob(f"*/{STATE}")]
    results = []
    for path in sorted(root.rglob(RESULTS_CSV)):
        if any(e in path.parents for e in editions):
            continue
        for row in read_results(path):
            if row["id"] not in paper.TITLES and row["id"] not in paper.BEYOND:
                warnings.warn(f"{path}: unknown id {row['id']!r} skipped")
                continue
            row["source"] = path.relative_to(root).as_posix()
            results.append(row)
    return results


def write_book_results(results, out=BOOK_RESULTS):
    """``book/results.csv``: the gathered rows with their source, the dashboard's committed input."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_csv(out, results, COLUMNS + ["source"])
    return out


def _norm(s):
    return re.sub(r"\s+", " ", s).strip().lower()


def _match(row, quantities):
    """The paper quantity a result row belongs to: equal, else the longest prefix."""
    q = _norm(row["quantity"])
    hits = [p for p in quantities if q == _norm(p) or q.startswith(_norm(p))]
    return max(hits, key=len) if hits else None


def _verdict(row):
    return row["verdict"] or "—"


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
    return f"{p['paper']} ({p['data']})"


def run_names(results):
    """(data, scale, seeds) -> "R1", "R2", ... in the order the runs first appear (SPEC §2 order)."""
    names = {}
    for g in groups(results):
        for r in g["ours"]:
            names.setdefault(_run_key(r), f"R{len(names) + 1}")
    for r in beyond_rows(results):
        names.setdefault(_run_key(r), f"R{len(names) + 1}")
    return names


def beyond_rows(results):
    """The rows of the part "Beyond the paper" (ids of ``paper.BEYOND``), in its order."""
    return [r for id in paper.BEYOND for r in results if r["id"] == id]


def _run_key(row):
    return (row["data"], row["scale"], row["seeds"])


def comparison_lines(results):
    """Lines of the numbers table: id, quantity, paper, ours, verdict, row (the result row or None), first."""
    lines = []
    for g in groups(results):
        n = max(len(g["paper"]), len(g["ours"]), 1)
        for i in range(n):
            p = g["paper"][i] if i < len(g["paper"]) else None
            o = g["ours"][i] if i < len(g["ours"]) else None
            if o is not None:
                ours, verdict = o["ours"], _verdict(o)
            elif i == 0:
                ours, verdict = NOT_RUN, "—"
            else:
                ours, verdict = "", ""
            lines.append({"id": g["id"], "quantity": g["quantity"],
                          "paper": _paper_text(p) if p else ("—" if i == 0 else ""),
                          "ours": ours, "verdict": verdict, "row": o, "first": i == 0})
    return lines


def claim_lines(results):
    """One line per judged result of each claim of the paper (one "not run here" line when a claim
    has no result), then our own judged quantities: id, claim, paper, ours, verdict, rule, row, paper_claim."""
    lines = []
    for g in groups(results):
        judged = [r for r in g["ours"] if r["verdict"]]
        if not g["claim"] and not judged:
            continue
        paper_text = "; ".join(_paper_text(p) for p in g["paper"]) or "—"
        rule = paper.rule(g["id"], g["quantity"]) if g["claim"] else ""
        base = {"id": g["id"], "claim": g["claim"] or g["quantity"], "paper": paper_text, "rule": rule,
                "paper_claim": bool(g["claim"]), "quantity": g["quantity"]}
        if not judged:
            lines.append({**base, "ours": NOT_RUN, "verdict": paper.NOT_HERE, "row": None})
        for r in judged:
            lines.append({**base, "ours": r["ours"], "verdict": r["verdict"], "rule": rule or r["note"], "row": r})
    return lines


def verdict_counts(results):
    """How many of the paper's claim lines are in each verdict state."""
    lines = [l for l in claim_lines(results) if l["paper_claim"]]
    return {v: sum(l["verdict"] == v for l in lines) for v in paper.VERDICTS}


def side_by_side(run_dir=None, ids=None, results=None):
    """The paper's numbers beside ours, as a pandas DataFrame for a notebook to display.

    Reads ``<run_dir>/results.csv`` (or takes ``results`` rows) and keeps the
    lines of ``ids`` (all ids when None).
    """
    import pandas as pd

    if results is None:
        path = Path(run_dir) / RESULTS_CSV
        results = read_results(path) if path.exists() else []
    ids = [ids] if isinstance(ids, str) else ids
    lines = [{**l, "note": (l["row"] or {}).get("note", "")} for l in comparison_lines(results)
             if ids is None or l["id"] in ids]
    df = pd.DataFrame(lines, columns=["id", "quantity", "paper", "ours", "verdict", "note"])
    return df.rename(columns={"paper": "paper (data)"})


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>$|#])")


def _md(text):
    """Text safe to put in a markdown table cell."""
    return _MD_SPECIAL.sub(r"\\\1", str(text).replace("\n", " "))


def _list_table(header, rows, widths=None, css=""):
    out = ["```{list-table}", ":header-rows: 1"]
    if widths:
        out.append(":widths: " + " ".join(str(w) for w in widths))
    out.append(":class: comparison-table" + (f" {css}" if css else ""))
    out.append("")
    for row in [header] + rows:
        out.append(f"* - {row[0]}")
        out.extend(f"  - {cell}" for cell in row[1:])
    out.append("```")
    return "\n".join(out)


BADGES = {paper.HOLDS: "success", paper.FAILS: "danger", paper.INCONCLUSIVE: "warning",
          paper.NOT_HERE: "dark"}  # grey: "secondary" is orange in this theme, too close to "warning"


def _badge(verdict):
    """A coloured badge with the verdict's text (sphinx-design, part of jupyter-book)."""
    if verdict not in BADGES:
        return _md(verdict)
    return f"{{bdg-{BADGES[verdict]}}}`{verdict}`"


def _minutes(seconds):
    return f"{seconds / 60:.1f} min" if seconds is not None else "—"


# The editions beside the default one, each a column of the claims table once it has been run: label ->
# folder under book/ (coded_lib.companion.at_scale.EDITIONS writes them)
EDITIONS = {"full data (CPU)": "full", "at scale (GPU)": "at_scale"}


def comparison_markdown(results, chapters=(), provenance=None, editions=None):
    """The whole dashboard as MyST markdown.

    ``chapters``: notebook stems that exist in the book, so an id links to its chapter;
    ``provenance``: stem -> the chapter's provenance (coded_lib.companion.edition), for the runs table;
    ``editions``: label -> the result rows of another edition (coded_lib.companion.at_scale), or None while
    it has not been run: each edition with rows gets a column of the claims table, with its verdict counts.
    """
    chapters, provenance = set(chapters), provenance or {}
    names = run_names(results)
    claims = claim_lines(results)
    editions = {k: v for k, v in (editions or {}).items() if v is not None}
    edition_lines = {}
    for label, rows in editions.items():
        for c in claim_lines(rows):
            edition_lines.setdefault(label, {}).setdefault((c["id"], c["claim"]), []).append(
                f"{_md(c['ours'])} {_badge(c['verdict'])}")

    def edition_cells(c):
        return ["; ".join(edition_lines.get(label, {}).get((c["id"], c["claim"]), [])) or "—" for label in editions]
    counts = verdict_counts(results)
    dates = sorted(p["date"] for p in provenance.values() if p.get("date"))

    def id_cell(id):
        stem = NOTEBOOK_OF.get(id)
        return f"[{id}](notebooks/{stem}.ipynb)" if stem in chapters else id

    def run_cell(row):
        return names[_run_key(row)] if row is not None else "—"

    span = f"{dates[0]} to {_end_of(provenance) or dates[-1]}" if dates else ""
    glance, built = _glance(results, editions)
    # The page-wide metadata drops the right-hand "contents" column to leave room for the tables; the
    # page's own contents list follows the introduction instead.
    md = ["---", "html_theme.sidebar_secondary.remove: true", "---", "",
          "(comparison)=", "# The paper's claims, checked", "",
          "Every claim of the paper, judged on our runs. The paper's numbers come from CIFAR and ImageNet networks "
          "of millions of parameters trained for hundreds of epochs; ours, in the default edition, from a "
          "0.09 M-parameter network trained for a few epochs on a Fashion-MNIST subset on a CPU: compare trends "
          "and claims, not digits, and read each verdict with its evidence.", "",
          "Verdicts are one-sided, in the direction the paper claims: {bdg-success}`holds` beyond the critical "
          "value, {bdg-danger}`does not hold` beyond it the other way, {bdg-warning}`inconclusive` in between. A "
          "comparison of trainings is Welch's t-test over the seeds (one-sided 97.5 %; fewer than "
          f"{paper.MIN_SEEDS} seeds a side is inconclusive); an effect measured on the images of one trained "
          "network is judged at two standard errors over those images. {bdg-dark}`not run here`: a claim about "
          "hardware the runs did not use.", "",
          "*Evidence* says what a verdict rests on: *by construction* (an exact count or a property of the code, "
          "the same after any training), *one training* (uncertainty over the images of one trained network), "
          "*n seeds* (uncertainty over n trainings per setting).", "",
          "```{contents} On this page", ":local:", ":depth: 1", "```", "",
          "## At a glance", "",
          f"The paper's {len(glance)} empirical claims; the chapter of each is linked from its id. Of them, in the "
          "default edition: " + ", ".join(f"{sum(v == g['default'] for g in glance)} {v}" for v in paper.VERDICTS) + "."
          + "".join(f" In the {label} edition: " + ", ".join(f"{sum(v == g[label] for g in glance)} {v}" for v in paper.VERDICTS)
                    + "." for label in editions)
          + ("" if editions else " The other editions (full data on a CPU, the paper's network on a GPU) get a "
             "column here once they have been run and committed."), ""]
    md.append(_list_table(["id", "claim", "evidence", "default edition", *editions],
                          [[id_cell(g["id"]), _md(g["claim"]), g["evidence"], *(_badge(g[c]) for c in ["default", *editions])]
                           for g in glance], widths=[7, 45, 12, 14, *[14] * len(editions)], css="claims-table glance"))
    md += ["", "## True by construction", "",
           "Exact counts and properties of the code: they hold or fail whatever the training, so they say nothing "
           "about how well the method works. Each is counted once.", ""]
    md.append(_list_table(["id", "claim", "verdict"], [[id_cell(g["id"]), _md(g["claim"]), _badge(g["default"])]
                                                      for g in built], widths=[8, 72, 20], css="claims-table"))
    md += ["", "## The runs behind the numbers", ""]
    chapter_of = {}
    for g in groups(results):
        for r in g["ours"]:
            chapter_of.setdefault(_run_key(r), []).append(NOTEBOOK_OF[g["id"]])
    for r in beyond_rows(results):
        chapter_of.setdefault(_run_key(r), []).append(NOTEBOOK_OF[r["id"]])
    # where and from what every chapter ran: said once when all chapters share it, else per run
    # where and from what every chapter ran: said once for what all chapters share, else per run
    machines = list(dict.fromkeys(f"{p.get('device', '?')}, torch {p.get('torch', '?')}" for p in provenance.values()))
    commits = list(dict.fromkeys(p.get("commit", "?") for p in provenance.values()))
    per_run = [k for k, v in (("device, torch", machines), ("source commit", commits)) if len(v) > 1]
    shared = ([f"on {machines[0]}"] if len(machines) == 1 else []) + (
        [f"from source commit `{commits[0]}`"] if len(commits) == 1 else [])
    if shared:
        md += ["Every chapter ran " + " ".join(shared) + (f" ({span})." if dates else "."), ""]

    def origin(stems, column):
        provs = [provenance[s] for s in stems if s in provenance]
        if column == "source commit":
            return "; ".join(dict.fromkeys(f"`{p.get('commit', '?')}`" for p in provs)) or "—"
        return "; ".join(dict.fromkeys(f"{p.get('device', '?')}, torch {p.get('torch', '?')}" for p in provs)) or "—"

    rows = []
    for key, name in names.items():
        data, scale, seeds = key
        stems = list(dict.fromkeys(chapter_of[key]))
        where = ", ".join((f"[{s}](notebooks/{s}.ipynb)" if s in chapters else s)
                          + (f" ({_minutes(provenance[s].get('seconds'))})" if s in provenance else "")
                          for s in stems)
        rows.append([name, _md(data), _md(scale), seeds or "—"] + [origin(stems, c) for c in per_run] + [where])
    md.append(_list_table(["run", "data", "model and scale", "seeds"] + per_run + ["chapter (its wall time)"], rows,
                          widths=[4, 22, 36, 5] + [12] * len(per_run) + [15]))
    md += ["", "## The paper's claims in detail", "",
           "Our value beside the paper's, the rule that judged it and the run it came from, one line per result.", "",
           ":::{dropdown} The claims table (paper, ours, verdict, rule, run)", ""]
    rows, last = [], None
    for c in claims:
        if not c["paper_claim"]:
            continue
        first = (c["id"], c["claim"]) != last
        last = (c["id"], c["claim"])
        extra = edition_cells(c) if first else [""] * len(editions)
        rows.append([id_cell(c["id"]) if first else "", _md(c["claim"]) if first else "",
                     _md(c["paper"]) if first else "", _md(c["ours"]), _badge(c["verdict"]),
                     *extra, _md(c["rule"]) if first else "", run_cell(c["row"])])
    md.append(_list_table(["id", "claim", "paper", "ours", "verdict", *editions, "rule", "run"], rows,
                          widths=[6, 18, 12, 17, 9, *[17] * len(editions), 18, 5], css="claims-table"))
    md += ["", ":::"]
    ours_only = [c for c in claims if not c["paper_claim"]]
    if ours_only:
        md += ["", "## Our own checks", "",
               "Quantities the paper does not state as a claim, judged on our runs.", ""]
        rows = [[id_cell(c["id"]), _md(c["claim"]), _md(c["ours"]), _badge(c["verdict"]), _md(c["rule"]),
                 run_cell(c["row"])] for c in ours_only]
        md.append(_list_table(["id", "quantity", "ours", "verdict", "why", "run"], rows,
                              widths=[6, 26, 24, 9, 30, 5], css="claims-table"))
    beyond = beyond_rows(results)
    if beyond:
        md += ["", "## Beyond the paper", "",
               "Questions the paper leaves open (the book's part \"Beyond the paper\"), judged by the same "
               "four verdicts on our runs: the rule is in the last text column.", ""]
        rows = [[id_cell(r["id"]), _md(r["quantity"]), _md(r["ours"]), _badge(r["verdict"]) if r["verdict"] else "—",
                 _md(r["note"]), run_cell(r)] for r in beyond]
        md.append(_list_table(["id", "question", "ours", "verdict", "rule and why", "run"], rows,
                              widths=[6, 24, 26, 9, 30, 5], css="claims-table"))
    md += ["", "## Every number", "",
           "The paper's numbers (with the data they come from) and ours, by experiment.", "",
           ":::{dropdown} Every number of the paper and ours", ""]
    rows = []
    for l in comparison_lines(results):
        rows.append([id_cell(l["id"]) if l["first"] else "", _md(l["quantity"]) if l["first"] else "",
                     _md(l["paper"]), _md(l["ours"]), run_cell(l["row"])])
    md.append(_list_table(["id", "quantity", "paper (data)", "ours", "run"], rows, widths=[6, 28, 30, 30, 6]))
    md += ["", ":::"]
    sources = sorted({r["source"] for r in results if r.get("source")})
    md += ["", "## Where the numbers come from", "",
           "Written by `python -m coded_lib.companion.report` from `book/results.csv`, which gathers "
           f"{len(sources)} results file(s) under `runs/`"
           + (f" of the runs executed {span}" if dates else "")
           + (":" if sources else " (none yet: run `make reproduce`)."), ""]
    md += [f"- `runs/{s}`" for s in sources]
    md += ["", "The paper's numbers and the claims' rules are in `coded_lib/companion/paper.py`; the "
           "results-row format is documented in `coded_lib/companion/report.py`.", ""]
    return "\n".join(md)


def _end_of(provenance) -> str:
    """When the last chapter finished: the latest start plus its wall time ("" without dates)."""
    import datetime

    ends = []
    for p in provenance.values():
        try:
            start = datetime.datetime.strptime(p["date"], "%Y-%m-%d %H:%M")
        except (KeyError, ValueError, TypeError):
            continue
        ends.append(start + datetime.timedelta(seconds=float(p.get("seconds") or 0)))
    return max(ends).strftime("%Y-%m-%d %H:%M") if ends else ""


def _glance(results, editions):
    """(empirical claims, claims true by construction): one entry per (id, claim) with each edition's
    verdict (its rows' verdicts combined) and the evidence of the default edition's rows."""
    from .claims import CONSTRUCTION, evidence

    def verdicts(rows):
        out = {}
        for line in claim_lines(rows):
            if line["paper_claim"]:
                out.setdefault((line["id"], line["claim"]), []).append(line)
        return out

    default = verdicts(results)
    others = {label: verdicts(rows) for label, rows in editions.items()}
    glance, built = [], []
    for (id, claim), lines in default.items():
        kinds = [evidence(id, l["row"]["quantity"], l["row"]["seeds"]) if l["row"] and l["verdict"] != paper.NOT_HERE
                 else (CONSTRUCTION if evidence(id, l["quantity"], None) == CONSTRUCTION else "—") for l in lines]
        entry = {"id": id, "claim": claim, "evidence": ", ".join(dict.fromkeys(kinds)),
                 "default": paper.combine(*(l["verdict"] for l in lines))}
        for label, table in others.items():
            there = table.get((id, claim), [])
            entry[label] = paper.combine(*(l["verdict"] for l in there)) if there else paper.NOT_HERE
        (built if kinds and all(k == CONSTRUCTION for k in kinds) else glance).append(entry)
    return glance, built


def write_comparison(root=None, out=BOOK / "comparison.md", results_out=None, only=None):
    """Gather the results under root (default runs_root()) into ``results_out`` (default
    ``book/results.csv`` beside ``out``) and write the dashboard from it. ``only``: the chapters that were
    executed; the rows of the other chapters are kept from the existing ``results_out`` (their runs need
    not be on this machine)."""
    out = Path(out)
    root = Path(root) if root is not None else runs_root()
    results = gather(root) if root.exists() else []
    results_out = Path(results_out) if results_out is not None else out.parent / RESULTS_CSV
    if only is not None:
        results = [r for r in results if NOTEBOOK_OF.get(r["id"]) in only]
        kept = [r for r in read_results(results_out) if NOTEBOOK_OF.get(r["id"]) not in only] if results_out.exists() else []
        order = {id: i for i, id in enumerate(list(paper.TITLES) + list(paper.BEYOND))}
        results = sorted(kept + results, key=lambda r: order[r["id"]])
    write_book_results(results, results_out)
    return write_from_results(results_out, out)


def edition_results(folder):
    """The result rows of an edition committed in ``folder`` (e.g. book/full); None until its manifest.json exists."""
    from .edition import MANIFEST, RUN_FILES

    folder = Path(folder)
    return gather(folder / RUN_FILES) if (folder / MANIFEST).exists() else None


def editions_results(book=BOOK) -> dict:
    """label -> the committed rows of each edition of ``EDITIONS`` (None where it has not been run)."""
    return {label: edition_results(Path(book) / name) for label, name in EDITIONS.items()}


def write_from_results(results_csv=BOOK_RESULTS, out=BOOK / "comparison.md"):
    """The dashboard from a gathered results file (the committed ``book/results.csv``), with the
    provenance of the chapters executed beside it in ``<out's folder>/notebooks/`` and the committed
    editions' results (``book/full``, ``book/at_scale``)."""
    from . import edition

    out = Path(out)
    results = read_results(results_csv) if Path(results_csv).exists() else []
    edition_dir = out.parent / "notebooks"
    chapters = [p.stem for p in edition_dir.glob("*.ipynb")]
    provenance = {s: p for s in chapters if (p := edition.read_provenance(s, edition_dir))}
    out.parent.mkdir(parents=True, exist_ok=True)
    editions = editions_results(out.parent)
    out.write_text(comparison_markdown(results, chapters, provenance, editions), encoding="utf-8")
    if out.parent.resolve() == BOOK.resolve() and README.exists():  # the repository's own book: its README too
        write_readme(results, editions)
    return out


README = REPO / "README.md"
README_START, README_END = "<!-- RESULTS: written by python -m coded_lib.companion.report -->", "<!-- /RESULTS -->"


def readme_table(results, editions=None) -> str:
    """The README's short results table: per claim of the paper, the verdict of each edition that has run."""
    editions = {k: v for k, v in (editions or {}).items() if v is not None}
    columns = {"default edition": results, **editions}
    verdicts = {label: {} for label in columns}
    for label, rows in columns.items():
        for line in claim_lines(rows):
            if line["paper_claim"]:
                verdicts[label].setdefault((line["id"], line["claim"]), []).append(line["verdict"])
    order = [(line["id"], line["claim"]) for line in claim_lines(results) if line["paper_claim"]]
    lines = ["| id | claim | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for key in dict.fromkeys(order):
        cells = [", ".join(dict.fromkeys(verdicts[label].get(key, [paper.NOT_HERE]))) for label in columns]
        claim = key[1] if len(key[1]) <= 90 else key[1][:87].rstrip() + "…"
        lines.append(f"| {key[0]} | {claim} | " + " | ".join(cells) + " |")
    counts = ", ".join(f"{n} {v}" for v, n in verdict_counts(results).items())
    return "\n".join([f"Verdicts of the committed default edition ({counts}; the rules and numbers are on the book's "
                      "dashboard, `book/comparison.md`):", "", *lines])


def write_readme(results, editions=None, readme=README) -> Path:
    """Replace the README's results table (between its markers) with ``readme_table``."""
    readme = Path(readme)
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme} lacks the markers {README_START!r} ... {README_END!r}")
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    readme.write_text(head + README_START + "\n" + readme_table(results, editions) + "\n" + README_END + tail,
                      encoding="utf-8")
    return readme


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m coded_lib.companion.report",
                                 description="Write the book's claims dashboard.")
    ap.add_argument("--runs", default=None,
                    help="folder searched for results.csv files (default: $CODED_RUNS, else runs/)")
    ap.add_argument("--from-book", action="store_true",
                    help="write the page from the committed book/results.csv instead of the runs")
    ap.add_argument("--out", default=str(BOOK / "comparison.md"), help="markdown page to write")
    args = ap.parse_args(argv)
    if args.from_book:
        path = write_from_results(Path(args.out).parent / RESULTS_CSV, args.out)
    else:
        path = write_comparison(args.runs, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
