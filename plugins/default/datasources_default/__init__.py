"""The default extension of ``datasources``: OHIF's default data sources, in Python."""
