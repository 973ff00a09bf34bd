"""Each inline script once per page, and an edition's chapters launch their source notebook.

jupyter-book 1.x sets up sphinx-thebe and sphinx-togglebutton and then Sphinx loads them again as
extensions, so every page carried their configuration scripts twice, and the second
``const THEBE_JS_URL = ...`` is a console error ("has already been declared"). No setting of
either package avoids it; this drops the repeated inline scripts from each page's context.
"""


def _single(app, pagename, templatename, context, doctree):
    seen, kept = set(), []
    for script in context.get("script_files", []):
        body = getattr(script, "attributes", {}).get("body") if not isinstance(script, str) else None
        key = ("body", body) if body else ("src", str(script))
        if key in seen:
            continue
        seen.add(key)
        kept.append(script)
    if "script_files" in context:
        context["script_files"][:] = kept


# An edition's chapter (book/full/<stem>.ipynb, book/at_scale/<stem>.ipynb) is the executed copy of
# notebooks/<stem>.ipynb: its launch button opens that source notebook, as the default edition's do.
def _source_launch(app, pagename, templatename, context, doctree):
    import re

    def fix(buttons):
        for b in buttons or []:
            if isinstance(b, dict):
                if isinstance(b.get("url"), str):
                    b["url"] = re.sub(r"/blob/([^/]+)/(full|at_scale)/([^/]+\.ipynb)$", r"/blob/\1/notebooks/\3", b["url"])
                fix(b.get("buttons"))

    fix(context.get("header_buttons"))


def setup(app):
    app.connect("html-page-context", _single, priority=900)
    app.connect("html-page-context", _source_launch, priority=950)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
