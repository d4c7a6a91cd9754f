"""What the DAGs in dags/ read besides Airflow's own settings: the `[edgestats]` section of
Airflow's configuration, written by `make airflow` into AIRFLOW_HOME/airflow.cfg."""

from __future__ import annotations

import os

from edgestats_core import migrations, sharding
from edgestats_core.config import Settings, data_databases, parse_region_urls

SECTION = "edgestats"


def database_url() -> str:
    """The data database: `[edgestats] database_url` of Airflow's configuration (airflow.cfg,
    or AIRFLOW__EDGESTATS__DATABASE_URL), else DATABASE_URL. Read by tasks at run time, so any
    `airflow` command run with the installation's AIRFLOW_HOME works on the same database."""
    from airflow.sdk import conf  # Airflow is installed where tasks run, not in the services

    url = conf.get(SECTION, "database_url", fallback="") or os.environ.get("DATABASE_URL", "")
    if not url:
        raise RuntimeError(f"no data database: set [{SECTION}] database_url in airflow.cfg"
                           " (make airflow writes it) or DATABASE_URL")
    return url


def _settings() -> Settings:
    """The data database and `[edgestats] region_databases` (region=URL pairs, as
    EDGESTATS_REGION_DATABASES, which is the fallback)."""
    from airflow.sdk import conf

    pairs = (conf.get(SECTION, "region_databases", fallback="")
             or os.environ.get("EDGESTATS_REGION_DATABASES", ""))
    return Settings(database_url(), region_urls=parse_region_urls(pairs))


def region_databases() -> dict[str, str]:
    """Every distinct database holding beacons, by the regions it holds (see
    config.data_databases; a sharded region's shards as "americas/shard-1"); regions not
    listed are in the data database. Tasks receive the label, never the URL (XComs are
    stored in Airflow's database)."""
    settings = _settings()
    return sharding.labelled(data_databases(settings.database_url, settings.region_urls))


def every_database() -> list[str]:
    """The data database and every region database (partition maintenance runs on each)."""
    return migrations.every_database(_settings())
