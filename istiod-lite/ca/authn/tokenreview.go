package authn

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"

	"github.com/meshlite/meshlite/istiod-lite/kubeclient"
	"github.com/meshlite/meshlite/sds/spiffe"
)

// Defaults of TokenReviewOptions.
const (
	DefaultCAAudience          = "istio-ca"
	DefaultTokenReviewCacheTTL = time.Minute // for tokens without exp (legacy secret tokens)
)

// Extra keys the API server sets on a TokenReview of a pod-bound token.
const (
	extraPodName = "authentication.kubernetes.io/pod-name"
	extraPodUID  = "authentication.kubernetes.io/pod-uid"
)

// PodChecker reports whether the pod a token is bound to still exists with
// that UID. It lets cached results honour pod deletion without asking the
// API server again.
type PodChecker func(namespace, name, uid string) bool

// PodListerChecker checks pods against an informer's lister (the Kubernetes
// registry has one).
func PodListerChecker(l corelisters.PodLister) PodChecker {
	return func(ns, name, uid string) bool {
		p, err := l.Pods(ns).Get(name)
		return err == nil && string(p.UID) == uid
	}
}

// TokenReviewOptions configure the TokenReview authenticator.
type TokenReviewOptions struct {
	// Client creates TokenReviews; istiod-lite's service account needs
	// "create tokenreviews" (deploy/kubernetes/rbac.yaml). Required.
	Client *kubeclient.Clients
	// Audiences the token must be minted for. Default [istio-ca].
	Audiences []string
	// TrustDomain of the identities returned; default cluster.local.
	TrustDomain string
	// CacheSize bounds how many accepted tokens are remembered (until their
	// exp). Default DefaultJWTCacheSize.
	CacheSize int
	// Pods, when set, is consulted on every cache hit of a pod-bound token,
	// so that deleting the pod revokes its token at once.
	Pods   PodChecker
	Clock  clock.PassiveClock
	Logger *slog.Logger
}

// TokenReview authenticates "authorization: Bearer <token>" by asking the
// Kubernetes API server, as istiod does. Unlike offline JWKS verification, it
// refuses tokens whose bound pod or secret was deleted.
type TokenReview struct {
	opts  TokenReviewOptions
	log   *slog.Logger
	cache *tokenCache
}

// NewTokenReview returns the authenticator.
func NewTokenReview(opts TokenReviewOptions) (*TokenReview, error) {
	if opts.Client == nil {
		return nil, errors.New("authn: TokenReview needs a Kubernetes client; use --tokenAuth jwks outside a cluster")
	}
	if len(opts.Audiences) == 0 {
		opts.Audiences = []string{DefaultCAAudience}
	}
	if opts.TrustDomain == "" {
		opts.TrustDomain = spiffe.DefaultTrustDomain
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultJWTCacheSize
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &TokenReview{opts: opts, log: opts.Logger.With("scope", "ca"), cache: newTokenCache(opts.CacheSize)}, nil
}

// Authenticate implements Authenticator.
func (t *TokenReview) Authenticate(ctx context.Context) (spiffe.Identity, error) {
	token, err := bearerToken(ctx)
	if err != nil {
		return spiffe.Identity{}, err
	}
	now := t.opts.Clock.Now()
	sum := sha256.Sum256([]byte(token))
	if e, ok := t.cache.get(sum, now); ok {
		if e.podName == "" || t.opts.Pods == nil || t.opts.Pods(e.id.Namespace, e.podName, e.podUID) {
			return e.id, nil
		}
		t.cache.remove(sum)
		return spiffe.Identity{}, fmt.Errorf("bearer token rejected: it is bound to pod %s/%s, which no longer exists", e.id.Namespace, e.podName)
	}
	e, err := t.review(ctx, token, now)
	if err != nil {
		return spiffe.Identity{}, fmt.Errorf("bearer token rejected: %w", err)
	}
	t.cache.put(sum, e, now)
	return e.id, nil
}

func (t *TokenReview) review(ctx context.Context, token string, now time.Time) (tokenEntry, error) {
	tr := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: t.opts.Audiences}}
	res, err := t.opts.Client.TokenReviews().Create(ctx, tr, metav1.CreateOptions{})
	switch {
	case apierrors.IsForbidden(err):
		return tokenEntry{}, fmt.Errorf("istiod-lite may not create TokenReviews (%w); grant it the RBAC in deploy/kubernetes/rbac.yaml", err)
	case err != nil:
		return tokenEntry{}, fmt.Errorf("TokenReview failed, cannot verify the token: %w", err)
	}
	st := res.Status
	if !st.Authenticated {
		reason := st.Error
		if reason == "" {
			reason = "not authenticated"
		}
		return tokenEntry{}, fmt.Errorf("the Kubernetes API server refused it (%s); the token may be expired, minted for another audience than %v, or bound to a deleted pod", reason, t.opts.Audiences)
	}
	if len(st.Audiences) > 0 && !slices.ContainsFunc(st.Audiences, func(a string) bool { return slices.Contains(t.opts.Audiences, a) }) {
		return tokenEntry{}, fmt.Errorf("audiences %v do not include %v; mint the token with audience %s", st.Audiences, t.opts.Audiences, t.opts.Audiences[0])
	}
	parts := strings.Split(st.User.Username, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" {
		return tokenEntry{}, fmt.Errorf("user %q is not a service account (system:serviceaccount:<namespace>:<name>); only service-account tokens get workload certificates", st.User.Username)
	}
	id := spiffe.Identity{TrustDomain: t.opts.TrustDomain, Namespace: parts[2], ServiceAccount: parts[3]}
	if err := id.Validate(); err != nil {
		return tokenEntry{}, fmt.Errorf("service account in token: %w", err)
	}
	e := tokenEntry{id: id, expiry: now.Add(DefaultTokenReviewCacheTTL)}
	if v := st.User.Extra[extraPodName]; len(v) == 1 {
		e.podName = v[0]
		if u := st.User.Extra[extraPodUID]; len(u) == 1 {
			e.podUID = u[0]
		}
	}
	// The API server verified the signature; exp only bounds the cache.
	if tok, err := jwt.ParseSigned(token, signatureAlgorithms); err == nil {
		var c jwt.Claims
		if tok.UnsafeClaimsWithoutVerification(&c) == nil && c.Expiry != nil {
			e.expiry = c.Expiry.Time()
		}
	}
	return e, nil
}

