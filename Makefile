# joey — see README.md. Every target works on a fresh Debian 12 machine (root).
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/joeyrt/joey/internal/version.Version=$(VERSION)
CACHE := $(CURDIR)/.cache
TEST_IMAGE ?= $(CACHE)/image
export PATH := $(CACHE)/bin:/usr/local/go/bin:$(PATH)

HOST_CMDS := joey joey-testimage containerd-shim-joey-v2
CONTAINERD_BIN := $(CACHE)/containerd/bin
PREFIX ?= /usr/local
.PHONY: all deps build agent generate check-generated lint image containerd test unit bench demo install clean

all: build

deps:
	@scripts/deps.sh

# The agent is PID 1 of the guest: static, with cgo for runc's nsenter. The
# osusergo/netgo tags keep glibc's NSS out of the static link.
agent:
	@mkdir -p bin
	CGO_ENABLED=1 $(GO) build -trimpath -tags osusergo,netgo \
		-ldflags '$(LDFLAGS) -s -w -extldflags "-static"' -o bin/joey-agent ./cmd/joey-agent
	@file bin/joey-agent | grep -q 'statically linked' || { file bin/joey-agent; echo "joey-agent is not static"; exit 1; }

build: agent
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ $(addprefix ./cmd/,$(HOST_CMDS))

PROTOS := $(wildcard agent/protocol/*.proto)
generate:
	protoc -I agent/protocol --go_out=agent/protocol --go_opt=paths=source_relative \
		--go-ttrpc_out=agent/protocol --go-ttrpc_opt=paths=source_relative $(PROTOS)

# Fails when the committed generated code is not what `make generate` makes.
check-generated:
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	protoc -I agent/protocol --go_out=$$tmp --go_opt=paths=source_relative \
		--go-ttrpc_out=$$tmp --go-ttrpc_opt=paths=source_relative $(PROTOS); \
	for f in $$tmp/*.go; do cmp -s $$f agent/protocol/$$(basename $$f) || \
		{ echo "agent/protocol/$$(basename $$f) is stale: run make generate"; exit 1; }; done; \
	echo "generated code is up to date"

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The guest image the VM tests boot; rebuilt only when its inputs change.
image: build
	bin/joey image build --agent bin/joey-agent --out $(TEST_IMAGE) --download-dir $(CACHE)/kernel

# containerd 2.4.2 (ctr, runc shim) for the end-to-end tests and the demo,
# built once from the Go module proxy into .cache.
containerd:
	@scripts/containerd.sh $(CONTAINERD_BIN)

# Unit tests only: no root, no VM.
unit:
	$(GO) test -count=1 ./...

# The whole suite. JOEY_REQUIRE_ALL=1 turns every would-be skip into a failure.
test: deps check-generated lint image containerd
	@rm -f $(CACHE)/vms-booted
	JOEY_REQUIRE_ALL=1 JOEY_TEST_IMAGE=$(TEST_IMAGE) JOEY_VM_COUNT_FILE=$(CACHE)/vms-booted \
	JOEY_CONTAINERD_BIN=$(CONTAINERD_BIN) JOEY_KERNEL_DEB=$$(ls $(CACHE)/kernel/linux-image-*.deb | tail -1) \
		$(GO) test -count=1 -p 1 -timeout 25m ./...
	@echo "VMs booted by the suite: $$(cat $(CACHE)/vms-booted 2>/dev/null | wc -l)"

# Performance figures, printed as ratios and never asserted: TCP throughput
# from a CNI bridge into a container in a joey VM vs. into a plain network
# namespace on the same bridge (test/e2e/bench_test.go), about 30 s; then,
# in one nested-KVM L1, the built-in VMM against QEMU with KVM (boot to
# agent ready, each VMM's own memory) and what the VMM adds to the shim
# (test/nested/vmmbench), about 2 min.
bench: deps build image containerd
	JOEY_REQUIRE_ALL=1 JOEY_TEST_IMAGE=$(TEST_IMAGE) JOEY_CONTAINERD_BIN=$(CONTAINERD_BIN) \
		$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 5m ./test/e2e
	JOEY_REQUIRE_ALL=1 JOEY_TEST_IMAGE=$(TEST_IMAGE) JOEY_KERNEL_DEB=$$(ls $(CACHE)/kernel/linux-image-*.deb | tail -1) \
		$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 15m ./test/nested/vmmbench

# A private containerd runs `uname -a` in a joey VM (see scripts/demo.sh).
demo: deps build image containerd
	JOEY_IMAGE_DIR=$(TEST_IMAGE) scripts/demo.sh

# Installs joey for a system containerd: binaries, default config (kept if
# present), and the guest image in /var/lib/joey/image (rebuilt only when
# its inputs changed). Everything goes under $(DESTDIR), the downloaded
# kernel package too; KERNEL_DEB=FILE.deb builds from that package instead.
KERNEL_DEB ?=
install: build
	install -D -m 0755 bin/joey $(DESTDIR)$(PREFIX)/bin/joey
	install -D -m 0755 bin/containerd-shim-joey-v2 $(DESTDIR)$(PREFIX)/bin/containerd-shim-joey-v2
	install -D -m 0755 bin/joey-agent $(DESTDIR)$(PREFIX)/lib/joey/joey-agent
	@if [ -f $(DESTDIR)/etc/joey/config.toml ]; then echo "keeping $(DESTDIR)/etc/joey/config.toml"; \
	else install -D -m 0644 config/joey.toml $(DESTDIR)/etc/joey/config.toml; fi
	$(DESTDIR)$(PREFIX)/bin/joey image build --agent $(DESTDIR)$(PREFIX)/lib/joey/joey-agent \
		--out $(DESTDIR)/var/lib/joey/image --download-dir $(DESTDIR)/var/cache/joey \
		$(if $(KERNEL_DEB),--kernel-package $(KERNEL_DEB))

clean:
	rm -rf bin
