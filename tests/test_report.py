"""coded_lib.companion.report and .paper on hand-made results files."""
import csv
import html
import importlib.util
import itertools
import re
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
from markdown_it import MarkdownIt

from coded_lib.companion import paper, report

REPO = Path(__file__).resolve().parents[1]
# SPEC §2, copied by hand: the page must list exactly these, in this order.
SPEC_IDS = ["T-acc", "T-arch", "T-codes", "T-cost", "F-removal", "F-binary", "F-bindist", "F-act", "F-early",
            "T-agree", "T-calib", "F-mu", "F-pdrop", "T-exp", "T-concat", "T-ratios", "T-detach"]
FM = ("Fashion-MNIST, 8000 train / 2000 test", "coded_resnext_mini, 4 epochs, CPU")


def _csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "quantity", "ours", "data", "scale", "verdict", "note", "seeds"])
        w.writerows(rows)


# ------------------------------------------------------------------ paper.py

def test_paper_lists_every_id_of_the_spec_in_order():
    assert paper.IDS == SPEC_IDS
    assert [i for i in dict.fromkeys(r["id"] for r in paper.PAPER)] == SPEC_IDS
    for r in paper.PAPER:
        assert set(r) == {"id", "quantity", "paper", "value", "data", "scale", "claim", "rule"}
        assert all(isinstance(r[k], str) and r[k] for k in ("quantity", "paper", "data", "scale")), r
    assert {i for i, _, _ in paper.claims()} == set(SPEC_IDS)  # every experiment states a claim


def test_paper_accuracy_gains_match_the_accuracies():
    acc = {r["data"] + r["scale"]: r["value"] for r in paper.rows("T-acc") if r["quantity"] == paper.ACC}
    gains = sorted(round(v["coded"] - v["resnext"], 2) for v in acc.values())
    (gain_row,) = [r for r in paper.rows("T-acc") if r["quantity"] == paper.GAIN]
    assert gains == sorted(gain_row["value"].values()) == [0.07, 0.74, 0.75, 1.42]


def test_paper_scheme_balance_is_possible():
    # S_min <= rK <= S_max: the K * N_act ones spread over N columns
    for r in paper.rows("T-codes"):
        m = re.search(r"of the (\d+)/(\d+) scheme \(K = (\d+), N = (\d+)\)", r["quantity"])
        if not m:
            continue
        n_act, n, k, n2 = map(int, m.groups())
        assert n == n2
        assert r["value"]["s_min"] <= k * n_act / n <= r["value"]["s_max"], r


def test_paper_cifar10_schemes_agree_with_the_printed_tables():
    # the introduction's figure holds the printed tables: count H_min and columns there
    spec = importlib.util.spec_from_file_location("make_figures", REPO / "book" / "figures" / "make_figures.py")
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    for name, words in figures.SCHEMES.items():
        ratio = name.split("= ")[1]
        (row,) = [r for r in paper.rows("T-codes") if r["quantity"].startswith(f"H_min; S_min–S_max of the {ratio} ")]
        h_min = min(sum(a != b for a, b in zip(u, v)) for u, v in itertools.combinations(words, 2))
        columns = [sum(w[j] == "1" for w in words) for j in range(10)]
        assert (h_min, min(columns), max(columns)) == (row["value"]["h_min"], row["value"]["s_min"],
                                                       row["value"]["s_max"])


def test_paper_rows_rejects_unknown_id():
    with pytest.raises(ValueError, match="T-nope"):
        paper.rows("T-nope")


