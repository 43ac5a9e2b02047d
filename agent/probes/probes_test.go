package probes

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	got, err := Parse(`{"/app-health/web/livez":{"httpGet":{"path":"/healthz","port":"8080","scheme":"HTTPS"},"timeoutSeconds":3},
		"/app-health/db/readyz":{"tcpSocket":{"port":5432}},"/app-health/api/startupz":{"grpc":{"port":9000}}}`)
	if err != nil {
		t.Fatal(err)
	}
	if p := got["/app-health/web/livez"]; p.Number() != 8080 || p.TimeoutSeconds != 3 || p.HTTPGet.Scheme != "HTTPS" {
		t.Errorf("httpGet probe = %+v", p)
	}
	if got["/app-health/db/readyz"].Number() != 5432 || got["/app-health/api/startupz"].Number() != 9000 {
		t.Errorf("tcp/grpc ports = %d, %d", got["/app-health/db/readyz"].Number(), got["/app-health/api/startupz"].Number())
	}
	if m, err := Parse("  "); err != nil || len(m) != 0 {
		t.Errorf("empty = %v, %v; want no probes", m, err)
	}
}

func TestParseRejects(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`{`, "not valid JSON"},
		{`{"/foo":{"httpGet":{"port":80}}}`, "/foo: path must start with /app-health/"},
		{`{"/app-health/a/livez":{"httpGet":{"port":80},"tcpSocket":{"port":80}}}`, "has 2 of httpGet, tcpSocket, grpc"},
		{`{"/app-health/a/livez":{}}`, "has 0 of httpGet, tcpSocket, grpc"},
		{`{"/app-health/a/livez":{"grpc":{"port":70000}}}`, "port must be a number from 1 to 65535"},
		{`{"/app-health/a/livez":{"httpGet":{"port":"http"}}}`, `port "http" is a named port`},
		{`{"/app-health/a/livez":{"httpGet":{"port":80,"scheme":"FTP"}}}`, `scheme "FTP" is not HTTP or HTTPS`},
		{`{"/app-health/a/livez":{"exec":{}}}`, `unknown field "exec"`},
		{`{"/app-health/a/livez":{"tcpSocket":{"port":1},"timeoutSeconds":-1}}`, "timeoutSeconds must be 0 or more"},
	} {
		_, err := Parse(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%s) = %v, want an error containing %q", tt.in, err, tt.want)
		}
	}
}

func TestParseNeverQuotesHeaderValues(t *testing.T) {
	_, err := Parse(`{"/app-health/a/livez":{"httpGet":{"port":0,"httpHeaders":[{"name":"Authorization","value":"Bearer s3cret"}]}}}`)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err = %v: must fail without quoting the header value", err)
	}
}
