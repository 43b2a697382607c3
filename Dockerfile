# An airq worker (or, with another command, the OpenAQ simulator).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml setup.cfg constraints.txt README.md pipeline.json ./
COPY airq_app ./airq_app
RUN pip install --no-cache-dir -c constraints.txt . && mkdir -p /data /output
# In a container the web server listens on all interfaces; compose publishes it on an ephemeral host port.
ENV AIRQ_WEB_BIND=0.0.0.0 \
    AIRQ_DATA_DIR=/data \
    AIRQ_OUTPUT_DIR=/output \
    PYTHONUNBUFFERED=1
EXPOSE 6066
CMD ["faust", "-A", "airq_app", "worker", "-l", "info"]
