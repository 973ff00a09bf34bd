"""The paper's results as plain data: every table and figure (Avranas & Kountouris, *Coded
ResNeXt: a network for designing disentangled information paths*: main text, appendix and talk slides).

``PAPER`` is a list of rows, one per (id, quantity, paper's data and scale), read from ``paper.toml``::

    {"id": "T-acc", "quantity": ACC, "paper": "94.41 vs 93.66",  # as the paper prints it
     "value": {"coded": 94.41, "resnext": 93.66},                  # machine-readable, or None
     "data": "CIFAR-10", "scale": "ResNeXt-29 (10×11d), 300 epochs",
     "claim": "",  # the qualitative claim the book checks on our runs, "" for a bare number
     "rule": ""}   # for a claim, the rule it is judged by (coded_lib.companion.claims applies it)

Our results (``coded_lib.companion.report``) join a paper row when they have its ``id`` and their
quantity starts with its ``quantity``, so notebooks reuse the strings below (``quantities(id)``).
"""
import tomllib
from pathlib import Path

# id -> what the table or figure shows, in the paper's order
TITLES = {
    "T-acc": "Top-1 accuracy, Coded ResNeXt vs ResNeXt",
    "T-arch": "Architectures and parameters per stage (Table 1)",
    "T-codes": "Coding schemes: H_min, S_min, S_max",
    "T-cost": "Cost of coding (FLOPs, parameters, speed, memory)",
    "F-removal": "Removing active vs inactive subNNs from one block",
    "F-binary": "Binary classifiers cut out of the network: precision and recall",
    "F-bindist": "Output distributions of the binary classifiers",
    "F-act": "Distribution of subNN outputs, active vs inactive samples",
    "F-early": "Early decoders: accuracy per coded block",
    "T-agree": "Accuracy by number of early decoders that agree",
    "T-calib": "Calibration: temperature scaling vs early-decoder-aided",
    "F-mu": "Ablation of the coding-loss weight μ",
    "F-pdrop": "Ablation of the DropSubNN probability p_drop",
    "T-exp": "Exponent of the coding loss",
    "T-concat": "Concatenating subNN outputs instead of summing them",
    "T-ratios": "Other ratios r per stage (ImageNet)",
    "T-detach": "Detaching gradients instead of the coding loss",
}
IDS = list(TITLES)

# The book's part "Beyond the paper" (issue 15): questions the paper leaves open, measured on our
# runs with the same verdicts; not claims of the paper, so the dashboard lists them apart.
BEYOND = {
    "B-semantic": "Semantic coding schemes vs class-agnostic ones (early blocks)",
    "B-anytime": "Anytime prediction: early exits vs thin sub-networks vs ResNeXt",
    "B-conditional": "Conditional computation: only the subNNs of the early decoder's classes",
}

C10 = "ResNeXt-29 (10×11d), 300 epochs"
C100 = "ResNeXt-29 (20×6d), 300 epochs"
IN150 = "ResNeXt-50 (32×4d), 150 epochs, μ = 1, 160 px"
IN250 = "ResNeXt-50 (32×4d), 250 epochs (timm recipe), μ = 2, 160 px"


def _row(id, quantity, paper, data, scale, value=None, claim="", rule=""):
    return {"id": id, "quantity": quantity, "paper": paper, "value": value,
            "data": data, "scale": scale, "claim": claim, "rule": rule}


ACC = "top-1 accuracy (%), Coded ResNeXt vs ResNeXt"
GAIN = "accuracy gain of Coded ResNeXt over ResNeXt (points)"
CODES = "H_min; S_min–S_max of the {} scheme (K = {}, N = {})"
CALIB = "ECE, MCE (%) of h_T vs h_aug, {} calibration/test split"
EARLY = "early-decoder accuracy per coded block (%)"

# The paper's coding schemes (SPEC §1.2): data set, ratio N_act/N, K, N, its H_min, S_min, S_max, where given
SCHEMES = [("CIFAR-10", "5/10", 10, 10, 4, 5, 5, "printed table"), ("CIFAR-10", "3/10", 10, 10, 4, 3, 3, "printed table"),
           ("CIFAR-100", "8/20", 100, 20, 8, 40, 40, "not printed"), ("CIFAR-100", "4/20", 100, 20, 4, 20, 20, "not printed"),
           ("ImageNet", "16/32", 1000, 32, 10, 499, 501, "not printed"), ("ImageNet", "8/32", 1000, 32, 6, 249, 251, "not printed")]


