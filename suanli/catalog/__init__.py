"""Catalog data files (YAML). Loaded through `suanli.spec.catalog.CATALOG`."""
