"""Starting the dashboard as its own process (`streamlit run dashboard/app.py`) with the resolved config."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from funnel.core.config import Config

APP = Path(__file__).resolve().parent / "app.py"


def dashboard_command(config: Config) -> list[str]:
    s = config.serve
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
            "--server.address", s.host, "--server.port", str(s.dashboard_port),
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]


def run_dashboard(config: Config, **popen) -> subprocess.Popen:
    """Start Streamlit on ``serve.host:serve.dashboard_port``; the caller waits on or ends the process."""
    config_dict = config.to_dict()
    config_dict["paths"]["home"] = str(Path(config.paths.home).resolve())
    env = {**os.environ, "FUNNEL_CONFIG_JSON": json.dumps(config_dict), "HF_HUB_OFFLINE": "1",
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    print(f"dashboard: http://{config.serve.host}:{config.serve.dashboard_port}", flush=True)
    return subprocess.Popen(dashboard_command(config), env=env, **popen)
