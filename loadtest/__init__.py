"""The load test: a locust scenario of the content service's public reads and a few writes.

Run ``locustfile.py`` with locust (the ``load`` extra); see the README's "Load test" section.
locust imports its siblings by module name: ``zipfian`` (the YCSB Zipfian draws) and
``catalog`` (slug discovery) use the standard library only; ``cache_mix`` (the ``X-Cache``
counts) uses locust's statistics.
"""
