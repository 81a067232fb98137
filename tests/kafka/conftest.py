"""The Kafka broker fixtures live in ``tests/kafka/fixtures.py``, registered for the whole
suite by ``tests/conftest.py`` (``pytest_plugins``)."""
