"""Figure 2 of Georgiev (2015): one-dimensional latent manifolds per class, with spatial symmetry statistics (canonical frame).

Full mode: three panels side by side, MNIST 28x28, RTS MNIST 42x42, TC MNIST 60x60; one
row per class (0-9), 20 columns over the latent grid [-4, 4].

Quick mode shows the paper's claim, Figure 1 against Figure 2, on RTS MNIST: the same
net without symmetry statistics (Figure 1's panel, left) and with them (right), the
same steps and seed, each panel's samples judged by an independent CNN.

    python reproduce/fig2.py --quick          # about 10 minutes on a 2-core CPU
    python reproduce/fig2.py                  # Appendix A's sizes, full data, 50 epochs (a GPU)
"""

import sys

from common.figure import main
from common.pictures import class_manifold_panels

PANELS = ("fig2_mnist", "fig2_rts_mnist", "fig2_tc_mnist")

# Without and with symmetry statistics, side by side.
QUICK_PANELS = ("fig1_rts_mnist", "fig2_rts_mnist")

if __name__ == "__main__":
    sys.exit(main("fig2", PANELS, class_manifold_panels, __doc__, quick_panels=QUICK_PANELS))
