"""The package's version, in the lowest layer so that anything may record it (e.g. which release
made a cached finding) without importing the package's top."""

VERSION = "0.1.0"
