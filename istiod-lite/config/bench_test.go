package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkLoadAndBuild measures a full reload of a directory with 500
// services (Service + 2 WorkloadEntries + DestinationRule + VirtualService
// each, 2500 objects): the registry pays this on every accepted change, on
// top of the debounce.
func BenchmarkLoadAndBuild(b *testing.B) {
	dir := benchDir(b)
	b.ReportAllocs()
	for b.Loop() {
		set, err := Load([]string{dir}, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if snap := Build(set); len(snap.Services) != 500 {
			b.Fatalf("%d services", len(snap.Services))
		}
	}
}

// BenchmarkReloadOneFileChanged is the registry's case: one VirtualService
// file edited in the same 2500-object directory, reloaded with a warm Loader.
func BenchmarkReloadOneFileChanged(b *testing.B) {
	dir := benchDir(b)
	l := NewLoader(Options{})
	if _, err := l.Load([]string{dir}); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, "svc-000.yaml")
	orig, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		w := i % 100
		edited := strings.Replace(string(orig), "weight: 90}", fmt.Sprintf("weight: %d}", w), 1)
		edited = strings.Replace(edited, "weight: 10}", fmt.Sprintf("weight: %d}", 100-w), 1)
		if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
			b.Fatal(err)
		}
		set, err := l.Load([]string{dir})
		if err != nil {
			b.Fatal(err)
		}
		Build(set)
	}
}

func benchDir(b *testing.B) string {
	dir := b.TempDir()
	for i := 0; i < 500; i++ {
		name := fmt.Sprintf("svc-%03d", i)
		var sb strings.Builder
		fmt.Fprintf(&sb, "apiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: bench}\nspec:\n  selector: {app: %s}\n  ports: [{name: grpc, port: 7070}]\n---\n", name, name)
		for v := 1; v <= 2; v++ {
			fmt.Fprintf(&sb, "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: %s-v%d, namespace: bench}\nspec: {address: 10.%d.%d.%d, labels: {app: %s, version: v%d}, serviceAccount: %s, ports: {grpc: 7070}}\n---\n", name, v, v, i/250, i%250+1, name, v, name)
		}
		fmt.Fprintf(&sb, "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: %s, namespace: bench}\nspec:\n  host: %s\n  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]\n---\n", name, name)
		fmt.Fprintf(&sb, "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: %s, namespace: bench}\nspec:\n  hosts: [%s]\n  http:\n  - timeout: 5s\n    retries: {attempts: 3, perTryTimeout: 1s}\n    route:\n    - {destination: {host: %s, subset: v1}, weight: 90}\n    - {destination: {host: %s, subset: v2}, weight: 10}\n", name, name, name, name)
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(sb.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}
