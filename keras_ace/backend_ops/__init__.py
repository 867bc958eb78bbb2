"""The backend-specific kernels of keras_ace, one module per concern.

- `class_routing`: splitting a batch by class, the per-class products, and a rare
  correction inside a compiled step (JAX);
- `image_kernels`: the spatial transformer's pixel gather, convolution, dropout and
  2x2 max-pooling;
- `optimizer_kernels`: Adam's update in place and the update that skips non-finite steps;
- `distribution`: training on several devices (`distribution_scope`).

Process settings (environment variables read when a process starts) are `keras_ace.runtime`;
several processes, `keras_ace.distributed`. Everything else in keras_ace is written with
`keras.ops` only.
"""

from keras_ace.backend_ops.class_routing import matmul_parts
from keras_ace.backend_ops.class_routing import split_by_class
from keras_ace.backend_ops.class_routing import uses_dynamic_shapes
from keras_ace.backend_ops.class_routing import with_rare_correction
from keras_ace.backend_ops.distribution import DEVICE_DISTRIBUTIONS
from keras_ace.backend_ops.distribution import distribution_scope
from keras_ace.backend_ops.distribution import scale_loss_for_replicas
from keras_ace.backend_ops.image_kernels import conv2d
from keras_ace.backend_ops.image_kernels import dropout
from keras_ace.backend_ops.image_kernels import gather_pixels
from keras_ace.backend_ops.image_kernels import max_pool_2x2
from keras_ace.backend_ops.optimizer_kernels import adam_moments
from keras_ace.backend_ops.optimizer_kernels import apply_if
from keras_ace.backend_ops.optimizer_kernels import fused_adam_step
