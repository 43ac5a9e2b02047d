package authn

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/grpc/metadata"
	"k8s.io/utils/clock"

	"github.com/meshlite/meshlite/sds/spiffe"
)

// Defaults of JWTOptions.
const (
	DefaultJWTCacheSize = 4096
	DefaultJWTLeeway    = time.Minute
)

// signatureAlgorithms are the JWS algorithms accepted in bearer tokens; "none"
// and HMAC are never accepted because the CA holds public keys only.
var signatureAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// JWTOptions configure the bearer token authenticator.
type JWTOptions struct {
	// JWKSFile (--jwksFile) holds the public keys tokens are signed with. It
	// is re-read when a token names a key ID the loaded set lacks.
	JWKSFile string
	// Issuer (--jwtIssuer) must equal the token's iss claim.
	Issuer string
	// Audiences (--jwtAudience): the token's aud must contain one of them.
	Audiences []string
	// TrustDomain of the identities returned; default cluster.local.
	TrustDomain string
	// CacheSize bounds how many verified tokens are remembered until they
	// expire, which spares re-verifying the signature of a reused token.
	CacheSize int
	// Leeway tolerated on nbf, iat and exp for clock differences.
	Leeway time.Duration
	Clock  clock.PassiveClock
	Logger *slog.Logger
}

// JWT authenticates "authorization: Bearer <token>" against a JWKS file, with
// the identity taken from a Kubernetes service account token.
type JWT struct {
	opts JWTOptions
	log  *slog.Logger

	keysMu  sync.RWMutex
	keys    jose.JSONWebKeySet
	modTime time.Time

	cacheMu sync.Mutex
	cache   map[[32]byte]cachedToken
}

type cachedToken struct {
	id     spiffe.Identity
	expiry time.Time
}

