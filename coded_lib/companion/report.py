"""The claims dashboard: results rows from the runs, joined with the paper.

Every chapter records what it measured with ``record(run_dir, ...)`` into ``<run_dir>/results.csv``, one
row per (id, quantity), recording a pair again replaces it. Columns: ``id`` (``paper.IDS``), ``quantity``
(the paper's string, ``paper.quantities(id)``, or one starting with it, to sit beside the paper's number),
``ours`` (our value with its uncertainty, as text), ``data`` and ``scale`` (where it came from), ``verdict``
("" for a bare number, else one of ``paper.VERDICTS``, from ``coded_lib.companion.claims``), ``note`` (why,
in numbers), ``seeds`` (trainings per setting; "" when none were trained), ``accuracy`` and ``reference`` (the
test accuracy of the network behind the verdict and a linear classifier's on the same images; "" for counts).

``write_comparison()`` (``python -m coded_lib.companion.report``) gathers ``runs/**/results.csv`` (``$CODED_RUNS``
if set) into the committed ``book/results.csv`` and writes from it the book's page ``book/comparison.md``.
"""
import argparse
import csv
import datetime
import itertools
import os
import re
import tempfile
import warnings
from html import escape
from pathlib import Path

from . import paper
from .edition import BOOK, MANIFEST, REPO, RUN_FILES, STATE, read_provenance

RESULTS_CSV = "results.csv"
COLUMNS = ["id", "quantity", "ours", "data", "scale", "verdict", "note", "seeds", "accuracy", "reference"]
OPTIONAL = ("accuracy", "reference")  # files written before they existed read them as ""
NOT_RUN = "not run"
ALL_IDS = paper.IDS + list(paper.BEYOND)  # the paper's, then the part "Beyond the paper"

# Which notebook (book chapter) produces each id.
NOTEBOOK_OF = {"T-acc": "accuracy", "T-arch": "architecture", "T-codes": "codes", "T-cost": "cost", "F-removal": "removal",
               "F-binary": "binary", "F-bindist": "binary", "F-act": "activations", "F-early": "early", "T-agree": "early",
               "T-calib": "calibration", **dict.fromkeys(("F-mu", "F-pdrop", "T-exp", "T-concat", "T-ratios", "T-detach"),
                                                         "ablations"),
               "B-semantic": "semantic_codes", "B-anytime": "anytime", "B-conditional": "conditional"}


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


