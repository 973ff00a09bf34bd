"""Companion library to *Coded ResNeXt: a network for designing disentangled information paths*
(Avranas & Kountouris).

The top of the package is the method and imports nothing of the rest: ``coding`` (coding schemes,
Algorithm 1), ``models`` (ResNeXt and Coded ResNeXt from Table 1, energy normalization Eq. 2-3,
DropSubNN), ``losses`` (the coding loss, Eq. 5), ``decoders`` (removal, binary-classifier
extraction, early decoding Eq. 7) and ``calibration`` (the appendix's h_aug).
Around it: ``train`` (data, presets, the loop, checkpoints), ``analysis`` (the experiments behind
the figures) and ``companion`` (the paper's numbers, the comparison report, notebook glue,
``make reproduce``).
"""

__version__ = "0.1.0"
