package spiffe

import "testing"

func TestRoundTrip(t *testing.T) {
	id := Identity{TrustDomain: "cluster.local", Namespace: "demo", ServiceAccount: "greeter"}
	s := id.String()
	if s != "spiffe://cluster.local/ns/demo/sa/greeter" {
		t.Fatalf("String() = %q", s)
	}
	if id.URL().String() != s {
		t.Fatalf("URL() = %q, want %q", id.URL(), s)
	}
	got, err := Parse(s)
	if err != nil || got != id {
		t.Fatalf("Parse(%q) = %+v, %v", s, got, err)
	}
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{
		"https://cluster.local/ns/a/sa/b",
		"spiffe://cluster.local/ns/a",
		"spiffe://cluster.local/ns/a/sa/b/c",
		"spiffe://cluster.local/sa/a/ns/b",
		"spiffe:///ns/a/sa/b",
		"spiffe://cluster.local/ns//sa/b",
	} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) succeeded, want error", s)
		}
	}
}
