"""What the DAGs in dags/ read besides Airflow's own settings: the `[edgestats]` section of
Airflow's configuration, written by `make airflow` into AIRFLOW_HOME/airflow.cfg."""

from __future__ import annotations

import os

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
