"""Serving: the query API (`funnel.api.app.create_app`, `funnel serve`) over `funnel.api.service.SearchService`."""
from funnel.api.service import SearchResult, SearchService

__all__ = ["SearchService", "SearchResult"]
