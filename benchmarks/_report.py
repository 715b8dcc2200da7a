"""Shared by the benchmark scripts: a markdown table written to its file and printed."""


def write(lines, path):
    """Joins ``lines`` into one markdown text, writes it to ``path`` and prints it."""
    text = "\n".join(lines) + "\n"
    with open(path, "w") as file:
        file.write(text)
    print(text)
