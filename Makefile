# Two commands do all the set-up on a fresh Debian machine:
#   make demo   a local Tarantool with Planetmint's schema and demo blocks, and the node
#   make test   format check, clippy and every test (installs Tarantool if missing)
# and, apart from those (heavy, never part of `make test`):
#   make image        the container image (deploy/docker/Dockerfile) with podman, about 6 min cold
#   make image-check  runs that image under podman-compose and checks it from outside
#   make install      the binaries into ~/.cargo/bin (`planetmint-streams subscribe ...`)
.PHONY: demo test build image image-check install
demo:
	scripts/demo.sh
test:
	scripts/test.sh
build:
	cargo build --release --locked --workspace --bins
image:
	scripts/image.sh
image-check:
	scripts/image-check.sh
install:
	cargo install --locked --path . --bin planetmint-streams
