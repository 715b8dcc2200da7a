"""Pictures of a few examples of a PDE data set (Ponce et al., 2022, §8.1 Figure 2, §8.2 Figure 5)."""

import numpy as np

from . import problems


def panels(name):
    """``(title, feature, channel, note)`` of each panel of a row: the input field and the default target, as the
    problem's registry entry (:mod:`.problems`) names them."""
    problem = problems.get(name)
    target = next(feature for feature in problem.features if feature.name == problem.default_target)
    return (problem.input_label, "inputs", 0, problem.input_note), (target.label, target.name, None, target.note)


def plot_examples(name, examples, path, title=None):
    """Writes a PNG: one row per example, input field and solution side by side (origin lower left)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = panels(name)
    rows = len(examples)
    figure, axes = plt.subplots(rows, len(columns), figsize=(4.2 * len(columns), 3.6 * rows), squeeze=False)
    for row, example in enumerate(examples):
        for column, (label, key, channel, note) in enumerate(columns):
            field = np.asarray(example[key])
            field = field[..., channel] if channel is not None else field
            image = axes[row, column].imshow(field, origin="lower", extent=(0, 1, 0, 1), cmap="viridis")
            figure.colorbar(image, ax=axes[row, column], shrink=0.85)
            subtitle = f"example {int(example['index'])}: {label}"
            if note is not None:
                subtitle += "\n" + note.format(**{k: np.asarray(v).tolist() for k, v in example.items() if np.ndim(v) <= 1})
            axes[row, column].set_title(subtitle, fontsize=9)
            axes[row, column].set_xlabel("x")
            axes[row, column].set_ylabel("y")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
