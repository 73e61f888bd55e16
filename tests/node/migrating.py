"""Running one Alembic step on a test database, as an operator's upgrade would."""

from __future__ import annotations

from typing import Literal

from alembic import command
from alembic.config import Config

from node.storage import Database
from node.storage.database import MIGRATIONS_DIR


def migrate(db: Database, step: Literal["upgrade", "downgrade"], target: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, step)(config, target)