def test_paper_toml_rows_fill_their_placeholders_and_keep_the_numbers():
    # paper.toml holds every row but the six scheme rows of T-codes (made from paper.SCHEMES)
    rows = tomllib.loads((REPO / "coded_lib" / "companion" / "paper.toml").read_text(encoding="utf-8"))["row"]
    assert len(rows) + len(paper.SCHEMES) == len(paper.PAPER) == 48
    assert not [v for r in paper.PAPER for v in r.values() if isinstance(v, str) and ("{" in v or "}" in v)]
    # a few numbers typed from SPEC §2; T-calib's pairs come back as tuples
    assert paper.value("T-acc", paper.ACC, "CIFAR-10") == {"coded": 94.41, "resnext": 93.66}
    assert paper.value("T-calib", paper.CALIB.format("25/75"), "CIFAR-100") == {"h_T": (1.75, 10.28),
                                                                                "h_aug": (1.71, 9.31)}
    assert [r["value"] for r in paper.rows("F-early")] == [[2.38, 8.12, 12.7, 12.8, 14.0, 17.0, 26.5, 65.1, 73.4],
                                                           [4.6, 22.0, 32.0, 37.3, 40.0, 43.8, 55.6, 72.5, 75.7]]
    assert paper.rule("T-acc", paper.GAIN).startswith(f"coded − plain top-1 over ≥ {paper.MIN_SEEDS} seeds each: Welch")
    assert "SE from a bootstrap over the test images" in paper.rule("T-calib", paper.CALIB.format("25/75"))


# ------------------------------------------------------------------ verdicts

def test_combine_and_its_errors():
    assert paper.combine("holds", "holds") == "holds"
    assert paper.combine("holds", "inconclusive") == "inconclusive"
    assert paper.combine("inconclusive", "does not hold") == "does not hold"
    assert paper.combine("not run here") == "not run here"
    with pytest.raises(ValueError, match="yes"):
        paper.combine("holds", "yes")


def test_every_claim_has_a_rule_and_only_claims_do():
    claims = {(i, q) for i, q, _ in paper.claims()}
    assert set(paper.RULES) == claims
    assert all(paper.rule(i, q) for i, q in claims)


# ------------------------------------------------------------------ record / read

def test_record_writes_the_documented_columns_and_upserts(tmp_path):
    run = tmp_path / "runs" / "fashion_mnist"
    report.record(run, "T-acc", paper.ACC, "88.10 vs 87.50", *FM)
    report.record(run, "F-removal", "accuracy vs k removed subNNs, active vs inactive", [0.8, 0.7], *FM,
                  verdict="holds", note="drops by 10")
    report.record(run, "T-acc", paper.ACC, "88.20 vs 87.40", *FM, seeds=3, accuracy=0.874, reference=0.8123456)
    rows = _csv_rows(run / "results.csv")
    assert rows[0] == ["id", "quantity", "ours", "data", "scale", "verdict", "note", "seeds", "accuracy", "reference"]
    assert rows[1:] == [
        ["T-acc", paper.ACC, "88.20 vs 87.40", FM[0], FM[1], "", "", "3", "0.8740", "0.8123"],
        ["F-removal", "accuracy vs k removed subNNs, active vs inactive", "0.8, 0.7", FM[0], FM[1], "holds",
         "drops by 10", "", "", ""],
    ]
    back = report.read_results(run / "results.csv")
    assert back[1]["verdict"] == "holds" and back[0]["seeds"] == "3"
    # a file written before the accuracy columns existed (a committed edition's) reads them as empty
    with open(run / "results.csv", "w", newline="") as f:
        csv.writer(f).writerows(r[:8] for r in rows)
    assert [(r["accuracy"], r["reference"]) for r in report.read_results(run / "results.csv")] == [("", "")] * 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(id="T-foo"), "T-foo"),
    (dict(data=""), "data"),
    (dict(scale=None), "scale"),
    (dict(ours=None), "ours"),
    (dict(verdict="yes"), "verdict"),
    (dict(seeds=0), "seeds"),
    (dict(seeds=True), "seeds"),
    (dict(accuracy=78.9), "accuracy"),
    (dict(reference=-0.1), "reference"),
])
def test_record_rejects_bad_rows(tmp_path, kwargs, match):
    args = dict(run_dir=tmp_path, id="T-acc", quantity=paper.ACC, ours=1.0, data=FM[0], scale=FM[1])
    with pytest.raises(ValueError, match=match):
        report.record(**{**args, **kwargs})
    assert not (tmp_path / "results.csv").exists()


@pytest.mark.parametrize("value, text", [
    (94.41234, "94.41"), (0.3812, "0.3812"), (12345.6, "12,346"), (7, "7"), (np.float32(0.5), "0.5"),
    ([1, 2.25, "x"], "1, 2.25, x"), ({"coded": 91.0, "plain": 90.5}, "coded: 91; plain: 90.5"), (False, "no"),
])
def test_format_value(value, text):
    assert report.format_value(value) == text


