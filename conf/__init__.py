"""prn's Hydra configs, installed as the package ``prn.conf`` (see pyproject.toml) so that
``pip install .`` carries them and ``prn-train`` finds them from any folder."""
