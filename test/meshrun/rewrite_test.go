package meshrun

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRewriteAddresses(t *testing.T) {
	const service = `kind: WorkloadEntry
spec:
  address: 127.0.0.11
---
kind: WorkloadEntry
spec:
  address: 127.0.0.12
`
	const client = "kind: WorkloadEntry\nspec:\n  address: 127.0.0.21\n"
	for _, tc := range []struct {
		name      string
		workloads []Workload
		want      map[string]string // file -> substring
		wantErr   string
	}{
		{
			name:      "unchanged addresses leave the files alone",
			workloads: DefaultWorkloads(),
			want:      map[string]string{"svc.yaml": "address: 127.0.0.11\n", "client.yaml": "address: 127.0.0.21\n"},
		},
		{
			name: "each workload entry follows its workload",
			workloads: []Workload{
				{Name: "greeter-v1", IP: "10.77.0.11", MeshIP: "127.0.0.11"},
				{Name: "greeter-v2", IP: "10.77.0.12", MeshIP: "127.0.0.12"},
				{Name: "client", IP: "10.77.0.21", MeshIP: "127.0.0.21"},
			},
			want: map[string]string{"svc.yaml": "address: 10.77.0.11\n---\nkind: WorkloadEntry\nspec:\n  address: 10.77.0.12\n", "client.yaml": "address: 10.77.0.21\n"},
		},
		{
			name:      "an address the config does not have is an error",
			workloads: []Workload{{Name: "extra", IP: "10.77.0.30", MeshIP: "127.0.0.30"}},
			wantErr:   `workload extra: no WorkloadEntry with "address: 127.0.0.30"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			m := &Mesh{o: Options{Root: root, MeshDir: "examples/mesh", Workloads: tc.workloads}}
			if err := os.MkdirAll(m.ConfigDir(), 0o755); err != nil {
				t.Fatal(err)
			}
			for name, data := range map[string]string{"svc.yaml": service, "client.yaml": client} {
				if err := os.WriteFile(filepath.Join(m.ConfigDir(), name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := m.rewriteAddresses()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("rewriteAddresses() = %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.want {
				b, _ := os.ReadFile(filepath.Join(m.ConfigDir(), name))
				if !strings.Contains(string(b), want) {
					t.Errorf("%s after rewrite:\n%s\nwant it to contain:\n%s", name, b, want)
				}
			}
		})
	}
}

func TestWriteConfigReplacesAtomically(t *testing.T) {
	m := &Mesh{o: Options{Root: t.TempDir()}}
	if err := os.MkdirAll(m.ConfigDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.WriteVirtualService(30, 70); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(m.VirtualServicePath())
	if err != nil || string(b) != VirtualService(30, 70) {
		t.Fatalf("VirtualService file = %q, %v", b, err)
	}
	entries, _ := os.ReadDir(m.ConfigDir())
	if len(entries) != 1 {
		t.Errorf("config dir holds %d files after a write, want only the VirtualService (no temp file left)", len(entries))
	}
}