def test_read_results_rejects_bad_files(tmp_path):
    bad = tmp_path / "results.csv"
    bad.write_text("id,quantity,ours\nT-acc,x,1\n")
    with pytest.raises(ValueError, match="missing columns"):
        report.read_results(bad)
    _write_csv(bad, [["T-acc", "q", "1", "d", "s", "maybe", "", ""]])
    with pytest.raises(ValueError, match="maybe"):
        report.read_results(bad)


# ------------------------------------------------------------------ gather and join

def test_gather_reads_every_run_and_skips_unknown_ids(tmp_path):
    _write_csv(tmp_path / "a" / "results.csv", [["T-acc", paper.ACC, "1", "d", "s", "", "", ""]])
    _write_csv(tmp_path / "b" / "sweep" / "results.csv", [["F-mu", "x", "2", "d", "s", "holds", "", "3"],
                                                         ["Z-9", "x", "3", "d", "s", "", "", ""]])
    with pytest.warns(UserWarning, match="Z-9"):
        rows = report.gather(tmp_path)
    assert [(r["id"], r["source"]) for r in rows] == [("T-acc", "a/results.csv"), ("F-mu", "b/sweep/results.csv")]


def test_lines_without_results_say_not_run_for_every_paper_quantity():
    lines = report.comparison_lines([])
    firsts = [(l["id"], l["quantity"]) for l in lines if l["first"]]
    expected = list(dict.fromkeys((r["id"], r["quantity"]) for r in paper.PAPER))
    assert firsts == expected
    assert all(l["ours"] == "not run" for l in lines if l["first"])
    # every paper row appears once, with its data
    assert sum(l["paper"] not in ("", "—") for l in lines) == len(paper.PAPER)


def test_results_join_the_paper_by_quantity_or_prefix(tmp_path):
    q_params = "binary classifier parameters (% of the full model)"
    _write_csv(tmp_path / "fm" / "results.csv", [
        ["F-binary", q_params + " — residual paths only", "41.0", "FM", "mini", "", "", ""],
        ["F-binary", "  Binary classifier parameters   (% of the full model)", "55.0", "FM", "mini", "does not hold", "", ""],
        ["F-binary", "our own quantity", "0.9", "FM", "mini", "", "", ""],
    ])
    lines = [l for l in report.comparison_lines(report.gather(tmp_path)) if l["id"] == "F-binary"]
    by_quantity = {}
    for l in lines:
        if l["first"]:
            current = l["quantity"]
        by_quantity.setdefault(current, []).append(l)
    assert [l["ours"] for l in by_quantity[q_params]] == ["41.0", "55.0", ""]  # 3 paper rows, 2 of ours
    assert by_quantity[q_params][1]["verdict"] == "does not hold"
    assert by_quantity[q_params][0]["verdict"] == "—"
    assert [(l["paper"], l["ours"]) for l in by_quantity["our own quantity"]] == [("—", "0.9")]
    assert by_quantity[q_params][0]["paper"] == "38 (CIFAR-10)"


def test_claim_lines_one_per_judged_result_and_counts(tmp_path):
    q = "accuracy vs k removed subNNs, active vs inactive"
    _write_csv(tmp_path / "a" / "results.csv", [["F-removal", q, "x", "FM", "mini", "holds", "", ""],
                                               ["T-acc", paper.GAIN, "0.4", "FM", "mini", "inconclusive", "", "1"],
                                               ["F-act", paper.quantities("F-act")[0], "x", "FM", "mini", "", "", ""],
                                               ["T-arch", "total parameters (M), Coded ResNeXt vs ResNeXt, our mini",
                                                "1 vs 1", "FM", "mini", "holds", "", ""]])
    _write_csv(tmp_path / "b" / "results.csv", [["F-removal", q, "y", "C10", "29", "does not hold", "", ""]])
    lines = report.claim_lines(report.gather(tmp_path))
    removal = [l for l in lines if l["id"] == "F-removal" and l["claim"] == paper.rows("F-removal")[0]["claim"]]
    assert [l["verdict"] for l in removal] == ["holds", "does not hold"]
    assert removal[0]["rule"] == paper.rule("F-removal", q)
    act = [l for l in lines if l["id"] == "F-act"]
    assert [(l["ours"], l["verdict"]) for l in act] == [("not run", "not run here")]  # measured, not judged
    counts = report.verdict_counts(report.gather(tmp_path))
    n_claims = len(paper.claims())
    # T-arch's mini-network row matches the paper's "total parameters" claim by prefix
    assert counts == {"holds": 2, "does not hold": 1, "inconclusive": 1, paper.AT_SCALE: 0, "not run here": n_claims - 3}
    names = report.run_names(report.gather(tmp_path))
    assert list(names.values()) == ["R1", "R2", "R3"] and ("FM", "mini", "1") in names


