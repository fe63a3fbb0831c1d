"""RQ job entry points (``workers.tasks``) and the sync engine they call (``workers.sync``)."""
