# The portal image: web, worker and beat run from it with different commands.
FROM python:3.11-slim
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
RUN DEBUG=true python manage.py collectstatic --noinput -v 0
RUN useradd --system portal
USER portal
EXPOSE 8000
CMD ["gunicorn", "partnerportal.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3"]
