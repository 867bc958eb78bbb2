"""Figure 3 of Georgiev (2015): the CIFAR10 horse class's two-dimensional latent manifold.

Central 7x7 of a 30x30 grid over [-6, 6]^2; left: dense ACE without symmetry
statistics, right: with spatial symmetry statistics.

    python reproduce/fig3.py --quick          # minutes on a CPU
    python reproduce/fig3.py                  # Appendix A's sizes, full data (a GPU)

Beyond the paper, `--panels fig3_cifar10_sss fig3_cifar10_sss_mirror` sets the right
panel beside the same net whose frames may also mirror the image left-right.
"""

import sys

from common.figure import main
from common.pictures import horse_panels

PANELS = ("fig3_cifar10", "fig3_cifar10_sss")
# Beyond the paper: the frames may also mirror the image (keras_ace.models.symmetries.MirrorSymmetry).
MIRROR_PANELS = ("fig3_cifar10_sss_mirror",)

if __name__ == "__main__":
    sys.exit(main("fig3", PANELS, horse_panels, __doc__, more_panels=MIRROR_PANELS))
