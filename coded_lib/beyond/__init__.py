"""Beyond the paper: the doors its related work opens, on the same data. ``semantic``: coding schemes
from class similarity (SSAL's even clustering, seed 003); ``anytime``: IS-ResNeXt thin sub-networks
(seed 004). Their experiments are in ``coded_lib.analysis``.

It imports the method; the method never imports it.
"""