def record(run_dir, id, quantity, ours, data, scale, verdict=None, note=None, seeds=None, accuracy=None, reference=None):
    """Add or replace the results row (id, quantity) in ``<run_dir>/results.csv`` (the columns: see the
    module's docstring; ``ours`` may be a number, list or dict, see ``format_value``); returns its path."""
    if id not in ALL_IDS:
        raise ValueError(f"unknown id {id!r}; allowed: {', '.join(ALL_IDS)}")
    for name, value in (("quantity", quantity), ("data", data), ("scale", scale)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if ours is None or ours == "":
        raise ValueError(f"ours must be a value, got {ours!r}")
    if verdict not in (None, "") + paper.VERDICTS:
        raise ValueError(f"verdict must be one of {paper.VERDICTS} or None, got {verdict!r}")
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise ValueError(f"seeds must be a positive integer or None, got {seeds!r}")
    for name, value in (("accuracy", accuracy), ("reference", reference)):
        if value is not None and not 0 <= value <= 1:
            raise ValueError(f"{name} must be a fraction in [0, 1] or None, got {value!r}")
    row = {"id": id, "quantity": quantity.strip(), "ours": format_value(ours),
           "data": data.strip(), "scale": scale.strip(), "verdict": verdict or "",
           "note": (note or "").strip(), "seeds": "" if seeds is None else str(seeds),
           **{k: "" if v is None else f"{v:.4f}" for k, v in (("accuracy", accuracy), ("reference", reference))}}
    path = Path(run_dir) / RESULTS_CSV
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = {(r["id"], r["quantity"]): r for r in (read_results(path) if path.exists() else [])}
    rows[(row["id"], row["quantity"])] = row  # a row recorded again keeps its place
    _write_csv(path, list(rows.values()))
    return path


def _write_csv(path, rows, columns=COLUMNS):
    # Write then rename, so a reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for r in rows:
            writer.writerow({c: "" if r.get(c) is None else str(r[c]) for c in columns})
    os.replace(tmp, path)


def read_results(path):
    """The rows of one results.csv as dicts of text (a ``source`` column is kept when present)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = set(COLUMNS) - set(reader.fieldnames or []) - set(OPTIONAL)
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}; expected {COLUMNS}")
        rows = []
        for r in reader:
            row = {c: (r.get(c) or "").strip() for c in COLUMNS + (["source"] if "source" in r else [])}
            if row["verdict"] not in ("",) + paper.VERDICTS:
                raise ValueError(f"{path}: verdict must be one of {paper.VERDICTS} or empty, got {r['verdict']!r}")
            rows.append(row)
    return rows


def gather(root=None):
    """All rows of every ``results.csv`` under root (default: ``coded_lib.train``'s runs folder), each with its
    ``source`` path, but those in other editions' runs folders (holding an edition's state file)."""
    if root is None:
        from ..train.loop import runs_root

        root = runs_root()
    root = Path(root)
    editions = [p.parent for p in root.glob(f"*/{STATE}")]
    results = []
    for path in sorted(root.rglob(RESULTS_CSV)):
        if any(e in path.parents for e in editions):
            continue
        for row in read_results(path):
            if row["id"] not in ALL_IDS:
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
    return max((p for p in quantities if q.startswith(_norm(p))), key=len, default=None)


def groups(results):
    """Join results with the paper, in SPEC §2 order: one dict per (id, quantity) with the paper's rows
    (``paper``), ours (``ours``) and the paper's claim (``claim``, "" if none); result rows whose quantity
    matches no paper quantity of their id form groups of their own."""
    out = []
    for id in paper.IDS:
        quantities = paper.quantities(id)
        ours = {q: [] for q in quantities}  # the paper's quantities, then ours that match none, as they come
        for r in results:
            if r["id"] == id:
                ours.setdefault(_match(r, quantities) or r["quantity"], []).append(r)
        for q, rows in ours.items():
            prows = [p for p in paper.rows(id) if p["quantity"] == q]
            out.append({"id": id, "quantity": q, "paper": prows, "ours": rows,
                        "claim": next((p["claim"] for p in prows if p["claim"]), "")})
    return out


def _paper_text(p):
    return f"{p['paper']} ({p['data']})"


def _runs(results):
    """(data, scale, seeds) -> the chapters of its rows, for each run in the order it first appears (SPEC §2 order)."""
    runs = {}
    for r in [r for g in groups(results) for r in g["ours"]] + beyond_rows(results):
        runs.setdefault(_run_key(r), []).append(NOTEBOOK_OF[r["id"]])
    return runs


def run_names(results):
    """(data, scale, seeds) -> "R1", "R2", ... in the order the runs first appear (SPEC §2 order)."""
    return {key: f"R{i}" for i, key in enumerate(_runs(results), 1)}


def beyond_rows(results):
    """The rows of the part "Beyond the paper" (ids of ``paper.BEYOND``), in its order."""
    return [r for id in paper.BEYOND for r in results if r["id"] == id]


def _run_key(row):
    return (row["data"], row["scale"], row["seeds"])


def comparison_lines(results):
    """Lines of the numbers table: id, quantity, paper, ours, verdict, row (the result row or None), first."""
    lines = []
    for g in groups(results):  # a group has a paper row or one of ours
        for i, (p, o) in enumerate(itertools.zip_longest(g["paper"], g["ours"])):
            missing = "—" if i == 0 else ""  # what the first line of a group shows for a missing side
            lines.append({"id": g["id"], "quantity": g["quantity"], "paper": _paper_text(p) if p else missing,
                          "ours": o["ours"] if o else (NOT_RUN if i == 0 else ""),
                          "verdict": (o["verdict"] or "—") if o else missing, "row": o, "first": i == 0})
    return lines


def claim_lines(results):
    """One line per judged result of each claim of the paper (one "not run here" line for a claim without
    one): id, claim, quantity, paper, ours, verdict, rule, row."""
    lines = []
    for g in (g for g in groups(results) if g["claim"]):
        base = {"id": g["id"], "claim": g["claim"], "quantity": g["quantity"],
                "paper": "; ".join(_paper_text(p) for p in g["paper"]) or "—", "rule": paper.rule(g["id"], g["quantity"])}
        judged = [{**base, "ours": r["ours"], "verdict": r["verdict"], "row": r} for r in g["ours"] if r["verdict"]]
        lines += judged or [{**base, "ours": NOT_RUN, "verdict": paper.NOT_HERE, "row": None}]
    return lines


def _by_claim(results) -> dict:
    """(id, claim) -> the lines of each claim of the paper (``claim_lines``), in SPEC §2 order."""
    out = {}
    for line in claim_lines(results):
        out.setdefault((line["id"], line["claim"]), []).append(line)
    return out


def verdict_counts(results):
    """How many of the paper's claim lines are in each verdict state."""
    lines = claim_lines(results)
    return {v: sum(l["verdict"] == v for l in lines) for v in paper.VERDICTS}


def side_by_side(run_dir=None, ids=None, results=None):
    """The paper's numbers beside ours (``<run_dir>/results.csv``, or the rows ``results``) for the ids
    ``ids`` (None: all), as a pandas DataFrame for a notebook to display."""
    import pandas as pd

    if results is None:
        path = Path(run_dir) / RESULTS_CSV
        results = read_results(path) if path.exists() else []
    ids = [ids] if isinstance(ids, str) else ids
    lines = [{**l, "paper (data)": l["paper"], "note": (l["row"] or {}).get("note", "")}
             for l in comparison_lines(results) if ids is None or l["id"] in ids]
    return pd.DataFrame(lines, columns=["id", "quantity", "paper (data)", "ours", "verdict", "note"])


def claims_table(df):
    """A chapter's claims table as the book shows it: no index column, text left-aligned, ids unbroken and
    verdicts as the dashboard's badges (sphinx-design's classes), so that chapter and dashboard read alike."""
    def verdict(v):
        return f'<span class="sd-badge sd-bg-{BADGES[v]} sd-bg-text-{BADGES[v]}">{v}</span>' if v in BADGES else escape(str(v))

    text = [c for c in df.columns if c != "verdict"]
    return (df.style.hide(axis="index").format(verdict, subset=["verdict"]).format(escape="html", subset=text)
            .set_properties(**{"text-align": "left", "vertical-align": "top"})
            .set_properties(subset=["id", "verdict"], **{"white-space": "nowrap"}))


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>$|#])")


def _md(text):
    """Text safe to put in a markdown table cell."""
    return _MD_SPECIAL.sub(r"\\\1", str(text).replace("\n", " "))


def _list_table(header, rows, widths, css=""):
    out = ["```{list-table}", ":header-rows: 1", ":widths: " + " ".join(map(str, widths)),
           ":class: comparison-table" + (f" {css}" if css else ""), ""]
    for row in [header] + rows:
        out.append(f"* - {row[0]}")
        out.extend(f"  - {cell}" for cell in row[1:])
    out.append("```")
    return "\n".join(out)


BADGES = {paper.HOLDS: "success", paper.FAILS: "danger", paper.INCONCLUSIVE: "warning", paper.AT_SCALE: "info",
          paper.NOT_HERE: "dark"}  # grey: "secondary" is orange in this theme, too close to "warning"


def _badge(verdict):
    """A coloured badge with the verdict's text (sphinx-design, part of jupyter-book)."""
    return f"{{bdg-{BADGES[verdict]}}}`{verdict}`" if verdict in BADGES else _md(verdict)


def _minutes(seconds):
    return f"{seconds / 60:.1f} min" if seconds is not None else "—"


# The editions beside the default one, each a column of the claims table once it has been run: label ->
# folder under book/ (coded_lib.companion.at_scale.EDITIONS writes them)
EDITIONS = {"full data (CPU)": "full", "at scale (GPU)": "at_scale"}


def comparison_markdown(results, chapters=(), provenance=None, editions=None):
    """The whole dashboard as MyST markdown. ``chapters``: notebook stems that exist in the book (an id links
    to its chapter); ``provenance``: stem -> the chapter's provenance, for the runs table; ``editions``: label
    -> the result rows of another edition, or None while it has not been run: each edition with rows gets
    a column of the claims tables, with its verdict counts."""
    chapters, provenance = set(chapters), provenance or {}
    chapter_of, names, by_claim = _runs(results), run_names(results), _by_claim(results)
    editions = {label: _by_claim(rows) for label, rows in (editions or {}).items() if rows is not None}
    dates = sorted(p["date"] for p in provenance.values() if p.get("date"))
    span = _span(provenance) or (f"{dates[0]} to {dates[-1]}" if dates else "")  # dates without a time: as written
    glance, built = _glance(by_claim, editions)

    def link(text, stem):  # to the chapter, where the book has it
        return f"[{text}](notebooks/{stem}.ipynb)" if stem in chapters else text

    def id_cell(id):
        return link(id, NOTEBOOK_OF.get(id))

    def run_cell(row):
        return names[_run_key(row)] if row is not None else "—"

    def counts(column):  # of the glance's claims in each verdict
        return ", ".join(f"{sum(v == g[column] for g in glance)} {v}" for v in paper.VERDICTS) + "."

    def section(title, intro, table, fold=None):  # its table folded in a dropdown titled ``fold`` if given
        md.extend(["", f"## {title}", "", intro, "", *([f":::{{dropdown}} {fold}", ""] if fold else []), table,
                   *(["", ":::"] if fold else [])])

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
          "network is judged at the normal's critical value (1.96 standard errors over those images). "
          "{bdg-info}`inconclusive at this scale`: any of these from a network whose test accuracy is below "
          "a linear classifier's (scikit-learn's logistic regression on the same training images, scored on "
          "the same test images): such a network is too far from trained to speak for the method, either way. "
          "{bdg-dark}`not run here`: a claim about hardware the runs did not use.", "",
          "*Evidence* says what a verdict rests on: *by construction* (an exact count or a property of the code, "
          "the same after any training), *one training* (uncertainty over the images of one trained network), "
          "*n seeds* (uncertainty over n trainings per setting). Beside each verdict: the test accuracy of the "
          "network behind it (for a comparison, the lowest of the compared networks) and the linear classifier's.",
          "",
          "```{contents} On this page", ":local:", ":depth: 1", "```"]
    section("At a glance", f"The paper's {len(glance)} empirical claims; the chapter of each is linked from its id. Of "
            f"them, in the default edition: {counts('default')}"
            + "".join(f" In the {label} edition: {counts(label)}" for label in editions)
            + ("" if editions else " The other editions (full data on a CPU, the paper's network on a GPU) get a "
               "column here once they have been run and committed."),
            _list_table(["id", "claim", "evidence", "default edition", *editions],
                        [[id_cell(g["id"]), _md(g["claim"]), g["evidence"],
                          *(_badge(g[c]) + g[f"{c} accuracy"] for c in ["default", *editions])]
                         for g in glance], widths=[7, 39, 10, 22, *[22] * len(editions)], css="claims-table glance"))
    section("True by construction", "Exact counts and properties of the code: they hold or fail whatever the "
            "training, so they say nothing about how well the method works. Each is counted once.",
            _list_table(["id", "claim", "verdict"], [[id_cell(g["id"]), _md(g["claim"]), _badge(g["default"])]
                                                     for g in built], widths=[8, 72, 20], css="claims-table"))
    md += ["", "## The runs behind the numbers", ""]
    # where and from what every chapter ran: said once for what all chapters share, else per run
    origins = {"device, torch": ("on", lambda p: f"{p.get('device', '?')}, torch {p.get('torch', '?')}"),
               "source commit": ("from source commit", lambda p: f"`{p.get('commit', '?')}`")}
    seen = {column: list(dict.fromkeys(map(say, provenance.values()))) for column, (_, say) in origins.items()}
    per_run = [column for column, values in seen.items() if len(values) > 1]
    shared = [f"{origins[column][0]} {values[0]}" for column, values in seen.items() if len(values) == 1]
    if shared:
        md += ["Every chapter ran " + " ".join(shared) + (f" ({span})." if dates else "."), ""]
    rows = []
    for (data, scale, seeds), name in names.items():
        stems = list(dict.fromkeys(chapter_of[data, scale, seeds]))
        known = [provenance[s] for s in stems if s in provenance]  # the provenance of its chapters
        where = ", ".join(link(s, s) + (f" ({_minutes(provenance[s].get('seconds'))})" if s in provenance else "")
                          for s in stems)
        rows.append([name, _md(data), _md(scale), seeds or "—"]
                    + ["; ".join(dict.fromkeys(map(origins[c][1], known))) or "—" for c in per_run] + [where])
    md.append(_list_table(["run", "data", "model and scale", "seeds"] + per_run + ["chapter (its wall time)"], rows,
                          widths=[4, 22, 36, 5] + [12] * len(per_run) + [15]))
    rows = []
    for (id, claim), lines in by_claim.items():  # the claim's cells once, then one line per result
        c = lines[0]
        others = ["; ".join(f"{_md(l['ours'])} {_badge(l['verdict'])}" for l in e.get((id, claim), [])) or "—"
                  for e in editions.values()]
        rows.append([id_cell(id), _md(claim), _md(c["paper"]), _md(c["ours"]), _badge(c["verdict"]), *others,
                     _md(c["rule"]), run_cell(c["row"])])
        rows += [["", "", "", _md(l["ours"]), _badge(l["verdict"]), *[""] * len(editions), "", run_cell(l["row"])]
                 for l in lines[1:]]
    section("The paper's claims in detail",
            "Our value beside the paper's, the rule that judged it and the run it came from, one line per result.",
            _list_table(["id", "claim", "paper", "ours", "verdict", *editions, "rule", "run"], rows,
                        widths=[6, 18, 12, 17, 9, *[17] * len(editions), 18, 5], css="claims-table"),
            fold="The claims table (paper, ours, verdict, rule, run)")

    def results_table(title, intro, rows, what, why, widths):  # result rows with their verdict and why
        if rows:
            section(title, intro, _list_table(["id", what, "ours", "verdict", why, "run"], [
                [id_cell(r["id"]), _md(r["quantity"]), _md(r["ours"]), _badge(r["verdict"]) if r["verdict"] else "—",
                 _md(r["note"]), run_cell(r)] for r in rows], widths=widths, css="claims-table"))

    own = [{**r, "quantity": g["quantity"]} for g in groups(results) if not g["claim"] for r in g["ours"] if r["verdict"]]
    results_table("Our own checks", "Quantities the paper does not state as a claim, judged on our runs.", own,
                  "quantity", "why", [6, 26, 24, 9, 30, 5])
    results_table("Beyond the paper", "Questions the paper leaves open (the book's part \"Beyond the paper\"), judged "
                  "by the same verdicts on our runs: the rule is in the last text column.", beyond_rows(results),
                  "question", "rule and why", [6, 24, 26, 9, 30, 5])
    rows = [[id_cell(l["id"]) if l["first"] else "", _md(l["quantity"]) if l["first"] else "", _md(l["paper"]),
             _md(l["ours"]), run_cell(l["row"])] for l in comparison_lines(results)]
    section("Every number", "The paper's numbers (with the data they come from) and ours, by experiment.",
            _list_table(["id", "quantity", "paper (data)", "ours", "run"], rows, widths=[6, 28, 30, 30, 6]),
            fold="Every number of the paper and ours")
    sources = sorted({r["source"] for r in results if r.get("source")})
    md += ["", "## Where the numbers come from", "",
           "Written by `python -m coded_lib.companion.report` from `book/results.csv`, which gathers "
           f"{len(sources)} results file(s) under `runs/`"
           + (f" of the runs executed {span}" if dates else "")
           + (":" if sources else " (none yet: run `make reproduce`)."), "", *(f"- `runs/{s}`" for s in sources),
           "", "The paper's numbers and the claims' rules are in `coded_lib/companion/paper.toml` (read by `paper.py`); the "
           "results-row format is documented in `coded_lib/companion/report.py`.", ""]
    return "\n".join(md)


