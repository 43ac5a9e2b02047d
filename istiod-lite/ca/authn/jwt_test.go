package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/grpc/metadata"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/meshlite/meshlite/istiod-lite/ca/jwtissuer"
	"github.com/meshlite/meshlite/sds/spiffe"
)

const (
	issuer   = "https://kubernetes.default.svc.cluster.local"
	audience = "istio-ca"
)

type jwtFixture struct {
	iss   *jwtissuer.Issuer
	jwks  string
	clock *testingclock.FakeClock
	a     *JWT
}

func newJWTFixture(t *testing.T, cacheSize int) *jwtFixture {
	t.Helper()
	iss, err := jwtissuer.Generate("ES256")
	if err != nil {
		t.Fatal(err)
	}
	_, jwks, err := iss.WriteDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clk := testingclock.NewFakeClock(time.Now().Truncate(time.Second))
	a, err := NewJWT(JWTOptions{JWKSFile: jwks, Issuer: issuer, Audiences: []string{audience}, Clock: clk, CacheSize: cacheSize,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return &jwtFixture{iss: iss, jwks: jwks, clock: clk, a: a}
}

func (f *jwtFixture) mint(t *testing.T, mod func(*jwtissuer.Claims)) string {
	t.Helper()
	c := jwtissuer.Claims{Issuer: issuer, Audiences: []string{audience}, Namespace: "default", ServiceAccount: "app", TTL: time.Hour, Now: f.clock.Now()}
	if mod != nil {
		mod(&c)
	}
	tok, err := f.iss.Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func bearerCtx(v string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", v))
}

// signRaw signs arbitrary claims with key, for tokens jwtissuer refuses to make.
func signRaw(t *testing.T, key any, kid string, claims ...any) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	b := jwt.Signed(sig)
	for _, c := range claims {
		b = b.Claims(c)
	}
	tok, err := b.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestJWTAuthenticate(t *testing.T) {
	f := newJWTFixture(t, 0)
	want := spiffe.Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "app"}
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := f.clock.Now()
	exp := jwt.NewNumericDate(now.Add(time.Hour))

	tests := []struct {
		name    string
		ctx     context.Context
		want    spiffe.Identity
		wantErr string
		noCreds bool
	}{
		{name: "valid token", ctx: bearerCtx("Bearer " + f.mint(t, nil)), want: want},
		{name: "lower-case bearer", ctx: bearerCtx("bearer " + f.mint(t, nil)), want: want},
		{name: "kubernetes.io claim only", want: want, ctx: bearerCtx("Bearer " + signRaw(t, f.mustKey(t), f.iss.KeyID(),
			jwt.Claims{Issuer: issuer, Audience: jwt.Audience{audience}, Expiry: exp},
			map[string]any{"kubernetes.io": map[string]any{"namespace": "default", "serviceaccount": map[string]any{"name": "app"}}}))},
		{name: "no header", ctx: context.Background(), noCreds: true},
		{name: "not bearer", ctx: bearerCtx("Basic dXNlcjpwdw=="), wantErr: `not of the form "Bearer <token>"`},
		{name: "empty bearer", ctx: bearerCtx("Bearer "), wantErr: "empty bearer token"},
		{name: "not a JWT", ctx: bearerCtx("Bearer abc.def"), wantErr: "not a signed JWT"},
		{name: "wrong issuer", ctx: bearerCtx("Bearer " + f.mint(t, func(c *jwtissuer.Claims) { c.Issuer = "https://evil" })),
			wantErr: `issuer "https://evil" is not the configured --jwtIssuer`},
		{name: "wrong audience", ctx: bearerCtx("Bearer " + f.mint(t, func(c *jwtissuer.Claims) { c.Audiences = []string{"api"} })),
			wantErr: `does not include the configured --jwtAudience`},
		{name: "expired", ctx: bearerCtx("Bearer " + f.mint(t, func(c *jwtissuer.Claims) { c.Now = now.Add(-3 * time.Hour) })),
			wantErr: "token expired at"},
		{name: "unknown key", ctx: bearerCtx("Bearer " + signRaw(t, otherKey, "nope", jwt.Claims{Issuer: issuer, Audience: jwt.Audience{audience}, Expiry: exp, Subject: "system:serviceaccount:default:app"})),
			wantErr: `signing key "nope" is not in --jwksFile`},
		{name: "forged with the issuer's kid", ctx: bearerCtx("Bearer " + signRaw(t, otherKey, f.iss.KeyID(), jwt.Claims{Issuer: issuer, Audience: jwt.Audience{audience}, Expiry: exp, Subject: "system:serviceaccount:default:app"})),
			wantErr: "signature does not verify"},
		{name: "no exp", ctx: bearerCtx("Bearer " + signRaw(t, f.mustKey(t), f.iss.KeyID(), jwt.Claims{Issuer: issuer, Audience: jwt.Audience{audience}, Subject: "system:serviceaccount:default:app"})),
			wantErr: "no exp claim"},
		{name: "subject is not a service account", ctx: bearerCtx("Bearer " + signRaw(t, f.mustKey(t), f.iss.KeyID(), jwt.Claims{Issuer: issuer, Audience: jwt.Audience{audience}, Expiry: exp, Subject: "alice"})),
			wantErr: `sub "alice" is not of the form system:serviceaccount:<namespace>:<service-account>`},
		{name: "sub and claim disagree", ctx: bearerCtx("Bearer " + signRaw(t, f.mustKey(t), f.iss.KeyID(),
			jwt.Claims{Issuer: issuer, Audience: jwt.Audience{audience}, Expiry: exp, Subject: "system:serviceaccount:default:app"},
			map[string]any{"kubernetes.io": map[string]any{"namespace": "kube-system", "serviceaccount": map[string]any{"name": "admin"}}})),
			wantErr: "name different service accounts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := f.a.Authenticate(tc.ctx)
			switch {
			case tc.noCreds:
				if !errors.Is(err, ErrNoCredentials) {
					t.Fatalf("err = %v, want ErrNoCredentials", err)
				}
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if errors.Is(err, ErrNoCredentials) {
					t.Errorf("a rejected credential must not read as no credential: %v", err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.want {
					t.Errorf("identity = %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// mustKey digs the issuer's private key out through a fresh JWKS-compatible
// path: the test re-signs with it to craft claims jwtissuer would not mint.
func (f *jwtFixture) mustKey(t *testing.T) any {
	t.Helper()
	dir := t.TempDir()
	keyPath, _, err := f.iss.WriteDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(keyPath)
	k, err := parsePKCS8(data)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestJWTCacheHonoursExpiryAndBound(t *testing.T) {
	f := newJWTFixture(t, 4)
	tok := f.mint(t, func(c *jwtissuer.Claims) { c.TTL = 10 * time.Minute })
	if _, err := f.a.Authenticate(bearerCtx("Bearer " + tok)); err != nil {
		t.Fatal(err)
	}
	// Swap the JWKS for another issuer's: the cached token is still accepted
	// (no signature check), which proves the cache is used.
	other, _ := jwtissuer.Generate("ES256")
	jwks, _ := other.JWKS()
	if err := os.WriteFile(f.jwks, jwks, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.a.Authenticate(bearerCtx("Bearer " + tok)); err != nil {
		t.Fatalf("cached token rejected: %v", err)
	}
	// Past its exp the cache entry no longer counts; the leeway minute
	// would still pass the claim check, so go well beyond it.
	f.clock.Step(12 * time.Minute)
	if _, err := f.a.Authenticate(bearerCtx("Bearer " + tok)); err == nil {
		t.Fatal("expired token accepted from the cache")
	}

	f2 := newJWTFixture(t, 4)
	for i := 0; i < 20; i++ {
		tok := f2.mint(t, func(c *jwtissuer.Claims) { c.ServiceAccount = "sa" + string(rune('a'+i)) })
		if _, err := f2.a.Authenticate(bearerCtx("Bearer " + tok)); err != nil {
			t.Fatal(err)
		}
		f2.a.cacheMu.Lock()
		n := len(f2.a.cache)
		f2.a.cacheMu.Unlock()
		if n > 4 {
			t.Fatalf("cache holds %d tokens, bound is 4", n)
		}
	}
}

func TestJWTReloadsJWKSForNewKey(t *testing.T) {
	f := newJWTFixture(t, 0)
	next, _ := jwtissuer.Generate("RS256")
	tok, err := next.Mint(jwtissuer.Claims{Issuer: issuer, Audiences: []string{audience}, Namespace: "ns", ServiceAccount: "sa", TTL: time.Hour, Now: f.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.a.Authenticate(bearerCtx("Bearer " + tok)); err == nil {
		t.Fatal("token of an unpublished key accepted")
	}
	// Publish both keys, as an issuer does while rotating.
	var set jose.JSONWebKeySet
	for _, i := range []*jwtissuer.Issuer{f.iss, next} {
		b, _ := i.JWKS()
		var s jose.JSONWebKeySet
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, s.Keys...)
	}
	b, _ := json.Marshal(set)
	tmp := filepath.Join(filepath.Dir(f.jwks), "new.json")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(tmp, future, future); err != nil { // a distinct mtime even on coarse filesystems
		t.Fatal(err)
	}
	if err := os.Rename(tmp, f.jwks); err != nil {
		t.Fatal(err)
	}
	id, err := f.a.Authenticate(bearerCtx("Bearer " + tok))
	if err != nil {
		t.Fatalf("token of the newly published key: %v", err)
	}
	if id.Namespace != "ns" || id.ServiceAccount != "sa" {
		t.Errorf("identity = %v", id)
	}
}

func TestNewJWTErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("{"), 0o644)
	empty := filepath.Join(dir, "empty.json")
	os.WriteFile(empty, []byte(`{"keys":[]}`), 0o644)
	for _, tc := range []struct {
		opts JWTOptions
		want string
	}{
		{JWTOptions{Issuer: "i", Audiences: []string{"a"}}, "--jwksFile is empty"},
		{JWTOptions{JWKSFile: bad, Audiences: []string{"a"}}, "--jwtIssuer is empty"},
		{JWTOptions{JWKSFile: bad, Issuer: "i"}, "--jwtAudience is empty"},
		{JWTOptions{JWKSFile: filepath.Join(dir, "missing"), Issuer: "i", Audiences: []string{"a"}}, "reading --jwksFile"},
		{JWTOptions{JWKSFile: bad, Issuer: "i", Audiences: []string{"a"}}, "is not a JWKS document"},
		{JWTOptions{JWKSFile: empty, Issuer: "i", Audiences: []string{"a"}}, "holds no keys"},
	} {
		if _, err := NewJWT(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewJWT(%+v) = %v, want %q", tc.opts, err, tc.want)
		}
	}
}
