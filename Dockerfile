# A small non-root image that runs `ce-email serve`. compose.yaml runs it beside a worker
# and PostgreSQL; DATABASE_URL must point at a server (no embedded database in the image).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY sandbox ./sandbox
COPY migrations ./migrations
COPY sql ./sql
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 ceemail
COPY --from=build /install /usr/local
WORKDIR /srv/ce-email
COPY --chown=ceemail alembic.ini ./
COPY --chown=ceemail app ./app
COPY --chown=ceemail migrations ./migrations
COPY --chown=ceemail sql ./sql
RUN mkdir -p /srv/ce-email/documents && chown ceemail /srv/ce-email/documents
USER ceemail
ENV CE_ENV=production PYTHONUNBUFFERED=1 DOCUMENT_STORAGE_DIR=/srv/ce-email/documents
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["ce-email", "serve", "--host", "0.0.0.0", "--port", "8000"]
