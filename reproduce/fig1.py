"""Figure 1 of Georgiev (2015): one-dimensional latent manifolds per class, without symmetry statistics.

Three panels side by side: MNIST 28x28, RTS MNIST 42x42, TC MNIST 60x60; one row per
class (0-9), 20 columns over the latent grid [-4, 4].

    python reproduce/fig1.py --quick          # minutes on a CPU
    python reproduce/fig1.py                  # Appendix A's sizes, full data (a GPU)
"""

import sys

from common.figure import main
from common.pictures import class_manifold_panels

PANELS = ("fig1_mnist", "fig1_rts_mnist", "fig1_tc_mnist")

QUICK_PANELS = ("fig1_mnist", "fig1_rts_mnist")

if __name__ == "__main__":
    sys.exit(main("fig1", PANELS, class_manifold_panels, __doc__, quick_panels=QUICK_PANELS))
