"""``python -m coded_lib.train --preset ... [--run-dir ...] [--set key=value ...]``"""
from .loop import main

main()
