"""The built book, opened page by page in headless Chromium (selenium).

Uses ``$CODED_BOOK_HTML`` if set, else ``book/_build/html`` when `make reproduce` built it; otherwise
builds the book as a fresh clone would (``jupyter-book build book/``) in a temporary folder: the
book's sources with the committed executed notebooks (source notebooks unexecuted stand in for
missing ones) and the committed dashboard. Checks, in Chromium at 1400 px with every external
host blocked: every page loads, is at most 25,000 px tall, shows no raw TeX (MathJax is served
locally) and no progress-bar text; every image decodes (naturalWidth > 0); every local link and
anchor resolves; every Colab link opens a notebook that is in the repository; no NaN or inf is shown
as a number (a table cell, a code cell's output); every figure a code cell shows says in its PNG that
no legend covers its data (the check its notebook ran before drawing it); on a page written in Markdown
every chapter it names is a link, and every code block fits its column at 1280 px without wrapping;
the dashboard has a claim row for every id of `paper.IDS` with one of the verdicts (a screenshot
of it is saved beside the HTML folder).
"""
import functools
import http.server
import os
import re
import shutil
import threading
import warnings
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from coded_lib.companion import paper, plots, report, reproduce

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
BUILT = BOOK / "_build" / "html"
COLAB = "https://colab.research.google.com/github/"
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1000",
                # no internet here: make every other host fail at once instead of timing out
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]


def _config():
    return yaml.safe_load((BOOK / "_config.yml").read_text())


