"""Figure 4 of Georgiev (2015): the horse manifold of the convolutional ACE.

Central 7x7 of a 30x30 grid over [-6, 6]^2; left: spatial symmetry statistics only,
right: spatial and colour symmetry statistics.

    python reproduce/fig4.py --quick          # minutes on a CPU
    python reproduce/fig4.py                  # Appendix A's sizes, full data (a GPU)

Beyond the paper, `--panels fig4_cifar10_spatial_mirror_color` adds the mirror to the
colour panel's frames.
"""

import sys

from common.figure import main
from common.pictures import horse_panels

PANELS = ("fig4_cifar10_spatial", "fig4_cifar10_spatial_color")
# Beyond the paper: the frames may also mirror the image (keras_ace.models.symmetries.MirrorSymmetry).
MIRROR_PANELS = ("fig4_cifar10_spatial_mirror_color",)

if __name__ == "__main__":
    sys.exit(main("fig4", PANELS, horse_panels, __doc__, more_panels=MIRROR_PANELS))
