"""The published figures our runs are compared against (lra.report prints them beside ours), each
with where it comes from, so that a reader can check every one.

LRA test accuracies (%), in the papers' column order; None: failed (at chance) or not reported.
WikiText-103 perplexities (valid, test) with the adaptive input / softmax setting of the
reference LM; None: not reported. `SOURCES` names the paper (and arXiv id) of each row.
"""

# The columns of the papers' LRA table, which the published figures below follow.
PAPER_COLUMNS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx", "avg")

_PUBLISHED = {
    "Transformer (LRA paper)": (36.37, 64.27, 57.46, 42.44, 71.40, None, 54.39),
    "S4 (v2)": (59.60, 86.82, 90.90, 88.65, 94.20, 96.35, 86.09),
    "S5": (62.15, 89.31, 91.40, 88.00, 95.33, 98.58, 87.46),
    "MEGA": (63.14, 90.43, 91.25, 90.44, 96.01, 97.98, 88.21),
    "MEGA-chunk": (58.76, 90.19, 90.97, 85.80, 94.41, 93.81, 85.66),
    "SPADE (paper)": (60.50, 90.69, 91.17, 88.22, 96.23, 97.60, 87.40),
    "SPADE (aggregator)": (None, 86.29, None, None, None, None, 87.4),
}
PUBLISHED = {name: dict(zip(PAPER_COLUMNS, values)) for name, values in _PUBLISHED.items()}

PUBLISHED_LM = {
    "Adaptive-input Transformer (Baevski & Auli; the reference LM, 247M)": (17.97, 18.70),
    "Transformer-XL": (None, 18.30),
    "S4": (None, 20.95),
    "MEGA": (None, 18.07),
    "SPADE (aggregator)": (24.18, 24.55),
}

SOURCES = {
    "Transformer (LRA paper)": "Tay et al., Long Range Arena, ICLR 2021 (arXiv:2011.04006), "
                               "its results table",
    "S4 (v2)": "Gu, Goel and Ré, Efficiently Modeling Long Sequences with Structured State "
               "Spaces, ICLR 2022 (arXiv:2111.00396, the revised version's LRA table)",
    "S5": "Smith, Warrington and Linderman, Simplified State Space Layers for Sequence Modeling, "
          "ICLR 2023 (arXiv:2208.04933), its LRA table",
    "MEGA": "Ma et al., Mega: Moving Average Equipped Gated Attention, ICLR 2023 "
            "(arXiv:2209.10655), its LRA and WikiText-103 tables",
    "MEGA-chunk": "the same paper (arXiv:2209.10655): Mega with chunked attention",
    "SPADE (paper)": "Zuo et al., Efficient Long Sequence Modeling via State Space Augmented "
                     "Transformer, 2022 (arXiv:2212.08136), its LRA table (see UNCONFIRMED)",
    "SPADE (aggregator)": "a third-party results aggregator (see UNCONFIRMED)",
    "Adaptive-input Transformer (Baevski & Auli; the reference LM, 247M)":
        "Baevski and Auli, Adaptive Input Representations for Neural Language Modeling, "
        "ICLR 2019 (arXiv:1809.10853): 2560 tokens of context over 3072-token blocks",
    "Transformer-XL": "Dai et al., Transformer-XL, ACL 2019 (arXiv:1901.02860)",
    "S4": "Gu, Goel and Ré, ICLR 2022 (arXiv:2111.00396), its WikiText-103 result",
}

# Figures not confirmed against their paper: name -> (marker, why); shown beside the name and
# as a footnote under each table that shows them.
UNCONFIRMED = {
    "SPADE (paper)": ("†", "unconfirmed: the per-task figures were recalled from the SPADE "
                      "paper's LRA table (arXiv 2212.08136, Table 1) and not yet checked against "
                      "it; their average (87.40) agrees with the aggregator's 87.4"),
    "SPADE (aggregator)": ("‡", "unverified: a third-party aggregator's figures, not read from "
                           "the paper (its LRA Text 86.29 disagrees with the 90.69 recalled from "
                           "the paper)"),
}
