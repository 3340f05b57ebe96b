"""Show the composed Hydra config as a rich tree and keep a copy with the run."""

from __future__ import annotations

from pathlib import Path

import rich
import rich.syntax
import rich.tree
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf


def config_tree(cfg: DictConfig) -> rich.tree.Tree:
    """One branch per top-level group, YAML inside, interpolations resolved."""
    tree = rich.tree.Tree("config", guide_style="dim")
    for key, value in cfg.items():
        branch = tree.add(str(key), style="bold")
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        branch.add(rich.syntax.Syntax(text, "yaml", theme="ansi_dark"))
    return tree


@rank_zero_only
def print_and_save_config(cfg: DictConfig, run_dir: Path) -> None:
    """Print the tree and write ``config_tree.txt`` and the resolved ``config.yaml``."""
    tree = config_tree(cfg)
    rich.print(tree)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "config_tree.txt", "w") as handle:
        rich.print(tree, file=handle)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
