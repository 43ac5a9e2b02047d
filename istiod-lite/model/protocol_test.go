package model

import "testing"

func TestPortProtocol(t *testing.T) {
	tests := []struct {
		name, appProtocol string
		want              Protocol
	}{
		{"http", "", ProtocolHTTP},
		{"http-api", "", ProtocolHTTP},
		{"HTTP-api", "", ProtocolHTTP},
		{"http2", "", ProtocolHTTP2},
		{"http2-internal", "", ProtocolHTTP2},
		{"grpc", "", ProtocolGRPC},
		{"grpc-greeter", "", ProtocolGRPC},
		{"grpc-web", "", ProtocolHTTP},
		{"grpc-web-ui", "", ProtocolHTTP},
		{"https", "", ProtocolHTTPS},
		{"tls-db", "", ProtocolTLS},
		{"tcp", "", ProtocolTCP},
		{"mongo", "", ProtocolTCP},
		{"redis-cache", "", ProtocolTCP},
		{"mysql", "", ProtocolTCP},
		{"metrics", "", ProtocolUnsupported},
		{"", "", ProtocolUnsupported},
		{"httpx", "", ProtocolUnsupported},
		// appProtocol wins over the name, as in Istio.
		{"web", "http", ProtocolHTTP},
		{"tcp", "grpc", ProtocolGRPC},
		{"web", "kubernetes.io/h2c", ProtocolHTTP2},
		{"web", "kubernetes.io/ws", ProtocolHTTP},
		{"web", "kubernetes.io/wss", ProtocolHTTPS},
		{"web", "HTTP2", ProtocolHTTP2},
		// An unknown appProtocol falls back to the name.
		{"http-web", "example.com/custom", ProtocolHTTP},
	}
	for _, tc := range tests {
		if got := PortProtocol(tc.name, tc.appProtocol); got != tc.want {
			t.Errorf("PortProtocol(%q, %q) = %s, want %s", tc.name, tc.appProtocol, got, tc.want)
		}
	}
}
