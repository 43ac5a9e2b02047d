package iptables

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func (e *env) validate(t *testing.T, cfg CaptureConfig) error {
	t.Helper()
	cfg.ProbeTimeout = 500 * time.Millisecond
	return e.pod.Do(func() error {
		return Validate(context.Background(), cfg, WithLogger(testLogger(t)))
	})
}

func TestValidationPasses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*CaptureConfig)
		b      Backend
	}{
		{"nft", func(*CaptureConfig) {}, BackendNFT},
		{"legacy", func(*CaptureConfig) {}, BackendLegacy},
		{"tproxy-dual-stack", func(c *CaptureConfig) { c.Mode = ModeTProxy; c.DualStack = true }, BackendNFT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			cfg := DefaultConfig()
			tc.mutate(&cfg)
			e.install(t, cfg, WithBackend(tc.b))
			if err := e.validate(t, cfg); err != nil {
				t.Fatalf("validation failed on a correct install: %v", err)
			}
		})
	}
}

func validationFailure(t *testing.T, err error) *ValidationError {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a *ValidationError, got %v", err)
	}
	return ve
}

func TestValidationDiagnosesMissingCapture(t *testing.T) {
	e := newEnv(t)
	ve := validationFailure(t, e.validate(t, DefaultConfig()))
	if !strings.Contains(ve.Error(), "IPv4 nft table nat does not exist: no meshlite rules are installed in it") {
		t.Errorf("diagnosis does not name the missing chain:\n%v", ve)
	}
}

func TestValidationDiagnosesMissingRule(t *testing.T) {
	e := newEnv(t)
	e.install(t, DefaultConfig(), WithBackend(BackendNFT))
	e.pod.MustExec(t, "iptables-nft", "-t", "nat", "-D", "ISTIO_OUTPUT", "!", "-d", "127.0.0.1/32", "-o", "lo", "-p", "tcp",
		"-m", "tcp", "!", "--dport", "15008", "-m", "owner", "--uid-owner", "1337", "-j", "ISTIO_IN_REDIRECT")
	e.pod.MustExec(t, "iptables-nft", "-t", "nat", "-D", "ISTIO_OUTPUT", "!", "-d", "127.0.0.1/32", "-o", "lo", "-p", "tcp",
		"-m", "tcp", "!", "--dport", "15008", "-m", "owner", "--gid-owner", "1337", "-j", "ISTIO_IN_REDIRECT")
	ve := validationFailure(t, e.validate(t, DefaultConfig()))
	if !strings.Contains(ve.Error(), "IPv4 nft missing rule in nat: -A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT") {
		t.Errorf("diagnosis does not name the missing rule:\n%v", ve)
	}
}

func TestValidationDetectsOtherBackendShadowing(t *testing.T) {
	e := newEnv(t)
	e.install(t, DefaultConfig(), WithBackend(BackendNFT))
	// A legacy REDIRECT grabs the probe before meshlite's nft rules.
	e.pod.MustExec(t, "iptables-legacy", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-j", "REDIRECT", "--to-ports", "15001")
	ve := validationFailure(t, e.validate(t, DefaultConfig()))
	if !strings.Contains(ve.Error(), "legacy rule shadows capture: -t nat -A OUTPUT -p tcp -j REDIRECT --to-ports 15001") {
		t.Errorf("diagnosis does not name the shadowing legacy rule:\n%v", ve)
	}
}

func TestVerifyWithGoIptables(t *testing.T) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			e := newEnv(t)
			cfg := fancyConfig()
			verify := func() []string {
				var problems []string
				err := e.pod.Do(func() error {
					var err error
					problems, err = Verify(context.Background(), cfg, WithBackend(b))
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				return problems
			}
			e.install(t, cfg, WithBackend(b))
			if p := verify(); len(p) != 0 {
				t.Fatalf("Verify found problems right after Install:\n%s", strings.Join(p, "\n"))
			}
			e.pod.MustExec(t, b.binary(IPv6, ""), "-t", "mangle", "-D", "ISTIO_DIVERT", "-j", "ACCEPT")
			e.pod.MustExec(t, b.binary(IPv4, ""), "-t", "nat", "-N", "ISTIO_DROP")
			got := strings.Join(verify(), "\n")
			for _, want := range []string{
				"IPv6 " + string(b) + " missing rule in mangle: -A ISTIO_DIVERT -j ACCEPT",
				"IPv4 " + string(b) + " leftover chain nat/ISTIO_DROP is not in the plan",
			} {
				if !strings.Contains(got, want) {
					t.Errorf("Verify output lacks %q:\n%s", want, got)
				}
			}
		})
	}
}
