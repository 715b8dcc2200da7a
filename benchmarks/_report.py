"""Shared by the benchmark scripts: ``median [min-max]`` cells, and a markdown table written to its file and printed."""

import numpy as np


def spread(values, fmt=".0f"):
    """``median [min-max]`` of ``values`` formatted with ``fmt``, or "-" with the count reached
    when some of them are ``None`` (a run that did not get there)."""
    got = [value for value in values if value is not None]
    if len(got) < len(values):
        return f"- ({len(got)}/{len(values)} reached)"
    return f"{np.median(got):{fmt}} [{min(got):{fmt}}-{max(got):{fmt}}]"


def write(lines, path):
    """Joins ``lines`` into one markdown text, writes it to ``path`` and prints it."""
    text = "\n".join(lines) + "\n"
    with open(path, "w") as file:
        file.write(text)
    print(text)
