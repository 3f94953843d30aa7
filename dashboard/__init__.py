"""Inspection dashboard (Streamlit app `dashboard/app.py`, `funnel dashboard`) over `api.service`."""
