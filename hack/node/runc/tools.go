//go:build tools

// Package tools records runc, the OCI runtime the containerd shim calls. It is built with
// cgo and the seccomp tag because containerd gives pod sandboxes the RuntimeDefault profile.
package tools

import (
	_ "github.com/opencontainers/runc"
)
