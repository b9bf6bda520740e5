"""gunicorn reads ./gunicorn.conf.py by default: a bare `gunicorn 'app:create_app()'` from the
repository root gets the same production settings as every launcher (Procfile, docker-compose,
Dockerfile, `devcmd run`), which name the packaged module `python:devcmd.gunicorn_config`
directly so they also work from an installed wheel. The settings live there, once."""

from devcmd.gunicorn_config import *  # noqa: F403
