package kube

import (
	"log/slog"

	"k8s.io/klog/v2"
)

// RouteKlog sends client-go's own log lines (reflector warnings, throttling)
// to logger under scope "kube", so that they honour istiod-lite's log format
// and per-scope levels instead of being printed to stderr by klog. It changes
// process-wide state: call it once from main.
func RouteKlog(logger *slog.Logger) {
	klog.SetSlogLogger(logger.With("scope", "kube"))
}
