# merl-ray on Ray's GPU image (CUDA, Ray 2.60, Python 3.11): the image for `ray up`
# (ray_config.yaml, docker.image) and KubeRay (cluster/kuberay/rayjob.yaml).
#
#   docker build -t REGISTRY/merl-ray:0.1.0 .
#   docker push REGISTRY/merl-ray:0.1.0
#
# Keep the tag's Ray version equal to the cluster's (tests/test_cluster.py checks it against
# the RayJob's rayVersion).
FROM rayproject/ray:2.60.0-py311-gpu

# torch first: DeepSpeed ships as an sdist whose build imports it (as in the Makefile). The
# PyPI torch wheel for Linux is the CUDA build. DeepSpeed's CUDA ops compile on first use.
RUN pip install --no-cache-dir "torch>=2.4,<2.15" \
 && DS_BUILD_OPS=0 pip install --no-cache-dir --no-build-isolation "deepspeed>=0.16,<0.20"

# Installed, not run from a source tree: `import merl` then finds the whole package, and a
# job's working dir need only carry configs (docs/cluster.md, "what a job ships").
COPY --chown=ray:users . /tmp/merl-ray
RUN pip install --no-cache-dir /tmp/merl-ray && rm -rf /tmp/merl-ray

# Configs where the RayJob's entrypoint and `merl` commands look for them.
COPY --chown=ray:users configs /home/ray/merl-ray/configs
WORKDIR /home/ray/merl-ray