def _span(provenance) -> str:
    """"<start> to <end>" of the reproduce: the first chapter's start less the training of the runs before it
    (``training_s``), to the latest start plus its wall time ("" without dates)."""
    starts, ends = [], []
    for p in provenance.values():
        try:
            start = datetime.datetime.strptime(p["date"], "%Y-%m-%d %H:%M")
        except (KeyError, ValueError, TypeError):
            continue
        starts.append(start - datetime.timedelta(seconds=float(p.get("training_s") or 0)))
        ends.append(start + datetime.timedelta(seconds=float(p.get("seconds") or 0)))
    return f"{min(starts):%Y-%m-%d %H:%M} to {max(ends):%Y-%m-%d %H:%M}" if ends else ""


def _accuracy(lines) -> str:
    """" network a % (linear r %)": the lowest test accuracy among a claim's rows and the linear classifier's
    beside it ("" where no row names a network: counts, or rows recorded before accuracies were)."""
    rows = [l["row"] for l in lines if l["row"] and l["row"].get("accuracy")]
    if not rows:
        return ""
    low = min(rows, key=lambda r: float(r["accuracy"]))
    linear = f" (linear\u00a0{100 * float(low['reference']):.1f}\u00a0%)" if low.get("reference") else ""
    return f" network\u00a0{100 * float(low['accuracy']):.1f}\u00a0%{linear}"  # no break inside a number