# --- verdicts ------------------------------------------------------------------------------------
# Judged one-sided in the direction the paper claims (coded_lib.companion.claims.judge, at Student's
# critical value): "holds", "does not hold", "inconclusive" in between or when a comparison of trainings
# rests on fewer than MIN_SEEDS seeds a side; "inconclusive at this scale": any of those from a network
# below a linear classifier on the same images (claims.at_this_scale); "not run here": a speed or memory
# claim about hardware (TPU, GPU) that the runs did not use.
HOLDS, FAILS, INCONCLUSIVE, NOT_HERE = "holds", "does not hold", "inconclusive", "not run here"
AT_SCALE = "inconclusive at this scale"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, AT_SCALE, NOT_HERE)
MIN_SEEDS = 3


def combine(*verdicts):
    """A claim of several parts: does not hold if a part does not, holds if every part holds, inconclusive
    at this scale if a part is (and none fails)."""
    for v in verdicts:
        if v not in VERDICTS:
            raise ValueError(f"unknown verdict {v!r}; allowed: {', '.join(VERDICTS)}")
    if FAILS in verdicts:
        return FAILS
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    if all(v == NOT_HERE for v in verdicts):
        return NOT_HERE
    return AT_SCALE if AT_SCALE in verdicts else INCONCLUSIVE


# The rules of the claims, written beside them on the dashboard (coded_lib.companion.claims applies them).
_SEEDS = (f"Welch's t over the seeds, one-sided 97.5 %: t > t_crit(df): holds; t < −t_crit(df): does not hold; "
          f"else inconclusive (also with < {MIN_SEEDS} seeds per point)")
_IMAGES = "z > 1.96 (SE over the test images, one-sided 97.5 %): holds; z < −1.96: does not hold; else inconclusive"
_CLASSES = "t > t_crit(n − 1): holds; t < −t_crit(n − 1): does not hold; else inconclusive"

# The rows themselves are data, in paper.toml; its {placeholders} are these names (its header lists them).
_FILL = dict(C10=C10, C100=C100, IN150=IN150, IN250=IN250, ACC=ACC, GAIN=GAIN, EARLY=EARLY, MIN_SEEDS=MIN_SEEDS,
             CALIB={s: CALIB.format(s) for s in ("25/75", "50/50")}, SEEDS=_SEEDS, IMAGES=_IMAGES, CLASSES=_CLASSES)


def _load(path=Path(__file__).with_name("paper.toml")):
    rows = []
    for r in tomllib.loads(path.read_text(encoding="utf-8"))["row"]:
        r = {k: v.format_map(_FILL) if isinstance(v, str) else v for k, v in r.items()}
        if isinstance(r.get("value"), dict):  # TOML has no tuples: T-calib's (ECE, MCE) pairs come back as lists
            r["value"] = {k: tuple(v) if isinstance(v, list) else v for k, v in r["value"].items()}
        rows.append(_row(**r))
    return rows


# the scheme rows of T-codes, then paper.toml's rows; a stable sort puts them in the paper's order
_CODES = [_row("T-codes", CODES.format(ratio, k, n), f"{h}; {s_min}–{s_max}", data, where,
               {"h_min": h, "s_min": s_min, "s_max": s_max}) for data, ratio, k, n, h, s_min, s_max, where in SCHEMES]
PAPER = sorted(_CODES + _load(), key=lambda r: IDS.index(r["id"]))

RULES = {(r["id"], r["quantity"]): r["rule"] for r in PAPER if r["claim"]}  # (id, quantity) -> its claim's rule


def rule(id, quantity):
    """The rule a claim (id, paper quantity) is judged by ("" for a number without a claim)."""
    return RULES.get((id, quantity), "")


def rows(id):
    """The paper's rows for one id of SPEC §2."""
    if id not in TITLES:
        raise ValueError(f"unknown id {id!r}; allowed: {', '.join(IDS)}")
    return [r for r in PAPER if r["id"] == id]


def value(id, quantity: str, data: str | None = None):
    """The paper's value of the one row of ``id`` whose quantity starts with ``quantity`` (and whose
    data set is ``data``), for the notebooks to compare with instead of retyping it."""
    found = [r for r in rows(id) if r["quantity"].startswith(quantity) and data in (None, r["data"])]
    if len(found) != 1:
        raise ValueError(f"{len(found)} rows of {id} start with {quantity!r}" + (f" for {data}" if data else "")
                         + f"; allowed: one of {quantities(id)}")
    return found[0]["value"]


def quantities(id):
    """The distinct quantity strings the paper reports for an id, in order."""
    return list(dict.fromkeys(r["quantity"] for r in rows(id)))


def claims():
    """(id, quantity, claim) for every row that states a qualitative claim."""
    return [(r["id"], r["quantity"], r["claim"]) for r in PAPER if r["claim"]]
