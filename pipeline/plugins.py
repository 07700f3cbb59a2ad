"""Users' plugin modules (`data.plugins`, `model.plugins`), imported here and nowhere else:
importing one registers its data sources or models. The configuration imports them while it
validates (so a plugin's source or model type is known), and a worker process that receives an
already parsed configuration imports them again with `import_config_plugins`."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.config import Config


def import_plugins(modules: Iterable[str]) -> list[str]:
    """Import each named module; a `ValueError` names the one that cannot be imported or fails."""
    names = list(modules)
    for module in names:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"cannot import plugin module {module!r} ({exc})") from None
        except Exception as exc:  # the plugin's own code failed (a syntax error, a bad decorator): say where
            raise ValueError(f"plugin module {module!r} failed while importing: {exc.__class__.__name__}: {exc}") from None
        except (SystemExit, KeyboardInterrupt) as exc:  # a plugin that exits or interrupts on import would end the run without a record
            what = f"called sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else "raised KeyboardInterrupt"
            raise ValueError(f"plugin module {module!r} {what} while importing; a plugin module only registers sources and models") from None
    return names


def import_config_plugins(config: Config) -> None:
    """The plugins a parsed configuration names, imported in this process (a worker's, say)."""
    import_plugins([*config.data.plugins, *config.model.plugins])
