package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/meshlite/meshlite/test/meshrun"
)

// Two grpc-go apps, each with its own agent, talk mTLS with certificates the
// CA issued through the agents; each side checks the other's SPIFFE ID.
func TestMTLSBetweenWorkloads(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	c := startAll(t, m)
	r, err := c.WaitFor(ctx(t), 20*time.Second, "20 successful RPCs", func(r meshrun.Report) bool { return r.OK >= 20 })
	if err != nil {
		t.Fatal(err)
	}
	noFailures(t, r, "mTLS between client and greeter")
	if want := meshrun.SPIFFEID("greeter"); r.ServerID != want {
		t.Errorf("client saw server identity %q, want %q", r.ServerID, want)
	}
	if want := meshrun.SPIFFEID("client"); r.SeenAs != want {
		t.Errorf("greeter saw the caller as %q, want %q", r.SeenAs, want)
	}
	for _, name := range []string{"greeter-v1", "greeter-v2", "client"} {
		w := workload(t, m, name)
		if got, want := m.Cert(w).ID, meshrun.SPIFFEID(w.ServiceAccount); got != want {
			t.Errorf("%s's OUTPUT_CERTS certificate is for %q, want %q", name, got, want)
		}
	}

	// The checks are real on both sides: a client that expects another
	// server identity refuses every answer, and a greeter refuses a caller
	// whose certificate is not the client's.
	cw := workload(t, m, "client")
	picky, err := m.StartClientAs("client-expects-other", cw, meshrun.SPIFFEID("other"))
	if err != nil {
		t.Fatal(err)
	}
	r, err = picky.WaitFor(ctx(t), 20*time.Second, "failed RPCs", func(r meshrun.Report) bool { return r.Failed >= 5 })
	if err != nil {
		t.Fatal(err)
	}
	if r.OK != 0 || !strings.Contains(r.LastError, "want "+meshrun.SPIFFEID("other")) {
		t.Errorf("client expecting another server identity: ok=%d lastError=%q; want no success and an identity mismatch", r.OK, r.LastError)
	}
	gw := workload(t, m, "greeter-v1")
	impostor, err := m.StartClientAs("impostor", gw, meshrun.SPIFFEID("greeter")) // greeter's certificate calling greeter
	if err != nil {
		t.Fatal(err)
	}
	r, err = impostor.WaitFor(ctx(t), 20*time.Second, "refused RPCs", func(r meshrun.Report) bool { return r.Failed >= 5 })
	if err != nil {
		t.Fatal(err)
	}
	if r.OK != 0 || !strings.Contains(r.LastError, "PermissionDenied") {
		t.Errorf("caller with the greeter's identity: ok=%d lastError=%q; want every RPC refused with PermissionDenied", r.OK, r.LastError)
	}
}
