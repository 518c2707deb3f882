//go:build tools

// Package tools records the container runtime commands this module builds for the real
// single-node cluster of make e2e (the daemon, its runc shim and ctr to import images).
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
