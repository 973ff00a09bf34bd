"""The paper's results as plain data: every table and figure (Avranas & Kountouris, *Coded
ResNeXt: a network for designing disentangled information paths*: main text, appendix and talk slides).

``PAPER`` is a list of rows, one per (id, quantity, paper's data and scale)::

    {"id": "T-acc", "quantity": ACC, "paper": "94.41 vs 93.66",  # as the paper prints it
     "value": {"coded": 94.41, "resnext": 93.66},                  # machine-readable, or None
     "data": "CIFAR-10", "scale": "ResNeXt-29 (10×11d), 300 epochs",
     "claim": "",  # the qualitative claim the book checks on our runs, "" for a bare number
     "rule": ""}   # for a claim, the rule it is judged by (coded_lib.companion.claims applies it)

Our results (``coded_lib.companion.report``) join a paper row when they have its ``id`` and their
quantity starts with its ``quantity``, so notebooks reuse the strings below (``quantities(id)``).
"""

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
# runs with the same four verdicts; not claims of the paper, so the dashboard lists them apart.
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
# Four states, judged one-sided in the direction the paper claims (coded_lib.companion.claims.judge, at
# Student's critical value): "holds", "does not hold", "inconclusive" in between or when a comparison of
# trainings rests on fewer than MIN_SEEDS seeds a side; "not run here": a speed or memory claim about
# hardware (TPU, GPU) that the runs did not use.
HOLDS, FAILS, INCONCLUSIVE, NOT_HERE = "holds", "does not hold", "inconclusive", "not run here"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NOT_HERE)
MIN_SEEDS = 3


def combine(*verdicts):
    """A claim of several parts: does not hold if a part does not, holds if every part holds."""
    for v in verdicts:
        if v not in VERDICTS:
            raise ValueError(f"unknown verdict {v!r}; allowed: {', '.join(VERDICTS)}")
    if FAILS in verdicts:
        return FAILS
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    if all(v == NOT_HERE for v in verdicts):
        return NOT_HERE
    return INCONCLUSIVE


# The rules of the claims, written beside them on the dashboard (coded_lib.companion.claims applies them).
_SEEDS = (f"Welch's t over the seeds, one-sided 97.5 %: t > t_crit(df): holds; t < −t_crit(df): does not hold; "
          f"else inconclusive (also with < {MIN_SEEDS} seeds per point)")
_IMAGES = "z > 1.96 (SE over the test images, one-sided 97.5 %): holds; z < −1.96: does not hold; else inconclusive"
_CLASSES = "t > t_crit(n − 1): holds; t < −t_crit(n − 1): does not hold; else inconclusive"

