# Two images from one file: `worker` (the default, the pipeline only) and `simulator` (the OpenAQ simulator,
# development tooling, for the compose demo).
FROM python:3.11-slim AS base
WORKDIR /app
COPY pyproject.toml setup.cfg constraints.txt README.md LICENSE pipeline.json ./
COPY airq_app ./airq_app

FROM base AS simulator
COPY airq_dev ./airq_dev
RUN pip install --no-cache-dir -c constraints.txt .
EXPOSE 8765
CMD ["python", "-m", "airq_dev.simulator", "--host", "0.0.0.0", "--port", "8765"]

FROM base AS worker
RUN pip install --no-cache-dir -c constraints.txt . && mkdir -p /data /output
# In a container the web server listens on all interfaces; compose publishes it on an ephemeral host port.
ENV AIRQ_WEB_BIND=0.0.0.0 \
    AIRQ_DATA_DIR=/data \
    AIRQ_OUTPUT_DIR=/output \
    PYTHONUNBUFFERED=1
EXPOSE 6066
CMD ["faust", "-A", "airq_app", "worker", "-l", "info"]
