"""Apache Airflow provider for Kaleido App2App."""

__version__ = "0.1.0"
