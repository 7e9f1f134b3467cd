# The part of APScheduler 3 gatekeeper uses: CronTrigger's fire times.
