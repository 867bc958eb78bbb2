"""Figure 3 of Georgiev (2015): the CIFAR10 horse class's two-dimensional latent manifold.

Central 7x7 of a 30x30 grid over [-6, 6]^2; left: dense ACE without symmetry
statistics, right: with spatial symmetry statistics.

    python reproduce/fig3.py --quick          # minutes on a CPU
    python reproduce/fig3.py                  # Appendix A's sizes, full data (a GPU)
"""

import sys

from common.figure import main
from common.pictures import horse_panels

PANELS = ("fig3_cifar10", "fig3_cifar10_sss")

if __name__ == "__main__":
    sys.exit(main("fig3", PANELS, horse_panels, __doc__))
