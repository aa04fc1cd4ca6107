"""Panel dashboards: param state (``state``), one shared poller, the page template and the views.

``apps/*.py`` only builds these objects and calls ``.servable()``.
"""
