package jwtissuer

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func TestMintAndVerifyWithPublishedJWKS(t *testing.T) {
	for _, alg := range []string{"ES256", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			iss, err := Generate(alg)
			if err != nil {
				t.Fatal(err)
			}
			keyPath, _, err := iss.WriteDir(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			loaded, err := Load(keyPath)
			if err != nil {
				t.Fatal(err)
			}
			if loaded.KeyID() != iss.KeyID() {
				t.Error("key ID changed across WriteDir/Load")
			}
			now := time.Unix(1_800_000_000, 0)
			tok, err := loaded.Mint(Claims{Issuer: DefaultIssuer, Audiences: []string{DefaultAudience}, Namespace: "ns", ServiceAccount: "sa", TTL: time.Hour, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			b, _ := iss.JWKS()
			var set jose.JSONWebKeySet
			if err := json.Unmarshal(b, &set); err != nil {
				t.Fatal(err)
			}
			parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				t.Fatal(err)
			}
			if parsed.Headers[0].KeyID != iss.KeyID() {
				t.Errorf("kid = %q, want %q", parsed.Headers[0].KeyID, iss.KeyID())
			}
			var c jwt.Claims
			var k map[string]any
			if err := parsed.Claims(set.Key(iss.KeyID())[0].Key, &c, &k); err != nil {
				t.Fatalf("token does not verify with the published JWKS: %v", err)
			}
			if c.Subject != "system:serviceaccount:ns:sa" || !c.Expiry.Time().Equal(now.Add(time.Hour)) || k["kubernetes.io"] == nil {
				t.Errorf("claims = %+v %v", c, k)
			}
		})
	}
}

func TestMintRefusesIncompleteClaims(t *testing.T) {
	iss, err := Generate("")
	if err != nil {
		t.Fatal(err)
	}
	base := Claims{Issuer: "i", Audiences: []string{"a"}, Namespace: "n", ServiceAccount: "s", TTL: time.Hour}
	for _, tc := range []struct {
		mod  func(*Claims)
		want string
	}{
		{func(c *Claims) { c.Issuer = "" }, "issuer is empty"},
		{func(c *Claims) { c.Audiences = nil }, "no audience"},
		{func(c *Claims) { c.ServiceAccount = "" }, "service account"},
		{func(c *Claims) { c.TTL = 0 }, "must be positive"},
	} {
		c := base
		tc.mod(&c)
		if _, err := iss.Mint(c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Mint(%+v) = %v, want %q", c, err, tc.want)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.pem")); err == nil {
		t.Error("Load of a missing file succeeded")
	}
}
