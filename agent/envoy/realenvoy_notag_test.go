//go:build !envoy

package envoy

const realEnvoyRequested = false