PAPER = [
    # T-acc: main text, slides and appendix.
    _row("T-acc", ACC, "94.41 vs 93.66", "CIFAR-10", C10, {"coded": 94.41, "resnext": 93.66}),
    _row("T-acc", ACC, "78.28 vs 76.86 (slides: 76.82)", "CIFAR-100", C100,
         {"coded": 78.28, "resnext": 76.86}),
    _row("T-acc", ACC, "78.12 vs 78.05", "ImageNet", IN150, {"coded": 78.12, "resnext": 78.05}),
    _row("T-acc", ACC, "80.24 (slides: 80.21) vs 79.50; timm's ResNeXt-50 at 224 px: 79.76",
         "ImageNet", IN250, {"coded": 80.24, "resnext": 79.50}),
    _row("T-acc", GAIN, "+0.75 (C10), +1.42 (C100), +0.07 (ImageNet 150 ep), +0.74 (ImageNet 250 ep)",
         "CIFAR-10, CIFAR-100, ImageNet", "the four runs above",
         {"cifar10": 0.75, "cifar100": 1.42, "imagenet150": 0.07, "imagenet": 0.74},
         claim="Coded ResNeXt is at least as accurate as the plain ResNeXt of the same widths.",
         rule=f"coded − plain top-1 over ≥ {MIN_SEEDS} seeds each: {_SEEDS}"),
    # T-arch: Table 1 and the parameter counts quoted with it.
    _row("T-arch", "parameters per stage (M)", "c2, c3, c4 ≈ 0.2, 0.9, 3.5", "CIFAR-10/100",
         "ResNeXt-29", {"c2": 0.2, "c3": 0.9, "c4": 3.5}),
    _row("T-arch", "parameters per stage (M)", "c2, c3, c4, c5 ≈ 0.2, 1.2, 7.0, 14.5", "ImageNet",
         "ResNeXt-50 (32×4d)", {"c2": 0.2, "c3": 1.2, "c4": 7.0, "c5": 14.5}),
    _row("T-arch", "total parameters (M), Coded ResNeXt vs ResNeXt", "≈ 4.7 vs ≈ 4.7", "CIFAR-10/100",
         "ResNeXt-29", {"coded": 4.7, "resnext": 4.7},
         claim="Coding adds no parameters: the coded network and the plain one have the same count.",
         rule="exact counts: holds if equal"),
    _row("T-arch", "total parameters (M), Coded ResNeXt vs ResNeXt", "25.0 vs 25.0", "ImageNet",
         "ResNeXt-50 (32×4d)", {"coded": 25.0, "resnext": 25.0}),
    _row("T-arch", "number of coded blocks (early decoders)", "6", "CIFAR-10/100", "ResNeXt-29", 6),
    _row("T-arch", "number of coded blocks (early decoders)", "9", "ImageNet", "ResNeXt-50 (32×4d)", 9),
    # T-codes: the CIFAR-10 tables are printed (H_min = 4, columns all equal, checked);
    # the other schemes are only described by their parameters.
    *(_row("T-codes", CODES.format(ratio, k, n), f"{h}; {s_min}–{s_max}", data, where,
           {"h_min": h, "s_min": s_min, "s_max": s_max})
      for data, ratio, k, n, h, s_min, s_max, where in SCHEMES),
    _row("T-codes", "rules A-C hold for every scheme", "yes", "all", "all schemes",
         claim="Every codeword has N_act ones, H_min is large and the column sums are (nearly) equal.",
         rule="every stored scheme: N_act ones per codeword, H_min ≥ the paper's and column spread ≤ the paper's: "
              "holds, else does not hold"),
    # T-cost: main-text version (appendix Table 5 is garbled in our copy).
    _row("T-cost", "GFLOPs per image, ResNeXt vs Coded (one multiply-add = one FLOP)", "2.196 vs 2.269",
         "ImageNet", "ResNeXt-50 (32×4d), 160 px, TPU v2-8", {"resnext": 2.196, "coded": 2.269},
         claim="Coding adds only a few percent of FLOPs (3·N·C·H·W per coded block).",
         rule="counted FLOPs at 160 px: coding adds < 5 %: holds, else does not hold"),
    _row("T-cost", "parameters (M), ResNeXt vs Coded", "25.0 vs 25.0", "ImageNet",
         "ResNeXt-50 (32×4d), 160 px, TPU v2-8", {"resnext": 25.0, "coded": 25.0}),
    _row("T-cost", "training throughput (samples/s), ResNeXt vs Coded", "439 vs 447", "ImageNet",
         "ResNeXt-50 (32×4d), 160 px, TPU v2-8", {"resnext": 439, "coded": 447},
         claim="On a TPU, training Coded ResNeXt is as fast as training ResNeXt.",
         rule="a TPU claim: not run here unless timed on a TPU; there coded ≥ 0.9 × plain samples/s holds"),
    _row("T-cost", "memory (GB), ResNeXt vs Coded", "15.0 vs 15.7", "ImageNet",
         "ResNeXt-50 (32×4d), 160 px, TPU v2-8", {"resnext": 15.0, "coded": 15.7}),
    _row("T-cost", "GPU training speed of the authors' implementation", "Coded > 2× slower than ResNeXt",
         "ImageNet", "ResNeXt-50 (32×4d), GPU", None),
    # F-removal: Fig. 2a and appendix Fig. 9.
    _row("F-removal", "accuracy vs k removed subNNs, active vs inactive", "active: drops, more with k; "
         "inactive: flat or slightly up", "CIFAR-10, CIFAR-100, ImageNet",
         "last block of c3 (CIFAR), second block of c5 (ImageNet)",
         claim="Removing active subNNs hurts accuracy, the more the worse; removing inactive ones "
               "keeps it or raises it slightly.",
         rule="paper's block, paired over the images: intact − active(k_max) and active(1) − active(k_max) each "
              f"{_IMAGES}; any inactive removal below intact beyond the critical value: does not hold"),
    _row("F-removal", "active-vs-inactive gap in earlier blocks", "smaller the earlier the block",
         "CIFAR-10, CIFAR-100, ImageNet", "three more blocks (appendix F.3)",
         claim="The gap between removing active and inactive subNNs shrinks for earlier blocks.",
         rule=f"gap (inactive − active removed, mean over k) of the last minus the first coded block: {_IMAGES}"),
    # F-binary: Fig. 2b-d and appendix Figs. 7-8.
    _row("F-binary", "binary classifier parameters (% of the full model)", "38", "CIFAR-10", C10, 38,
         claim="A class's binary classifier needs well under half of the network (< 40 %).",
         rule="residual-path parameters of one class's sub-model < 40 %: holds, else does not hold"),
    _row("F-binary", "binary classifier parameters (% of the full model)", "27", "CIFAR-100", C100, 27),
    _row("F-binary", "binary classifier parameters (% of the full model)", "35", "ImageNet", IN150, 35),
    _row("F-binary", "precision-recall of the K binary classifiers, ID vs OOD negatives",
         "high precision and recall on ID negatives; CIFAR-10's lose precision on OOD (worst: cat)",
         "CIFAR-10 (OOD: CIFAR-100 validation)", C10,
         claim="Binary classifiers cut out of one trained network separate their class from "
               "in-distribution negatives with high precision and recall.",
         rule=f"mean ID precision − 0.8 and mean recall − 0.8, one-sample t over the K classes: {_CLASSES}"),
    _row("F-binary", "precision-recall of the K binary classifiers, ID vs OOD negatives",
         "as good on OOD as on ID negatives", "CIFAR-100 (OOD: CIFAR-10 validation; negatives 9× positives)",
         C100),
    _row("F-binary", "precision-recall of the K binary classifiers, ID vs OOD negatives",
         "high precision and recall (recall on a grid of 1/50)", "ImageNet (negatives 9× positives)", IN150),
    # F-bindist: Fig. 3 and appendix Fig. 7.
    _row("F-bindist", "logit distribution: ID positives, ID negatives, OOD negatives",
         "clearly separated (airplane / apple / tench)", "CIFAR-10, CIFAR-100, ImageNet",
         "first class (main text), first 10 classes (appendix)",
         claim="A binary classifier's logits separate positives from negatives clearly.",
         rule=f"mean ROC AUC (positives vs ID negatives) − 0.95, one-sample t over the classes: {_CLASSES}"),
    # F-act: appendix, second block of c4 (the appendix's "s3").
    _row("F-act", "|output| distribution of the first 5 subNNs, active vs inactive samples",
         "active samples have a heavier tail", "ImageNet", "second block of c4, log y-axis",
         claim="A subNN's output is larger on samples of the classes it serves.",
         rule=f"99th percentile of |output|, active − inactive, one-sample t over the shown subNNs: {_CLASSES}"),
    # F-early: main text (μ = 2) and appendix (μ = 4).
    _row("F-early", EARLY, "2.38, 8.12, 12.7, 12.8, 14.0, 17.0, 26.5, 65.1, 73.4", "ImageNet",
         "ResNeXt-50 (32×4d), μ = 2, 9 coded blocks",
         [2.38, 8.12, 12.7, 12.8, 14.0, 17.0, 26.5, 65.1, 73.4],
         claim="Early-decoder accuracy rises block by block.",
         rule=f"last − first early decoder (SE over images): {_IMAGES}; a block below the one before beyond the "
              "critical value: does not hold"),
    _row("F-early", EARLY, "4.6, 22.0, 32.0, 37.3, 40.0, 43.8, 55.6, 72.5, 75.7 (final 79.81)", "ImageNet",
         "ResNeXt-50 (32×4d), μ = 4, 9 coded blocks",
         [4.6, 22.0, 32.0, 37.3, 40.0, 43.8, 55.6, 72.5, 75.7]),
    # T-agree: the numbers are not in our sources, only the claim.
    _row("T-agree", "accuracy of the final prediction by number of agreeing early decoders (%)",
         "rises with agreement (table not in our sources)", "ImageNet", IN150,
         claim="The more early decoders agree with the final prediction, the likelier it is correct.",
         rule=f"accuracy when the most agree − when the fewest agree (groups of ≥ 10 images): {_IMAGES}"),
    # T-calib: appendix Table 6, 41 class-balanced random splits, M = 15 bins.
    _row("T-calib", CALIB.format("25/75"), "(0.70, 24.35) vs (0.70, 24.14)", "CIFAR-10", C10,
         {"h_T": (0.70, 24.35), "h_aug": (0.70, 24.14)},
         claim="Adding the early decoders' agreement to temperature scaling (h_aug) lowers MCE "
               "and leaves ECE about the same.",
         rule="h_aug − h_T, mean ± SD over the random splits: MCE lower beyond t_crit(splits − 1) and ECE not "
              "higher beyond it: holds; MCE or ECE higher beyond it: does not hold; else inconclusive"),
    _row("T-calib", CALIB.format("25/75"), "(1.75, 10.28) vs (1.71, 9.31)", "CIFAR-100", C100,
         {"h_T": (1.75, 10.28), "h_aug": (1.71, 9.31)}),
    _row("T-calib", CALIB.format("25/75"), "(2.98, 8.32) vs (3.00, 7.70)", "ImageNet", IN150,
         {"h_T": (2.98, 8.32), "h_aug": (3.00, 7.70)}),
    _row("T-calib", CALIB.format("50/50"), "(0.80, 24.83) vs (0.80, 23.64)", "CIFAR-10", C10,
         {"h_T": (0.80, 24.83), "h_aug": (0.80, 23.64)}),
    _row("T-calib", CALIB.format("50/50"), "(1.82, 11.37) vs (1.79, 10.44)", "CIFAR-100", C100,
         {"h_T": (1.82, 11.37), "h_aug": (1.79, 10.44)}),
    _row("T-calib", CALIB.format("50/50"), "(3.01, 8.56) vs (3.05, 8.10)", "ImageNet", IN150,
         {"h_T": (3.01, 8.56), "h_aug": (3.05, 8.10)}),
    # Ablations (appendix D-E, slides).
    _row("F-mu", "accuracy and early-decoder accuracy vs μ", "accuracy peaks near μ = 6; "
         "early decoders keep improving", "CIFAR-100", C100,
         claim="Raising μ first helps then hurts accuracy, while the early decoders keep improving.",
         rule="an inner μ above both ends of the grid, and the mean early decoder at the largest μ above the "
              f"smallest μ > 0: {_SEEDS}"),
    _row("F-pdrop", "accuracy and binary-classifier quality vs p_drop", "0.1 helps both; 0.2 costs accuracy",
         "CIFAR-10", C10,
         claim="A small DropSubNN probability (0.1) helps accuracy and the binary classifiers; "
               "0.2 costs accuracy.",
         rule=f"0.1 − 0 in accuracy and binary F1, 0.1 − 0.2 in accuracy: {_SEEDS}"),
    _row("T-exp", "top-1 accuracy (%) by coding-loss exponent", "4: 94.4; 2: 93.1; abs: 87.1", "CIFAR-10",
         C10 + ", (μ, p_drop) = (6, 0.1)", {"4": 94.4, "2": 93.1, "abs": 87.1},
         claim="The fourth power works best; the square and the absolute value are worse.",
         rule=f"exponent 4 − 2 and 4 − abs: {_SEEDS}"),
    _row("T-concat", "binary classifiers with concatenated instead of summed subNN outputs",
         "poor (\"does not work\")", "CIFAR-10", C10,
         claim="Concatenating the subNN outputs breaks the binary classifiers.",
         rule=f"binary F1 summed − concatenated: {_SEEDS}"),
    _row("T-ratios", "top-1 accuracy (%) with other stage ratios",
         "(c4, c5) = (16/32, 8/32): 78.1; (c3, c4, c5) = (16/32, 8/32, 4/32): 76.6; the other tried "
         "splits < 77", "ImageNet", "ResNeXt-50 (32×4d), 150 epochs, μ = 1, no random erasing",
         {"16/32,8/32": 78.1, "16/32,8/32,4/32": 76.6},
         claim="The paper's ratios are the best tried; coding more blocks or smaller ratios costs accuracy.",
         rule=f"the model's own ratios − each other setting: {_SEEDS}"),
    _row("T-detach", "accuracy with detached gradients instead of the coding loss, with vs without skips",
         "without skips: good specialization and accuracy; with skips: accuracy significantly lower",
         "CIFAR-10", "appendix E (no numbers printed)",
         claim="Detaching works without skip connections but costs accuracy with them; "
               "the coding loss is needed in a ResNeXt.",
         rule=f"accuracy without skips − with skips, both detached: {_SEEDS}"),
]

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
