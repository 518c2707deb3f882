// Package version holds the release the binaries were built from, stamped by the build:
// go build -ldflags "-X github.com/jobtoken/jobtoken/internal/version.Version=v0.1.0".
package version

// Version is the release, or "dev" for a build that was not stamped.
var Version = "dev"
