"""The top layer: the `funnel` command line, `funnel build` and `funnel demo`, wiring the stages below."""
