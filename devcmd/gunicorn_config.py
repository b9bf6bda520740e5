"""gunicorn settings of the web process, shared by every launcher.

Use: `gunicorn -c python:devcmd.gunicorn_config 'app:create_app()'` (devcmd run, Procfile,
docker-compose and the Dockerfile all do). Bind address and worker count come from HOST, PORT and
WEB_WORKERS through `devcmd.config`.
"""

from devcmd.config import Config

_config = Config.from_env()

bind = f"{_config.host}:{_config.port}"
workers = _config.web_workers
# OceanConnect clients send `app_key`; gunicorn >= 22 drops headers with underscores unless told
# otherwise. Mapping it is safe here: app_key only names the application, which must match the
# bearer token's own application.
header_map = "dangerous"
# gunicorn >= 25 opens a control socket in $HOME by default, shared by every gunicorn there.
control_socket_disable = True
timeout = 30
graceful_timeout = 15
keepalive = 5
accesslog = "-"
errorlog = "-"
