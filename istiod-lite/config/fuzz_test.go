package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseFile: whatever bytes land in the config directory, parsing must
// return errors, never panic (a panic would take istiod-lite down on a bad save).
func FuzzParseFile(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yaml")
	examples, _ := filepath.Glob("../../examples/mesh/*.yaml")
	for _, p := range append(seeds, examples...) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems: [1, {kind: Service}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, errs := ParseFile("fuzz.yaml", data, Options{})
		for _, o := range objs {
			if o.Value == nil {
				t.Fatalf("object %s %s/%s returned without a value", o.Kind, o.Namespace, o.Name)
			}
		}
		_ = errs.Error()
		_ = validateSet(objs, Options{}.withDefaults())
	})
}
