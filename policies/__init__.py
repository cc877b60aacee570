"""Policy as code: the retention policy (``retention.yaml``), the CrossGuard rules (``rules.py``, served by
``__main__.py`` as a policy pack) and ``make compliance`` (``compliance.py``)."""
