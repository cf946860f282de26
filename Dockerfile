# The operator image. `make image` builds it without Docker or a registry (hack/node/image.sh);
# `docker build -t sluice .` works as well.

# Build stage: a virtualenv holding the project and its dependencies, which is all the final
# stage takes (pip stays behind).
FROM python:3.11-slim AS build
RUN python -m venv --without-pip /opt/venv
# The dependencies first, in a layer only pyproject.toml invalidates (a stub package stands in
# for the code), so that a code change rebuilds in seconds.
COPY pyproject.toml /deps/
RUN cd /deps && mkdir -p operator/sluice && touch README.md operator/sluice/__init__.py \
 && python -m pip --python /opt/venv/bin/python install --no-cache-dir . && rm -rf /deps
COPY pyproject.toml README.md /src/
COPY operator /src/operator
RUN python -m pip --python /opt/venv/bin/python install --no-cache-dir --no-deps --force-reinstall /src

FROM python:3.11-slim
# A named user, so that getpass (kopf's identity) finds one for uid 65532.
RUN echo 'sluice:x:65532:65532:sluice:/nonexistent:/usr/sbin/nologin' >>/etc/passwd \
 && echo 'sluice:x:65532:' >>/etc/group
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
ENTRYPOINT ["sluice", "operator"]
