"""Serve MathJax from the built site instead of a CDN, so pages work offline.

MathJax 3 comes from the ``django-static-mathjax`` wheel (a plain copy of MathJax's ``es5`` build, no Django
needed). Its folder is added to ``html_static_path``, which Sphinx copies to ``_build/html/_static/mathjax``,
and ``mathjax_path`` points there.
"""

from pathlib import Path


def _point_mathjax_at_static(app, config):
    import mathjax

    static = Path(mathjax.__file__).parent / "static"
    if not (static / "mathjax" / "es5" / "tex-mml-chtml.js").exists():
        raise RuntimeError(f"MathJax files not found under {static}; reinstall django-static-mathjax")
    config.html_static_path = list(config.html_static_path) + [str(static)]
    config.mathjax_path = "mathjax/es5/tex-mml-chtml.js"


def setup(app):
    app.connect("config-inited", _point_mathjax_at_static, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
