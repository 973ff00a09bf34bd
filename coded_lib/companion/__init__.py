"""The companion's machinery: the paper's numbers (``paper``), the comparison report written into the
book (``report``), the notebooks' glue (``notebook``) and ``make reproduce`` (``reproduce``).

It may import everything else in ``coded_lib``; nothing else imports it.
"""
