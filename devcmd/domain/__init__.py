"""Business logic: one module per resource, called by both the HTTP views and the Celery tasks."""
