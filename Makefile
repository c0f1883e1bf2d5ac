# Two commands do all the set-up on a fresh Debian machine:
#   make demo   a local Tarantool with Planetmint's schema and demo blocks, and the node
#   make test   format check, clippy and every test (installs Tarantool if missing)
.PHONY: demo test build
demo:
	scripts/demo.sh
test:
	scripts/test.sh
build:
	cargo build --release --locked --workspace --bins
