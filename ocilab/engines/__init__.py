"""Layer 4, container engines: Docker, Podman and Buildah driven from the kit."""
