"""GAN training: ``train(load_train_config(path), out_dir, resume=...)``."""

from .config import TrainConfig, load_train_config
from .loop import TrainResult, latest_checkpoint, train

__all__ = ["TrainConfig", "TrainResult", "latest_checkpoint", "load_train_config", "train"]
