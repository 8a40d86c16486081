"""The graph rendered as an Airflow DAG file that imports nothing of millpond."""
