# The part of APScheduler 3's CronTrigger gatekeeper uses (gatekeeper/scheduler/timer.py).
from datetime import datetime, tzinfo

class CronTrigger:
    def __init__(
        self,
        year: int | str | None = ...,
        month: int | str | None = ...,
        day: int | str | None = ...,
        week: int | str | None = ...,
        day_of_week: int | str | None = ...,
        hour: int | str | None = ...,
        minute: int | str | None = ...,
        second: int | str | None = ...,
        start_date: datetime | str | None = ...,
        end_date: datetime | str | None = ...,
        timezone: tzinfo | str | None = ...,
        jitter: int | None = ...,
    ) -> None: ...
    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None: ...
