"""The Flask front end: `gunicorn 'app:create_app()'`."""

from __future__ import annotations

from flask import Flask

from app.flow import EXTENSION, FlowControl
from app.json import OrjsonProvider
from devcmd.config import Config
from devcmd.services import Services


def create_app(config: Config | None = None, services: Services | None = None) -> Flask:
    """Build the app; tests pass a config or ready services instead of patching the environment."""
    from app import (
        auth,
        commands,
        devices,
        enos,
        errors,
        health,
        metrics,
        observe,
        openapi,
        revocations,
        southbound,
    )

    config = config or (services.config if services else Config.from_env())
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_content_length
    app.json = OrjsonProvider(app)
    svc = app.extensions["devcmd"] = services or Services.from_config(config)
    app.extensions[EXTENSION] = FlowControl(app, svc)
    errors.register(app)
    observe.register(app)
    for module in (
        auth,
        devices,
        commands,
        revocations,
        enos,
        southbound,
        health,
        metrics,
        openapi,
    ):
        app.register_blueprint(module.bp)
    return app
