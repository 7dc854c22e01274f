from airflow.decorators import task


def get_date_filter_arg(should_replace_monthly=False):
    """Knack scripts take the previous run's date as -d; monthly jobs reload everything."""
    if should_replace_monthly:
        return "{{ '' if data_interval_start.day == 1 else '-d ' ~ prev_data_interval_start_success }}"
    return "-d {{ prev_data_interval_start_success or '1970-01-01' }}"


@task
def knack_app_names(apps):
    return sorted(apps)
