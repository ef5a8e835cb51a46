# Builds simple_ml for C programs and installs the shared and static
# libraries, the header and a pkg-config file.
#
#   make                                  cargo build --release
#   make install PREFIX=/usr/local        installs what `make` built, without rebuilding
#   make uninstall PREFIX=/usr/local
#
# Variables: PREFIX (/usr/local), LIBDIR ($(PREFIX)/lib), INCLUDEDIR
# ($(PREFIX)/include), PKGCONFIGDIR ($(LIBDIR)/pkgconfig), DESTDIR (staging
# root for packagers), BUILD_DIR (where the built libraries are:
# target/release).

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR ?=
BUILD_DIR ?= target/release
CARGO ?= cargo
INSTALL ?= install
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

LIBS := $(BUILD_DIR)/libsimple_ml.so $(BUILD_DIR)/libsimple_ml.a

.PHONY: all build install uninstall

all: build

build:
	$(CARGO) build --release --lib

install:
	@for lib in $(LIBS); do \
	  test -f "$$lib" || { echo "$$lib is missing: run 'make' first" >&2; exit 1; }; \
	done
	$(INSTALL) -d "$(DESTDIR)$(LIBDIR)" "$(DESTDIR)$(INCLUDEDIR)" "$(DESTDIR)$(PKGCONFIGDIR)"
	$(INSTALL) -m 755 $(BUILD_DIR)/libsimple_ml.so "$(DESTDIR)$(LIBDIR)/libsimple_ml.so"
	$(INSTALL) -m 644 $(BUILD_DIR)/libsimple_ml.a "$(DESTDIR)$(LIBDIR)/libsimple_ml.a"
	$(INSTALL) -m 644 include/simple_ml.h "$(DESTDIR)$(INCLUDEDIR)/simple_ml.h"
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    simple_ml.pc.in > "$(DESTDIR)$(PKGCONFIGDIR)/simple_ml.pc"
	chmod 644 "$(DESTDIR)$(PKGCONFIGDIR)/simple_ml.pc"

uninstall:
	rm -f "$(DESTDIR)$(LIBDIR)/libsimple_ml.so" "$(DESTDIR)$(LIBDIR)/libsimple_ml.a" \
	      "$(DESTDIR)$(INCLUDEDIR)/simple_ml.h" "$(DESTDIR)$(PKGCONFIGDIR)/simple_ml.pc"