# ------------------------------------------------------------------ the page

def test_markdown_escaping_round_trips():
    md = MarkdownIt("commonmark")
    for text in ["a|b", "x*y*z", "H_min and S_max_", "[not a link](x)", "$5 and $6", "<b>", "#1", "a\\b"]:
        rendered = md.renderInline(report._md(text))
        assert rendered == html.escape(text, quote=False), text


def test_page_has_a_claim_row_for_every_id_and_links_only_existing_chapters(tmp_path):
    book = tmp_path / "book"
    (book / "notebooks").mkdir(parents=True)
    import nbformat

    nbformat.write(nbformat.v4.new_notebook(metadata={"coded_lib": {"device": "CPU: 2 cores", "commit": "abc",
                                                                  "seconds": 90, "date": "2024-01-01"}}),
                   book / "notebooks" / "removal.ipynb")
    runs = tmp_path / "runs"
    report.record(runs / "fm", "F-removal", "accuracy vs k removed subNNs, active vs inactive", "drops", "FM", "mini",
                  verdict="holds")
    page = report.write_comparison(runs, book / "comparison.md")
    text = page.read_text()
    claims = text.split("## The paper's claims")[1].split("## ")[0]
    for id in SPEC_IDS:
        assert f"* - {id}" in claims or f"* - [{id}](" in claims, id
    assert "[F-removal](notebooks/removal.ipynb)" in text
    assert "](notebooks/accuracy.ipynb)" not in text
    assert "{bdg-success}`holds`" in claims
    assert text.count("```{list-table}") == 5  # at a glance, by construction, runs, claims, numbers
    assert "`runs/fm/results.csv`" in text
    runs_table = text.split("## The runs behind the numbers")[1].split("## ")[0]
    assert "Every chapter ran on CPU: 2 cores, torch ? from source commit `abc` (2024-01-01 to 2024-01-01)." in runs_table
    assert "* - R1\n  - FM\n  - mini\n  - —\n  - [removal](notebooks/removal.ipynb) (1.5 min)" in runs_table
    # the gathered results are kept beside the page, and the page can be rewritten from them alone
    assert report.read_results(book / "results.csv")[0]["source"] == "fm/results.csv"
    assert report.write_from_results(book / "results.csv", book / "again.md").read_text() == text


def test_dashboard_opens_with_the_compact_table_and_spans_the_whole_reproduce():
    rows = [dict(id="T-arch", quantity="total parameters (M), Coded ResNeXt vs ResNeXt, CIFAR-10/100", ours="4.6",
                 data="none", scale="built", verdict="holds", note="", seeds=""),
            dict(id="T-arch", quantity="total parameters (M), Coded ResNeXt vs ResNeXt, ImageNet", ours="25",
                 data="none", scale="built", verdict="holds", note="", seeds=""),
            dict(id="T-acc", quantity="accuracy gain of Coded ResNeXt over ResNeXt (points)", ours="+0.1", data="FM",
                 scale="mini", verdict="inconclusive", note="", seeds="3")]
    prov = {"train": {"date": "2026-12-01 06:25", "seconds": 60, "training_s": 1200},
            "ablations": {"date": "2026-12-01 06:30", "seconds": 960, "training_s": 1200}}
    text = report.comparison_markdown(rows, provenance=prov)
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections[:2] == ["## At a glance", "## True by construction"]
    glance = text.split("## At a glance")[1].split("## ")[0]
    assert "  - 3 seeds\n  - {bdg-warning}`inconclusive`" in glance and "T-arch" not in glance
    built = text.split("## True by construction")[1].split("## ")[0]
    assert built.count("* - T-arch") == 1  # two rows, one claim, counted once
    # from the first chapter's start less the 20 minutes of training before it, to the last one's start plus 16 minutes
    assert "(2026-12-01 06:05 to 2026-12-01 06:46)" in text
    assert text.index("```{contents}") < text.index("## At a glance")
    assert ":::{dropdown} The claims table" in text and ":::{dropdown} Every number" in text


