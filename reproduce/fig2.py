"""Figure 2 of Georgiev (2015): one-dimensional latent manifolds per class, with spatial symmetry statistics (canonical frame).

Three panels side by side: MNIST 28x28, RTS MNIST 42x42, TC MNIST 60x60; one row per
class (0-9), 20 columns over the latent grid [-4, 4].

    python reproduce/fig2.py --quick          # minutes on a CPU
    python reproduce/fig2.py                  # Appendix A's sizes, full data (a GPU)
"""

import sys

from common.figure import main
from common.pictures import class_manifold_panels

PANELS = ("fig2_mnist", "fig2_rts_mnist", "fig2_tc_mnist")

if __name__ == "__main__":
    sys.exit(main("fig2", PANELS, class_manifold_panels, __doc__))
