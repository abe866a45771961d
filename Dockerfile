# The portal image (target `portal`, the default): web, worker and beat run from it with
# different commands. It installs the dependencies alone: the emulator's libraries (the
# `emulator` extra) are not in it. The `emulator` target below adds them for
# `docker compose --profile emulator`.
FROM python:3.11-slim AS portal
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY partnerportal partnerportal
COPY core core
COPY accounts accounts
COPY tenants tenants
COPY alerts alerts
COPY sync sync
COPY demo demo
COPY emulator emulator
RUN pip install .
COPY . .
# Collected with the production storage (DEBUG=false), which writes the hashed, gzipped
# copies and the manifest that production pages take their /static/ names from;
# DEBUG=true would collect plain files only and every production page would fail. The
# settings load only with every production value set; collectstatic uses none of them,
# so placeholders stand in for this one step and none stays in the image.
RUN DEBUG=false SECRET_KEY=collectstatic-only ALLOWED_HOSTS=localhost \
    DATABASE_URL=postgres://unused/unused REDIS_URL=redis://unused:6379/0 \
    MS_CLIENT_ID=unused MS_CLIENT_SECRET=unused PORTAL_BASE_URL=https://localhost \
    python manage.py collectstatic --noinput -v 0
RUN useradd --system portal
USER portal
EXPOSE 8000
CMD ["gunicorn", "partnerportal.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3"]

# The Microsoft cloud emulator, for a trial without Microsoft: the portal image plus
# the `emulator` extra. /state is made here, owned by the user it runs as, so the
# named volume mounted there starts writable.
FROM portal AS emulator
USER root
RUN pip install '.[emulator]' && mkdir /state && chown portal /state
USER portal
EXPOSE 8443
CMD ["python", "-m", "emulator", "serve", "--host", "0.0.0.0", "--port", "8443", "--state-dir", "/state"]

# `docker build .` without --target builds the portal image (the last stage).
FROM portal