// NewJWT loads the JWKS file and returns the authenticator.
func NewJWT(opts JWTOptions) (*JWT, error) {
	if opts.JWKSFile == "" {
		return nil, errors.New("authn: --jwksFile is empty; point it at the JWKS (JSON Web Key Set) of the token issuer")
	}
	if opts.Issuer == "" {
		return nil, errors.New("authn: --jwtIssuer is empty; set it to the iss claim of the service account tokens")
	}
	if len(opts.Audiences) == 0 {
		return nil, errors.New("authn: --jwtAudience is empty; set it to the audience tokens are minted for, e.g. istio-ca")
	}
	if opts.TrustDomain == "" {
		opts.TrustDomain = spiffe.DefaultTrustDomain
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultJWTCacheSize
	}
	if opts.Leeway <= 0 {
		opts.Leeway = DefaultJWTLeeway
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	j := &JWT{opts: opts, log: opts.Logger.With("scope", "ca"), cache: map[[32]byte]cachedToken{}}
	if _, err := j.reload(true); err != nil {
		return nil, err
	}
	return j, nil
}

// reload re-reads the JWKS file when it changed (or always when force).
func (j *JWT) reload(force bool) (bool, error) {
	st, err := os.Stat(j.opts.JWKSFile)
	if err != nil {
		return false, fmt.Errorf("authn: reading --jwksFile: %w", err)
	}
	j.keysMu.RLock()
	same := st.ModTime().Equal(j.modTime)
	j.keysMu.RUnlock()
	if same && !force {
		return false, nil
	}
	data, err := os.ReadFile(j.opts.JWKSFile)
	if err != nil {
		return false, fmt.Errorf("authn: reading --jwksFile: %w", err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return false, fmt.Errorf("authn: --jwksFile %s is not a JWKS document ({\"keys\": [...]}): %w", j.opts.JWKSFile, err)
	}
	if len(set.Keys) == 0 {
		return false, fmt.Errorf("authn: --jwksFile %s holds no keys", j.opts.JWKSFile)
	}
	for i, k := range set.Keys {
		if !k.IsPublic() {
			return false, fmt.Errorf("authn: key %d (kid %q) in --jwksFile %s is a private or symmetric key; publish only public keys", i, k.KeyID, j.opts.JWKSFile)
		}
	}
	j.keysMu.Lock()
	j.keys, j.modTime = set, st.ModTime()
	j.keysMu.Unlock()
	return true, nil
}

// candidates are the keys that may have signed a token with this key ID.
func (j *JWT) candidates(kid string) []jose.JSONWebKey {
	j.keysMu.RLock()
	defer j.keysMu.RUnlock()
	if kid != "" {
		return j.keys.Key(kid)
	}
	return append([]jose.JSONWebKey(nil), j.keys.Keys...)
}

// k8sClaims is the private claim Kubernetes puts in projected tokens.
type k8sClaims struct {
	Kubernetes *struct {
		Namespace      string `json:"namespace"`
		ServiceAccount struct {
			Name string `json:"name"`
		} `json:"serviceaccount"`
	} `json:"kubernetes.io,omitempty"`
}

// Authenticate implements Authenticator.
func (j *JWT) Authenticate(ctx context.Context) (spiffe.Identity, error) {
	token, err := bearerToken(ctx)
	if err != nil {
		return spiffe.Identity{}, err
	}
	now := j.opts.Clock.Now()
	sum := sha256.Sum256([]byte(token))
	j.cacheMu.Lock()
	c, ok := j.cache[sum]
	j.cacheMu.Unlock()
	if ok && now.Before(c.expiry) {
		return c.id, nil
	}
	id, exp, err := j.verify(token, now)
	if err != nil {
		return spiffe.Identity{}, fmt.Errorf("bearer token rejected: %w", err)
	}
	j.remember(sum, cachedToken{id: id, expiry: exp}, now)
	return id, nil
}

func (j *JWT) remember(sum [32]byte, c cachedToken, now time.Time) {
	j.cacheMu.Lock()
	defer j.cacheMu.Unlock()
	if len(j.cache) >= j.opts.CacheSize {
		for k, v := range j.cache {
			if !now.Before(v.expiry) {
				delete(j.cache, k)
			}
		}
		// Still full of live tokens: forget an arbitrary quarter, which costs
		// only a re-verification for their owners.
		for k := range j.cache {
			if len(j.cache) < j.opts.CacheSize*3/4 {
				break
			}
			delete(j.cache, k)
		}
	}
	j.cache[sum] = c
}

func (j *JWT) verify(token string, now time.Time) (spiffe.Identity, time.Time, error) {
	tok, err := jwt.ParseSigned(token, signatureAlgorithms)
	if err != nil {
		return spiffe.Identity{}, time.Time{}, fmt.Errorf("not a signed JWT with an accepted algorithm (%v): %w", signatureAlgorithms, err)
	}
	if len(tok.Headers) != 1 {
		return spiffe.Identity{}, time.Time{}, errors.New("token must carry exactly one signature")
	}
	kid := tok.Headers[0].KeyID
	keys := j.candidates(kid)
	if len(keys) == 0 {
		if changed, err := j.reload(false); err != nil {
			return spiffe.Identity{}, time.Time{}, err
		} else if changed {
			keys = j.candidates(kid)
		}
	}
	if len(keys) == 0 {
		return spiffe.Identity{}, time.Time{}, fmt.Errorf("signing key %q is not in --jwksFile %s", kid, j.opts.JWKSFile)
	}
	var (
		claims jwt.Claims
		k8s    k8sClaims
		sigErr error
	)
	for _, k := range keys {
		if sigErr = tok.Claims(k.Key, &claims, &k8s); sigErr == nil {
			break
		}
	}
	if sigErr != nil {
		return spiffe.Identity{}, time.Time{}, fmt.Errorf("signature does not verify with the keys in --jwksFile %s for kid %q: %w", j.opts.JWKSFile, kid, sigErr)
	}
	if claims.Expiry == nil {
		return spiffe.Identity{}, time.Time{}, errors.New("token has no exp claim; only expiring tokens are accepted")
	}
	err = claims.ValidateWithLeeway(jwt.Expected{Issuer: j.opts.Issuer, AnyAudience: j.opts.Audiences, Time: now}, j.opts.Leeway)
	switch {
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return spiffe.Identity{}, time.Time{}, fmt.Errorf("issuer %q is not the configured --jwtIssuer %q", claims.Issuer, j.opts.Issuer)
	case errors.Is(err, jwt.ErrInvalidAudience):
		return spiffe.Identity{}, time.Time{}, fmt.Errorf("audience %q does not include the configured --jwtAudience %q", []string(claims.Audience), j.opts.Audiences)
	case errors.Is(err, jwt.ErrExpired):
		return spiffe.Identity{}, time.Time{}, fmt.Errorf("token expired at %s; mint a new one", claims.Expiry.Time().UTC().Format(time.RFC3339))
	case err != nil:
		return spiffe.Identity{}, time.Time{}, fmt.Errorf("token is not valid at %s: %w", now.UTC().Format(time.RFC3339), err)
	}
	id, err := j.identity(claims.Subject, k8s)
	if err != nil {
		return spiffe.Identity{}, time.Time{}, err
	}
	return id, claims.Expiry.Time(), nil
}

// identity reads the service account from sub, or from the kubernetes.io
// claim when sub is not a service account, refusing tokens where they disagree.
func (j *JWT) identity(sub string, k k8sClaims) (spiffe.Identity, error) {
	var fromSub, fromK8s *spiffe.Identity
	if parts := strings.Split(sub, ":"); len(parts) == 4 && parts[0] == "system" && parts[1] == "serviceaccount" {
		fromSub = &spiffe.Identity{TrustDomain: j.opts.TrustDomain, Namespace: parts[2], ServiceAccount: parts[3]}
	}
	if k.Kubernetes != nil && k.Kubernetes.Namespace != "" && k.Kubernetes.ServiceAccount.Name != "" {
		fromK8s = &spiffe.Identity{TrustDomain: j.opts.TrustDomain, Namespace: k.Kubernetes.Namespace, ServiceAccount: k.Kubernetes.ServiceAccount.Name}
	}
	var id spiffe.Identity
	switch {
	case fromSub != nil && fromK8s != nil && *fromSub != *fromK8s:
		return id, fmt.Errorf("sub %q and the kubernetes.io claim (%s/%s) name different service accounts", sub, fromK8s.Namespace, fromK8s.ServiceAccount)
	case fromSub != nil:
		id = *fromSub
	case fromK8s != nil:
		id = *fromK8s
	default:
		return id, fmt.Errorf("sub %q is not of the form system:serviceaccount:<namespace>:<service-account> and there is no kubernetes.io claim", sub)
	}
	if err := id.Validate(); err != nil {
		return spiffe.Identity{}, fmt.Errorf("service account in token: %w", err)
	}
	return id, nil
}

// bearerToken reads the token from the authorization metadata, as Istio's
// agent sends it.
func bearerToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return "", ErrNoCredentials
	}
	scheme, tok, _ := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !strings.EqualFold(scheme, "bearer") {
		return "", errors.New(`authorization header is not of the form "Bearer <token>"`)
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", errors.New("authorization header has an empty bearer token")
	}
	return tok, nil
}
