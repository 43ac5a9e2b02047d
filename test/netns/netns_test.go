package netns

import (
	"bufio"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	vnetns "github.com/vishvananda/netns"
)

func TestNamespacesAreIsolatedAndRemoved(t *testing.T) {
	RequireRoot(t, "ip")
	var name string
	t.Run("inner", func(t *testing.T) {
		a, b := New(t), New(t)
		name = a.Name
		Veth(t, a, "eth0", []string{"10.99.0.1/24", "fd99::1/64"}, b, "eth0", []string{"10.99.0.2/24", "fd99::2/64"})

		// The addresses exist in the namespaces, not on the host.
		host, err := net.InterfaceAddrs()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range host {
			if strings.HasPrefix(a.String(), "10.99.0.") {
				t.Fatalf("test address leaked to the host namespace: %s", a)
			}
		}
		out := a.MustExec(t, "ip", "-o", "addr", "show", "eth0")
		if !strings.Contains(out, "10.99.0.1/24") || !strings.Contains(out, "fd99::1/64") {
			t.Errorf("eth0 in %s lacks its addresses:\n%s", a.Name, out)
		}

		// Real traffic crosses the veth, v4 and v6 (no DAD wait).
		for _, addr := range []string{"10.99.0.2:7000", "[fd99::2]:7000"} {
			l := b.Listen(t, "tcp", addr, nil)
			go func() {
				c, err := l.Accept()
				if err == nil {
					c.Write([]byte(c.RemoteAddr().String() + "\n"))
					c.Close()
				}
			}()
			c, err := a.DialAs(1000, 1000, "tcp", addr, 3*time.Second)
			if err != nil {
				t.Fatalf("dial %s: %v", addr, err)
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if !strings.HasPrefix(line, "10.99.0.1:") && !strings.HasPrefix(line, "[fd99::1]:") {
				t.Errorf("peer saw %q", line)
			}
		}

		// The caller's thread is back in the host namespace after Do.
		hostNS, _ := vnetns.Get()
		defer hostNS.Close()
		_ = a.Do(func() error { return nil })
		after, _ := vnetns.Get()
		defer after.Close()
		if !hostNS.Equal(after) {
			t.Error("Do left the thread in another namespace")
		}
	})
	if _, err := os.Stat("/var/run/netns/" + name); !os.IsNotExist(err) {
		t.Errorf("namespace %s still exists after the test: %v", name, err)
	}
}

func TestAsOwnerRestoresCredentials(t *testing.T) {
	RequireRoot(t)
	ns := New(t)
	err := ns.Do(func() error {
		if err := AsOwner(4242, 4343, func() error { return nil }); err != nil {
			return err
		}
		// A file created afterwards is root's again.
		f, err := os.CreateTemp(t.TempDir(), "owner")
		if err != nil {
			return err
		}
		defer f.Close()
		st, _ := f.Stat()
		if uid := statUID(st); uid != 0 {
			t.Errorf("fsuid not restored: file owned by %d", uid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
