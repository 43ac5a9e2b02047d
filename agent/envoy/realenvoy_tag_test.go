//go:build envoy

package envoy

// With -tags envoy, the real-Envoy test looks for envoy in PATH too.
const realEnvoyRequested = true
