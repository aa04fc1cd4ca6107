"""Training core: the BI Transformer (``model``), HuggingFace models behind the same call (``hf``).

Submodules import torch; this package itself imports nothing, so ``import bi_ide`` stays light.
"""

from __future__ import annotations
