"""Numbered, captioned tables for the book's pages (used by every chapter that shows a table).

A chapter's code cell ends with ``captioned_table(frame, caption, name)``. In the built book the result is a MyST
``{table}`` directive in a colon fence, so that the caption may hold roles (the book parses markdown outputs as
MyST and prefers them to HTML, see ``_config.yml``); the table is numbered like a figure and the text refers to it
with ``{numref}`name```. In JupyterLab the same object shows as an HTML table with its caption.
"""

from __future__ import annotations

import html
from numbers import Integral, Real

import numpy as np
import pandas as pd

__all__ = ["CaptionedTable", "captioned_table", "mean_sd"]


def _cell(value, float_format):
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        return "" if np.isnan(value) else float_format.format(float(value))
    return str(value)


class CaptionedTable:
    """A data frame with a caption and a label; see :func:`captioned_table`."""

    def __init__(self, frame, caption, name, float_format, index):
        self.frame, self.caption, self.name = frame, caption, name
        self.float_format, self.index = float_format, index

    def _columns_and_rows(self):
        frame = self.frame.reset_index() if self.index else self.frame
        header = [" ".join(str(p) for p in c if str(p)) if isinstance(c, tuple) else str(c) for c in frame.columns]
        rows = [[_cell(v, self.float_format) for v in row] for row in frame.itertuples(index=False, name=None)]
        return header, rows

    def markdown_table(self):
        """The table alone, as a GitHub-flavoured markdown table (``|`` in cells escaped)."""
        header, rows = self._columns_and_rows()

        def line(cells):
            return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

        return "\n".join([line(header), "| " + " | ".join("---" for _ in header) + " |"] + [line(r) for r in rows])

    def _repr_markdown_(self):
        caption = " ".join(self.caption.split())
        # a colon fence: a backtick fence cannot carry a caption with roles such as {eq}`...`
        return f":::{{table}} {caption}\n:name: {self.name}\n\n{self.markdown_table()}\n:::\n"

    def _repr_html_(self):
        header, rows = self._columns_and_rows()
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        return (f'<table id="{html.escape(self.name)}"><caption>{html.escape(" ".join(self.caption.split()))}'
                f"</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def __repr__(self):
        return f"{self.caption}\n{self.frame!r}"


def captioned_table(frame, caption, name, *, float_format="{:.3f}", index=True):
    """Show ``frame`` as a numbered table with ``caption``, referred to in the text as ``{numref}`name```.

    Parameters
    ----------
    frame : pandas.DataFrame or pandas.Series
    caption : str
        MyST markdown (math, roles); line breaks are joined into one line.
    name : str
        The label, e.g. ``"tab-dpa-votes"``; letters, digits and hyphens.
    float_format : str, default ``"{:.3f}"``
        Format of floating-point cells (integers, booleans and strings are shown as they are).
    index : bool, default True
        Show the index (its levels become the first columns, named by the index names).
    """
    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a pandas DataFrame or Series, got {type(frame).__name__}")
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError("caption must be a non-empty string")
    if not isinstance(name, str) or not name or not all(ch.isalnum() or ch in "-_" for ch in name):
        raise ValueError(f"name must be a label of letters, digits, '-' and '_', got {name!r}")
    if ":::" in caption:
        raise ValueError("caption must not contain ':::' (it would close the table's fence)")
    try:
        float_format.format(0.5)
    except (AttributeError, IndexError, KeyError, ValueError):
        raise ValueError(f"float_format must be a format string such as '{{:.3f}}', got {float_format!r}") from None
    return CaptionedTable(frame, caption, name, float_format, bool(index))


def mean_sd(values, digits=3, scale=1.0):
    """``"mean ± sd"`` of ``values`` times ``scale`` (e.g. 100 for percent), for the tables' spread over seeds or splits.

    The standard deviation is the sample one (``ddof=1``), 0 for a single value; NaN values are ignored. Usable as
    a pandas aggregation: ``frame.groupby(...).agg(mean_sd)`` or ``.agg(mean_sd, digits=1)``.
    """
    values = np.asarray(values, dtype=float).ravel()
    values = scale * values[~np.isnan(values)]
    if len(values) == 0:
        raise ValueError("mean_sd needs at least one value that is not NaN")
    spread = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.{digits}f} ± {spread:.{digits}f}"
