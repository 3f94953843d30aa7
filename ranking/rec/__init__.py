"""Recommendation through the funnel (MovieLens-style interaction logs)."""
