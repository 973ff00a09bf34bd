"""Companion library to *Coded ResNeXt: a network for designing disentangled information paths*
(Avranas & Kountouris): the model, the coding loss, the coding schemes, the decoders, training and
the analyses that regenerate the paper's tables and figures."""

__version__ = "0.1.0"
