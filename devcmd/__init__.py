"""devcmd: queue, deliver and revoke device commands.

Domain and store live here; HTTP in `app`, Celery in `workers`.
"""
