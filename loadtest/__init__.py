"""The load test: a locust scenario of the content service's public reads and a few writes.

Run ``locustfile.py`` with locust (the ``load`` extra); see the README's "Load test" section.
``zipfian`` depends on the standard library only, so that it can be tested without locust.
"""
