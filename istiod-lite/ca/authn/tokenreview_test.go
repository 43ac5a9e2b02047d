package authn

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshlite/meshlite/istiod-lite/kubeclient"
	"github.com/meshlite/meshlite/istiod-lite/kubeclient/kubeclienttest"
)

// fakeReviewer answers TokenReviews from a table of token -> status.
type fakeReviewer struct {
	calls   atomic.Int32
	answers map[string]authenticationv1.TokenReviewStatus
	err     error
}

func (f *fakeReviewer) client() *fake.Clientset {
	cs := fake.NewClientset()
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.calls.Add(1)
		if f.err != nil {
			return true, nil, f.err
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview)
		if len(tr.Spec.Audiences) != 1 || tr.Spec.Audiences[0] != "istio-ca" {
			return true, nil, fmt.Errorf("review asked for audiences %v, want [istio-ca]", tr.Spec.Audiences)
		}
		out := tr.DeepCopy()
		out.Status = f.answers[tr.Spec.Token]
		return true, out, nil
	})
	return cs
}

func withBearer(tok string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
}

func saStatus(ns, sa, pod, uid string) authenticationv1.TokenReviewStatus {
	st := authenticationv1.TokenReviewStatus{
		Authenticated: true,
		Audiences:     []string{"istio-ca"},
		User:          authenticationv1.UserInfo{Username: "system:serviceaccount:" + ns + ":" + sa},
	}
	if pod != "" {
		st.User.Extra = map[string]authenticationv1.ExtraValue{extraPodName: {pod}, extraPodUID: {uid}}
	}
	return st
}

func TestTokenReviewIdentityAndCache(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1_700_000_000, 0))
	f := &fakeReviewer{answers: map[string]authenticationv1.TokenReviewStatus{
		"good":      saStatus("demo", "greeter", "", ""),
		"bound":     saStatus("demo", "greeter", "greeter-1", "uid-1"),
		"node":      {Authenticated: true, User: authenticationv1.UserInfo{Username: "system:node:n1"}},
		"other-aud": {Authenticated: true, Audiences: []string{"api"}, User: authenticationv1.UserInfo{Username: "system:serviceaccount:a:b"}},
		"expired":   {Authenticated: false, Error: "token has expired"},
	}}
	pods := map[string]string{"demo/greeter-1": "uid-1"}
	tr, err := NewTokenReview(TokenReviewOptions{
		Client: kubeclienttest.FromClientsets(f.client(), nil), Clock: clk,
		Pods: func(ns, name, uid string) bool { return pods[ns+"/"+name] == uid },
	})
	if err != nil {
		t.Fatal(err)
	}

	id, err := tr.Authenticate(withBearer("good"))
	if err != nil {
		t.Fatal(err)
	}
	if got := id.String(); got != "spiffe://cluster.local/ns/demo/sa/greeter" {
		t.Errorf("identity = %s", got)
	}
	if _, err := tr.Authenticate(withBearer("good")); err != nil || f.calls.Load() != 1 {
		t.Errorf("second use: err %v, %d TokenReviews; want served from the cache", err, f.calls.Load())
	}
	// Past the cache lifetime (no exp in this opaque token): reviewed again.
	clk.Step(DefaultTokenReviewCacheTTL + time.Second)
	if _, err := tr.Authenticate(withBearer("good")); err != nil || f.calls.Load() != 2 {
		t.Errorf("after expiry: err %v, %d TokenReviews; want a new review", err, f.calls.Load())
	}

	if _, err := tr.Authenticate(withBearer("bound")); err != nil {
		t.Fatal(err)
	}
	delete(pods, "demo/greeter-1")
	_, err = tr.Authenticate(withBearer("bound"))
	if err == nil || !strings.Contains(err.Error(), "greeter-1, which no longer exists") {
		t.Errorf("token of a deleted pod: err = %v, want refused", err)
	}

	for tok, want := range map[string]string{
		"node":      "not a service account",
		"other-aud": "do not include [istio-ca]",
		"expired":   "token has expired",
	} {
		if _, err := tr.Authenticate(withBearer(tok)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("token %s: err = %v, want it to mention %q", tok, err, want)
		}
	}
	if _, err := tr.Authenticate(context.Background()); !errors.Is(err, ErrNoCredentials) {
		t.Errorf("no header: err = %v, want ErrNoCredentials so the chain tries the next authenticator", err)
	}
}

func TestTokenReviewAPIErrors(t *testing.T) {
	f := &fakeReviewer{err: apierrors.NewForbidden(schema.GroupResource{Group: "authentication.k8s.io", Resource: "tokenreviews"}, "", errors.New("denied"))}
	tr, _ := NewTokenReview(TokenReviewOptions{Client: kubeclienttest.FromClientsets(f.client(), nil)})
	if _, err := tr.Authenticate(withBearer("x")); err == nil || !strings.Contains(err.Error(), "rbac.yaml") {
		t.Errorf("forbidden: err = %v, want a pointer to the RBAC manifest", err)
	}
	if _, err := NewTokenReview(TokenReviewOptions{}); err == nil {
		t.Error("NewTokenReview accepted no client")
	}
}

func TestTokenCacheBounded(t *testing.T) {
	now := time.Unix(0, 0)
	c := newTokenCache(8)
	for i := 0; i < 100; i++ {
		c.put([32]byte{byte(i)}, tokenEntry{expiry: now.Add(time.Hour)}, now)
	}
	if n := c.len(); n > 8 {
		t.Errorf("cache holds %d entries, bound is 8", n)
	}
}

func TestFetchIssuerJWKS(t *testing.T) {
	const jwks = `{"keys":[]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			fmt.Fprint(w, `{"issuer":"https://kubernetes.default.svc","jwks_uri":"https://x/openid/v1/jwks"}`)
		case "/openid/v1/jwks":
			fmt.Fprint(w, jwks)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	cs, err := kubeclient.New(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	file, issuer, err := FetchIssuerJWKS(context.Background(), cs.REST, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if issuer != "https://kubernetes.default.svc" {
		t.Errorf("issuer = %q", issuer)
	}
	if b, _ := os.ReadFile(file); string(b) != jwks {
		t.Errorf("%s = %q, want the JWKS", file, b)
	}
}
