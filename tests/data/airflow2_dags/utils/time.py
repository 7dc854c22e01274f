from datetime import datetime, timedelta


def yesterday():
    return (datetime.now() - timedelta(days=1)).strftime("%Y-%m-%d")