@pytest.fixture(scope="module")
def html_dir(tmp_path_factory):
    if os.environ.get("CODED_BOOK_HTML"):  # a book built elsewhere
        return Path(os.environ["CODED_BOOK_HTML"])
    if (BUILT / "index.html").exists():
        return BUILT
    book = tmp_path_factory.mktemp("fresh") / "book"
    shutil.copytree(BOOK, book, ignore=shutil.ignore_patterns("_build"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an edition not committed yet: unexecuted chapters stand in
        reproduce.stage_unexecuted(book)
    if not (book / "comparison.md").exists():
        report.write_from_results(book / "results.csv", book / "comparison.md")
    reproduce.build_book(book, quiet=True)
    return book / "_build" / "html"


def _pages(html_dir):
    skip = {"_static", "_sources", "_images"}
    return sorted(p for p in html_dir.rglob("*.html") if not skip & set(p.relative_to(html_dir).parts))


# ---------------------------------------------------------------- without a browser

def test_toc_lists_the_notebooks_of_reproduce_in_order():
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    stems = [f.split("/", 1)[1] for f in files if f.startswith("notebooks/")]
    assert stems == reproduce.NOTEBOOKS
    assert "comparison" in files


def test_toc_lists_the_differences_page():
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert "differences" in files and (BOOK / "differences.md").is_file()
    assert "Differences from the authors' code" in (BOOK / "differences.md").read_text()


def test_config_renders_only_and_launches_source_notebooks():
    cfg = _config()
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert cfg["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    # book page notebooks/<stem> must map to the repository's notebooks/<stem>.ipynb
    assert cfg["repository"]["path_to_book"] == ""


def _tiny_notebook(path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell('preset = "smoke"', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("import os\nprint(preset, os.getcwd())")]
    nbformat.write(nb, path)


def test_reproduce_skips_missing_notebooks_and_stages_the_rest(tmp_path):
    source, book = tmp_path / "notebooks", tmp_path / "book"
    source.mkdir()
    _tiny_notebook(source / "removal.ipynb")
    _tiny_notebook(source / "train.ipynb")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = reproduce.available(source=source)
    missing = sorted(Path(str(w.message).split()[0]).stem for w in caught)
    assert missing == sorted(set(reproduce.NOTEBOOKS) - {"train", "removal"})
    assert [p.stem for p in found] == ["train", "removal"]  # NOTEBOOKS order, not the folder's
    with pytest.raises(ValueError, match="nope"):
        reproduce.available(["nope"], source=source)
    (book / "notebooks").mkdir(parents=True)
    (book / "notebooks" / "train.ipynb").write_text("executed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert reproduce.stage_unexecuted(book, source) == ["removal"]
    assert (book / "notebooks" / "train.ipynb").read_text() == "executed"  # never overwritten


def test_reproduce_executes_with_the_preset_from_the_repository_root(tmp_path):
    import nbformat

    _tiny_notebook(tmp_path / "train.ipynb")
    ok, _ = reproduce.execute(tmp_path / "train.ipynb", tmp_path / "out", "fashion_mnist")
    assert ok
    nb = nbformat.read(tmp_path / "out" / "train.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert printed.split() == ["fashion_mnist", str(REPO)]


def _colab_targets(text):
    return set(re.findall(r'href="(https://colab\.research\.google\.com/github/[^"#?]+)', text))


def test_every_colab_link_opens_a_notebook_of_the_repository(html_dir):
    repo_url = _config()["repository"]["url"].rstrip("/")
    org_repo = "/".join(urlsplit(repo_url).path.strip("/").split("/")[:2])
    chapters = sorted((html_dir / "notebooks").glob("*.html"))
    seen = 0
    for page in _pages(html_dir):
        for link in _colab_targets(page.read_text(encoding="utf-8")):
            parts = link[len(COLAB):].split("/")
            assert len(parts) >= 5 and parts[2] == "blob", f"{page.name}: odd Colab link {link}"
            assert "/".join(parts[:2]) == org_repo, f"{page.name}: {link} is not in {repo_url}"
            path = unquote("/".join(parts[4:]))
            assert path.endswith(".ipynb") and (REPO / path).is_file(), \
                f"{page.name}: {link} opens {path}, which is not in the repository"
            seen += 1
    for page in chapters:  # each chapter's launch button opens its own source notebook
        links = _colab_targets(page.read_text(encoding="utf-8"))
        assert any(l.endswith(f"/notebooks/{page.stem}.ipynb") for l in links), page.name
    assert seen >= len(chapters)


# ---------------------------------------------------------------- in the browser

@pytest.fixture(scope="module")
def server(html_dir):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(html_dir)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chrome')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


MAX_HEIGHT = 25_000
# A NaN or an infinity shown as a number: a whole token "nan", "inf", "-inf", "+inf" (any case;
# "information", "infinity" or a code cell's "nan" string are not tokens of this kind). It counts
# in a table cell whose other text is only numbers and signs ("NaN", "0.91 ± nan", "[inf, 2]", not a
# sentence that names NaN) and anywhere in a code cell's outputs (printed text, tables).
NONFINITE = r"(?<![\w.])[-+\u2212]?(?:nan|inf)(?![\w])"
NONFINITE_JS = r"""
const tok = new RegExp(arguments[0], 'i'), toks = new RegExp(arguments[0], 'gi');
const numeric = /^[\s\d.,:;%±+\-\u2212\u2013\u2014()\[\]\/×eE]*$/;
const root = document.querySelector('article') || document.body, hits = [];
const where = (cell, what) => {  // the row's first cell, or the column's header
  const row = cell.closest('tr'), head = cell.closest('table').querySelector('thead tr:last-child');
  const other = what === 'row' ? row.cells[0] : head && head.cells[cell.cellIndex];
  return other ? other.textContent.trim().slice(0, 40) : '?';
};
for (const cell of root.querySelectorAll('td, th')) {
  const t = cell.textContent.trim();
  if (tok.test(t) && (numeric.test(t.replace(toks, '')) || cell.closest('.cell_output')))
    hits.push(`table cell ${JSON.stringify(t.slice(0, 80))} (row ${JSON.stringify(where(cell, 'row'))}, ` +
              `column ${JSON.stringify(where(cell, 'column'))})`);
}
for (const out of root.querySelectorAll('.cell_output')) {
  const walk = document.createTreeWalker(out, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    if (n.parentElement.closest('td, th, script, style')) continue;
    const m = n.textContent.match(tok);
    if (m) hits.push('output ' + JSON.stringify(
      n.textContent.slice(Math.max(0, m.index - 40), m.index + m[0].length + 40).trim()));
  }
}
return hits;
"""
# A chapter named in a Markdown page (the introduction, the dashboard, ...) must be a link to it. A
# chapter's names: its title as the sidebar shows it, the title before " (" or ":", and its file's
# stem ("semantic_codes": "semantic codes"; an index page has only its title). A mention is (a) an
# <em>/<i> whose whole text is a name, or (b) "chapter(s) <name>" or "the <name> chapter", quotes or
# not; it must be inside an <a>. Code blocks do not count.
CHAPTER_REFS_JS = r"""
const files = new Set(arguments[0]), names = [];
const norm = s => s.replace(/[\u2018\u2019]/g, "'").replace(/[\u201c\u201d]/g, '"').replace(/\s+/g, ' ').trim();
for (const a of document.querySelectorAll('nav.bd-docs-nav a.reference.internal')) {
  const path = new URL(a.href).pathname.replace(/^\/+/, '').replace(/\.html$/, '');
  if (!files.has(path)) continue;
  const title = norm(a.textContent), stem = path.split('/').pop();
  names.push(title, title.split(' (')[0], title.split(':')[0]);
  if (stem !== 'index') names.push(stem.replace(/_/g, ' '));
}
const uniq = [...new Set(names.filter(n => n.length > 2).map(n => n.toLowerCase()))];
const esc = s => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const alt = uniq.sort((x, y) => y.length - x.length).map(esc).join('|');
const q = `[*"']?`;
const pattern = new RegExp(`\\b(?:chapters?\\s+${q}(?:${alt})(?![\\w-])|the\\s+${q}(?:${alt})${q}\\s+chapters?\\b)`, 'gi');
const root = document.querySelector('article') || document.body, hits = [];
for (const em of root.querySelectorAll('em, i')) {
  const t = norm(em.textContent).replace(/^["']|["']$/g, '').toLowerCase();
  if (!em.closest('a') && uniq.includes(t)) hits.push('*' + norm(em.textContent) + '* (in italics, not a link)');
}
const copy = root.cloneNode(true);
copy.querySelectorAll('pre, script, style, mjx-container, .headerlink').forEach(e => e.remove());
copy.querySelectorAll('a').forEach(a => a.replaceWith(' \u27e6link\u27e7 '));
copy.querySelectorAll('p, li, td, th, dt, dd, div, h1, h2, h3, h4, h5, h6, figcaption, caption')
    .forEach(e => e.append('\n'));
for (const m of norm(copy.textContent.replace(/\n/g, ' \u00b6 ')).matchAll(pattern))
  hits.push(JSON.stringify(m[0]) + ' (not a link)');
return hits;
"""
# The code blocks of a page whose lines do not fit the block unwrapped: the longest line of each.
WRAPPED_CODE_JS = r"""
const root = document.querySelector('article') || document.body, wide = [];
for (const pre of root.querySelectorAll('div.highlight pre')) {
  pre.style.whiteSpace = 'pre';
  if (pre.scrollWidth > pre.clientWidth + 1)
    wide.push(pre.textContent.split('\n').reduce((a, b) => (b.length > a.length ? b : a), ''));
  pre.style.whiteSpace = '';
}
return wide;
"""
RAW_TEX = ("\\(", "\\)", "\\[", "$$", "\\mathbb", "\\frac", "\\sum", "\\mathrm")
PROGRESS = re.compile(r"it/s\]|s/it\]|\d+%\|[█▏▎▍▌▋▊▉ ]*\|")


def _open(driver, url):
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    # MathJax typesets after the load event: wait for it where the page loads it
    if driver.execute_script("return !!document.querySelector('script[src*=\"mathjax\"]')"):
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "return !!(window.MathJax && MathJax.startup && MathJax.startup.promise)"))
        driver.set_script_timeout(30)
        driver.execute_async_script("const done = arguments[arguments.length - 1]; "
                                    "MathJax.startup.promise.then(() => done(true), () => done(false));")
    # images below the fold may be lazy: load them all, then wait until each has settled
    driver.execute_script("for (const i of document.images) i.loading = 'eager';")
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return Array.from(document.images).every(i => i.complete)"))


def _ids(path, cache={}):
    if path not in cache:
        cache[path] = set(re.findall(r'\sid="([^"]+)"', path.read_text(encoding="utf-8")))
    return cache[path]


def _toc_files():
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]


# Pages of the full-data edition that cannot be executed again without their trainings: their chapters need the
# networks of every seed, and the edition publishes the seed-0 weights only (about two hours of the 2-core CPU to
# train them anew). Their figures predate the legend check; every other page must carry it. A page listed here
# whose figures do carry it fails the test: the list only shrinks.
UNCHECKED_LEGENDS = {"full/ablations.html", "full/scale.html"}


def _figure_legend_problems(html_dir) -> list[str]:
    """The figures of the pages' notebook outputs (an <img> in a ``div.cell_output``; not the logos, badges and
    book/figures images of the text) whose PNG text ``plots.LEGEND_KEY``, written when the notebook showed
    the figure (``coded_lib.companion.notebook._display_setup``), names a legend over the data, or which have
    none (shown before the check existed, or not a PNG): the chapter must be executed again."""
    import base64
    import io

    from bs4 import BeautifulSoup
    from PIL import Image

    problems = []
    for page in _pages(html_dir):
        rel = page.relative_to(html_dir).as_posix()
        for img in BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser").select("div.cell_output img"):
            src, why = img.get("src", ""), "none"
            try:
                data = base64.b64decode(src.split(",", 1)[1]) if src.startswith("data:") else \
                    (page.parent / unquote(urlsplit(src).path)).read_bytes()
                note = Image.open(io.BytesIO(data)).text.get(plots.LEGEND_KEY)
            except (OSError, AttributeError, IndexError) as e:  # missing, or not a PNG (no .text)
                note, why = None, f"unread: {type(e).__name__}"
            if note is None:
                problems.append(f"{rel}: figure {src[:80]} has no {plots.LEGEND_KEY!r} PNG text ({why}): "
                                "its chapter ran before the legend check; execute it again")
            elif note != "clear":
                problems.append(f"{rel}: figure {src[:80]}: a legend covers the data: {note}")
    return problems


def test_figure_legend_problems_reads_the_png_text(tmp_path):
    """A clear figure passes; one whose legend covers its data, one shown without the check, and a missing image
    are named; an image of the text (outside a cell's output) is not looked at."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (tmp_path / "_images").mkdir()
    (tmp_path / "notebooks").mkdir()
    fig, ax = plt.subplots()
    ax.plot(range(10), label="line")
    for name, legend in (("clear", "upper left"), ("over", "center")):
        ax.legend(loc=legend)
        note = "; ".join(plots.legend_overlaps(fig)) or "clear"
        fig.savefig(tmp_path / "_images" / f"{name}.png", metadata={plots.LEGEND_KEY: note})
    fig.savefig(tmp_path / "_images" / "unchecked.png")
    fig.savefig(tmp_path / "_images" / "logo.png")
    plt.close(fig)
    outputs = "".join(f'<div class="cell_output docutils container"><img src="../_images/{n}.png" /></div>'
                      for n in ("clear", "over", "unchecked", "gone"))
    page = f'<html><body><img src="../_images/logo.png">{outputs}</body></html>'
    (tmp_path / "notebooks" / "ch.html").write_text(page)
    problems = _figure_legend_problems(tmp_path)
    assert [p.split(":")[0] for p in problems] == ["notebooks/ch.html"] * 3
    assert "over.png: a legend covers the data: axes 1: legend 'line' covers Line2D 'line'" in problems[0]
    assert "unchecked.png has no 'coded-lib-legend' PNG text (none)" in problems[1]
    assert "gone.png has no 'coded-lib-legend' PNG text (unread: FileNotFoundError)" in problems[2]


def test_every_page_loads_with_its_images_and_links(html_dir, server, browser):
    pages = _pages(html_dir)
    toc_files = _toc_files()
    assert (html_dir / "index.html") in pages and (html_dir / "comparison.html") in pages
    problems = []
    for page in pages:
        rel = page.relative_to(html_dir).as_posix()
        _open(browser, server + rel)
        if not browser.title or "404" in browser.title:
            problems.append(f"{rel}: did not load (title {browser.title!r})")
        images = browser.execute_script(
            "return Array.from(document.images).map(i => [i.currentSrc || i.src, i.naturalWidth])")
        for src, width in images:
            if (src.startswith(server) or src.startswith("data:")) and not width > 0:
                problems.append(f"{rel}: image {src[:80]} did not decode")
        for href in browser.execute_script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"):
            if not href.startswith(server):
                continue
            parts = urlsplit(href)
            target = html_dir / unquote(parts.path.lstrip("/"))
            if parts.path.endswith("/"):
                target = target / "index.html"
            if not target.is_file():
                problems.append(f"{rel}: broken link {href}")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _ids(target):
                problems.append(f"{rel}: link {href} names a missing anchor")
        height = browser.execute_script("return document.documentElement.scrollHeight")
        if height > MAX_HEIGHT:
            problems.append(f"{rel}: {height} px tall at 1400 px (at most {MAX_HEIGHT})")
        text = browser.execute_script("return document.body.innerText")
        for raw in RAW_TEX:
            if raw in text:
                problems.append(f"{rel}: raw TeX {raw!r} on the page (MathJax did not render it)")
        if PROGRESS.search(text):
            problems.append(f"{rel}: progress-bar text {PROGRESS.search(text).group()!r}")
        problems += [f"{rel}: NaN or inf shown as a number, {hit}"
                     for hit in browser.execute_script(NONFINITE_JS, NONFINITE)]
        if (html_dir / "_sources" / rel).with_suffix(".md").is_file():  # a page written in Markdown
            problems += [f"{rel}: chapter reference {hit}"
                         for hit in browser.execute_script(CHAPTER_REFS_JS, toc_files)]
            browser.set_window_size(1280, 1000)  # a laptop's width: no command may wrap in its box
            problems += [f"{rel}: code block wider than the column at 1280 px (its lines wrap): {line!r}"
                         for line in browser.execute_script(WRAPPED_CODE_JS)]
            browser.set_window_size(1400, 1000)
        # every error of the page's own files counts (the thebe configuration was once declared twice);
        # external hosts are blocked here, so their failed loads do not
        errors = [e["message"] for e in browser.get_log("browser")
                  if e["level"] == "SEVERE" and server.rstrip("/") in e["message"]
                  and "/favicon.ico" not in e["message"]  # asked for by the browser, not the page
                  # the theme's note on a browser that has stored no light/dark choice yet (the first page)
                  and "Got invalid theme mode" not in e["message"]]
        problems += [f"{rel}: console error {m}" for m in errors]
        wide = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        if wide > 1:
            problems.append(f"{rel}: {wide} px wider than the window (a table or code block overflows)")
    legends = _figure_legend_problems(html_dir)  # the same pages' figures, read from their PNG files
    unchecked = {p.split(":")[0] for p in legends if "ran before the legend check" in p}
    problems += [p for p in legends if p.split(":")[0] not in UNCHECKED_LEGENDS or "covers" in p]
    problems += [f"{page}: its figures carry the legend check now: remove it from UNCHECKED_LEGENDS"
                 for page in sorted(UNCHECKED_LEGENDS - unchecked)]
    assert not problems, "\n".join(problems)


def test_mathjax_is_served_locally(html_dir):
    assert (html_dir / "_static" / "mathjax" / "tex-svg-full.js").stat().st_size > 1_000_000
    for page in _pages(html_dir):
        text = page.read_text(encoding="utf-8")
        assert "cdn.jsdelivr.net/npm/mathjax" not in text, page.name
        assert "colab.research.google.com/assets/colab-badge.svg" not in text, page.name  # the badge is local


def test_dashboard_has_a_claim_row_for_every_id_with_a_verdict(html_dir, server, browser):
    from selenium.webdriver.common.by import By

    def text(el):  # also inside a closed dropdown, where .text is empty
        return (el.get_attribute("textContent") or "").strip()

    _open(browser, server + "comparison.html")
    # first on the page: the compact table, one row per empirical claim with its evidence and a badge
    first = browser.find_elements(By.CSS_SELECTOR, "table.comparison-table")[0]
    glance = browser.find_element(By.CSS_SELECTOR, "section#at-a-glance table.claims-table")
    assert first == glance
    header = [text(th) for th in glance.find_elements(By.CSS_SELECTOR, "thead th")]
    assert header[:4] == ["id", "claim", "evidence", "default edition"]
    rows = glance.find_elements(By.CSS_SELECTOR, "tbody tr")
    evidence = {text(r.find_element(By.CSS_SELECTOR, "td:nth-child(3)")) for r in rows}
    assert all(e == "—" or e == "one training" or re.fullmatch(r"\d+ seeds", e) for e in evidence), evidence
    assert len(glance.find_elements(By.CSS_SELECTOR, "td:nth-child(4) .sd-badge")) == len(rows)
    built = browser.find_element(By.CSS_SELECTOR, "section#true-by-construction table.claims-table")
    ids = {text(r.find_element(By.CSS_SELECTOR, "td:first-child")) for r in rows}
    ids |= {text(r.find_element(By.CSS_SELECTOR, "td:first-child")) for r in built.find_elements(By.CSS_SELECTOR, "tbody tr")}
    assert set(paper.IDS) <= ids
    runs = browser.find_element(By.CSS_SELECTOR, "section#the-runs-behind-the-numbers table.comparison-table")
    header = [text(th) for th in runs.find_elements(By.CSS_SELECTOR, "thead th")]
    assert header[:4] == ["run", "data", "model and scale", "seeds"]
    claims = browser.find_element(By.CSS_SELECTOR, "section#the-paper-s-claims-in-detail table.claims-table")
    header = [text(th) for th in claims.find_elements(By.CSS_SELECTOR, "thead th")]
    assert header[:5] == ["id", "claim", "paper", "ours", "verdict"] and {"rule", "run"} <= set(header)
    rows = claims.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert set(paper.IDS) <= {text(r.find_element(By.CSS_SELECTOR, "td:first-child")) for r in rows}
    verdicts = [text(r.find_element(By.CSS_SELECTOR, "td:nth-child(5)")) for r in rows]
    assert verdicts and set(verdicts) <= set(paper.VERDICTS), set(verdicts) - set(paper.VERDICTS)
    # colour as well as text: each verdict is a badge
    assert len(claims.find_elements(By.CSS_SELECTOR, "td:nth-child(5) .sd-badge")) == len(rows)
    # the rule is written beside the first row of every claim
    rule = header.index("rule") + 1
    firsts = [r for r in rows if text(r.find_element(By.CSS_SELECTOR, "td:first-child"))]
    assert all(text(r.find_element(By.CSS_SELECTOR, f"td:nth-child({rule})")) for r in firsts)

    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(max(height, 1000), 12000))
    shot = html_dir.parent / "comparison.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    browser.set_window_size(1400, 1000)


def test_every_chapter_shows_its_provenance(html_dir):
    for stem in reproduce.NOTEBOOKS:
        page = (html_dir / "notebooks" / f"{stem}.html")
        if page.exists() and "coded_lib" in _edition_metadata(stem):
            text = page.read_text(encoding="utf-8")
            assert "Where these outputs come from" in text and "source commit" in text, stem


def _edition_metadata(stem):
    import nbformat

    path = BOOK / "notebooks" / f"{stem}.ipynb"
    return nbformat.read(path, as_version=4).metadata if path.exists() else {}
