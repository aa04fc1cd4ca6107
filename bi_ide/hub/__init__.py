"""The hub: the process that owns the store and serves the REST API beside the dashboards."""
