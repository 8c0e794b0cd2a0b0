"""Helpers shared by a part's unit and integration tests: one module per part
(tests/unit/test_<part>.py and tests/integration/test_<part>_runs.py import from it).

A module here is imported by in-process unit tests, so it starts no process and
imports no ML framework (the rule tests/unit/test_unit_tests_stay_in_process.py
checks for the unit test files). A fixture defined here is imported by name into
each test module that uses it (`from support.cluster import bundle as bundle`):
pytest finds the fixtures a test module holds, and the `as` form marks the import
as meant for pytest rather than unused.
"""
