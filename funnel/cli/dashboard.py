"""`funnel dashboard`: the Streamlit inspection app over the home's index and models."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("dashboard", help="start the ranking-inspection dashboard (Streamlit)")
    p.add_argument("--host", help="address to bind (config serve.host; default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (config serve.dashboard_port; default 8501)")
    p.set_defaults(handler=_dashboard)


def _dashboard(args, config) -> int:
    from dataclasses import replace

    from funnel.dashboard.launch import run_dashboard

    changes = {k: v for k, v in (("host", args.host), ("dashboard_port", args.port)) if v is not None}
    config = replace(config, serve=replace(config.serve, **changes))
    return run_dashboard(config).wait()
