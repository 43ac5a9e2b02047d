package model

import "strings"

// ParseProtocol maps a protocol name as Istio spells it (case-insensitive) to a
// Protocol. gRPC-Web rides on HTTP/1.1 and HTTP/2, so it is HTTP here; Mongo,
// Redis and MySQL get no protocol filters and are proxied as TCP. Anything
// else is UnsupportedProtocol, which Istio would sniff and meshlite treats as TCP.
func ParseProtocol(s string) Protocol {
	switch strings.ToLower(s) {
	case "http", "kubernetes.io/ws":
		return ProtocolHTTP
	case "http2", "kubernetes.io/h2c":
		return ProtocolHTTP2
	case "grpc":
		return ProtocolGRPC
	case "grpc-web":
		return ProtocolHTTP
	case "https", "kubernetes.io/wss":
		return ProtocolHTTPS
	case "tcp", "mongo", "redis", "mysql":
		return ProtocolTCP
	case "tls":
		return ProtocolTLS
	}
	return ProtocolUnsupported
}

// PortProtocol selects a service port's protocol as Istio does: appProtocol
// when it names a known protocol, else the port name's prefix before the
// first "-" ("grpc-web" as a whole, since it contains one). A port named
// "http-api" is HTTP, "grpc" is GRPC, "metrics" is UnsupportedProtocol.
func PortProtocol(name, appProtocol string) Protocol {
	if appProtocol != "" {
		if p := ParseProtocol(appProtocol); p != ProtocolUnsupported {
			return p
		}
	}
	lower := strings.ToLower(name)
	if strings.HasPrefix(lower, "grpc-web") {
		return ProtocolHTTP
	}
	prefix, _, _ := strings.Cut(lower, "-")
	return ParseProtocol(prefix)
}
