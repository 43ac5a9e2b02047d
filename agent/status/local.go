package status

import (
	"encoding/json"
	"net"
	"net/http"
)

// localOnly guards endpoints that stop the proxy or expose internals: the
// status port is reachable by anything in the cluster, but only processes
// in the pod may use these.
func localOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isLocal(r.RemoteAddr) {
			http.Error(w, "forbidden: only callable from localhost (inside the pod)", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func isLocal(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
