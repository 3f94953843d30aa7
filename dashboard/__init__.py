"""Inspection dashboard (Streamlit app `dashboard/app.py`, `funnel dashboard`) over `funnel.api.service`."""
