// Package version carries the build stamp set by the Makefile with -ldflags -X.
package version

import (
	"fmt"
	"runtime"
)

// Set at link time: -X github.com/meshlite/meshlite/cmd/internal/version.Version=...
var (
	Version   = "0.0.0-dev"
	GitCommit = "unknown"
	BuildDate = "unknown"
)

// String is the one-line form `version` prints, in the spirit of Istio's `version --short=false`.
func String(binary string) string {
	return fmt.Sprintf("%s version: %s (commit %s, built %s, %s %s/%s)",
		binary, Version, GitCommit, BuildDate, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