def _glance(default, editions):
    """(empirical claims, claims true by construction): one entry per (id, claim) with each edition's
    verdict (its rows' verdicts combined) and the evidence of the default edition's rows. ``default`` and
    each of ``editions`` (label -> ...): the ``_by_claim`` of an edition's rows."""
    from .claims import CONSTRUCTION, evidence

    glance, built = [], []
    for (id, claim), lines in default.items():
        kinds = [evidence(id, l["row"]["quantity"], l["row"]["seeds"]) if l["row"] and l["verdict"] != paper.NOT_HERE
                 else (CONSTRUCTION if evidence(id, l["quantity"], None) == CONSTRUCTION else "—") for l in lines]
        entry = {"id": id, "claim": claim, "evidence": ", ".join(dict.fromkeys(kinds)),
                 "default": paper.combine(*(l["verdict"] for l in lines)), "default accuracy": _accuracy(lines)}
        for label, table in editions.items():
            there = table.get((id, claim), [])
            entry[label] = paper.combine(*(l["verdict"] for l in there)) if there else paper.NOT_HERE
            entry[f"{label} accuracy"] = _accuracy(there)
        (built if kinds and all(k == CONSTRUCTION for k in kinds) else glance).append(entry)
    return glance, built


def write_comparison(root=None, out=BOOK / "comparison.md", results_out=None, only=None):
    """Gather the results under root (default: as ``gather``) into ``results_out`` (default ``book/results.csv``
    beside ``out``) and write the dashboard from it. ``only``: the chapters that were executed; the other
    chapters' rows are kept from the existing ``results_out`` (their runs need not be on this machine)."""
    out = Path(out)
    results = gather(root)
    results_out = Path(results_out) if results_out is not None else out.parent / RESULTS_CSV
    if only is not None:
        results = [r for r in results if NOTEBOOK_OF.get(r["id"]) in only]
        kept = [r for r in read_results(results_out) if NOTEBOOK_OF.get(r["id"]) not in only] if results_out.exists() else []
        results = sorted(kept + results, key=lambda r: ALL_IDS.index(r["id"]))
    results_out.parent.mkdir(parents=True, exist_ok=True)
    _write_csv(results_out, results, COLUMNS + ["source"])  # the dashboard's committed input
    return write_from_results(results_out, out)


