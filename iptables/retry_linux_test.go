package iptables

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshlite/meshlite/test/netns"
)

// fakeRestore puts an iptables-nft-restore first on PATH that records its
// arguments and fails the first `failures` calls, then runs the real one.
func fakeRestore(t *testing.T, failures int) (argsLog string) {
	t.Helper()
	real, err := lookPathOrSkip("iptables-nft-restore")
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	argsLog = filepath.Join(dir, "args")
	script := `#!/bin/sh
echo "$@" >> ` + argsLog + `
n=$(wc -l < ` + argsLog + `)
if [ "$n" -le ` + itoa(failures) + ` ]; then echo "Another app is currently holding the xtables lock" >&2; exit 4; fi
exec ` + real + ` "$@"
`
	if err := os.WriteFile(filepath.Join(dir, "iptables-nft-restore"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	return argsLog
}

func TestRestoreRetriesBoundedWithLockWait(t *testing.T) {
	netns.RequireRoot(t, "iptables-nft-restore")
	t.Run("recovers", func(t *testing.T) {
		e := newEnv(t)
		log := fakeRestore(t, 2)
		e.install(t, DefaultConfig(), WithBackend(BackendNFT))
		args, _ := os.ReadFile(log)
		lines := strings.Split(strings.TrimSpace(string(args)), "\n")
		if len(lines) != 3 {
			t.Errorf("restore ran %d times, want 3 (2 failures + success)", len(lines))
		}
		for _, l := range lines {
			if !strings.Contains(l, "--noflush") || !strings.Contains(l, "-w 5") {
				t.Errorf("restore called without --noflush and a lock wait: %q", l)
			}
		}
	})
	t.Run("gives up", func(t *testing.T) {
		e := newEnv(t)
		log := fakeRestore(t, 100)
		err := e.pod.Do(func() error {
			_, err := Install(t.Context(), DefaultConfig(), WithBackend(BackendNFT), WithRetries(2), WithLogger(testLogger(t)))
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "failed after 3 attempts") || !strings.Contains(err.Error(), "xtables lock") {
			t.Errorf("want a bounded failure naming the cause, got %v", err)
		}
		args, _ := os.ReadFile(log)
		if n := strings.Count(string(args), "\n"); n != 3 {
			t.Errorf("restore ran %d times, want 3", n)
		}
	})
}

func TestDiscoverIPv6(t *testing.T) {
	netns.RequireRoot(t, "ip")
	v6only, dual := netns.New(t), netns.New(t)
	peer := netns.New(t)
	netns.Veth(t, v6only, "eth0", []string{"fd55::1/64"}, peer, "eth0", nil)
	netns.Veth(t, dual, "eth0", []string{"10.55.0.1/24", "fd55::2/64"}, peer, "eth1", nil)
	for _, tc := range []struct {
		ns   *netns.NS
		want bool
	}{{v6only, true}, {dual, false}} {
		var got bool
		if err := tc.ns.Do(func() error { var err error; got, err = DiscoverIPv6(); return err }); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("DiscoverIPv6 in %s = %v, want %v", tc.ns.Name, got, tc.want)
		}
	}
}
