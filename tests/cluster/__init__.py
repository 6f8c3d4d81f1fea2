"""The cluster suite (scripts/test --cluster): see conftest.py."""
