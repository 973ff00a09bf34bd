"""Each inline script once per page.

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


def setup(app):
    app.connect("html-page-context", _single, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
