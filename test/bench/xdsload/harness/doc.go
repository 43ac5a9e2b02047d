// Package harness holds what the xDS load programs share: starting the real
// istiod-lite binary on a generated mesh, editing its config the way an
// editor does, reading a process's CPU and RSS from /proc, and percentiles.
// test/bench/xdsload (proxyless clients) and test/bench/soak (sidecars plus
// CSRs) both use it, so their figures are measured the same way.
package harness
