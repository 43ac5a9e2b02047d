package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/meshlite/meshlite/test/meshrun"
)

// Short-lived certificates rotate under steady load with no failed RPC: the
// agents renew at half-life (the default grace ratio) and the apps' file
// watchers pick the new files up before the old ones expire.
func TestRotationUnderLoad(t *testing.T) {
	t.Parallel()
	const ttl, load = 30 * time.Second, 60 * time.Second
	m := newMesh(t, "SECRET_TTL="+ttl.String())
	c := startAll(t, m)
	start := time.Now()
	r, err := c.WaitFor(ctx(t), load+20*time.Second, "60 s of traffic", func(meshrun.Report) bool { return time.Since(start) >= load })
	if err != nil {
		t.Fatal(err)
	}
	noFailures(t, r, "60 s of RPCs across certificate rotations")
	if want := int64(load/time.Second) * 20 * 8 / 10; r.OK < want {
		t.Errorf("only %d RPCs succeeded in %s; want at least %d (20 per second)", r.OK, load, want)
	}
	for _, name := range []string{"greeter-v1", "greeter-v2", "client"} {
		w := workload(t, m, name)
		serials := slices.Compact(m.IssuedSerials(w))
		if len(serials) < 3 {
			t.Errorf("%s: %d certificates issued in %s with SECRET_TTL=%s (%v); want the first and at least 2 rotations",
				name, len(serials), load, ttl, serials)
		}
		if cur := m.Cert(w); cur.Serial != "" && len(serials) > 0 && cur.Serial == serials[0] {
			t.Errorf("%s: OUTPUT_CERTS still holds the first certificate (serial %s)", name, cur.Serial)
		}
	}

	// Every first certificate has expired by now: a new connection succeeds
	// only if both apps present their rotated certificates.
	late, err := m.StartClientAs("late-client", workload(t, m, "client"), meshrun.SPIFFEID("greeter"))
	if err != nil {
		t.Fatal(err)
	}
	r, err = late.WaitFor(ctx(t), 20*time.Second, "10 successful RPCs", func(r meshrun.Report) bool { return r.OK >= 10 || r.Failed > 0 })
	if err != nil {
		t.Fatal(err)
	}
	noFailures(t, r, "a new connection after the first certificates expired")
}