def edition_results(folder):
    """The result rows of an edition committed in ``folder`` (e.g. book/full); None until its manifest.json exists."""
    return gather(Path(folder) / RUN_FILES) if (Path(folder) / MANIFEST).exists() else None


def editions_results(book=BOOK) -> dict:
    """label -> the committed rows of each edition of ``EDITIONS`` (None where it has not been run)."""
    return {label: edition_results(Path(book) / name) for label, name in EDITIONS.items()}


def write_from_results(results_csv=BOOK / RESULTS_CSV, out=BOOK / "comparison.md"):
    """The dashboard from a gathered results file (the committed ``book/results.csv``), the provenance of the
    chapters in ``<out's folder>/notebooks/`` and the committed editions' results (``book/full``, ...)."""
    out = Path(out)
    results = read_results(results_csv) if Path(results_csv).exists() else []
    edition_dir = out.parent / "notebooks"
    chapters = [p.stem for p in edition_dir.glob("*.ipynb")]
    provenance = {s: p for s in chapters if (p := read_provenance(s, edition_dir))}
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
    columns = {"default edition": results, **{k: v for k, v in (editions or {}).items() if v is not None}}
    by_claim = {label: _by_claim(rows) for label, rows in columns.items()}
    lines = ["| id | claim | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for id, claim in by_claim["default edition"]:
        cells = [", ".join(dict.fromkeys(l["verdict"] for l in by_claim[label].get((id, claim), []))) or paper.NOT_HERE
                 for label in columns]
        short = claim if len(claim) <= 90 else claim[:87].rstrip() + "…"
        lines.append(f"| {id} | {short} | " + " | ".join(cells) + " |")
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
    path = (write_from_results(Path(args.out).parent / RESULTS_CSV, args.out) if args.from_book
            else write_comparison(args.runs, args.out))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
