"""The scheduler: main loop, pipeline managers, trigger matching, reporting."""
