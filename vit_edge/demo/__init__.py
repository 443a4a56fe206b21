"""The built-in demo: a small ViT trained by ``scripts/train_demo.py`` on scikit-learn's digits."""

from pathlib import Path

DEMO_DIR = Path(__file__).parent
WEIGHTS = DEMO_DIR / "digits_vit.safetensors"
CONFIG = DEMO_DIR / "digits_vit.json"
