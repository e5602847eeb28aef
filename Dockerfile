FROM python:3.11-slim
WORKDIR /srv/tradegraph
RUN apt-get update && apt-get install -y --no-install-recommends gcc make && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml setup.py constraints.txt README.md ./
COPY app app
COPY graph graph
COPY engine engine
COPY workers workers
COPY migrations migrations
COPY alembic.ini ./
RUN pip install --no-cache-dir -c constraints.txt .
ENV TRADEGRAPH_ENV=production
EXPOSE 8000
CMD ["tradegraph", "api", "--host", "0.0.0.0", "--port", "8000"]