def test_glance_says_the_accuracy_of_the_weakest_network_beside_its_verdict():
    # two rows of one claim from networks at 90.00 % and 78.94 %: the claim's cell names 78.9 % and its linear 81.0 %
    q = paper.quantities("F-removal")[0]
    rows = [dict(id="F-removal", quantity=f"{q}, block {b}", ours="x", data="FM", scale="mini", verdict=v, note="",
                 seeds="", accuracy=a, reference="0.8100")
            for b, a, v in ((3, "0.9000", paper.HOLDS), (2, "0.7894", paper.AT_SCALE))]
    glance = report.comparison_markdown(rows).split("## At a glance")[1].split("## ")[0]
    # no-break spaces (\u00a0) keep each number with its unit in a narrow column
    assert "  - {bdg-info}`inconclusive at this scale` network\u00a078.9\u00a0% (linear\u00a081.0\u00a0%)" in glance
    assert "1 inconclusive at this scale" in glance


def test_page_without_runs_folder(tmp_path):
    page = report.write_comparison(tmp_path / "nothing", tmp_path / "comparison.md")
    built = {("T-arch", "total parameters (M), Coded ResNeXt vs ResNeXt"), ("T-codes", "rules A-C hold for every scheme"),
             ("T-cost", "GFLOPs per image, ResNeXt vs Coded (one multiply-add = one FLOP)"),
             ("F-binary", "binary classifier parameters (% of the full model)")}
    empirical = len({(i, c) for i, q, c in paper.claims() if (i, q) not in built})
    assert f"The paper's {empirical} empirical claims" in page.read_text()
    assert f"{empirical} not run here." in page.read_text()


def test_side_by_side_frame(tmp_path):
    report.record(tmp_path, "T-exp", paper.quantities("T-exp")[0], {"4": 90.1, "2": 89.0}, "FM", "mini",
                  verdict="inconclusive", note="one seed", seeds=1)
    df = report.side_by_side(tmp_path, ids="T-exp")
    assert list(df.columns) == ["id", "quantity", "paper (data)", "ours", "verdict", "note"]
    assert df.iloc[0]["ours"] == "4: 90.1; 2: 89" and df.iloc[0]["paper (data)"].startswith("4: 94.4")
    assert df.iloc[0]["note"] == "one seed"
    assert len(report.side_by_side(tmp_path / "none")) == len(report.comparison_lines([]))


def test_paper_value_reads_one_row_and_refuses_an_ambiguous_prefix():
    # the paper's main-text T-cost and Table 1 numbers
    assert paper.value("T-cost", "GFLOPs") == {"resnext": 2.196, "coded": 2.269}
    assert paper.value("T-cost", "training throughput") == {"resnext": 439, "coded": 447}
    assert paper.value("T-arch", "number of coded blocks", "ImageNet") == 9
    assert paper.value("T-arch", "number of coded blocks", "CIFAR-10/100") == 6
    with pytest.raises(ValueError, match="2 rows of T-arch"):
        paper.value("T-arch", "number of coded blocks")


def test_claims_table_has_no_index_and_badges_for_verdicts():
    import pandas as pd

    df = pd.DataFrame([{"id": "T-acc", "quantity": "gain <b>", "paper (data)": "+0.75", "ours": "−0.5",
                        "verdict": "holds", "note": "t = 3"},
                       {"id": "T-arch", "quantity": "counts", "paper (data)": "4.6", "ours": "4.6", "verdict": "",
                        "note": ""}])
    html = report.claims_table(df).to_html()
    assert "<th" not in html.split("<tbody>")[1].split("</tr>")[0]  # no index cell in the first body row
    assert '<span class="sd-badge sd-bg-success sd-bg-text-success">holds</span>' in html
    assert "gain &lt;b&gt;" in html and "white-space: nowrap" in html
