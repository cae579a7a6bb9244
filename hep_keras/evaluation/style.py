"""One look for every figure the toolkit writes: the CMS style of ``mplhep`` on the Agg backend, and the
(Δφ, Δη) frame of a jet image."""

from __future__ import annotations

import functools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mplhep  # noqa: E402

from hep_keras.physics import PIXEL_SIZE  # noqa: E402

#: CMS style with text scaled for the multi-panel figures (the style's defaults suit one 10×10-inch panel)
STYLE = {**mplhep.style.CMS, "font.size": 12, "axes.labelsize": 13, "axes.titlesize": 12, "legend.fontsize": 10}
STYLE.update({"xtick.labelsize": 10, "ytick.labelsize": 10, "xaxis.labellocation": "right"})
STYLE.update({"yaxis.labellocation": "top", "figure.titlesize": 14, "xtick.major.size": 6, "ytick.major.size": 6})
STYLE.update({"xtick.minor.size": 3, "ytick.minor.size": 3})


def styled(plot):
    """Decorator: draw ``plot``'s figure in :data:`STYLE`."""

    @functools.wraps(plot)
    def in_style(*args, **kwargs):
        with plt.style.context(STYLE):
            return plot(*args, **kwargs)

    return in_style


def image_extent(height: int, width: int) -> list[float]:
    """``imshow`` extent of a jet image centred on the jet axis: ``[-Δφ, +Δφ, -Δη, +Δη]`` in rad."""
    half_eta, half_phi = height * PIXEL_SIZE / 2, width * PIXEL_SIZE / 2
    return [-half_phi, half_phi, -half_eta, half_eta]


def label_image_axes(ax) -> None:
    """Axis labels of a jet-image panel."""
    ax.set_xlabel(r"$\Delta\phi$ [rad]")
    ax.set_ylabel(r"$\Delta\eta$ [rad]")
