"""An Airflow 2.9 TaskFlow DAG (airflow.decorators)."""

from datetime import datetime

from airflow.decorators import dag, task


@dag(schedule_interval="@daily", start_date=datetime(2024, 1, 1), catchup=False)
def team_taskflow():
    @task
    def count():
        return 3

    count()


team_taskflow()
