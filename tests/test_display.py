"""The book's captioned tables: the MyST directive that numbers them, and the HTML that JupyterLab shows."""

import numpy as np
import pandas as pd
import pytest

from poisoning.display import captioned_table, mean_sd


def frame():
    index = pd.MultiIndex.from_tuples([("MNIST", 1), ("MNIST", 10)], names=["data", "k"])
    return pd.DataFrame({"accuracy": [0.8994, 0.25], "radius": [0, 4], "note": ["a|b", "ok"]}, index=index)


def test_markdown_is_a_numbered_myst_table():
    table = captioned_table(frame(), "Clean accuracy\n  and radius {eq}`eq-r`, $k$ partitions.", "tab-x")
    text = table._repr_markdown_()
    lines = text.strip().splitlines()
    assert lines[0] == ":::{table} Clean accuracy and radius {eq}`eq-r`, $k$ partitions."
    assert lines[1] == ":name: tab-x" and lines[2] == "" and lines[-1] == ":::"
    assert lines[3] == "| data | k | accuracy | radius | note |"
    assert lines[4] == "| --- | --- | --- | --- | --- |"
    assert lines[5] == "| MNIST | 1 | 0.899 | 0 | a\\|b |"  # floats formatted, ints kept, pipes escaped
    assert len(lines) == 8


def test_html_has_the_caption_and_every_cell():
    html = captioned_table(frame(), "A <caption>", "tab-x", float_format="{:.1%}")._repr_html_()
    assert "<caption>A &lt;caption&gt;</caption>" in html
    assert html.count("<tr>") == 3 and "89.9%" in html and "25.0%" in html


def test_series_nan_and_no_index():
    series = pd.Series([1.5, np.nan], name="value")
    text = captioned_table(series, "c", "tab-s", index=False).markdown_table()
    assert text.splitlines() == ["| value |", "| --- |", "| 1.500 |", "|  |"]


@pytest.mark.parametrize("kwargs, error", [
    ({"frame": [1, 2]}, TypeError),
    ({"caption": " "}, ValueError),
    ({"name": "tab x"}, ValueError),
    ({"caption": "a ::: b"}, ValueError),
    ({"float_format": "{:q}"}, ValueError),
])
def test_bad_input(kwargs, error):
    arguments = {"frame": frame(), "caption": "c", "name": "tab-x", **kwargs}
    with pytest.raises(error):
        captioned_table(arguments.pop("frame"), arguments.pop("caption"), arguments.pop("name"), **arguments)


def test_mean_sd_is_the_sample_spread():
    assert mean_sd([1.0, 2.0, 3.0]) == "2.000 ± 1.000"
    assert mean_sd([0.1, 0.2, np.nan], digits=1, scale=100) == "15.0 ± 7.1"
    assert mean_sd([4]) == "4.000 ± 0.000"
    assert pd.Series([1.0, 3.0]).agg(mean_sd, digits=0) == "2 ± 1"
    with pytest.raises(ValueError):
        mean_sd([np.nan])