type tokenEntry struct {
	id      spiffe.Identity
	expiry  time.Time
	podName string
	podUID  string
}

// tokenCache remembers accepted tokens until they expire, bounded in size.
type tokenCache struct {
	size int
	mu   sync.Mutex
	m    map[[32]byte]tokenEntry
}

func newTokenCache(size int) *tokenCache {
	return &tokenCache{size: size, m: map[[32]byte]tokenEntry{}}
}

func (c *tokenCache) get(k [32]byte, now time.Time) (tokenEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if ok && !now.Before(e.expiry) {
		delete(c.m, k)
		return e, false
	}
	return e, ok
}

func (c *tokenCache) remove(k [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, k)
}

func (c *tokenCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

func (c *tokenCache) put(k [32]byte, e tokenEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.size {
		for k, v := range c.m {
			if !now.Before(v.expiry) {
				delete(c.m, k)
			}
		}
		// Still full of live tokens: forget an arbitrary quarter, which costs
		// their owners one more TokenReview.
		for k := range c.m {
			if len(c.m) < c.size*3/4 {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[k] = e
}

// FetchIssuerJWKS downloads the cluster's service-account issuer and its
// public keys (OIDC discovery, served by every API server) for offline
// verification with NewJWT (--tokenAuth jwks). The keys are written to
// dir/jwks.json; it returns that path and the issuer.
func FetchIssuerJWKS(ctx context.Context, rc rest.Interface, dir string) (file, issuer string, err error) {
	raw, err := rc.Get().AbsPath("/.well-known/openid-configuration").DoRaw(ctx)
	if err != nil {
		return "", "", fmt.Errorf("reading the service-account issuer discovery document: %w; the API server needs --service-account-issuer, and istiod-lite the system:service-account-issuer-discovery role", err)
	}
	var disco struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(raw, &disco); err != nil || disco.Issuer == "" {
		return "", "", fmt.Errorf("issuer discovery document has no issuer: %s", raw)
	}
	keys, err := rc.Get().AbsPath("/openid/v1/jwks").DoRaw(ctx)
	if err != nil {
		return "", "", fmt.Errorf("reading the service-account issuer JWKS: %w", err)
	}
	file = filepath.Join(dir, "jwks.json")
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, keys, 0o644); err != nil {
		return "", "", fmt.Errorf("writing %s: %w", file, err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return "", "", fmt.Errorf("writing %s: %w", file, err)
	}
	return file, disco.Issuer, nil
}

// KeepIssuerJWKS re-fetches the issuer's keys into dir every interval until
// ctx ends, so that offline verification follows a rotation of the cluster's
// signing key (NewJWT re-reads the file when a token names an unknown key).
func KeepIssuerJWKS(ctx context.Context, rc rest.Interface, dir string, interval time.Duration, clk clock.Clock, logger *slog.Logger) {
	if clk == nil {
		clk = clock.RealClock{}
	}
	if logger == nil {
		logger = slog.Default()
	}
	log := logger.With("scope", "ca")
	for {
		select {
		case <-ctx.Done():
			return
		case <-clk.After(interval):
		}
		if _, _, err := FetchIssuerJWKS(ctx, rc, dir); err != nil && ctx.Err() == nil {
			log.Warn("cannot refresh the service-account issuer keys; verifying with the previous ones", "error", err)
		}
	}
}
