# A small non-root image that runs `ce-email serve`. compose.yaml runs it beside a worker
# and PostgreSQL; DATABASE_URL must point at a server (no embedded database in the image).
FROM python:3.11-slim AS build
WORKDIR /src
# Everything the image holds is copied here, once: the final stage takes this tree whole.
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY sandbox ./sandbox
COPY migrations ./migrations
COPY sql ./sql
RUN pip install --no-cache-dir --prefix=/install . && rm -rf build ./*.egg-info

FROM python:3.11-slim
RUN groupadd --gid 10001 ceemail && useradd --create-home --uid 10001 --gid 10001 ceemail
COPY --from=build /install /usr/local
WORKDIR /srv/ce-email
COPY --from=build --chown=ceemail /src ./
RUN mkdir -p /srv/ce-email/documents && chown ceemail /srv/ce-email/documents
# numeric, so a runtime that checks for a non-root user can tell without /etc/passwd
USER 10001:10001
# PYTHONPATH: the packages are imported from here, beside alembic.ini, migrations/ and sql/,
# which run_migrations finds next to them (the installed copy has none of those beside it).
ENV CE_ENV=production PYTHONUNBUFFERED=1 DOCUMENT_STORAGE_DIR=/srv/ce-email/documents \
    PYTHONPATH=/srv/ce-email
EXPOSE 8000
HEALTHCHECK CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"]
CMD ["ce-email", "serve", "--host", "0.0.0.0", "--port", "8000"]
