"""Pictures of a few examples of a PDE data set (Ponce et al., 2022, §8.1 Figure 2, §8.2 Figure 5)."""

import numpy as np

PANELS = {
    "poisson": (("κ (input)", "inputs", 0), ("u (target)", "target", None)),
    "darcy": (("log-permeability (input)", "inputs", 0), ("pressure p (target)", "pressure", None)),
}


def plot_examples(name, examples, path, title=None):
    """Writes a PNG: one row per example, input field and solution side by side (origin lower left)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = PANELS[name]
    rows = len(examples)
    figure, axes = plt.subplots(rows, len(panels), figsize=(4.2 * len(panels), 3.6 * rows), squeeze=False)
    for row, example in enumerate(examples):
        for column, (label, key, channel) in enumerate(panels):
            field = np.asarray(example[key])
            field = field[..., channel] if channel is not None else field
            image = axes[row, column].imshow(field, origin="lower", extent=(0, 1, 0, 1), cmap="viridis")
            figure.colorbar(image, ax=axes[row, column], shrink=0.85)
            subtitle = f"example {int(example['index'])}: {label}"
            if name == "darcy" and key == "pressure":
                subtitle += f"\nQ = {float(example['outflow_flux']):.4f}"
            if name == "poisson" and column == 0:
                k_x, k_y, a_x, a_y, alpha = np.asarray(example["parameters"])
                subtitle += f"\nk=({k_x:.2f},{k_y:.2f}) a=({a_x:.2f},{a_y:.2f}) α={alpha:.2f}"
            axes[row, column].set_title(subtitle, fontsize=9)
            axes[row, column].set_xlabel("x")
            axes[row, column].set_ylabel("y")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
