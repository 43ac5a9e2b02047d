package bootstrap

import "testing"

// Generation and validation run on every agent start (and `check`); these
// show what they cost.
func BenchmarkEnvoy(b *testing.B) {
	o := base()
	for b.Loop() {
		if _, err := Envoy(o); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidate(b *testing.B) {
	data, err := Envoy(base())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Validate(data); err != nil {
			b.Fatal(err)
		}
	}
}
