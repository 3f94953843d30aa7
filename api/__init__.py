"""Serving: the query API (`api.app.create_app`, `funnel serve`) over `api.service.SearchService`."""
from funnel.api.service import SearchResult, SearchService

__all__ = ["SearchService", "SearchResult"]
