"""An example gkd-search plugin, written against ``docs/plugins.md`` only.

* ``rkd`` -- relational knowledge distillation (Park et al., CVPR 2019) adapted to graphs, as a
  structural loss (usable by STRIDE's ``structure`` option too) and as a distillation method.
* ``gin`` -- the Graph Isomorphism Network (Xu et al., ICLR 2019) as a student/teacher family.
"""

__version__ = "0.1.0"
