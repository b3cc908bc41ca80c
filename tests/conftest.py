"""Shared test set-up: everything runs offline, on the CPU, with few threads."""

from __future__ import annotations

import os

# No test may reach a model hub; loaders must work from local files alone.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GROKVIZ_SMALL", "1")
