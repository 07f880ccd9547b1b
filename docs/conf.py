"""Sphinx configuration of the course site (built by docs/build.sh; see docs/stage.py).

The site is the committed, executed notebooks, rendered by myst-nb without executing them
(``nb_execution_mode = "off"``), plus a landing page and the instructors' solutions. Everything
it needs is local: the theme (sphinx-book-theme, from PyPI) ships its assets, and MathJax is the
copy ``docs/fetch_mathjax.py`` fetched at set-up (``_static/mathjax``), never a CDN.
"""

project = "eqhelpers: learned equivariance"
author = "the eqhelpers authors"
copyright = "2026, the eqhelpers authors"

extensions = ["myst_nb"]
nb_execution_mode = "off"  # the committed outputs are the site: a build never runs a notebook
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "**.ipynb_checkpoints", "build.sh", "stage.py", "fetch_mathjax.py"]

REPOSITORY = "https://github.com/eqhelpers/eqhelpers"
html_title = "Learned equivariance"
html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_theme_options = {
    "repository_url": REPOSITORY,
    "repository_branch": "main",
    "path_to_docs": "",  # the staged notebooks/ mirrors the repository's (index, instructors: below)
    "use_repository_button": True,
    "use_source_button": True,  # each page links to its source notebook on the code host
    "use_download_button": True,
    "launch_buttons": {"binderhub_url": "https://mybinder.org",
                       "colab_url": "https://colab.research.google.com",
                       "notebook_interface": "jupyterlab"},
    "show_toc_level": 2,
}
html_show_sourcelink = False
html_use_index = False  # no general index page: the course has no index entries
html_context = {"default_mode": "light"}  # the figures are drawn on white

# MathJax 3 from the local copy (relative paths are relative to _static)
mathjax_path = "mathjax/tex-chtml.js"
mathjax3_config = {"tex": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]]},
                   "options": {"processHtmlClass": "tex2jax_process|mathjax_process|math|output_area"}}


PAGES_FROM_DOCS = {"index", "instructors"}  # staged from docs/, not from the repository's root


def _source_of_docs_pages(app, pagename, templatename, context, doctree):
    """The landing and instructors pages come from docs/: their source and edit links say so."""
    if pagename in PAGES_FROM_DOCS:
        url = f"{REPOSITORY}/edit/{html_theme_options['repository_branch']}/docs/{pagename}.md"
        context["get_edit_provider_and_url"] = lambda: ("GitHub", url)


def setup(app):
    # after the pydata theme sets up its edit-URL function (500), before the book theme reads it (501)
    app.connect("html-page-context", _source_of_docs_pages, priority=500.5)
